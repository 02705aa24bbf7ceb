//! The client side of the access proxy, as `tsh` does it: `hardlab login` makes a key locally and
//! trades a CSR plus password and TOTP code for a short-lived certificate; `hardlab kube login`
//! writes a kubeconfig entry whose credentials come from `hardlab kube credentials`, an exec
//! plugin that prints the certificate as an `ExecCredential`.
//!
//! Files live in `$HARDLAB_HOME` (default `~/.hardlab`), mode 0600: `profile.json`, `key.pem`,
//! `cert.pem`, `proxy-ca.pem`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::ProxyError;
use super::ca::{client_identity, new_key_and_csr, pem_body};

/// What the server's login endpoint takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// Whose proxy: empty for the site's, a learner's tenant name for their lab 6 proxy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    pub user: String,
    pub password: String,
    pub totp: String,
    pub csr_pem: String,
    /// Requested lifetime like `1h`; the server caps it by the roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// What it answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub cert_pem: String,
    /// The CA that signed the proxy's serving certificate (kubeconfig `certificate-authority-data`).
    pub proxy_ca_pem: String,
    /// e.g. `https://127.0.0.1:8443`.
    pub proxy_url: String,
    pub roles: Vec<String>,
    /// RFC 3339.
    pub not_after: String,
    /// For the tenant's API from the CLI (`Authorization: Bearer`), valid as long as the
    /// certificate.
    #[serde(default)]
    pub api_token: String,
    #[serde(default)]
    pub tenant: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub user: String,
    pub proxy_url: String,
    pub roles: Vec<String>,
    pub not_after: String,
    /// The tenant logged in to; empty for the site's proxy.
    #[serde(default)]
    pub tenant: String,
    /// For the tenant's API (`hardlab proxy apply|invite`, `hardlab audit` in a lab node).
    #[serde(default)]
    pub api_token: String,
}

/// Defaults a lab node's hardlab configuration file gives (`/etc/hardlab/client.env`, written by
/// the server when the lab started): the server, tenant, user and lab cluster. Only defaults for
/// this client; flags and environment variables win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDefaults {
    pub server: Option<String>,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub lab_cluster: Option<String>,
}

impl NodeDefaults {
    /// `KEY=value` lines; anything else is ignored.
    pub fn parse(text: &str) -> Self {
        let mut defaults = NodeDefaults::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "HARDLAB_SERVER" => defaults.server = Some(value),
                "HARDLAB_TENANT" => defaults.tenant = Some(value),
                "HARDLAB_USER" => defaults.user = Some(value),
                "LAB_CLUSTER" => defaults.lab_cluster = Some(value),
                _ => {}
            }
        }
        defaults
    }

    /// From `HARDLAB_CLIENT_ENV` or `/etc/hardlab/client.env`; empty when there is none.
    pub fn load() -> Self {
        let path = std::env::var_os("HARDLAB_CLIENT_ENV")
            .map_or_else(|| PathBuf::from(super::web::NODE_CLIENT_ENV), PathBuf::from);
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }
}

/// A simulated user's credentials, saved by `hardlab proxy invite` for the admin who plays them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatedUser {
    pub tenant: String,
    pub user: String,
    pub password: String,
    pub totp_secret: String,
}

/// Where `hardlab proxy invite` keeps simulated users' credentials: beside the login homes, so
/// any `HARDLAB_HOME` (bob's own) finds them.
pub fn simulated_dir() -> PathBuf {
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".hardlab-simulated")
}

pub fn save_simulated(user: &SimulatedUser) -> Result<PathBuf, ProxyError> {
    let dir = simulated_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", user.user));
    let json = serde_json::to_string_pretty(user)
        .map_err(|error| ProxyError::Internal(error.to_string()))?;
    write_private(&path, &json)?;
    Ok(path)
}

pub fn load_simulated(user: &str) -> Result<SimulatedUser, ProxyError> {
    let path = simulated_dir().join(format!("{user}.json"));
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ProxyError::Config(format!(
            "{}: {error} (invite the user first: hardlab proxy invite {user})",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|error| ProxyError::Config(format!("{}: {error}", path.display())))
}

/// The current code of a TOTP secret, as an authenticator app shows it.
pub fn current_code(secret: &str) -> Result<String, ProxyError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    super::totp::code_for_step(secret, super::totp::step_at(now))
}

pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARDLAB_HOME") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".hardlab")
}

fn write_private(path: &Path, contents: &str) -> Result<(), ProxyError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(|error| {
        ProxyError::Io(std::io::Error::new(
            error.kind(),
            format!("{}: {error}", path.display()),
        ))
    })?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

fn read(path: &Path) -> Result<String, ProxyError> {
    std::fs::read_to_string(path).map_err(|error| {
        ProxyError::Io(std::io::Error::new(
            error.kind(),
            format!("{}: {error} (run `hardlab login` first)", path.display()),
        ))
    })
}

/// Logs in: new key, CSR, POST to the server, certificate and profile saved under `home`.
pub async fn login(
    home: &Path,
    server: &str,
    tenant: &str,
    user: &str,
    password: &str,
    totp: &str,
    ttl: Option<String>,
) -> Result<Profile, ProxyError> {
    let (key_pem, csr_pem) = new_key_and_csr(user)?;
    let request = LoginRequest {
        tenant: tenant.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
        totp: totp.to_owned(),
        csr_pem,
        ttl,
    };
    let url = format!("{}/api/proxy/login", server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let response = http
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|error| ProxyError::Internal(format!("{url}: {error}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(body);
        return Err(if status == reqwest::StatusCode::UNAUTHORIZED {
            ProxyError::Unauthorized(message)
        } else {
            ProxyError::BadRequest(format!("login refused ({status}): {message}"))
        });
    }
    let answer: LoginResponse = response
        .json()
        .await
        .map_err(|error| ProxyError::Internal(format!("{url}: unreadable answer: {error}")))?;
    std::fs::create_dir_all(home)?;
    write_private(&home.join("key.pem"), &key_pem)?;
    write_private(&home.join("cert.pem"), &answer.cert_pem)?;
    write_private(&home.join("proxy-ca.pem"), &answer.proxy_ca_pem)?;
    let profile = Profile {
        server: server.to_owned(),
        user: user.to_owned(),
        proxy_url: answer.proxy_url,
        roles: answer.roles,
        not_after: answer.not_after,
        tenant: answer.tenant,
        api_token: answer.api_token,
    };
    let profile_json = serde_json::to_string_pretty(&profile)
        .map_err(|error| ProxyError::Internal(error.to_string()))?;
    write_private(&home.join("profile.json"), &profile_json)?;
    Ok(profile)
}

/// Calls the tenant's API on the server of the saved login, with its token. `body`: POST as
/// JSON, else GET. Refusals come back with the server's words.
pub async fn tenant_api(
    home: &Path,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
) -> Result<String, ProxyError> {
    let profile = load_profile(home)?;
    if profile.api_token.is_empty() {
        return Err(ProxyError::Unauthorized(
            "this login has no token for the server's API: run `hardlab login` again".into(),
        ));
    }
    let url = format!("{}{path_and_query}", profile.server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let request = match body {
        Some(body) => http.post(&url).json(body),
        None => http.get(&url),
    };
    let response = request
        .bearer_auth(&profile.api_token)
        .send()
        .await
        .map_err(|error| ProxyError::Internal(format!("{url}: {error}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(text);
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or(text);
    Err(match status {
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            ProxyError::Unauthorized(message)
        }
        reqwest::StatusCode::NOT_FOUND => ProxyError::NotFound(message),
        _ => ProxyError::BadRequest(format!("refused ({status}): {message}")),
    })
}

pub fn load_profile(home: &Path) -> Result<Profile, ProxyError> {
    let path = home.join("profile.json");
    serde_json::from_str(&read(&path)?)
        .map_err(|error| ProxyError::Config(format!("{}: {error}", path.display())))
}

/// The exec plugin's output: the saved certificate and key as a
/// `client.authentication.k8s.io/v1` ExecCredential, expiring a minute before the certificate so
/// kubectl fetches a new one rather than failing mid-request.
pub fn exec_credential(home: &Path) -> Result<String, ProxyError> {
    let cert_pem = read(&home.join("cert.pem"))?;
    let key_pem = read(&home.join("key.pem"))?;
    let identity = client_identity(&pem_body(&cert_pem, "CERTIFICATE")?)?;
    if identity.not_after <= OffsetDateTime::now_utc() {
        return Err(ProxyError::Unauthorized(format!(
            "your hardlab certificate expired at {}: run `hardlab login`",
            super::audit::format_time(identity.not_after)
        )));
    }
    let expires = identity.not_after - Duration::minutes(1);
    let credential = serde_json::json!({
        "apiVersion": exec_api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref()),
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": cert_pem,
            "clientKeyData": key_pem,
            "expirationTimestamp": rfc3339_seconds(expires),
        }
    });
    Ok(credential.to_string())
}

const EXEC_API_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";
const EXEC_API_V1: &str = "client.authentication.k8s.io/v1";

/// The ExecCredential version to answer in: the one kubectl sent in `KUBERNETES_EXEC_INFO`
/// when it is one this plugin speaks, else v1beta1 (what the kubeconfig entry asks for).
fn exec_api_version(exec_info: Option<&str>) -> &'static str {
    let asked = exec_info
        .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
        .and_then(|info| info["apiVersion"].as_str().map(str::to_owned));
    match asked.as_deref() {
        Some(EXEC_API_V1) => EXEC_API_V1,
        _ => EXEC_API_V1BETA1,
    }
}

fn rfc3339_seconds(time: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Adds or replaces cluster, user and context `hardlab-<cluster>` in the kubeconfig at `path`
/// (other entries untouched) and makes the context current. Returns the context name.
pub fn write_kubeconfig_entry(
    home: &Path,
    kubeconfig_path: &Path,
    cluster: &str,
    hardlab_binary: &str,
) -> Result<String, ProxyError> {
    use base64::Engine;
    let profile = load_profile(home)?;
    let ca_pem = read(&home.join("proxy-ca.pem"))?;
    let name = format!("hardlab-{cluster}");
    let mut config: serde_yaml::Value = match std::fs::read_to_string(kubeconfig_path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml::from_str(&text).map_err(|error| {
            ProxyError::Config(format!("{}: {error}", kubeconfig_path.display()))
        })?,
        _ => serde_yaml::from_str("{apiVersion: v1, kind: Config}")
            .map_err(|error| ProxyError::Internal(error.to_string()))?,
    };
    let cluster_entry = serde_json::json!({
        "name": name,
        "cluster": {
            "server": format!("{}/k8s/{cluster}", profile.proxy_url.trim_end_matches('/')),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }
    });
    let mut args = vec!["kube".to_owned(), "credentials".to_owned()];
    args.push("--cluster".to_owned());
    args.push(cluster.to_owned());
    // v1beta1, which every kubectl since 1.11 reads (a lab node's Debian kubectl is 1.20, which
    // refuses v1 and its `interactiveMode`); the plugin answers in the version kubectl asks for.
    let mut exec = serde_json::json!({
        "apiVersion": EXEC_API_V1BETA1,
        "command": hardlab_binary,
        "args": args,
    });
    if std::env::var_os("HARDLAB_HOME").is_some() {
        exec["env"] =
            serde_json::json!([{"name": "HARDLAB_HOME", "value": home.display().to_string()}]);
    }
    let user_entry = serde_json::json!({"name": name, "user": {"exec": exec}});
    let context_entry = serde_json::json!({
        "name": name,
        "context": {"cluster": name, "user": name, "namespace": "default"}
    });
    let to_yaml = |value: serde_json::Value| {
        serde_yaml::to_value(value).map_err(|error| ProxyError::Internal(error.to_string()))
    };
    let serde_yaml::Value::Mapping(map) = &mut config else {
        return Err(ProxyError::Config(format!(
            "{}: not a kubeconfig (the top level is not a mapping)",
            kubeconfig_path.display()
        )));
    };
    for (list, entry) in [
        ("clusters", to_yaml(cluster_entry)?),
        ("users", to_yaml(user_entry)?),
        ("contexts", to_yaml(context_entry)?),
    ] {
        let key = serde_yaml::Value::from(list);
        let items = map
            .entry(key)
            .or_insert_with(|| serde_yaml::Value::Sequence(Vec::new()));
        if !items.is_sequence() {
            *items = serde_yaml::Value::Sequence(Vec::new());
        }
        if let serde_yaml::Value::Sequence(items) = items {
            items.retain(|item| item.get("name").and_then(|n| n.as_str()) != Some(name.as_str()));
            items.push(entry);
        }
    }
    map.insert(
        serde_yaml::Value::from("current-context"),
        serde_yaml::Value::from(name.as_str()),
    );
    let text =
        serde_yaml::to_string(&config).map_err(|error| ProxyError::Internal(error.to_string()))?;
    if let Some(parent) = kubeconfig_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_private(kubeconfig_path, &text)?;
    Ok(name)
}

/// Where kubectl looks: the first path in `KUBECONFIG`, else `~/.kube/config`.
pub fn default_kubeconfig_path() -> PathBuf {
    if let Some(paths) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&paths).next()
    {
        return first;
    }
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".kube").join("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_answers_in_the_version_kubectl_asks_for_and_v1beta1_otherwise() {
        let v1 = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}"#;
        assert_eq!(exec_api_version(Some(v1)), EXEC_API_V1);
        assert_eq!(exec_api_version(None), EXEC_API_V1BETA1);
        assert_eq!(exec_api_version(Some("not json")), EXEC_API_V1BETA1);
    }

    #[test]
    fn the_node_configuration_gives_defaults_and_ignores_anything_else() {
        let defaults = NodeDefaults::parse(
            "# comment\nHARDLAB_SERVER=http://10.0.0.1:8080\nHARDLAB_TENANT=ada\nHARDLAB_USER=ada\nLAB_CLUSTER=lab-ada\nPATH=/evil\n",
        );
        assert_eq!(defaults.server.as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(defaults.tenant.as_deref(), Some("ada"));
        assert_eq!(defaults.lab_cluster.as_deref(), Some("lab-ada"));
        assert_eq!(NodeDefaults::parse(""), NodeDefaults::default());
    }
}
