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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub user: String,
    pub proxy_url: String,
    pub roles: Vec<String>,
    pub not_after: String,
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
    user: &str,
    password: &str,
    totp: &str,
    ttl: Option<String>,
) -> Result<Profile, ProxyError> {
    let (key_pem, csr_pem) = new_key_and_csr(user)?;
    let request = LoginRequest {
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
    };
    let profile_json = serde_json::to_string_pretty(&profile)
        .map_err(|error| ProxyError::Internal(error.to_string()))?;
    write_private(&home.join("profile.json"), &profile_json)?;
    Ok(profile)
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
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": cert_pem,
            "clientKeyData": key_pem,
            "expirationTimestamp": rfc3339_seconds(expires),
        }
    });
    Ok(credential.to_string())
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
    let mut exec = serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": hardlab_binary,
        "args": args,
        "interactiveMode": "Never",
        "provideClusterInfo": false,
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
