//! EncryptionConfiguration (`apiserver.config.k8s.io/v1`): parsing and judging the providers.
//!
//! The API server writes with the first provider of the first `resources` entry that covers a
//! resource and reads with any of them, so what protects new Secrets is that first provider.

use base64::Engine;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub resources: Vec<ResourceConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceConfiguration {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub providers: Vec<ProviderConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ProviderConfiguration {
    pub aescbc: Option<KeysConfiguration>,
    pub aesgcm: Option<KeysConfiguration>,
    pub secretbox: Option<KeysConfiguration>,
    pub identity: Option<serde_yaml::Value>,
    pub kms: Option<KmsConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct KeysConfiguration {
    #[serde(default)]
    pub keys: Vec<Key>,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Key {
    #[serde(default)]
    pub name: String,
    /// base64 of the key bytes.
    #[serde(default)]
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is the whole point of encryption at rest: never print it.
        f.debug_struct("Key")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn bytes(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(self.secret.trim())
            .ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsConfiguration {
    /// `v1` when absent, as the API server defaults it.
    pub api_version: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub endpoint: String,
    pub cachesize: Option<i64>,
    pub timeout: Option<String>,
}

/// One provider, named as it appears in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider<'a> {
    Aescbc(&'a KeysConfiguration),
    Aesgcm(&'a KeysConfiguration),
    Secretbox(&'a KeysConfiguration),
    Identity,
    KmsV1(&'a KmsConfiguration),
    KmsV2(&'a KmsConfiguration),
}

impl Provider<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Aescbc(_) => "aescbc",
            Provider::Aesgcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
            Provider::Identity => "identity",
            Provider::KmsV1(_) => "kms v1",
            Provider::KmsV2(_) => "kms v2",
        }
    }

    /// The keys of a local provider (empty for identity and kms).
    pub fn keys(&self) -> &[Key] {
        match self {
            Provider::Aescbc(k) | Provider::Aesgcm(k) | Provider::Secretbox(k) => &k.keys,
            _ => &[],
        }
    }
}

impl ProviderConfiguration {
    /// The one provider this list element configures; the API server refuses zero or several.
    pub fn provider(&self) -> std::result::Result<Provider<'_>, String> {
        let mut found = Vec::new();
        if let Some(keys) = &self.aescbc {
            found.push(Provider::Aescbc(keys));
        }
        if let Some(keys) = &self.aesgcm {
            found.push(Provider::Aesgcm(keys));
        }
        if let Some(keys) = &self.secretbox {
            found.push(Provider::Secretbox(keys));
        }
        if self.identity.is_some() {
            found.push(Provider::Identity);
        }
        if let Some(kms) = &self.kms {
            found.push(match kms.api_version.as_deref() {
                Some("v2") => Provider::KmsV2(kms),
                _ => Provider::KmsV1(kms),
            });
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("no provider specified".into()),
            _ => Err("more than one provider specified in a single element".into()),
        }
    }
}

/// How well a provider protects Secrets, as the Kubernetes documentation rates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// identity: no encryption.
    None,
    /// aescbc (padding-oracle attacks), aesgcm without automated rotation, kms v1 (deprecated).
    Weak,
    /// secretbox: strong, local key.
    Strong,
    /// kms v2: keys held outside the cluster, envelope encryption.
    Best,
}

impl Provider<'_> {
    pub fn strength(&self) -> (Strength, &'static str) {
        match self {
            Provider::Identity => (Strength::None, "identity stores Secrets in plaintext"),
            Provider::Aescbc(_) => (
                Strength::Weak,
                "aescbc is not recommended: CBC is open to padding-oracle attacks, and its key sits in plaintext on the control-plane node",
            ),
            Provider::Aesgcm(_) => (
                Strength::Weak,
                "aesgcm is acceptable only with automated key rotation (random nonces limit how much one key may encrypt), and its key sits in plaintext on the node",
            ),
            Provider::KmsV1(_) => (
                Strength::Weak,
                "kms v1 is deprecated (disabled by default since Kubernetes 1.29); move to kms v2",
            ),
            Provider::Secretbox(_) => (
                Strength::Strong,
                "secretbox (XSalsa20-Poly1305) is strong, but its key still sits in plaintext on the node",
            ),
            Provider::KmsV2(_) => (
                Strength::Best,
                "kms v2 keeps the key encryption key outside the cluster",
            ),
        }
    }
}

impl EncryptionConfiguration {
    /// Parses a configuration, naming `file`, the line and the field on any error.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let config: Self = serde_yaml::from_str(text).map_err(|error| {
            let line = error.location().map_or(1, |location| location.line());
            Error::invalid(format!("{file}:{line}"), error.to_string())
        })?;
        config.validate(file, text)?;
        Ok(config)
    }

    /// Builds a configuration from an already-parsed document (static mode input).
    pub fn from_value(file: &str, line: usize, value: &serde_json::Value) -> Result<Self> {
        let config: Self = serde_json::from_value(value.clone())
            .map_err(|error| Error::invalid(format!("{file}:{line}"), error.to_string()))?;
        config.validate(file, "")?;
        Ok(config)
    }

    pub fn is_encryption_configuration(value: &serde_json::Value) -> bool {
        let kind = value.get("kind").and_then(serde_json::Value::as_str);
        matches!(kind, Some("EncryptionConfiguration" | "EncryptionConfig"))
    }

    fn validate(&self, file: &str, text: &str) -> Result<()> {
        if !matches!(
            self.kind.as_str(),
            "EncryptionConfiguration" | "EncryptionConfig"
        ) {
            return Err(Error::invalid(
                format!("{file}:{}", line_of(text, "kind:")),
                format!(
                    "kind: expected EncryptionConfiguration, found {:?}",
                    self.kind
                ),
            ));
        }
        for (r, resource) in self.resources.iter().enumerate() {
            for (p, provider) in resource.providers.iter().enumerate() {
                let field = format!("resources[{r}].providers[{p}]");
                let provider = provider.provider().map_err(|message| {
                    Error::invalid(
                        format!("{file}:{}", line_of(text, "providers:")),
                        format!("{field}: {message}"),
                    )
                })?;
                for (k, key) in provider.keys().iter().enumerate() {
                    let key_field = format!("{field}.{}.keys[{k}]", provider.name());
                    let location = format!("{file}:{}", line_of(text, &key.name));
                    if key.name.is_empty() {
                        return Err(Error::invalid(location, format!("{key_field}.name: empty")));
                    }
                    let Some(bytes) = key.bytes() else {
                        return Err(Error::invalid(
                            location,
                            format!("{key_field}.secret: not valid base64"),
                        ));
                    };
                    let allowed: &[usize] = match provider {
                        Provider::Secretbox(_) => &[32],
                        _ => &[16, 24, 32],
                    };
                    if !allowed.contains(&bytes.len()) {
                        return Err(Error::invalid(
                            location,
                            format!(
                                "{key_field}.secret: {} bytes; {} needs {allowed:?}",
                                bytes.len(),
                                provider.name()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The providers that apply to `resource` (e.g. `secrets`), in order: those of the first
    /// entry naming it exactly, or by a wildcard (`*.`, `*.*`) for core resources.
    pub fn providers_for(&self, resource: &str) -> Option<Vec<Provider<'_>>> {
        let entry = self.resources.iter().find(|entry| {
            entry
                .resources
                .iter()
                .any(|name| name == resource || name == "*." || name == "*.*")
        })?;
        Some(
            entry
                .providers
                .iter()
                .filter_map(|provider| provider.provider().ok())
                .collect(),
        )
    }
}

/// The 1-based line of the first occurrence of `needle`, or 1: good enough to point an editor.
fn line_of(text: &str, needle: &str) -> usize {
    if needle.is_empty() {
        return 1;
    }
    text.lines()
        .position(|line| line.contains(needle))
        .map_or(1, |index| index + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const AESCBC_FIRST: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/ISEhISE=
      - identity: {}
";

    #[test]
    fn the_first_provider_for_secrets_is_what_protects_them() {
        let config = EncryptionConfiguration::parse("enc.yaml", AESCBC_FIRST).unwrap();
        let providers = config.providers_for("secrets").unwrap();
        assert_eq!(providers[0].name(), "aescbc");
        assert_eq!(providers[0].strength().0, Strength::Weak);
        assert_eq!(providers[1].name(), "identity");
        assert!(config.providers_for("configmaps").is_none());
    }

    #[test]
    fn kms_without_api_version_is_v1_and_v2_is_best() {
        let text = "kind: EncryptionConfiguration\nresources:\n- resources: ['*.']\n  providers:\n  - kms: {name: a, endpoint: 'unix:///s'}\n  - kms: {apiVersion: v2, name: b, endpoint: 'unix:///s'}\n";
        let config = EncryptionConfiguration::parse("enc.yaml", text).unwrap();
        let providers = config.providers_for("secrets").unwrap();
        assert_eq!(providers[0].name(), "kms v1");
        assert_eq!(providers[1].strength().0, Strength::Best);
    }

    #[test]
    fn a_wrong_key_size_names_file_line_and_field() {
        let text = AESCBC_FIRST.replace("c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/ISEhISE=", "c2hvcnQ=");
        let error = EncryptionConfiguration::parse("enc.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("enc.yaml:9:"), "{error}");
        assert!(
            error.contains("resources[0].providers[0].aescbc.keys[0].secret"),
            "{error}"
        );
    }

    #[test]
    fn two_providers_in_one_element_are_refused() {
        let text = "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n    aescbc: {keys: []}\n";
        let error = EncryptionConfiguration::parse("e.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("more than one provider"), "{error}");
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let error = EncryptionConfiguration::parse(
            "e.yaml",
            "kind: EncryptionConfiguration\nresources: [\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("e.yaml:"), "{error}");
    }

    #[test]
    fn key_debug_output_never_shows_the_secret() {
        let config = EncryptionConfiguration::parse("enc.yaml", AESCBC_FIRST).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
