//! Kubeconfigs the server reads: the node's admin.conf, rewritten the way `kind export kubeconfig`
//! does (`rewrite`), and the one path from an untrusted kubeconfig to a client (`parse_inline`,
//! then [`InlineCredentials::client`]).
//!
//! A kubeconfig can make its reader run a program (`exec`, `auth-provider`), read files
//! (`client-certificate`, `client-key`, `certificate-authority`, `tokenFile`), send traffic through
//! a proxy (`proxy-url`) or act as someone else (`as*`). Whoever wrote it (a learner, or a root
//! shell in a node) must get none of that on the server: `parse_inline` refuses each such field,
//! keeps only the inline data of the current context, and the client is built from what was kept,
//! so a field the parser missed is never used.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use hardlab_grader::context::ApiEndpoint;
use kube::config::{KubeConfigOptions, Kubeconfig};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_yaml::{Mapping, Value};

use super::{Error, Result};

/// A kubeconfig is a few KiB; a bigger one is not what a person pastes.
pub const MAX_KUBECONFIG_BYTES: usize = 64 * 1024;

/// Why a kubeconfig is refused: one variant per refusal, each naming the entry and the field.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the kubeconfig is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Only the place is shown: the parser's own message quotes the text around the error,
    /// which may be a token or a key.
    #[error(
        "the kubeconfig does not parse as a kubeconfig{}; check its YAML (e.g. with `kubectl config view --kubeconfig FILE`)",
        place.as_deref().map(|p| format!(" at {p}")).unwrap_or_default()
    )]
    Parse {
        place: Option<String>,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "user {user:?} uses exec (a credential plugin would run a command on the server); {}",
        INLINE_HINT
    )]
    Exec { user: String },
    #[error(
        "user {user:?} uses auth-provider (a plugin that runs on the server); {}",
        INLINE_HINT
    )]
    AuthProvider { user: String },
    #[error(
        "user {user:?} uses tokenFile (a file path on the server); {}",
        INLINE_HINT
    )]
    TokenFile { user: String },
    #[error(
        "user {user:?} uses client-certificate (a file path on the server); use client-certificate-data; {}",
        INLINE_HINT
    )]
    ClientCertificateFile { user: String },
    #[error(
        "user {user:?} uses client-key (a file path on the server); use client-key-data; {}",
        INLINE_HINT
    )]
    ClientKeyFile { user: String },
    #[error(
        "user {user:?} uses {field} (a user name and password); use a token or a client certificate"
    )]
    BasicAuth { user: String, field: &'static str },
    #[error("user {user:?} uses {field} (impersonation); remove it")]
    Impersonation { user: String, field: &'static str },
    #[error(
        "cluster {cluster:?} uses certificate-authority (a file path on the server); use certificate-authority-data; {}",
        INLINE_HINT
    )]
    CertificateAuthorityFile { cluster: String },
    #[error("cluster {cluster:?} uses proxy-url; hardlab connects to the API server directly")]
    ProxyUrl { cluster: String },
    #[error("the kubeconfig has no current-context")]
    NoCurrentContext,
    #[error("the current context {context:?} is not defined")]
    UnknownContext { context: String },
    #[error("the current context {context:?} names no user")]
    NoUser { context: String },
    #[error("the cluster {cluster:?} of the current context is not defined")]
    UnknownCluster { cluster: String },
    #[error("the user {user:?} of the current context is not defined")]
    UnknownUser { user: String },
    #[error("the cluster {cluster:?} of the current context has no server URL")]
    NoServer { cluster: String },
    #[error(
        "the server {server:?} of cluster {cluster:?} is not an https:// URL with a host (plain http would send the credentials unencrypted)"
    )]
    ServerNotHttps { cluster: String, server: String },
    #[error("{owner} has {field} that is not base64-encoded PEM")]
    NotPem { owner: String, field: &'static str },
    #[error(
        "user {user:?} has client-certificate-data without client-key-data, or the other way round"
    )]
    HalfAClientCertificate { user: String },
    #[error("user {user:?} has both a token and a client certificate; keep one")]
    TwoCredentials { user: String },
    #[error(
        "user {user:?} has no inline credentials (a token, or client-certificate-data with client-key-data)"
    )]
    NoCredentials { user: String },
    #[error("the kubeconfig cannot be used: {0}")]
    Unusable(#[source] kube::config::KubeconfigError),
    #[error("cannot build a client: {0}")]
    Client(#[source] Error),
}

const INLINE_HINT: &str = "paste a kubeconfig with inline credentials (client-certificate-data, \
    client-key-data or token), e.g. from `kubectl config view --raw --minify --flatten`";

/// What a client needs, taken from an untrusted kubeconfig: nothing else of it is kept.
pub struct InlineCredentials {
    /// An `https://` URL.
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub auth: InlineAuth,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
}

pub enum InlineAuth {
    ClientCertificate {
        cert_pem: Vec<u8>,
        key_pem: SecretSlice<u8>,
    },
    Token(SecretString),
}

impl std::fmt::Debug for InlineCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineCredentials")
            .field("server", &self.server)
            .field("ca", &self.ca_pem.is_some())
            .field(
                "auth",
                &match self.auth {
                    InlineAuth::ClientCertificate { .. } => "client certificate",
                    InlineAuth::Token(_) => "token",
                },
            )
            .field("tls_server_name", &self.tls_server_name)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .finish()
    }
}

/// How long a client waits to connect and for an answer.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
        }
    }
}

/// The credentials of `text`'s current context, refused when any entry of the kubeconfig uses a
/// field that reads a file, runs a program, proxies or impersonates (the other entries are
/// dropped, but a kubeconfig that carries such a field is not one to trust with the rest).
pub fn parse_inline(text: &str) -> Result<InlineCredentials, KubeconfigError> {
    if text.len() > MAX_KUBECONFIG_BYTES {
        return Err(KubeconfigError::TooLarge {
            limit: MAX_KUBECONFIG_BYTES,
        });
    }
    let config = Kubeconfig::from_yaml(text).map_err(|source| KubeconfigError::Parse {
        place: error_place(&source.to_string()),
        source,
    })?;
    for named in &config.auth_infos {
        if let Some(user) = &named.auth_info {
            refuse_user_fields(&named.name, user)?;
        }
    }
    for named in &config.clusters {
        let Some(cluster) = &named.cluster else {
            continue;
        };
        let name = named.name.clone();
        if cluster.certificate_authority.is_some() {
            return Err(KubeconfigError::CertificateAuthorityFile { cluster: name });
        }
        if cluster.proxy_url.is_some() {
            return Err(KubeconfigError::ProxyUrl { cluster: name });
        }
    }
    let context_name = config
        .current_context
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or(KubeconfigError::NoCurrentContext)?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| KubeconfigError::UnknownContext {
            context: context_name.clone(),
        })?;
    let user_name = context
        .user
        .clone()
        .ok_or_else(|| KubeconfigError::NoUser {
            context: context_name.clone(),
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| KubeconfigError::UnknownCluster {
            cluster: context.cluster.clone(),
        })?;
    let user = config
        .auth_infos
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| KubeconfigError::UnknownUser {
            user: user_name.clone(),
        })?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| KubeconfigError::NoServer {
            cluster: context.cluster.clone(),
        })?;
    if server_parts(&server).is_none() {
        return Err(KubeconfigError::ServerNotHttps {
            cluster: context.cluster.clone(),
            server,
        });
    }
    let cluster_owner = format!("cluster {:?}", context.cluster);
    let ca_pem = cluster
        .certificate_authority_data
        .as_deref()
        .map(|data| {
            pem_data(data, "CERTIFICATE").ok_or(KubeconfigError::NotPem {
                owner: cluster_owner.clone(),
                field: "certificate-authority-data",
            })
        })
        .transpose()?;
    let user_owner = format!("user {user_name:?}");
    let cert_pem = user
        .client_certificate_data
        .as_deref()
        .map(|data| {
            pem_data(data, "CERTIFICATE").ok_or(KubeconfigError::NotPem {
                owner: user_owner.clone(),
                field: "client-certificate-data",
            })
        })
        .transpose()?;
    let key_pem = user
        .client_key_data
        .as_ref()
        .map(|data| {
            pem_data(data.expose_secret(), "PRIVATE KEY").ok_or(KubeconfigError::NotPem {
                owner: user_owner.clone(),
                field: "client-key-data",
            })
        })
        .transpose()?;
    let token = user
        .token
        .as_ref()
        .map(|t| t.expose_secret().trim().to_owned())
        .filter(|t| !t.is_empty());
    let auth = match (cert_pem, key_pem, token) {
        (Some(_), Some(_), Some(_)) => {
            return Err(KubeconfigError::TwoCredentials { user: user_name });
        }
        (Some(cert_pem), Some(key_pem), None) => InlineAuth::ClientCertificate {
            cert_pem,
            key_pem: SecretSlice::from(key_pem),
        },
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(KubeconfigError::HalfAClientCertificate { user: user_name });
        }
        (None, None, Some(token)) => InlineAuth::Token(SecretString::from(token)),
        (None, None, None) => return Err(KubeconfigError::NoCredentials { user: user_name }),
    };
    Ok(InlineCredentials {
        server: server.trim_end_matches('/').to_owned(),
        ca_pem,
        auth,
        tls_server_name: cluster.tls_server_name.clone().filter(|n| !n.is_empty()),
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

/// `line L column C` from a parser's message, without any of the text it quotes.
fn error_place(message: &str) -> Option<String> {
    let at = message.find("line ")?;
    let mut words = message[at..].split_whitespace();
    let (Some("line"), Some(line), Some("column"), Some(column)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    let digits = |text: &str| -> Option<String> {
        let number: String = text.chars().take_while(char::is_ascii_digit).collect();
        (!number.is_empty()).then_some(number)
    };
    Some(format!("line {} column {}", digits(line)?, digits(column)?))
}

fn refuse_user_fields(name: &str, user: &kube::config::AuthInfo) -> Result<(), KubeconfigError> {
    let user_name = || name.to_owned();
    if user.exec.is_some() {
        return Err(KubeconfigError::Exec { user: user_name() });
    }
    if user.auth_provider.is_some() {
        return Err(KubeconfigError::AuthProvider { user: user_name() });
    }
    if user.token_file.is_some() {
        return Err(KubeconfigError::TokenFile { user: user_name() });
    }
    if user.client_certificate.is_some() {
        return Err(KubeconfigError::ClientCertificateFile { user: user_name() });
    }
    if user.client_key.is_some() {
        return Err(KubeconfigError::ClientKeyFile { user: user_name() });
    }
    for (present, field) in [
        (user.username.is_some(), "username"),
        (user.password.is_some(), "password"),
    ] {
        if present {
            return Err(KubeconfigError::BasicAuth {
                user: user_name(),
                field,
            });
        }
    }
    for (present, field) in [
        (user.impersonate.is_some(), "as"),
        (user.impersonate_uid.is_some(), "as-uid"),
        (user.impersonate_groups.is_some(), "as-groups"),
        (user.impersonate_user_extra.is_some(), "as-user-extra"),
    ] {
        if present {
            return Err(KubeconfigError::Impersonation {
                user: user_name(),
                field,
            });
        }
    }
    Ok(())
}

/// Base64 that decodes to PEM with a block whose label ends with `label` (`PRIVATE KEY` covers
/// `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
fn pem_data(base64_text: &str, label: &str) -> Option<Vec<u8>> {
    let compact: String = base64_text.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let has_block = text.lines().any(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|found| found.ends_with(label))
    });
    has_block.then_some(bytes)
}

/// The host (as written, IPv6 in brackets), port and path of an `https://` URL with a host and no
/// user info, query or fragment.
fn server_parts(server: &str) -> Option<(String, u16, String)> {
    let uri: http::Uri = server.parse().ok()?;
    if uri.scheme_str() != Some("https") || uri.query().is_some() || server.contains('#') {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let port = authority.port_u16().unwrap_or(443);
    let path = uri.path().trim_end_matches('/').to_owned();
    Some((host.to_owned(), port, path))
}

fn encode(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn mapping<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut map = Mapping::new();
    for (key, value) in entries {
        map.insert(Value::from(key), value);
    }
    Value::Mapping(map)
}

impl InlineCredentials {
    /// The server's host (as written in the URL) and port.
    pub fn host_and_port(&self) -> Option<(String, u16)> {
        server_parts(&self.server).map(|(host, port, _)| (host, port))
    }

    /// A fresh minimal kubeconfig with only these fields, its cluster, user and context all named
    /// `name` (for download, display and storage).
    pub fn to_kubeconfig_yaml(&self, name: &str) -> String {
        let mut cluster = Mapping::new();
        cluster.insert("server".into(), Value::from(self.server.clone()));
        if let Some(ca) = &self.ca_pem {
            cluster.insert("certificate-authority-data".into(), encode(ca));
        }
        if let Some(server_name) = &self.tls_server_name {
            cluster.insert("tls-server-name".into(), Value::from(server_name.clone()));
        }
        if self.insecure_skip_tls_verify {
            cluster.insert("insecure-skip-tls-verify".into(), Value::from(true));
        }
        let user = match &self.auth {
            InlineAuth::ClientCertificate { cert_pem, key_pem } => mapping([
                ("client-certificate-data", encode(cert_pem)),
                ("client-key-data", encode(key_pem.expose_secret())),
            ]),
            InlineAuth::Token(token) => mapping([("token", Value::from(token.expose_secret()))]),
        };
        let config = mapping([
            ("apiVersion", Value::from("v1")),
            ("kind", Value::from("Config")),
            (
                "clusters",
                Value::Sequence(vec![mapping([
                    ("name", Value::from(name)),
                    ("cluster", Value::Mapping(cluster)),
                ])]),
            ),
            (
                "users",
                Value::Sequence(vec![mapping([("name", Value::from(name)), ("user", user)])]),
            ),
            (
                "contexts",
                Value::Sequence(vec![mapping([
                    ("name", Value::from(name)),
                    (
                        "context",
                        mapping([("cluster", Value::from(name)), ("user", Value::from(name))]),
                    ),
                ])]),
            ),
            ("current-context", Value::from(name)),
        ]);
        // A mapping of strings and booleans always serializes.
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// A client for the server as written in the URL (for kubeconfigs hardlab itself captured;
    /// registered ones go through [`Self::client_at`] with a checked address).
    pub async fn client(
        &self,
        timeouts: ClientTimeouts,
    ) -> Result<(kube::Client, ApiEndpoint), KubeconfigError> {
        self.client_at(timeouts, None).await
    }

    /// A client that connects to `address` (one the address rules approved for the URL's host)
    /// instead of resolving the host again, so a name that changes its answer after the check
    /// (DNS rebinding) still reaches only the checked address. TLS keeps verifying the name of
    /// the URL (or `tls-server-name`), and requests carry the URL's Host.
    ///
    /// The returned endpoint keeps the URL as written: the grader's unauthenticated probe verifies
    /// the certificate against it and resolves the name itself.
    pub async fn client_at(
        &self,
        timeouts: ClientTimeouts,
        address: Option<SocketAddr>,
    ) -> Result<(kube::Client, ApiEndpoint), KubeconfigError> {
        // Built from the kept fields only (a kubeconfig this module wrote), never from the text
        // that was registered.
        let minimal = Kubeconfig::from_yaml(&self.to_kubeconfig_yaml("hardlab"))
            .map_err(KubeconfigError::Unusable)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(minimal, &KubeConfigOptions::default())
                .await
                .map_err(KubeconfigError::Unusable)?;
        config.connect_timeout = Some(timeouts.connect);
        config.read_timeout = Some(timeouts.read);
        let endpoint = ApiEndpoint::from_config(&config);
        if let Some(address) = address
            && let Some((host, port, path)) = server_parts(&self.server)
        {
            let pinned = format!("https://{address}{path}");
            config.cluster_url = pinned.parse().map_err(|e| {
                KubeconfigError::Unusable(kube::config::KubeconfigError::ParseClusterUrl(e))
            })?;
            let bare_host = host.trim_start_matches('[').trim_end_matches(']');
            if bare_host.parse::<std::net::IpAddr>().is_err() {
                if config.tls_server_name.is_none() {
                    config.tls_server_name = Some(bare_host.to_owned());
                }
                let authority = if port == 443 {
                    host.clone()
                } else {
                    format!("{host}:{port}")
                };
                if let Ok(value) = http::HeaderValue::from_str(&authority) {
                    config.headers.push((http::header::HOST, value));
                }
            }
        }
        // Whoever runs the API server decides what it answers: bounded like every read from a node.
        let client = super::credentials::bounded_client(config).map_err(KubeconfigError::Client)?;
        Ok((client, endpoint))
    }
}

/// Points every cluster entry of `admin_conf` at `https://127.0.0.1:<port>` and renames the
/// cluster, user and context to `hardlab-<cluster>`.
pub fn rewrite(admin_conf: &str, cluster: &str, port: u16) -> Result<String> {
    let mut config: Value = serde_yaml::from_str(admin_conf)
        .map_err(|e| Error::Kubeconfig(format!("admin.conf is not YAML: {e}")))?;
    let key = format!("hardlab-{cluster}");
    let server = format!("https://127.0.0.1:{port}");
    for (list, inner) in [
        ("clusters", "cluster"),
        ("users", "user"),
        ("contexts", "context"),
    ] {
        let entries = config
            .get_mut(list)
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| Error::Kubeconfig(format!("admin.conf has no {list} list")))?;
        if entries.len() != 1 {
            return Err(Error::Kubeconfig(format!(
                "admin.conf has {} {list}, expected exactly one",
                entries.len()
            )));
        }
        let entry = &mut entries[0];
        entry["name"] = Value::from(key.clone());
        match inner {
            "cluster" => entry[inner]["server"] = Value::from(server.clone()),
            "context" => {
                entry[inner]["cluster"] = Value::from(key.clone());
                entry[inner]["user"] = Value::from(key.clone());
            }
            _ => {}
        }
    }
    config["current-context"] = Value::from(key);
    serde_yaml::to_string(&config).map_err(|e| Error::Kubeconfig(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ADMIN_CONF: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://hardlab-c-1-control-plane:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn the_server_becomes_the_published_loopback_port_and_names_are_the_clusters() {
        let rewritten: Value =
            serde_yaml::from_str(&rewrite(ADMIN_CONF, "c-1", 41234).unwrap()).unwrap();
        assert_eq!(
            rewritten["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:41234"
        );
        assert_eq!(
            rewritten["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(rewritten["clusters"][0]["name"], "hardlab-c-1");
        assert_eq!(rewritten["contexts"][0]["context"]["user"], "hardlab-c-1");
        assert_eq!(rewritten["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(rewritten["current-context"], "hardlab-c-1");
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// A self-signed certificate and its key, in PEM.
    fn certificate() -> (String, String) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (generated.cert.pem(), generated.signing_key.serialize_pem())
    }

    /// A valid inline kubeconfig (client certificate) with `user_extra` appended to its user entry
    /// and `cluster_extra` to its cluster entry (each line indented to fit).
    fn inline_with(user_extra: &str, cluster_extra: &str) -> String {
        let (cert, key) = certificate();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://lab.example:6443
    certificate-authority-data: {ca}
{cluster_extra}users:
- name: learner
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
{user_extra}contexts:
- name: ctx
  context: {{cluster: lab, user: learner}}
current-context: ctx
",
            ca = b64(&cert),
            cert = b64(&cert),
            key = b64(&key),
        )
    }

    #[test]
    fn inline_credentials_of_the_current_context_are_kept_and_round_trip() {
        let parsed = parse_inline(&inline_with("", "")).unwrap();
        assert_eq!(parsed.server, "https://lab.example:6443");
        assert!(
            parsed
                .ca_pem
                .as_deref()
                .unwrap()
                .starts_with(b"-----BEGIN CERTIFICATE")
        );
        assert!(matches!(parsed.auth, InlineAuth::ClientCertificate { .. }));
        assert!(!parsed.insecure_skip_tls_verify);
        let written = parsed.to_kubeconfig_yaml("hardlab-lab");
        let again = parse_inline(&written).unwrap();
        assert_eq!(again.server, parsed.server);
        assert_eq!(again.ca_pem, parsed.ca_pem);
        let (
            InlineAuth::ClientCertificate { cert_pem, key_pem },
            InlineAuth::ClientCertificate {
                cert_pem: cert_again,
                key_pem: key_again,
            },
        ) = (&parsed.auth, &again.auth)
        else {
            panic!("the client certificate was lost: {written}");
        };
        assert_eq!(cert_pem, cert_again);
        assert_eq!(key_pem.expose_secret(), key_again.expose_secret());
        let value: Value = serde_yaml::from_str(&written).unwrap();
        assert_eq!(value["current-context"], "hardlab-lab");
        assert_eq!(value["users"][0]["name"], "hardlab-lab");
        // Debug output names no secret.
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn a_token_tls_server_name_and_skip_verify_are_kept() {
        let text = "apiVersion: v1
clusters:
- name: c
  cluster: {server: 'https://10.0.0.5:6443/', tls-server-name: api.lab, insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc.def}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
";
        let parsed = parse_inline(text).unwrap();
        assert_eq!(parsed.server, "https://10.0.0.5:6443");
        assert_eq!(parsed.tls_server_name.as_deref(), Some("api.lab"));
        assert!(parsed.insecure_skip_tls_verify);
        let InlineAuth::Token(token) = &parsed.auth else {
            panic!("no token");
        };
        assert_eq!(token.expose_secret(), "abc.def");
        let again = parse_inline(&parsed.to_kubeconfig_yaml("n")).unwrap();
        assert_eq!(again.tls_server_name.as_deref(), Some("api.lab"));
        assert!(again.insecure_skip_tls_verify);
    }

    #[test]
    fn every_field_that_runs_reads_proxies_or_impersonates_is_refused_by_name() {
        let exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/touch\n      args: [/tmp/pwned]\n";
        let cases: Vec<(String, &str)> = vec![
            (inline_with(exec, ""), "uses exec"),
            (
                inline_with(
                    "    auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}\n",
                    "",
                ),
                "uses auth-provider",
            ),
            (
                inline_with("    tokenFile: /etc/shadow\n", ""),
                "uses tokenFile",
            ),
            (
                inline_with("    client-certificate: /etc/hardlab/secret.key\n", ""),
                "uses client-certificate ",
            ),
            (
                inline_with("    client-key: /root/.ssh/id_rsa\n", ""),
                "uses client-key ",
            ),
            (inline_with("    username: admin\n", ""), "uses username"),
            (inline_with("    password: hunter2\n", ""), "uses password"),
            (inline_with("    as: system:admin\n", ""), "uses as "),
            (inline_with("    as-uid: '0'\n", ""), "uses as-uid"),
            (
                inline_with("    as-groups: [system:masters]\n", ""),
                "uses as-groups",
            ),
            (
                inline_with("    as-user-extra: {a: [b]}\n", ""),
                "uses as-user-extra",
            ),
            (
                inline_with("", "    certificate-authority: /var/lib/hardlab/ca.crt\n"),
                "uses certificate-authority ",
            ),
            (
                inline_with("", "    proxy-url: socks5://127.0.0.1:1080\n"),
                "uses proxy-url",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_inline(&text).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{expected}: {message}");
            assert!(
                message.contains("user \"learner\"") || message.contains("cluster \"lab\""),
                "names the entry: {message}"
            );
        }
        assert!(matches!(
            parse_inline(&inline_with(exec, "")),
            Err(KubeconfigError::Exec { user }) if user == "learner"
        ));
        assert!(matches!(
            parse_inline(&inline_with("", "    proxy-url: http://x\n")),
            Err(KubeconfigError::ProxyUrl { cluster }) if cluster == "lab"
        ));
    }

    #[test]
    fn a_refused_field_in_another_entry_refuses_the_kubeconfig_too() {
        let text = inline_with("", "").replace(
            "contexts:",
            "- name: other\n  user: {exec: {command: /bin/sh}}\ncontexts:",
        );
        assert!(matches!(
            parse_inline(&text),
            Err(KubeconfigError::Exec { user }) if user == "other"
        ));
    }

    #[test]
    fn the_server_must_be_https_with_a_host() {
        for server in [
            "http://lab.example:6443",
            "lab.example:6443",
            "https://user:pw@lab.example",
            "https://lab.example/?x=1",
            "unix:///run/k8s.sock",
        ] {
            let text = inline_with("", "").replace("https://lab.example:6443", server);
            assert!(
                matches!(
                    parse_inline(&text),
                    Err(KubeconfigError::ServerNotHttps { .. })
                ),
                "{server}"
            );
        }
        let refused =
            parse_inline(&inline_with("", "").replace("https://lab.example:6443", "http://a"))
                .unwrap_err()
                .to_string();
        assert!(refused.contains("not an https:// URL"), "{refused}");
    }

    #[test]
    fn missing_or_malformed_parts_are_named() {
        let good = inline_with("", "");
        let no_context = good.replace("current-context: ctx\n", "");
        assert!(matches!(
            parse_inline(&no_context),
            Err(KubeconfigError::NoCurrentContext)
        ));
        let unknown = good.replace("current-context: ctx", "current-context: nope");
        assert!(matches!(
            parse_inline(&unknown),
            Err(KubeconfigError::UnknownContext { .. })
        ));
        let no_user = good.replace(", user: learner", "");
        assert!(matches!(
            parse_inline(&no_user),
            Err(KubeconfigError::NoUser { .. })
        ));
        let bad_ca = good.replacen(
            "certificate-authority-data: ",
            "certificate-authority-data: QUJD",
            1,
        );
        assert!(matches!(
            parse_inline(&bad_ca),
            Err(KubeconfigError::NotPem {
                field: "certificate-authority-data",
                ..
            })
        ));
        let half = good
            .lines()
            .filter(|line| !line.contains("client-key-data"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(matches!(
            parse_inline(&half),
            Err(KubeconfigError::HalfAClientCertificate { .. })
        ));
        let both = good.replace("contexts:", "    token: t\ncontexts:");
        assert!(matches!(
            parse_inline(&both),
            Err(KubeconfigError::TwoCredentials { .. })
        ));
        assert!(matches!(
            parse_inline("clusters: ["),
            Err(KubeconfigError::Parse { .. })
        ));
        let huge = format!("{good}#{}", "x".repeat(MAX_KUBECONFIG_BYTES));
        assert!(matches!(
            parse_inline(&huge),
            Err(KubeconfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_parse_error_does_not_echo_the_kubeconfig() {
        for broken in [
            "users: [{name: u, user: {token: SECRET-TOKEN-1}}]\nclusters: {",
            "users:\n- name: u\n  user:\n    token: SECRET-TOKEN-1\n   bad: [indent\n",
            "users: [{name: u, user: {token: [SECRET-TOKEN-1]}}]\n",
            "clusters: [{name: c, cluster: {insecure-skip-tls-verify: SECRET-TOKEN-1}}]\n",
        ] {
            let message = parse_inline(broken).unwrap_err().to_string();
            assert!(!message.contains("SECRET-TOKEN-1"), "{message}");
            assert!(message.contains("does not parse"), "{message}");
        }
        let placed = parse_inline("users: [{name: u, user: {token: SECRET-TOKEN-1}}]\nclusters: {")
            .unwrap_err()
            .to_string();
        assert!(placed.contains("at line 2 column 11"), "{placed}");
    }

    #[tokio::test]
    async fn a_pinned_client_keeps_the_name_for_tls_and_the_endpoint_keeps_the_url() {
        let parsed = parse_inline(&inline_with("", "")).unwrap();
        let address: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let (_client, endpoint) = parsed
            .client_at(ClientTimeouts::default(), Some(address))
            .await
            .unwrap();
        assert_eq!(endpoint.url, "https://lab.example:6443");
        assert_eq!(endpoint.root_certs.len(), 1);
        parsed.client(ClientTimeouts::default()).await.unwrap();
    }

    #[test]
    fn a_kubeconfig_with_two_clusters_is_refused_like_kind_refuses_it() {
        let two = ADMIN_CONF.replace(
            "clusters:\n",
            "clusters:\n- cluster: {server: x}\n  name: other\n",
        );
        assert!(
            matches!(rewrite(&two, "c", 1), Err(Error::Kubeconfig(message)) if message.contains("2 clusters"))
        );
        assert!(rewrite("{not yaml", "c", 1).is_err());
    }
}
