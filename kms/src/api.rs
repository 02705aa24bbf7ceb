//! The KMS v2 gRPC messages (kubernetes/kms `apis/v2/api.proto`, package `v2`), written as prost
//! structs by hand so the build needs no `protoc`. Field numbers and types follow the proto file.

use std::collections::HashMap;

/// The gRPC service name the API server calls.
pub const SERVICE: &str = "v2.KeyManagementService";
pub const STATUS_PATH: &str = "/v2.KeyManagementService/Status";
pub const ENCRYPT_PATH: &str = "/v2.KeyManagementService/Encrypt";
pub const DECRYPT_PATH: &str = "/v2.KeyManagementService/Decrypt";

/// The version the API server requires in [`StatusResponse::version`] (`v2` or `v2beta1`).
pub const API_VERSION: &str = "v2";
/// The healthz value the API server requires for a healthy plugin.
pub const HEALTHY: &str = "ok";

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub healthz: String,
    #[prost(string, tag = "3")]
    pub key_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub key_id: String,
    #[prost(map = "string, bytes", tag = "4")]
    pub annotations: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
    #[prost(string, tag = "2")]
    pub uid: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    #[prost(string, tag = "2")]
    pub key_id: String,
    #[prost(map = "string, bytes", tag = "3")]
    pub annotations: HashMap<String, Vec<u8>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn messages_use_the_proto_field_numbers() {
        let status = StatusResponse {
            version: "v2".into(),
            healthz: "ok".into(),
            key_id: "k".into(),
        };
        // field 1 (0x0a) "v2", field 2 (0x12) "ok", field 3 (0x1a) "k"
        assert_eq!(
            status.encode_to_vec(),
            b"\x0a\x02v2\x12\x02ok\x1a\x01k".to_vec()
        );
        let mut request = DecryptRequest {
            ciphertext: vec![1],
            uid: "u".into(),
            key_id: "k".into(),
            annotations: HashMap::new(),
        };
        request.annotations.insert("a.example.com".into(), vec![2]);
        let decoded = DecryptRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, request);
        assert!(
            request
                .encode_to_vec()
                .starts_with(b"\x0a\x01\x01\x12\x01u\x1a\x01k\x22")
        );
    }
}
