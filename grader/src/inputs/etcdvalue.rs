//! Decoding (and, with the keys, decrypting) values as kube-apiserver stores them in etcd.
//!
//! A stored value is either plaintext (protobuf behind the `k8s\0` magic, JSON or CBOR) or one
//! of the encrypted layouts behind a `k8s:enc:<provider>:v1:<key>:` prefix. The layouts follow
//! kubernetes/apiserver's transformers: aescbc is IV ‖ CBC with PKCS#7 and no AAD; aesgcm is
//! nonce ‖ ciphertext ‖ tag with the etcd key as AAD; secretbox is nonce ‖ tag ‖ ciphertext;
//! kms v1 is a big-endian u16 DEK length ‖ DEK ‖ AES-GCM data; kms v2 is a protobuf
//! `EncryptedObject`.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use crypto_secretbox::XSalsa20Poly1305;

use crate::{Error, Result};

/// The magic bytes in front of a protobuf-encoded object: "k8s" and encoding style 0.
pub const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";
const ENCRYPTED_MAGIC: &[u8] = b"k8s:enc:";
const CBOR_SELF_DESCRIBED: &[u8] = &[0xd9, 0xd9, 0xf7];

/// How a value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredFormat {
    /// Not encrypted: the identity provider, or no encryption configured.
    Plaintext(PlainEncoding),
    Aescbc {
        key: String,
    },
    Aesgcm {
        key: String,
    },
    Secretbox {
        key: String,
    },
    KmsV1 {
        name: String,
    },
    KmsV2 {
        name: String,
    },
    /// Behind `k8s:enc:` but not a layout this grader knows.
    UnknownEncrypted {
        prefix: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainEncoding {
    Protobuf,
    Json,
    Cbor,
    Unrecognized,
}

impl StoredFormat {
    pub fn is_encrypted(&self) -> bool {
        !matches!(self, StoredFormat::Plaintext(_))
    }

    /// The provider's name as written in an EncryptionConfiguration (`identity` for plaintext).
    pub fn provider(&self) -> &'static str {
        match self {
            StoredFormat::Plaintext(_) => "identity",
            StoredFormat::Aescbc { .. } => "aescbc",
            StoredFormat::Aesgcm { .. } => "aesgcm",
            StoredFormat::Secretbox { .. } => "secretbox",
            StoredFormat::KmsV1 { .. } => "kms v1",
            StoredFormat::KmsV2 { .. } => "kms v2",
            StoredFormat::UnknownEncrypted { .. } => "unknown",
        }
    }
}

/// A stored value split into its format, its prefix and the payload after the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue<'a> {
    pub format: StoredFormat,
    /// The prefix as stored, e.g. `k8s:enc:aescbc:v1:key1:`; empty for plaintext.
    pub prefix: String,
    /// What follows the prefix: ciphertext for encrypted values, the whole value for plaintext.
    pub payload: &'a [u8],
}

/// Classifies a raw etcd value by its prefix.
pub fn classify(raw: &[u8]) -> StoredValue<'_> {
    if !raw.starts_with(ENCRYPTED_MAGIC) {
        let encoding = if raw.starts_with(PROTOBUF_MAGIC) {
            PlainEncoding::Protobuf
        } else if raw.first() == Some(&b'{') {
            PlainEncoding::Json
        } else if raw.starts_with(CBOR_SELF_DESCRIBED) {
            PlainEncoding::Cbor
        } else {
            PlainEncoding::Unrecognized
        };
        return StoredValue {
            format: StoredFormat::Plaintext(encoding),
            prefix: String::new(),
            payload: raw,
        };
    }
    type Layout = (&'static str, fn(String) -> StoredFormat);
    const LAYOUTS: [Layout; 6] = [
        ("k8s:enc:aescbc:v1:", |key| StoredFormat::Aescbc { key }),
        ("k8s:enc:aesgcm:v1:", |key| StoredFormat::Aesgcm { key }),
        ("k8s:enc:secretbox:v1:", |key| StoredFormat::Secretbox {
            key,
        }),
        ("k8s:enc:kms:v1:", |name| StoredFormat::KmsV1 { name }),
        ("k8s:enc:kms:v2:", |name| StoredFormat::KmsV2 { name }),
        // Written by clusters with the KMSv2 feature in beta; same layout as kms v2.
        ("k8s:enc:kms:v2beta1:", |name| StoredFormat::KmsV2 { name }),
    ];
    for (provider_prefix, format) in LAYOUTS {
        let Some(rest) = raw.strip_prefix(provider_prefix.as_bytes()) else {
            continue;
        };
        // Key names are only required to be non-empty, so the first ':' ends the name; that is
        // also how the API server matches them when it reads.
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            break;
        };
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let prefix_len = provider_prefix.len() + colon + 1;
        return StoredValue {
            format: format(name),
            prefix: String::from_utf8_lossy(&raw[..prefix_len]).into_owned(),
            payload: &raw[prefix_len..],
        };
    }
    let shown = raw
        .iter()
        .take(40)
        .take_while(|b| b.is_ascii_graphic())
        .count();
    StoredValue {
        format: StoredFormat::UnknownEncrypted {
            prefix: String::from_utf8_lossy(&raw[..shown]).into_owned(),
        },
        prefix: String::from_utf8_lossy(&raw[..shown]).into_owned(),
        payload: &raw[shown..],
    }
}

/// Decrypts an aescbc payload (IV[16] ‖ CBC ciphertext with PKCS#7 padding).
pub fn decrypt_aescbc(key: &[u8], payload: &[u8]) -> Result<Vec<u8>> {
    const BLOCK: usize = 16;
    if payload.len() < 2 * BLOCK || !payload.len().is_multiple_of(BLOCK) {
        return Err(Error::Decode(
            "the stored data is not a multiple of the block size".into(),
        ));
    }
    let (iv, ciphertext) = payload.split_at(BLOCK);
    let decrypt = |cipher_text: &[u8]| -> Result<Vec<u8>> {
        macro_rules! run {
            ($aes:ty) => {
                cbc::Decryptor::<$aes>::new_from_slices(key, iv)
                    .map_err(|_| Error::Decode("invalid aescbc key or IV length".into()))?
                    .decrypt_padded_vec_mut::<Pkcs7>(cipher_text)
                    .map_err(|_| Error::Decode("invalid padding on input (wrong key?)".into()))
            };
        }
        match key.len() {
            16 => run!(aes::Aes128),
            24 => run!(aes::Aes192),
            32 => run!(aes::Aes256),
            n => Err(Error::Decode(format!(
                "aescbc key is {n} bytes; 16, 24 or 32 expected"
            ))),
        }
    };
    decrypt(ciphertext)
}

/// Decrypts an AES-GCM payload (nonce[12] ‖ ciphertext ‖ tag[16]) with `aad` (the etcd key).
pub fn decrypt_aesgcm(key: &[u8], payload: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    const NONCE: usize = 12;
    if payload.len() < NONCE + 16 {
        return Err(Error::Decode("aesgcm value is too short".into()));
    }
    let (nonce, sealed) = payload.split_at(NONCE);
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let sealed = Payload { msg: sealed, aad };
    let failed = |_| {
        Error::Decode("AES-GCM authentication failed (wrong key or wrong etcd key as AAD)".into())
    };
    match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .map_err(|_| Error::Decode("invalid aesgcm key".into()))?
            .decrypt(nonce, sealed)
            .map_err(failed),
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .map_err(|_| Error::Decode("invalid aesgcm key".into()))?
            .decrypt(nonce, sealed)
            .map_err(failed),
        n => Err(Error::Decode(format!(
            "aesgcm key is {n} bytes; 16 or 32 supported"
        ))),
    }
}

/// Decrypts a secretbox payload (nonce[24] ‖ Poly1305 tag[16] ‖ XSalsa20 ciphertext).
pub fn decrypt_secretbox(key: &[u8], payload: &[u8]) -> Result<Vec<u8>> {
    const NONCE: usize = 24;
    if key.len() != 32 {
        return Err(Error::Decode(format!(
            "expected key size 32 for secretbox provider, got {}",
            key.len()
        )));
    }
    if payload.len() < NONCE + 16 {
        return Err(Error::Decode("secretbox value is too short".into()));
    }
    let (nonce, sealed) = payload.split_at(NONCE);
    XSalsa20Poly1305::new_from_slice(key)
        .map_err(|_| Error::Decode("invalid secretbox key".into()))?
        .decrypt(crypto_secretbox::Nonce::from_slice(nonce), sealed)
        .map_err(|_| Error::Decode("secretbox authentication failed (wrong key?)".into()))
}

/// The parts of a kms v1 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsV1Parts<'a> {
    /// The data encryption key as the KMS plugin encrypted it.
    pub encrypted_dek: &'a [u8],
    /// AES-GCM (nonce ‖ ciphertext ‖ tag) under the DEK, with the etcd key as AAD.
    pub data: &'a [u8],
}

pub fn decode_kms_v1(payload: &[u8]) -> Result<KmsV1Parts<'_>> {
    let [high, low, rest @ ..] = payload else {
        return Err(Error::Decode("kms v1 value is too short".into()));
    };
    let dek_len = usize::from(u16::from_be_bytes([*high, *low]));
    if rest.len() < dek_len {
        return Err(Error::Decode(format!(
            "kms v1 DEK length {dek_len} exceeds the value ({} bytes)",
            rest.len()
        )));
    }
    let (encrypted_dek, data) = rest.split_at(dek_len);
    Ok(KmsV1Parts {
        encrypted_dek,
        data,
    })
}

/// The kms v2 `EncryptedObject` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KmsV2Object {
    pub encrypted_data: Vec<u8>,
    pub key_id: String,
    pub encrypted_dek_source: Vec<u8>,
    pub annotations: Vec<(String, Vec<u8>)>,
    /// 0 = AES_GCM_KEY, 1 = HKDF_SHA256_XNONCE_AES_GCM_SEED.
    pub encrypted_dek_source_type: u64,
}

impl KmsV2Object {
    pub fn dek_source_type_name(&self) -> &'static str {
        match self.encrypted_dek_source_type {
            0 => "AES_GCM_KEY",
            1 => "HKDF_SHA256_XNONCE_AES_GCM_SEED",
            _ => "unknown",
        }
    }
}

/// Decodes and validates a kms v2 `EncryptedObject` as the API server does on read.
pub fn decode_kms_v2(payload: &[u8]) -> Result<KmsV2Object> {
    let mut object = KmsV2Object::default();
    for field in ProtoFields::new(payload) {
        match field? {
            (1, ProtoValue::Bytes(bytes)) => object.encrypted_data = bytes.to_vec(),
            (2, ProtoValue::Bytes(bytes)) => {
                object.key_id = String::from_utf8_lossy(bytes).into_owned();
            }
            (3, ProtoValue::Bytes(bytes)) => object.encrypted_dek_source = bytes.to_vec(),
            (4, ProtoValue::Bytes(entry)) => {
                let mut key = String::new();
                let mut value = Vec::new();
                for part in ProtoFields::new(entry) {
                    match part? {
                        (1, ProtoValue::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
                        (2, ProtoValue::Bytes(v)) => value = v.to_vec(),
                        _ => {}
                    }
                }
                object.annotations.push((key, value));
            }
            (5, ProtoValue::Varint(kind)) => object.encrypted_dek_source_type = kind,
            _ => {}
        }
    }
    if object.encrypted_data.is_empty() {
        return Err(Error::Decode("kms v2: encryptedData is empty".into()));
    }
    if object.key_id.is_empty() || object.key_id.len() > 1024 {
        return Err(Error::Decode("kms v2: keyID is empty or over 1 kB".into()));
    }
    if object.encrypted_dek_source.is_empty() || object.encrypted_dek_source.len() > 1024 {
        return Err(Error::Decode(
            "kms v2: encryptedDEKSource is empty or over 1 kB".into(),
        ));
    }
    if object.encrypted_dek_source_type > 1 {
        return Err(Error::Decode(format!(
            "kms v2: unknown encryptedDEKSourceType {}",
            object.encrypted_dek_source_type
        )));
    }
    Ok(object)
}

/// A decoded `runtime.Unknown` envelope: what the object is, and its raw protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEnvelope {
    pub api_version: String,
    pub kind: String,
    pub raw: Vec<u8>,
}

/// Decodes plaintext protobuf storage: `k8s\0` followed by a `runtime.Unknown` message.
pub fn decode_envelope(plaintext: &[u8]) -> Result<ObjectEnvelope> {
    let body = plaintext
        .strip_prefix(PROTOBUF_MAGIC)
        .ok_or_else(|| Error::Decode("not a Kubernetes protobuf value (no k8s\\0 magic)".into()))?;
    let mut envelope = ObjectEnvelope {
        api_version: String::new(),
        kind: String::new(),
        raw: Vec::new(),
    };
    for field in ProtoFields::new(body) {
        match field? {
            (1, ProtoValue::Bytes(type_meta)) => {
                for part in ProtoFields::new(type_meta) {
                    match part? {
                        (1, ProtoValue::Bytes(v)) => {
                            envelope.api_version = String::from_utf8_lossy(v).into_owned();
                        }
                        (2, ProtoValue::Bytes(k)) => {
                            envelope.kind = String::from_utf8_lossy(k).into_owned();
                        }
                        _ => {}
                    }
                }
            }
            (2, ProtoValue::Bytes(raw)) => envelope.raw = raw.to_vec(),
            _ => {}
        }
    }
    if envelope.kind.is_empty() {
        return Err(Error::Decode("runtime.Unknown without a kind".into()));
    }
    Ok(envelope)
}

/// The identity of a Secret decoded from its protobuf: (namespace, name, data keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretSummary {
    pub namespace: String,
    pub name: String,
    pub data_keys: Vec<String>,
}

/// Reads the name, namespace and data keys of a core/v1 Secret from its protobuf (`raw` of the
/// envelope). Values are left out on purpose: they are what is being protected.
pub fn decode_secret(raw: &[u8]) -> Result<SecretSummary> {
    let mut secret = SecretSummary::default();
    for field in ProtoFields::new(raw) {
        match field? {
            (1, ProtoValue::Bytes(metadata)) => {
                for part in ProtoFields::new(metadata) {
                    match part? {
                        (1, ProtoValue::Bytes(name)) => {
                            secret.name = String::from_utf8_lossy(name).into_owned();
                        }
                        (3, ProtoValue::Bytes(ns)) => {
                            secret.namespace = String::from_utf8_lossy(ns).into_owned();
                        }
                        _ => {}
                    }
                }
            }
            (2, ProtoValue::Bytes(entry)) => {
                for part in ProtoFields::new(entry) {
                    if let (1, ProtoValue::Bytes(key)) = part? {
                        secret
                            .data_keys
                            .push(String::from_utf8_lossy(key).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(secret)
}

/// Formats bytes as `hexdump -C` does, cut after `max` bytes with a note.
pub fn hexdump(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes
        .iter()
        .take(max)
        .collect::<Vec<_>>()
        .chunks(16)
        .enumerate()
    {
        let mut hex = String::new();
        for (i, byte) in chunk.iter().enumerate() {
            if i == 8 {
                hex.push(' ');
            }
            hex.push_str(&format!("{byte:02x} "));
        }
        let ascii: String = chunk
            .iter()
            .map(|&&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {hex:<49} |{ascii}|\n", row * 16));
    }
    if bytes.len() > max {
        out.push_str(&format!("... ({} more bytes)\n", bytes.len() - max));
    } else {
        out.push_str(&format!("{:08x}\n", bytes.len()));
    }
    out
}

#[derive(Debug)]
enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// A minimal protobuf wire-format reader: enough to walk fields without a schema compiler.
struct ProtoFields<'a> {
    data: &'a [u8],
    failed: bool,
}

impl<'a> ProtoFields<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .data
                .split_first()
                .ok_or_else(|| Error::Decode("protobuf: truncated varint".into()))?;
            self.data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Decode("protobuf: varint too long".into()))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.data.len() < len {
            return Err(Error::Decode("protobuf: field runs past the end".into()));
        }
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u64, ProtoValue<'a>)> {
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => ProtoValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                ProtoValue::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| Error::Decode("protobuf: length too large".into()))?;
                ProtoValue::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                ProtoValue::Fixed
            }
            wire => {
                return Err(Error::Decode(format!(
                    "protobuf: unsupported wire type {wire}"
                )));
            }
        };
        Ok((tag >> 3, value))
    }
}

impl<'a> Iterator for ProtoFields<'a> {
    type Item = Result<(u64, ProtoValue<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.data.is_empty() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aes::cipher::BlockEncryptMut;

    use super::*;

    /// A Secret `default/secret1` with `mykey: mydata`, encoded as the API server stores it
    /// (field layout from the core/v1 and runtime.Unknown protos).
    fn stored_secret() -> Vec<u8> {
        fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, u8::try_from(bytes.len()).unwrap()];
            out.extend_from_slice(bytes);
            out
        }
        let metadata = [field(0x0a, b"secret1"), field(0x1a, b"default")].concat();
        let entry = [field(0x0a, b"mykey"), field(0x12, b"mydata")].concat();
        let secret = [
            field(0x0a, &metadata),
            field(0x12, &entry),
            field(0x1a, b"Opaque"),
        ]
        .concat();
        let type_meta = [field(0x0a, b"v1"), field(0x12, b"Secret")].concat();
        let unknown = [
            field(0x0a, &type_meta),
            field(0x12, &secret),
            vec![0x1a, 0, 0x22, 0],
        ]
        .concat();
        [PROTOBUF_MAGIC, &unknown].concat()
    }

    #[test]
    fn plaintext_protobuf_is_recognized_and_names_the_secret() {
        let raw = stored_secret();
        let value = classify(&raw);
        assert_eq!(
            value.format,
            StoredFormat::Plaintext(PlainEncoding::Protobuf)
        );
        let envelope = decode_envelope(value.payload).unwrap();
        assert_eq!(
            (envelope.api_version.as_str(), envelope.kind.as_str()),
            ("v1", "Secret")
        );
        let secret = decode_secret(&envelope.raw).unwrap();
        assert_eq!(secret.name, "secret1");
        assert_eq!(secret.namespace, "default");
        assert_eq!(secret.data_keys, ["mykey"]);
    }

    #[test]
    fn aescbc_values_decrypt_with_the_right_key_and_fail_with_another() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let plain = stored_secret();
        let ciphertext = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(&plain);
        let raw = [b"k8s:enc:aescbc:v1:key1:".as_slice(), &iv, &ciphertext].concat();
        let value = classify(&raw);
        assert_eq!(value.format, StoredFormat::Aescbc { key: "key1".into() });
        assert_eq!(value.prefix, "k8s:enc:aescbc:v1:key1:");
        assert_eq!(decrypt_aescbc(&key, value.payload).unwrap(), plain);
        assert!(decrypt_aescbc(&[8u8; 32], value.payload).is_err_and(|e| e.to_string() != ""));
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_etcd_key() {
        let key = [3u8; 32];
        let nonce = [1u8; 12];
        let plain = stored_secret();
        let etcd_key = b"/registry/secrets/default/secret1";
        let sealed = aes_gcm::Aes256Gcm::new_from_slice(&key)
            .unwrap()
            .encrypt(
                aes_gcm::Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: etcd_key,
                },
            )
            .unwrap();
        let raw = [b"k8s:enc:aesgcm:v1:k:".as_slice(), &nonce, &sealed].concat();
        let value = classify(&raw);
        assert_eq!(
            decrypt_aesgcm(&key, value.payload, etcd_key).unwrap(),
            plain
        );
        assert!(decrypt_aesgcm(&key, value.payload, b"/registry/secrets/default/other").is_err());
    }

    #[test]
    fn secretbox_values_decrypt() {
        let key = [5u8; 32];
        let nonce = [2u8; 24];
        let plain = stored_secret();
        let sealed = XSalsa20Poly1305::new_from_slice(&key)
            .unwrap()
            .encrypt(
                crypto_secretbox::Nonce::from_slice(&nonce),
                plain.as_slice(),
            )
            .unwrap();
        let raw = [b"k8s:enc:secretbox:v1:key1:".as_slice(), &nonce, &sealed].concat();
        let value = classify(&raw);
        assert_eq!(value.format, StoredFormat::Secretbox { key: "key1".into() });
        assert_eq!(decrypt_secretbox(&key, value.payload).unwrap(), plain);
    }

    #[test]
    fn kms_v1_splits_the_encrypted_dek_from_the_data() {
        let raw = [
            b"k8s:enc:kms:v1:vault:".as_slice(),
            &[0, 3],
            b"DEK",
            b"gcm-data",
        ]
        .concat();
        let value = classify(&raw);
        assert_eq!(
            value.format,
            StoredFormat::KmsV1 {
                name: "vault".into()
            }
        );
        let parts = decode_kms_v1(value.payload).unwrap();
        assert_eq!(parts.encrypted_dek, b"DEK");
        assert_eq!(parts.data, b"gcm-data");
        assert!(decode_kms_v1(&[0, 9, 1]).is_err());
    }

    #[test]
    fn kms_v2_encrypted_object_is_decoded_and_validated() {
        let mut object = vec![0x0a, 4];
        object.extend_from_slice(b"data");
        object.extend_from_slice(&[0x12, 2]);
        object.extend_from_slice(b"k1");
        object.extend_from_slice(&[0x1a, 3]);
        object.extend_from_slice(b"dek");
        object.extend_from_slice(&[0x22, 8, 0x0a, 2, b'a', b'.', 0x12, 2, b'x', b'y']);
        object.extend_from_slice(&[0x28, 1]);
        let raw = [b"k8s:enc:kms:v2:hardlab:".as_slice(), &object].concat();
        let value = classify(&raw);
        assert_eq!(
            value.format,
            StoredFormat::KmsV2 {
                name: "hardlab".into()
            }
        );
        let decoded = decode_kms_v2(value.payload).unwrap();
        assert_eq!(decoded.encrypted_data, b"data");
        assert_eq!(decoded.key_id, "k1");
        assert_eq!(decoded.annotations, [("a.".to_owned(), b"xy".to_vec())]);
        assert_eq!(
            decoded.dek_source_type_name(),
            "HKDF_SHA256_XNONCE_AES_GCM_SEED"
        );
        // Without a key ID the API server refuses the object, and so do we.
        assert!(decode_kms_v2(&[0x0a, 1, b'd', 0x1a, 1, b'k']).is_err());
    }

    #[test]
    fn unknown_encrypted_prefixes_are_reported_as_such() {
        let value = classify(b"k8s:enc:rot13:v1:key:abc");
        assert!(matches!(
            value.format,
            StoredFormat::UnknownEncrypted { .. }
        ));
        assert!(value.format.is_encrypted());
    }

    #[test]
    fn hexdump_matches_hexdump_c_layout() {
        let dump = hexdump(b"/registry/secrets/default/secret1\nk8s", 64);
        let first = dump.lines().next().unwrap();
        assert_eq!(
            first,
            "00000000  2f 72 65 67 69 73 74 72  79 2f 73 65 63 72 65 74  |/registry/secret|"
        );
    }

    #[test]
    fn truncated_protobuf_is_an_error_not_a_panic() {
        assert!(decode_envelope(b"k8s\x00\x0a\x7f\x01").is_err());
        assert!(
            decode_secret(&[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
    }
}
