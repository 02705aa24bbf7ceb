//! How the server reaches a learner's cluster: certificates captured from the node when the
//! cluster is created, before anyone has a shell in it, and kept sealed in the database.
//!
//! Nothing the node holds after hand-over configures the server's clients. A learner is root in
//! their node and can rewrite `/etc/kubernetes/admin.conf` (an `exec:` credential plugin in it
//! would run on the server) or replace `etcdctl`; so the server builds its kubeconfig itself from
//! the captured PEM data and the address Docker publishes, and reads etcd over its published port
//! with the captured client certificate.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hardlab_grader::context::ApiEndpoint;
use hardlab_grader::target::NodeAccess;
use hardlab_grader::target::etcd::EtcdHttp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::{Error, Result};

/// Where kubeadm (and the test node) keep what the server captures.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const ETCD_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
pub const ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";

/// The API server's CA and an admin client certificate, and etcd's CA and the API server's etcd
/// client certificate, as PEM text.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterCredentials {
    pub api_ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub etcd_ca_pem: String,
    pub etcd_client_cert_pem: String,
    pub etcd_client_key_pem: String,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials").finish_non_exhaustive()
    }
}

/// Where Docker says a cluster's API server and etcd are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    /// The host the server dials (127.0.0.1 for the local engine).
    pub host: String,
    pub api_port: u16,
    pub etcd_port: Option<u16>,
}

/// What the grader gets for one of hardlab's own clusters.
pub struct GradingAccess {
    pub client: kube::Client,
    pub endpoint: ApiEndpoint,
    pub node: Arc<dyn NodeAccess>,
    /// `None` when etcd's port is not published (a cluster made before it was).
    pub etcd: Option<EtcdHttp>,
}

impl ClusterCredentials {
    /// Takes the inline certificates out of kubeadm's admin.conf (nothing else of it is kept) and
    /// the etcd PEM files, all read from a node nobody has had a shell in yet.
    pub fn from_node_files(
        admin_conf: &[u8],
        etcd_ca: &[u8],
        etcd_cert: &[u8],
        etcd_key: &[u8],
    ) -> Result<Self> {
        let invalid = |message: String| Error::Kubeconfig(format!("{ADMIN_CONF}: {message}"));
        let config: Value =
            serde_yaml::from_slice(admin_conf).map_err(|e| invalid(format!("not YAML: {e}")))?;
        let current = config
            .get("current-context")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no current-context".into()))?;
        let named = |list: &str, name: &str, inner: &str| -> Option<Value> {
            config
                .get(list)?
                .as_sequence()?
                .iter()
                .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))?
                .get(inner)
                .cloned()
        };
        let context = named("contexts", current, "context")
            .ok_or_else(|| invalid(format!("the context {current:?} is not defined")))?;
        let field =
            |entry: &Value, key: &str| entry.get(key).and_then(Value::as_str).map(str::to_owned);
        let cluster_name = field(&context, "cluster").unwrap_or_default();
        let user_name = field(&context, "user").unwrap_or_default();
        let cluster = named("clusters", &cluster_name, "cluster")
            .ok_or_else(|| invalid(format!("the cluster {cluster_name:?} is not defined")))?;
        let user = named("users", &user_name, "user")
            .ok_or_else(|| invalid(format!("the user {user_name:?} is not defined")))?;
        let decoded = |entry: &Value, key: &str| -> Result<String> {
            let text = field(entry, key).ok_or_else(|| {
                invalid(format!(
                    "{key} is missing; only inline certificates are taken from a node"
                ))
            })?;
            let bytes = BASE64
                .decode(text.trim())
                .map_err(|e| invalid(format!("{key} is not base64: {e}")))?;
            pem_text(&bytes, key).map_err(|e| invalid(e.to_string()))
        };
        Ok(ClusterCredentials {
            api_ca_pem: decoded(&cluster, "certificate-authority-data")?,
            client_cert_pem: decoded(&user, "client-certificate-data")?,
            client_key_pem: decoded(&user, "client-key-data")?,
            etcd_ca_pem: pem_text(etcd_ca, ETCD_CA)?,
            etcd_client_cert_pem: pem_text(etcd_cert, ETCD_CLIENT_CERT)?,
            etcd_client_key_pem: pem_text(etcd_key, ETCD_CLIENT_KEY)?,
        })
    }

    /// Reads the four files through `node` (before hand-over, by either provider) and takes the
    /// credentials out of them.
    pub async fn capture(node: &dyn NodeAccess) -> Result<Self> {
        let mut files = Vec::new();
        for path in [ADMIN_CONF, ETCD_CA, ETCD_CLIENT_CERT, ETCD_CLIENT_KEY] {
            let bytes = node
                .read_file(path)
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?
                .ok_or_else(|| Error::Kubeconfig(format!("the node has no {path}")))?;
            files.push(bytes);
        }
        Self::from_node_files(&files[0], &files[1], &files[2], &files[3])
    }

    /// A kubeconfig written by the server from the captured certificates, pointing at the
    /// published API server port (for `hardlab clusters kubeconfig` and the grader).
    pub fn kubeconfig_yaml(&self, cluster: &str, address: &ClusterAddress) -> String {
        let key = format!("hardlab-{cluster}");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": key, "cluster": {
                "server": format!("https://{}:{}", address.host, address.api_port),
                "certificate-authority-data": BASE64.encode(&self.api_ca_pem),
            }}],
            "users": [{"name": key, "user": {
                "client-certificate-data": BASE64.encode(&self.client_cert_pem),
                "client-key-data": BASE64.encode(&self.client_key_pem),
            }}],
            "contexts": [{"name": key, "context": {"cluster": key, "user": key}}],
            "current-context": key,
        });
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// A kube client for the cluster at `address`, with the grader's timeouts.
    pub async fn kube_client(
        &self,
        cluster: &str,
        address: &ClusterAddress,
    ) -> Result<(kube::Client, ApiEndpoint)> {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml(cluster, address))
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        config.write_timeout = Some(Duration::from_secs(60));
        let endpoint = ApiEndpoint::from_config(&config);
        Ok((bounded_client(config)?, endpoint))
    }

    /// etcd's gateway on its published port, with the API server's own etcd client certificate.
    pub fn etcd(&self, address: &ClusterAddress) -> Result<Option<EtcdHttp>> {
        let Some(port) = address.etcd_port else {
            return Ok(None);
        };
        EtcdHttp::from_pem(
            &format!("https://{}:{port}", address.host),
            Some(self.etcd_ca_pem.as_bytes()),
            Some(self.etcd_client_cert_pem.as_bytes()),
            Some(self.etcd_client_key_pem.as_bytes()),
        )
        .map(Some)
        .map_err(|e| Error::Kubeconfig(format!("the captured etcd certificates: {e}")))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Kubeconfig(format!("the stored credentials are unreadable: {e}")))
    }
}

/// The largest answer the server reads from a learner's API server. A learner who is root in the
/// node holds the API server's serving key and can put any program behind its port; what that
/// program sends is bounded here like every other read from the node.
pub const MAX_API_RESPONSE: usize = 64 << 20;

/// A kube client whose response bodies end in an error past [`MAX_API_RESPONSE`] bytes.
pub fn bounded_client(config: kube::Config) -> Result<kube::Client> {
    let limit = tower::util::MapResponseLayer::new(|response: http::Response<_>| {
        response.map(|body| http_body_util::Limited::new(body, MAX_API_RESPONSE))
    });
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| Error::Kubeconfig(e.to_string()))?
        .with_layer(&limit)
        .build())
}

/// PEM text, or an error naming `what`: anything else is not a certificate or key.
fn pem_text(bytes: &[u8], what: &str) -> Result<String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::Kubeconfig(format!("{what} is not PEM text")))?;
    if !text.trim_start().starts_with("-----BEGIN ") {
        return Err(Error::Kubeconfig(format!("{what} is not PEM text")));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";

    fn admin_conf(user: &str) -> String {
        format!(
            "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://node:6443
  name: kubernetes
contexts:
- context: {{cluster: kubernetes, user: kubernetes-admin}}
  name: admin@kubernetes
current-context: admin@kubernetes
kind: Config
users:
- name: kubernetes-admin
  user:
{user}
",
            ca = BASE64.encode(CERT)
        )
    }

    #[test]
    fn only_the_inline_certificates_are_kept() {
        let user = format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n    exec: {{command: /bin/touch, args: [/tmp/pwned]}}",
            BASE64.encode(CERT),
            BASE64.encode(KEY)
        );
        let captured = ClusterCredentials::from_node_files(
            admin_conf(&user).as_bytes(),
            CERT.as_bytes(),
            CERT.as_bytes(),
            KEY.as_bytes(),
        )
        .unwrap();
        assert_eq!(captured.client_key_pem, KEY);
        let address = ClusterAddress {
            host: "127.0.0.1".into(),
            api_port: 41000,
            etcd_port: Some(41001),
        };
        let written = captured.kubeconfig_yaml("c-1", &address);
        assert!(
            written.contains("server: https://127.0.0.1:41000"),
            "{written}"
        );
        assert!(!written.contains("exec"), "{written}");
        assert!(!format!("{captured:?}").contains("PRIVATE"));
    }

    /// A stand-in for what a learner could put behind the API server's port: an answer that never
    /// ends. The client gives up at the limit instead of holding it all.
    #[tokio::test]
    async fn an_endless_answer_from_the_api_server_is_cut_off_at_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&sent);
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
            while socket.write_all(chunk.as_bytes()).await.is_ok() {
                counter.fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
                if counter.load(std::sync::atomic::Ordering::Relaxed) > 4 * MAX_API_RESPONSE {
                    break;
                }
            }
        });
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = bounded_client(config).unwrap();
        let answer = client.apiserver_version().await;
        assert!(answer.is_err(), "an endless answer was accepted");
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            sent < 2 * MAX_API_RESPONSE,
            "read {sent} bytes before giving up"
        );
    }

    #[test]
    fn a_node_without_inline_certificates_or_pem_files_is_refused() {
        let user = "    exec: {command: /bin/touch}".to_owned();
        let error = ClusterCredentials::from_node_files(
            admin_conf(&user).as_bytes(),
            CERT.as_bytes(),
            CERT.as_bytes(),
            KEY.as_bytes(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("client-certificate-data is missing"),
            "{error}"
        );
        let user = format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            BASE64.encode(CERT),
            BASE64.encode(KEY)
        );
        let error = ClusterCredentials::from_node_files(
            admin_conf(&user).as_bytes(),
            b"\0\0\0",
            CERT.as_bytes(),
            KEY.as_bytes(),
        )
        .unwrap_err();
        assert!(error.to_string().contains(ETCD_CA), "{error}");
    }
}
