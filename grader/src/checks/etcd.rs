//! Lab 1: etcd and Secrets. The EncryptionConfiguration and the flags say what should happen;
//! the raw values read from etcd prove what did.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::catalog::{CheckDef, Lab};
use crate::context::Mode;
use crate::inputs::encryption::{EncryptionConfiguration, Provider, Strength};
use crate::inputs::etcdvalue::{self, StoredFormat};
use crate::inputs::staticpod::{self, StaticPod};
use crate::model::{Location, Outcome, Severity};
use crate::target::EtcdAccess;
use crate::target::etcd::EtcdctlOnNode;
use crate::{Context, Error, Result};

/// The namespace the grader writes its canary Secret into.
pub const CANARY_NAMESPACE: &str = "hardlab-grader";
const ENCRYPT_DATA_DOC: &str = "https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/";
const KMS_DOC: &str = "https://kubernetes.io/docs/tasks/administer-cluster/kms-provider/";
const ETCD_SECURITY_DOC: &str = "https://etcd.io/docs/v3.5/op-guide/security/";

pub fn checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.encryption-configured",
                "Secrets are encrypted at rest by a sound provider",
                "encrypt-aescbc",
                Severity::High,
                "Write an EncryptionConfiguration (apiserver.config.k8s.io/v1) whose `resources` entry for `secrets` \
                 lists a real provider first (kms v2 best, secretbox good; identity only last, for reading old data), \
                 mount it into the kube-apiserver static pod and pass `--encryption-provider-config=<path>`.",
                &[
                    "CIS Kubernetes Benchmark 1.2.27",
                    "CIS Kubernetes Benchmark 1.2.28",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Secrets",
                    ENCRYPT_DATA_DOC,
                ],
            ),
            run: |ctx| encryption_configured(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.encryption-kms-v2",
                "Secrets are encrypted with a KMS v2 plugin",
                "kms-v2",
                Severity::Medium,
                "Run a KMS v2 plugin on a unix socket the API server can reach and put \
                 `kms: {apiVersion: v2, name: ..., endpoint: unix:///...}` first in the providers for `secrets`; \
                 then rewrite every Secret so it is stored under the new provider.",
                &["CIS Kubernetes Benchmark 1.2.28", "NSA/CISA Kubernetes Hardening Guide v1.2: Secrets", KMS_DOC],
            )
            .exercise(),
            run: |ctx| encryption_kms_v2(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.secrets-encrypted",
                "A Secret read straight from etcd is ciphertext",
                "encrypt-aescbc",
                Severity::Critical,
                "Configure encryption at rest (see etcd.encryption-configured) and restart the API server; \
                 a Secret written afterwards must be stored as `k8s:enc:<provider>:v1:<key>:` followed by ciphertext.",
                &[
                    "CIS Kubernetes Benchmark 1.2.27",
                    "CIS Kubernetes Benchmark 1.2.28",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Secrets",
                    ENCRYPT_DATA_DOC,
                ],
            ),
            run: |ctx| secrets_encrypted(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.no-plaintext-secrets",
                "No Secret is still stored in plaintext",
                "rewrite-secrets",
                Severity::High,
                "Encryption applies when an object is written: rewrite every Secret through the API with \
                 `kubectl get secrets --all-namespaces -o json | kubectl replace -f -`.",
                &["CIS Kubernetes Benchmark 1.2.28", "NSA/CISA Kubernetes Hardening Guide v1.2: Secrets", ENCRYPT_DATA_DOC],
            ),
            run: |ctx| no_plaintext_secrets(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.client-cert-auth",
                "etcd serves only TLS and demands client certificates",
                "lock-down-etcd",
                Severity::Critical,
                "In /etc/kubernetes/manifests/etcd.yaml set `--cert-file`, `--key-file`, `--trusted-ca-file`, \
                 `--client-cert-auth=true`, the peer equivalents (`--peer-cert-file`, `--peer-key-file`, \
                 `--peer-trusted-ca-file`, `--peer-client-cert-auth=true`), no `--auto-tls`/`--peer-auto-tls`, \
                 and only `https://` URLs in `--listen-client-urls`.",
                &[
                    "CIS Kubernetes Benchmark 2.1",
                    "CIS Kubernetes Benchmark 2.2",
                    "CIS Kubernetes Benchmark 2.3",
                    "CIS Kubernetes Benchmark 2.4",
                    "CIS Kubernetes Benchmark 2.5",
                    "CIS Kubernetes Benchmark 2.6",
                    "CIS Kubernetes Benchmark 2.7",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Control plane hardening, etcd",
                    ETCD_SECURITY_DOC,
                ],
            ),
            run: |ctx| client_cert_auth(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::EtcdSecrets.meta(
                "etcd.apiserver-tls",
                "The API server talks to etcd over TLS with a client certificate",
                "lock-down-etcd",
                Severity::High,
                "Give kube-apiserver `--etcd-servers=https://...`, `--etcd-cafile`, `--etcd-certfile` and \
                 `--etcd-keyfile` (kubeadm: /etc/kubernetes/pki/etcd/ca.crt and apiserver-etcd-client.{crt,key}).",
                &[
                    "CIS Kubernetes Benchmark 1.2.23",
                    "CIS Kubernetes Benchmark 1.2.26",
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Control plane hardening, etcd",
                    ETCD_SECURITY_DOC,
                ],
            ),
            run: |ctx| apiserver_tls(ctx).boxed(),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The EncryptionConfiguration, wherever it comes from.

/// The API server's encryption settings as far as the grader can see them.
#[derive(Debug, Default)]
struct Encryption {
    apiserver: Option<Arc<StaticPod>>,
    /// The `--encryption-provider-config` path.
    flag: Option<String>,
    /// The parsed configuration and where it was read.
    config: Option<(String, EncryptionConfiguration)>,
    /// Why the configuration could not be read although the flag names one.
    unreadable: Option<String>,
}

#[derive(Debug)]
struct EncryptionInput(std::result::Result<Arc<Encryption>, String>);

async fn encryption(ctx: &Context) -> Result<Arc<Encryption>> {
    let input = ctx
        .input(|| async {
            EncryptionInput(
                collect_encryption(ctx)
                    .await
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            )
        })
        .await;
    input
        .0
        .clone()
        .map_err(|message| Error::invalid("encryption configuration", message))
}

async fn collect_encryption(ctx: &Context) -> Result<Encryption> {
    let apiserver = staticpod::apiserver(ctx).await?;
    let flag = apiserver
        .as_ref()
        .and_then(|pod| pod.flags.get("encryption-provider-config"))
        .map(str::to_owned);
    let mut found = Encryption {
        apiserver,
        flag: flag.clone(),
        ..Encryption::default()
    };
    match ctx.mode {
        Mode::Static => {
            // (file, line, JSON) of each EncryptionConfiguration among the files.
            let documents: Vec<(&str, usize, &serde_json::Value)> = ctx
                .objects
                .iter()
                .filter(|object| {
                    EncryptionConfiguration::is_encryption_configuration(&object.value)
                })
                .filter_map(|object| {
                    let location = object.location.as_ref()?;
                    Some((location.file.as_str(), location.line, &object.value))
                })
                .collect();
            // With several, prefer the one the API server names.
            let chosen = flag
                .as_deref()
                .and_then(|path| {
                    let name = path.rsplit('/').next().unwrap_or(path);
                    documents.iter().find(|(file, _, _)| file.ends_with(name))
                })
                .or_else(|| documents.first());
            if let Some((file, line, value)) = chosen {
                let config = EncryptionConfiguration::from_value(file, *line, value)?;
                found.config = Some((format!("{file}:{line}"), config));
            } else if flag.is_some() {
                found.unreadable = Some("the file it names is not among the inputs".into());
            }
        }
        Mode::Live => {
            if let Some(path) = &flag {
                match &ctx.node {
                    None => {
                        found.unreadable =
                            Some("the grader has no node access (--node) to read it".into());
                    }
                    Some(node) => match node.read_file(path).await {
                        Ok(Some(bytes)) => {
                            let text = String::from_utf8_lossy(&bytes);
                            let source = format!("{}{path}", staticpod::node_prefix(node.as_ref()));
                            let config = EncryptionConfiguration::parse(&source, &text)?;
                            found.config = Some((source, config));
                        }
                        Ok(None) => {
                            found.unreadable =
                                Some(format!("{path} does not exist on {}", node.describe()));
                        }
                        Err(error) => found.unreadable = Some(error.to_string()),
                    },
                }
            }
        }
    }
    Ok(found)
}

fn flag_problems(pod: &StaticPod) -> Option<Outcome> {
    if pod.problems().is_empty() {
        return None;
    }
    let listed: Vec<String> = pod.problems().iter().map(ToString::to_string).collect();
    Some(
        Outcome::fail(format!(
            "{} would refuse to start with this command line: {}",
            pod.source,
            listed.join("; ")
        ))
        .with_locations(vec![pod.finding_location()]),
    )
}

fn provider_list(providers: &[Provider<'_>]) -> String {
    providers
        .iter()
        .map(|provider| match provider {
            Provider::Aescbc(keys) | Provider::Aesgcm(keys) | Provider::Secretbox(keys) => {
                let names: Vec<&str> = keys.keys.iter().map(|key| key.name.as_str()).collect();
                format!("{} (keys: {})", provider.name(), names.join(", "))
            }
            Provider::KmsV1(kms) | Provider::KmsV2(kms) => {
                format!("{} ({})", provider.name(), kms.name)
            }
            Provider::Identity => "identity".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

fn config_location(source: &str) -> Location {
    let (file, line) = match source.rsplit_once(':') {
        Some((file, line)) if line.parse::<usize>().is_ok() => (file, line.parse().unwrap_or(1)),
        _ => (source, 1),
    };
    Location {
        file: file.to_owned(),
        line,
        object: None,
    }
}

/// The common start of checks 1 and 2: the outcome when the inputs do not allow a judgement,
/// else the configuration and its providers for Secrets.
fn judge_inputs(
    encryption: &Encryption,
) -> std::result::Result<(&str, &EncryptionConfiguration), Outcome> {
    if let Some(problems) = encryption.apiserver.as_deref().and_then(flag_problems) {
        return Err(problems);
    }
    if let Some((source, config)) = &encryption.config {
        return Ok((source, config));
    }
    match (&encryption.apiserver, &encryption.flag) {
        (None, _) => Err(Outcome::skip(
            "neither a kube-apiserver manifest nor an EncryptionConfiguration is among the inputs",
        )),
        (Some(pod), None) => Err(Outcome::fail(format!(
            "kube-apiserver ({}) has no --encryption-provider-config: Secrets are stored in etcd in plaintext",
            pod.source
        ))
        .with_locations(vec![pod.finding_location()])),
        (Some(pod), Some(path)) => Err(Outcome::skip(format!(
            "--encryption-provider-config={path} is set in {}, but {}",
            pod.source,
            encryption.unreadable.as_deref().unwrap_or("the file could not be read")
        ))),
    }
}

async fn encryption_configured(ctx: &Context) -> Result<Outcome> {
    let encryption = encryption(ctx).await?;
    let (source, config) = match judge_inputs(&encryption) {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let location = vec![config_location(source)];
    let Some(providers) = config.providers_for("secrets") else {
        return Ok(Outcome::fail(format!(
            "{source} does not cover `secrets` (no resources entry names secrets, `*.` or `*.*`): Secrets are stored in plaintext"
        ))
        .with_locations(location));
    };
    let evidence = format!(
        "{source}\nproviders for secrets, in order: {}{}",
        provider_list(&providers),
        encryption
            .flag
            .as_deref()
            .map(|path| format!("\n--encryption-provider-config={path}"))
            .unwrap_or_default()
    );
    let Some(first) = providers.first() else {
        return Ok(Outcome::fail(format!(
            "{source}: the entry for secrets lists no providers"
        ))
        .with_evidence(evidence)
        .with_locations(location));
    };
    let (strength, why) = first.strength();
    let outcome = match strength {
        Strength::None => Outcome::fail(format!(
            "the first provider for Secrets is identity, so new Secrets are written in plaintext: {why}"
        )),
        Strength::Weak => Outcome::warn(format!(
            "Secrets are encrypted with {}, a weak choice: {why}",
            first.name()
        )),
        Strength::Strong | Strength::Best => Outcome::pass(format!(
            "Secrets are encrypted with {}: {why}",
            first.name()
        )),
    };
    Ok(outcome.with_evidence(evidence).with_locations(location))
}

async fn encryption_kms_v2(ctx: &Context) -> Result<Outcome> {
    let encryption = encryption(ctx).await?;
    let (source, config) = match judge_inputs(&encryption) {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let location = vec![config_location(source)];
    let providers = config.providers_for("secrets").unwrap_or_default();
    let evidence = format!(
        "{source}\nproviders for secrets, in order: {}",
        provider_list(&providers)
    );
    let outcome = match providers.first() {
        Some(Provider::KmsV2(kms)) => Outcome::pass(format!(
            "Secrets are encrypted by the KMS v2 plugin {:?} at {}: the key encryption key never sits on the node",
            kms.name, kms.endpoint
        )),
        Some(Provider::KmsV1(kms)) => Outcome::fail(format!(
            "the first provider is kms {:?} with apiVersion v1 (deprecated, off by default since 1.29); set apiVersion: v2",
            kms.name
        )),
        Some(other) => Outcome::fail(format!(
            "the first provider for Secrets is {}, not kms v2: its key sits in {source}, on the node",
            other.name()
        )),
        None => Outcome::fail(format!("{source} does not encrypt Secrets")),
    };
    Ok(outcome.with_evidence(evidence).with_locations(location))
}

// ---------------------------------------------------------------------------------------------
// Raw values from etcd.

/// etcd as the grader can read it: `--etcd` given on the command line, else `etcdctl` on the
/// node with the API server's own etcd client certificate.
async fn etcd_access(ctx: &Context) -> Result<std::result::Result<Arc<dyn EtcdAccess>, String>> {
    if let Some(etcd) = &ctx.etcd {
        return Ok(Ok(Arc::clone(etcd)));
    }
    let Some(node) = &ctx.node else {
        return Ok(Err(
            "no etcd access: give --etcd URL (with --etcd-ca/--etcd-cert/--etcd-key) or --node"
                .into(),
        ));
    };
    let Some(apiserver) = staticpod::apiserver(ctx).await? else {
        return Ok(Err(format!(
            "no kube-apiserver manifest on {} to learn where etcd is",
            node.describe()
        )));
    };
    let Some(endpoint) = apiserver
        .flags
        .get_list("etcd-servers")
        .first()
        .map(|url| (*url).to_owned())
    else {
        return Ok(Err(format!("{} has no --etcd-servers", apiserver.source)));
    };
    let flags = &apiserver.flags;
    let tls = match (
        flags.get("etcd-cafile"),
        flags.get("etcd-certfile"),
        flags.get("etcd-keyfile"),
    ) {
        (Some(ca), Some(cert), Some(key)) => Some((ca.to_owned(), cert.to_owned(), key.to_owned())),
        _ => None,
    };
    Ok(Ok(Arc::new(EtcdctlOnNode::new(
        Arc::clone(node),
        endpoint,
        tls,
    ))))
}

fn etcd_prefix(apiserver: Option<&StaticPod>) -> String {
    let prefix = apiserver
        .and_then(|pod| pod.flags.get("etcd-prefix"))
        .unwrap_or("/registry");
    format!("/{}", prefix.trim_matches('/'))
}

/// The key of a local provider named in a stored value's prefix, from the configuration.
fn local_key(
    config: &EncryptionConfiguration,
    format: &StoredFormat,
) -> Option<(&'static str, Vec<u8>, String)> {
    let (provider, wanted) = match format {
        StoredFormat::Aescbc { key } => ("aescbc", key),
        StoredFormat::Aesgcm { key } => ("aesgcm", key),
        StoredFormat::Secretbox { key } => ("secretbox", key),
        _ => return None,
    };
    config
        .providers_for("secrets")?
        .into_iter()
        .find_map(|candidate| {
            if candidate.name() != provider {
                return None;
            }
            let key = candidate.keys().iter().find(|key| &key.name == wanted)?;
            Some((provider, key.bytes()?, key.name.clone()))
        })
}

/// Decrypts a stored Secret with the configuration's key and says whether it is that Secret.
/// What decrypting a stored Secret showed.
enum Proof {
    /// Decrypted with the configured key into this very Secret.
    Verified(String),
    /// The key lives in a KMS plugin; the stored envelope has the plugin's layout.
    HeldByKms(String),
    /// Not shown to be this Secret under a real key: no key to try, or decryption failed.
    NotVerified(String),
}

fn prove_by_decryption(
    config: &EncryptionConfiguration,
    source: &str,
    raw: &[u8],
    etcd_key: &str,
    namespace: &str,
    name: &str,
) -> Proof {
    let stored = etcdvalue::classify(raw);
    let Some((provider, key, key_name)) = local_key(config, &stored.format) else {
        return match stored.format {
            StoredFormat::KmsV2 { .. } => match etcdvalue::decode_kms_v2(stored.payload) {
                Ok(object) => Proof::HeldByKms(format!(
                    "not decrypted: the key is held by the KMS plugin (EncryptedObject keyID {:?}, {} bytes of encrypted DEK source, {})",
                    object.key_id,
                    object.encrypted_dek_source.len(),
                    object.dek_source_type_name()
                )),
                Err(error) => Proof::NotVerified(format!(
                    "not a KMS v2 EncryptedObject behind the prefix: {error}"
                )),
            },
            StoredFormat::KmsV1 { .. } => match etcdvalue::decode_kms_v1(stored.payload) {
                Ok(_) => {
                    Proof::HeldByKms("not decrypted: the key is held by the KMS plugin".into())
                }
                Err(error) => {
                    Proof::NotVerified(format!("not a KMS v1 envelope behind the prefix: {error}"))
                }
            },
            _ => Proof::NotVerified(format!(
                "not decrypted: {source} has no key named in {}",
                stored.prefix
            )),
        };
    };
    let plaintext = match provider {
        "aescbc" => etcdvalue::decrypt_aescbc(&key, stored.payload),
        "aesgcm" => etcdvalue::decrypt_aesgcm(&key, stored.payload, etcd_key.as_bytes()),
        _ => etcdvalue::decrypt_secretbox(&key, stored.payload),
    };
    let decoded = plaintext
        .and_then(|plaintext| etcdvalue::decode_envelope(&plaintext))
        .and_then(|envelope| {
            Ok((
                envelope.kind.clone(),
                etcdvalue::decode_secret(&envelope.raw)?,
            ))
        });
    match decoded {
        Ok((kind, secret))
            if kind == "Secret" && secret.namespace == namespace && secret.name == name =>
        {
            Proof::Verified(format!(
                "decrypted with {provider} key {key_name:?} from {source}: a k8s\\0 protobuf envelope holding kind Secret {namespace}/{name} (data keys: {}) — the ciphertext really is this Secret",
                secret.data_keys.join(", ")
            ))
        }
        Ok((kind, secret)) => Proof::NotVerified(format!(
            "decrypted with {provider} key {key_name:?}, but it holds {kind} {}/{}, not {namespace}/{name}",
            secret.namespace, secret.name
        )),
        Err(error) => Proof::NotVerified(format!(
            "decrypting with {provider} key {key_name:?} from {source} failed: {error}"
        )),
    }
}

/// A Secret whose stored value the check reads: the named one, or a canary it writes itself.
struct Subject {
    namespace: String,
    name: String,
    canary: bool,
}

async fn create_canary(client: &kube::Client) -> Result<Subject> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": CANARY_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "hardlab-grade"}}
    }))
    .map_err(|error| Error::Usage(error.to_string()))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    let name = format!("hardlab-canary-{:016x}", rand::random::<u64>());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "hardlab-grade"}},
        "stringData": {"canary": "hardlab-canary-value"},
    }))
    .map_err(|error| Error::Usage(error.to_string()))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), CANARY_NAMESPACE);
    secrets.create(&PostParams::default(), &secret).await?;
    Ok(Subject {
        namespace: CANARY_NAMESPACE.to_owned(),
        name,
        canary: true,
    })
}

async fn secrets_encrypted(ctx: &Context) -> Result<Outcome> {
    if ctx.mode == Mode::Static {
        return Ok(Outcome::skip(
            "reading a Secret from etcd needs a live cluster",
        ));
    }
    let etcd = match etcd_access(ctx).await? {
        Ok(etcd) => etcd,
        Err(reason) => return Ok(Outcome::skip(reason)),
    };
    let subject = match ctx.params.secret.as_deref() {
        Some(named) => {
            let Some((namespace, name)) = named.split_once('/') else {
                return Err(Error::Usage(format!(
                    "secret {named:?}: expected namespace/name"
                )));
            };
            Subject {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                canary: false,
            }
        }
        None => {
            let Some(client) = &ctx.kube else {
                return Ok(Outcome::skip(
                    "writing a canary Secret needs the Kubernetes API (--kubeconfig)",
                ));
            };
            create_canary(client).await?
        }
    };
    let outcome = read_and_judge(ctx, etcd.as_ref(), &subject).await;
    if subject.canary
        && let Some(client) = &ctx.kube
    {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &subject.namespace);
        // Best effort: a leftover canary holds nothing secret and is labelled as the grader's.
        let _ = secrets
            .delete(&subject.name, &DeleteParams::default())
            .await;
    }
    outcome
}

async fn read_and_judge(
    ctx: &Context,
    etcd: &dyn EtcdAccess,
    subject: &Subject,
) -> Result<Outcome> {
    let apiserver = staticpod::apiserver(ctx).await?;
    let key = format!(
        "{}/secrets/{}/{}",
        etcd_prefix(apiserver.as_deref()),
        subject.namespace,
        subject.name
    );
    let Some(raw) = etcd.get(key.as_bytes()).await? else {
        return Ok(Outcome::error(format!(
            "{key} is not in etcd ({})",
            etcd.describe()
        )));
    };
    // Only the canary's value may be shown whole: a named Secret's data must not reach a report.
    let shown = if subject.canary { 512 } else { 64 };
    let dump = etcdvalue::hexdump(&raw, shown);
    let stored = etcdvalue::classify(&raw);
    if !stored.format.is_encrypted() {
        return Ok(Outcome::fail(format!(
            "{key} is stored in plaintext: anyone who can read etcd or its backups reads the Secret"
        ))
        .with_evidence(format!(
            "{} get {key} | hexdump -C\n{dump}",
            etcd.describe()
        )));
    }
    let proof = match encryption(ctx).await {
        Ok(encryption) => match &encryption.config {
            Some((source, config)) => prove_by_decryption(
                config,
                source,
                &raw,
                &key,
                &subject.namespace,
                &subject.name,
            ),
            None => Proof::NotVerified(format!(
                "not decrypted: the EncryptionConfiguration is not readable{}",
                encryption
                    .unreadable
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            )),
        },
        Err(error) => Proof::NotVerified(format!("not decrypted: {error}")),
    };
    if let StoredFormat::UnknownEncrypted { prefix } = &stored.format {
        return Ok(Outcome::warn(format!(
            "{key} is behind {prefix:?}, an encrypted layout this grader does not know"
        ))
        .with_evidence(dump));
    }
    // A prefix alone proves nothing (any bytes can follow `k8s:enc:`): where the key is at hand
    // the verdict needs the decryption to give back this Secret; without it, a warning.
    let (verified, proof) = match proof {
        Proof::Verified(text) | Proof::HeldByKms(text) => (true, text),
        Proof::NotVerified(text) => (false, text),
    };
    let evidence = format!(
        "prefix: {}\n{proof}\n{} get {key} | hexdump -C\n{dump}",
        stored.prefix,
        etcd.describe()
    );
    if !verified {
        return Ok(Outcome::warn(format!(
            "{key} is stored behind {} (provider {}), but encryption is not verified: {proof}",
            stored.prefix,
            stored.format.provider()
        ))
        .with_evidence(evidence));
    }
    Ok(Outcome::pass(format!(
        "{key} is stored encrypted by {} (prefix {})",
        stored.format.provider(),
        stored.prefix
    ))
    .with_evidence(evidence))
}

async fn no_plaintext_secrets(ctx: &Context) -> Result<Outcome> {
    if ctx.mode == Mode::Static {
        return Ok(Outcome::skip(
            "reading every Secret from etcd needs a live cluster",
        ));
    }
    let etcd = match etcd_access(ctx).await? {
        Ok(etcd) => etcd,
        Err(reason) => return Ok(Outcome::skip(reason)),
    };
    let apiserver = staticpod::apiserver(ctx).await?;
    let prefix = format!("{}/secrets/", etcd_prefix(apiserver.as_deref()));
    let values = etcd.list(prefix.as_bytes()).await?;
    let mut plaintext = Vec::new();
    let mut providers = std::collections::BTreeMap::<String, usize>::new();
    for (key, value) in &values {
        let stored = etcdvalue::classify(value);
        let name = String::from_utf8_lossy(key.strip_prefix(prefix.as_bytes()).unwrap_or(key))
            .into_owned();
        if stored.format.is_encrypted() {
            *providers.entry(stored.prefix.clone()).or_default() += 1;
        } else {
            plaintext.push(name);
        }
    }
    let tally = providers
        .iter()
        .map(|(prefix, count)| format!("{count} under {prefix}"))
        .collect::<Vec<_>>()
        .join(", ");
    let evidence = format!(
        "{} Secrets under {prefix} ({}): {} plaintext{}",
        values.len(),
        etcd.describe(),
        plaintext.len(),
        if tally.is_empty() {
            String::new()
        } else {
            format!(", {tally}")
        }
    );
    if plaintext.is_empty() {
        return Ok(Outcome::pass(format!(
            "all {} Secrets in etcd are encrypted",
            values.len()
        ))
        .with_evidence(evidence));
    }
    const NAMED: usize = 20;
    let mut named = plaintext
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if plaintext.len() > NAMED {
        named.push_str(&format!(" and {} more", plaintext.len() - NAMED));
    }
    Ok(Outcome::fail(format!(
        "{} of {} Secrets are still stored in plaintext (written before encryption was turned on): {named}. \
         Rewrite them all through the API: kubectl get secrets --all-namespaces -o json | kubectl replace -f -",
        plaintext.len(),
        values.len()
    ))
    .with_evidence(evidence))
}

// ---------------------------------------------------------------------------------------------
// Flags of etcd and of the API server towards it.

fn is_loopback_url(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .rsplit_once(':')
        .map_or(url, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") || host.starts_with("127.")
}

async fn client_cert_auth(ctx: &Context) -> Result<Outcome> {
    let Some(etcd) = staticpod::etcd(ctx).await? else {
        return Ok(Outcome::skip(
            "no etcd static pod among the inputs (an external etcd is not graded from here)",
        ));
    };
    if let Some(problems) = flag_problems(&etcd) {
        return Ok(problems);
    }
    let flags = &etcd.flags;
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    for name in ["cert-file", "key-file", "trusted-ca-file"] {
        if flags.get(name).is_none_or(str::is_empty) {
            findings.push(format!("--{name} is not set"));
        }
    }
    if flags.get_bool("client-cert-auth") != Some(true) {
        findings.push(
            "--client-cert-auth is not true: any client that reaches etcd may read every Secret"
                .into(),
        );
    }
    if flags.get_bool("auto-tls") == Some(true) {
        findings.push("--auto-tls=true: self-signed certificates, no client verification".into());
    }
    for name in ["peer-cert-file", "peer-key-file", "peer-trusted-ca-file"] {
        if flags.get(name).is_none_or(str::is_empty) {
            findings.push(format!("--{name} is not set (peer TLS)"));
        }
    }
    if flags.get_bool("peer-client-cert-auth") != Some(true) {
        findings.push("--peer-client-cert-auth is not true".into());
    }
    if flags.get_bool("peer-auto-tls") == Some(true) {
        findings.push("--peer-auto-tls=true".into());
    }
    let listen = flags.get_list("listen-client-urls");
    for url in &listen {
        if url.starts_with("http://") {
            if is_loopback_url(url) {
                warnings.push(format!(
                    "--listen-client-urls has {url}: plain HTTP skips client certificates, so every process on the node can read etcd"
                ));
            } else {
                findings.push(format!(
                    "--listen-client-urls has {url}: plain HTTP without client certificates, reachable from the network"
                ));
            }
        }
    }
    if listen.is_empty() {
        // etcd's default is http://localhost:2379.
        warnings.push(
            "--listen-client-urls is not set: etcd serves plain HTTP on localhost:2379".into(),
        );
    }
    let evidence = flags
        .iter()
        .filter(|flag| {
            flag.name.contains("cert")
                || flag.name.contains("tls")
                || flag.name.contains("client-urls")
                || flag.name.contains("ca-file")
        })
        .map(|flag| format!("--{}={}", flag.name, flag.value))
        .collect::<Vec<_>>()
        .join("\n");
    let evidence = format!("{}\n{evidence}", etcd.source);
    let location = vec![etcd.finding_location()];
    let outcome = if !findings.is_empty() {
        findings.extend(warnings);
        Outcome::fail(findings.join("; "))
    } else if !warnings.is_empty() {
        Outcome::warn(warnings.join("; "))
    } else {
        Outcome::pass("etcd serves TLS only and demands client certificates from clients and peers")
    };
    Ok(outcome.with_evidence(evidence).with_locations(location))
}

async fn apiserver_tls(ctx: &Context) -> Result<Outcome> {
    let Some(apiserver) = staticpod::apiserver(ctx).await? else {
        return Ok(Outcome::skip("no kube-apiserver manifest among the inputs"));
    };
    if let Some(problems) = flag_problems(&apiserver) {
        return Ok(problems);
    }
    let flags = &apiserver.flags;
    let servers = flags.get_list("etcd-servers");
    let mut findings = Vec::new();
    if servers.is_empty() {
        findings.push("--etcd-servers is not set".to_owned());
    }
    for url in servers.iter().filter(|url| !url.starts_with("https://")) {
        findings.push(format!(
            "--etcd-servers has {url}: Secrets travel to etcd unencrypted and unauthenticated"
        ));
    }
    for name in ["etcd-cafile", "etcd-certfile", "etcd-keyfile"] {
        if flags.get(name).is_none_or(str::is_empty) {
            findings.push(format!("--{name} is not set"));
        }
    }
    let evidence = flags
        .iter()
        .filter(|flag| flag.name.starts_with("etcd-"))
        .map(|flag| format!("--{}={}", flag.name, flag.value))
        .collect::<Vec<_>>()
        .join("\n");
    let evidence = format!("{}\n{evidence}", apiserver.source);
    let outcome = if findings.is_empty() {
        Outcome::pass("the API server reaches etcd over https with its own client certificate")
    } else {
        Outcome::fail(findings.join("; "))
    };
    Ok(outcome
        .with_evidence(evidence)
        .with_locations(vec![apiserver.finding_location()]))
}
