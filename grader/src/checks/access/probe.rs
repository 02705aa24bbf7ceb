//! Live facts about the API server that need no flags: what an unauthenticated request gets, and
//! which Kubernetes version answers.

use std::time::Duration;

use crate::context::ApiEndpoint;
use crate::{Error, Result};

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The status an unauthenticated `GET /api` gets: 401 when anonymous auth is off, 403 when it is
/// on but RBAC denies, 200 when anonymous requests may discover the API.
pub async fn anonymous_get_api(endpoint: &ApiEndpoint) -> Result<u16> {
    let unreachable = |message: String| Error::Unreachable {
        what: format!("the API server at {}", endpoint.url),
        message,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .danger_accept_invalid_certs(endpoint.accept_invalid_certs);
    if !endpoint.root_certs.is_empty() {
        builder = builder.tls_built_in_root_certs(false);
    }
    for der in &endpoint.root_certs {
        let certificate = reqwest::Certificate::from_der(der)
            .map_err(|error| unreachable(format!("the kubeconfig's CA certificate: {error}")))?;
        builder = builder.add_root_certificate(certificate);
    }
    let client = builder
        .build()
        .map_err(|error| unreachable(error.to_string()))?;
    let response = client
        .get(format!("{}/api", endpoint.url))
        .send()
        .await
        .map_err(|error| unreachable(format!("unauthenticated GET /api: {error}")))?;
    Ok(response.status().as_u16())
}

/// `(major, minor)` from a version string such as `v1.20.2`, `1.29+`, or an image tag
/// `registry.k8s.io/kube-apiserver:v1.31.0`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let reference = text.split('@').next().unwrap_or(text);
    let tag = reference.rsplit(':').next().unwrap_or(reference);
    let tag = tag.trim_start_matches('v');
    let mut parts = tag.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_text: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor_text.parse().ok()?))
}

/// The version the live API server reports.
pub async fn live_version(client: &kube::Client) -> Result<(u32, u32)> {
    let info = client.apiserver_version().await?;
    let minor: String = info
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match (info.major.parse(), minor.parse()) {
        (Ok(major), Ok(minor)) => Ok((major, minor)),
        _ => parse_version(&info.git_version).ok_or_else(|| {
            Error::Decode(format!(
                "GET /version: unreadable version {:?}",
                info.git_version
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_read_from_tags_git_versions_and_minor_with_plus() {
        assert_eq!(parse_version("v1.20.2"), Some((1, 20)));
        assert_eq!(
            parse_version("registry.k8s.io/kube-apiserver:v1.31.0"),
            Some((1, 31))
        );
        assert_eq!(
            parse_version("registry.k8s.io/kube-apiserver:v1.29.2@sha256:0123abcd"),
            Some((1, 29))
        );
        assert_eq!(parse_version("1.29+"), Some((1, 29)));
        assert_eq!(parse_version("latest"), None);
    }
}
