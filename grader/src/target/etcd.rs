//! Reading etcd directly: over its v3 JSON gateway with client certificates, or with `etcdctl`
//! run on the node with the node's own certificates.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::{EtcdAccess, NodeAccess};
use crate::{Error, Result};

/// The end of a prefix range: the prefix with its last byte incremented, as etcd's `--prefix`.
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[derive(Debug, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

fn decode_kvs(response: RangeResponse) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    response
        .kvs
        .into_iter()
        .map(|kv| {
            let key = BASE64
                .decode(kv.key)
                .map_err(|e| Error::Etcd(format!("bad base64 key from etcd: {e}")))?;
            let value = BASE64
                .decode(kv.value)
                .map_err(|e| Error::Etcd(format!("bad base64 value from etcd: {e}")))?;
            Ok((key, value))
        })
        .collect()
}

/// etcd's gRPC gateway (`POST /v3/kv/range`), which every etcd 3.4+ serves on its client URL.
#[derive(Debug, Clone)]
pub struct EtcdHttp {
    url: String,
    http: reqwest::Client,
    /// The largest answer read; a listing past it is an error, not the server's memory.
    max_bytes: usize,
}

/// The largest etcd answer read by default: a learner's cluster holds a few hundred objects.
pub const DEFAULT_MAX_ETCD_BYTES: usize = 32 << 20;

impl EtcdHttp {
    /// `ca`, `cert` and `key` are PEM file paths; all three are needed for an `https` URL that
    /// demands client certificates, none for plain `http`.
    pub fn new(
        url: &str,
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<Self> {
        let read = |path: Option<&std::path::Path>| {
            path.map(|path| {
                std::fs::read(path).map_err(|source| Error::Io {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()
        };
        let named = |path: Option<&std::path::Path>| {
            path.map_or_else(String::new, |p| p.display().to_string())
        };
        let client = Self::from_pem(
            url,
            read(ca)?.as_deref(),
            read(cert)?.as_deref(),
            read(key)?.as_deref(),
        );
        client.map_err(|error| match error {
            Error::Invalid { location, message } if location == "etcd CA" => {
                Error::invalid(named(ca), message)
            }
            Error::Invalid { location, message } if location == "etcd client certificate" => {
                Error::invalid(named(cert), message)
            }
            other => other,
        })
    }

    /// Like [`EtcdHttp::new`] with the PEM text itself (certificates the server captured and keeps
    /// sealed), so no key is written to disk.
    pub fn from_pem(
        url: &str,
        ca_pem: Option<&[u8]>,
        cert_pem: Option<&[u8]>,
        key_pem: Option<&[u8]>,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::invalid("etcd CA", format!("CA: {e}")))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(certificate);
        }
        match (cert_pem, key_pem) {
            (Some(cert), Some(key)) => {
                let mut pem = cert.to_vec();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    Error::invalid(
                        "etcd client certificate",
                        format!("client certificate: {e}"),
                    )
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Usage(
                    "--etcd-cert and --etcd-key go together".into(),
                ));
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Etcd(format!("building the etcd client: {e}")))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http,
            max_bytes: DEFAULT_MAX_ETCD_BYTES,
        })
    }

    /// Reads answers up to `max_bytes` at most.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    async fn range(&self, key: &[u8], range_end: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut body = serde_json::json!({ "key": BASE64.encode(key) });
        if let Some(end) = range_end {
            body["range_end"] = serde_json::Value::String(BASE64.encode(end));
        }
        let response = self
            .http
            .post(format!("{}/v3/kv/range", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Unreachable {
                what: format!("etcd at {}", self.url),
                message: e.to_string(),
            })?;
        let status = response.status();
        let body = self.bounded_body(response).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
            return Err(Error::Etcd(format!("{status}: {}", text.trim())));
        }
        let parsed: RangeResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Etcd(format!("unexpected answer from etcd: {e}")))?;
        decode_kvs(parsed)
    }

    async fn bounded_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| Error::Unreachable {
            what: format!("etcd at {}", self.url),
            message: e.to_string(),
        })? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(Error::Etcd(format!(
                    "the answer of etcd at {} is larger than the limit of {} bytes",
                    self.url, self.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[async_trait]
impl EtcdAccess for EtcdHttp {
    fn describe(&self) -> String {
        format!("etcd {}", self.url)
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .range(key, None)
            .await?
            .into_iter()
            .next()
            .map(|(_, v)| v))
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.range(prefix, Some(&prefix_range_end(prefix))).await
    }
}

/// `etcdctl` run on the node (or in the etcd pod) with certificates found there.
#[derive(Clone)]
pub struct EtcdctlOnNode {
    node: Arc<dyn NodeAccess>,
    endpoint: String,
    /// `--cacert`, `--cert`, `--key` paths on the node.
    tls: Option<(String, String, String)>,
}

impl std::fmt::Debug for EtcdctlOnNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdctlOnNode")
            .field("node", &self.node.describe())
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl EtcdctlOnNode {
    pub fn new(
        node: Arc<dyn NodeAccess>,
        endpoint: impl Into<String>,
        tls: Option<(String, String, String)>,
    ) -> Self {
        Self {
            node,
            endpoint: endpoint.into(),
            tls,
        }
    }

    /// kubeadm's defaults: etcd on `https://127.0.0.1:2379`, the API server's own etcd client
    /// certificate (kind and kubeadm), or minikube's equivalents under `/var/lib/minikube/certs`.
    pub async fn kubeadm_defaults(node: Arc<dyn NodeAccess>) -> Self {
        let minikube = node
            .read_file("/var/lib/minikube/certs/etcd/ca.crt")
            .await
            .is_ok_and(|found| found.is_some());
        let pki = if minikube {
            "/var/lib/minikube/certs".to_owned()
        } else {
            format!("{}/pki", node.kubernetes_dir())
        };
        let tls = (
            format!("{pki}/etcd/ca.crt"),
            format!("{pki}/apiserver-etcd-client.crt"),
            format!("{pki}/apiserver-etcd-client.key"),
        );
        Self::new(node, "https://127.0.0.1:2379", Some(tls))
    }

    async fn run(&self, key: &[u8], prefix: bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut argv = vec![
            "etcdctl".to_owned(),
            format!("--endpoints={}", self.endpoint),
            "--command-timeout=8s".to_owned(),
        ];
        if let Some((ca, cert, key)) = &self.tls {
            argv.push(format!("--cacert={ca}"));
            argv.push(format!("--cert={cert}"));
            argv.push(format!("--key={key}"));
        }
        argv.extend(["get".to_owned(), String::from_utf8_lossy(key).into_owned()]);
        if prefix {
            argv.push("--prefix".into());
        }
        argv.push("--write-out=json".into());
        let output = self.node.exec(&argv).await?;
        if output.exit_code != 0 {
            return Err(Error::Etcd(format!(
                "etcdctl on {} failed: {}",
                self.node.describe(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let parsed: RangeResponse = serde_json::from_slice(&output.stdout)
            .map_err(|e| Error::Etcd(format!("unexpected etcdctl output: {e}")))?;
        decode_kvs(parsed)
    }
}

#[async_trait]
impl EtcdAccess for EtcdctlOnNode {
    fn describe(&self) -> String {
        format!("etcdctl on {}", self.node.describe())
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .run(key, false)
            .await?
            .into_iter()
            .next()
            .map(|(_, v)| v))
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.run(prefix, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_range_ends_after_every_key_with_the_prefix() {
        assert_eq!(
            prefix_range_end(b"/registry/secrets/"),
            b"/registry/secrets0"
        );
        assert_eq!(prefix_range_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_range_end(&[0xff]), [0]);
    }
}
