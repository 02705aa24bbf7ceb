//! The etcd checks against a real kube-apiserver and etcd (hardlab_testkit): encryption off, then
//! aescbc, secretbox, aesgcm and identity-first on one control plane restarted with new flags, and
//! a TLS etcd for the lock-down checks. The decoders are tested on values the API server wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine;
use hardlab_grader::context::Context;
use hardlab_grader::inputs::etcdvalue::{self, StoredFormat};
use hardlab_grader::target::EtcdAccess;
use hardlab_grader::target::etcd::EtcdHttp;
use hardlab_grader::target::local::LocalNode;
use hardlab_grader::{Outcome, Status, catalog};
use hardlab_testkit::{Component, ControlPlane, require};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};

fn context(plane: &ControlPlane, client: kube::Client) -> Context {
    let etcd: Arc<dyn EtcdAccess> = Arc::new(match plane.etcd_client_cert() {
        Some(cert) => EtcdHttp::new(
            plane.etcd_endpoint(),
            Some(&cert.ca),
            Some(&cert.cert),
            Some(&cert.key),
        )
        .unwrap(),
        None => EtcdHttp::new(plane.etcd_endpoint(), None, None, None).unwrap(),
    });
    Context::live(Some(client))
        .with_node(Arc::new(LocalNode::new(plane.kubernetes_dir())))
        .with_etcd(etcd)
}

async fn grade(ctx: &Context, id: &str) -> Outcome {
    let check = catalog::find(id).unwrap();
    (check.run)(ctx).await.unwrap()
}

async fn create_secret(client: &kube::Client, name: &str, value: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"mykey": value},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

async fn raw_secret(plane: &ControlPlane, name: &str) -> Vec<u8> {
    let etcd = EtcdHttp::new(plane.etcd_endpoint(), None, None, None).unwrap();
    etcd.get(format!("/registry/secrets/default/{name}").as_bytes())
        .await
        .unwrap()
        .unwrap()
}

fn key_b64(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    )
}

fn aescbc() -> String {
    format!(
        "      - aescbc:\n          keys:\n            - name: key1\n              secret: {}\n",
        key_b64(1)
    )
}
fn secretbox() -> String {
    format!(
        "      - secretbox:\n          keys:\n            - name: box1\n              secret: {}\n",
        key_b64(2)
    )
}
fn aesgcm() -> String {
    format!(
        "      - aesgcm:\n          keys:\n            - name: gcm1\n              secret: {}\n",
        key_b64(3)
    )
}
const IDENTITY: &str = "      - identity: {}\n";

async fn restart_with(plane: &mut ControlPlane, providers: &str) {
    plane.write_file("enc/enc.yaml", config(providers)).unwrap();
    plane
        .restart_apiserver(["--encryption-provider-config={dir}/enc/enc.yaml"])
        .await
        .unwrap();
}

fn assert_status(outcome: &Outcome, status: Status) {
    assert_eq!(outcome.status, status, "{outcome:#?}");
}

#[tokio::test]
async fn encryption_off_then_aescbc_secretbox_aesgcm_and_identity_first_are_graded_from_etcd() {
    if !require(Component::ControlPlane) {
        return;
    }
    let mut plane = ControlPlane::builder().start().await.unwrap();

    // Encryption off: both the configuration check and the etcd proof fail, with a hexdump.
    let client = plane.client().await;
    create_secret(&client, "before", "written-in-plaintext").await;
    let ctx = context(&plane, client.clone());
    let configured = grade(&ctx, "etcd.encryption-configured").await;
    assert_status(&configured, Status::Fail);
    assert!(
        configured
            .message
            .contains("no --encryption-provider-config")
    );
    let encrypted = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&encrypted, Status::Fail);
    let evidence = encrypted.evidence.unwrap();
    assert!(evidence.contains("00000000  6b 38 73 00"), "{evidence}");
    assert!(evidence.contains("|k8s."), "{evidence}");
    assert_status(
        &grade(&ctx, "etcd.no-plaintext-secrets").await,
        Status::Fail,
    );
    assert_status(&grade(&ctx, "etcd.encryption-kms-v2").await, Status::Fail);
    // The canary is deleted afterwards.
    let canaries: Api<Secret> = Api::namespaced(client.clone(), "hardlab-grader");
    assert!(
        canaries
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The identity decoder on a value the API server wrote.
    let raw = raw_secret(&plane, "before").await;
    assert_eq!(
        etcdvalue::classify(&raw).format,
        StoredFormat::Plaintext(etcdvalue::PlainEncoding::Protobuf)
    );
    let envelope = etcdvalue::decode_envelope(&raw).unwrap();
    assert_eq!(
        (envelope.api_version.as_str(), envelope.kind.as_str()),
        ("v1", "Secret")
    );
    let secret = etcdvalue::decode_secret(&envelope.raw).unwrap();
    assert_eq!(
        (secret.namespace.as_str(), secret.name.as_str()),
        ("default", "before")
    );

    // aescbc: passes with the weak-provider warning; the canary's prefix and decryption are shown.
    restart_with(&mut plane, &format!("{}{IDENTITY}", aescbc())).await;
    let client = plane.client().await;
    let ctx = context(&plane, client.clone());
    let configured = grade(&ctx, "etcd.encryption-configured").await;
    assert_status(&configured, Status::Warn);
    assert!(
        configured.message.contains("padding-oracle"),
        "{configured:#?}"
    );
    let encrypted = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&encrypted, Status::Pass);
    let evidence = encrypted.evidence.unwrap();
    assert!(evidence.contains("k8s:enc:aescbc:v1:key1:"), "{evidence}");
    assert!(
        evidence.contains("decrypted with aescbc key \"key1\""),
        "{evidence}"
    );
    // The Secret written before encryption is still plaintext, until every Secret is rewritten.
    let leftover = grade(&ctx, "etcd.no-plaintext-secrets").await;
    assert_status(&leftover, Status::Fail);
    assert!(leftover.message.contains("default/before"), "{leftover:#?}");
    let secrets: Api<Secret> = Api::all(client.clone());
    for secret in secrets.list(&ListParams::default()).await.unwrap().items {
        let namespace = secret.metadata.namespace.clone().unwrap();
        let name = secret.metadata.name.clone().unwrap();
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .replace(&name, &PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let ctx = context(&plane, client.clone());
    assert_status(
        &grade(&ctx, "etcd.no-plaintext-secrets").await,
        Status::Pass,
    );
    // The aescbc decoder on the API server's own value.
    let raw = raw_secret(&plane, "before").await;
    let stored = etcdvalue::classify(&raw);
    assert_eq!(stored.prefix, "k8s:enc:aescbc:v1:key1:");
    let plaintext = etcdvalue::decrypt_aescbc(&[1; 32], stored.payload).unwrap();
    assert!(plaintext.starts_with(b"k8s\0"));
    assert!(etcdvalue::decrypt_aescbc(&[9; 32], stored.payload).is_err());

    // secretbox: a good provider passes.
    restart_with(&mut plane, &format!("{}{}", secretbox(), aescbc())).await;
    let client = plane.client().await;
    create_secret(&client, "boxed", "secretbox-value").await;
    let ctx = context(&plane, client.clone());
    assert_status(
        &grade(&ctx, "etcd.encryption-configured").await,
        Status::Pass,
    );
    let encrypted = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&encrypted, Status::Pass);
    assert!(
        encrypted
            .evidence
            .unwrap()
            .contains("k8s:enc:secretbox:v1:box1:")
    );
    let raw = raw_secret(&plane, "boxed").await;
    let stored = etcdvalue::classify(&raw);
    let plaintext = etcdvalue::decrypt_secretbox(&[2; 32], stored.payload).unwrap();
    let envelope = etcdvalue::decode_envelope(&plaintext).unwrap();
    assert_eq!(
        etcdvalue::decode_secret(&envelope.raw).unwrap().name,
        "boxed"
    );

    // aesgcm: acceptable only with rotation (warn); its values are bound to their etcd key.
    // Older values stay readable only while their providers are still listed.
    restart_with(
        &mut plane,
        &format!("{}{}{}", aesgcm(), secretbox(), aescbc()),
    )
    .await;
    let client = plane.client().await;
    create_secret(&client, "gcm", "aesgcm-value").await;
    let ctx = context(&plane, client.clone());
    assert_status(
        &grade(&ctx, "etcd.encryption-configured").await,
        Status::Warn,
    );
    let encrypted = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&encrypted, Status::Pass);
    assert!(
        encrypted
            .evidence
            .unwrap()
            .contains("decrypted with aesgcm key \"gcm1\"")
    );
    let raw = raw_secret(&plane, "gcm").await;
    let stored = etcdvalue::classify(&raw);
    assert_eq!(stored.prefix, "k8s:enc:aesgcm:v1:gcm1:");
    etcdvalue::decrypt_aesgcm(&[3; 32], stored.payload, b"/registry/secrets/default/gcm").unwrap();
    assert!(
        etcdvalue::decrypt_aesgcm(&[3; 32], stored.payload, b"/registry/secrets/default/other")
            .is_err()
    );

    // identity first, aescbc second: nothing new is encrypted.
    restart_with(
        &mut plane,
        &format!("{IDENTITY}{}{}{}", aescbc(), secretbox(), aesgcm()),
    )
    .await;
    let client = plane.client().await;
    let ctx = context(&plane, client);
    let configured = grade(&ctx, "etcd.encryption-configured").await;
    assert_status(&configured, Status::Fail);
    assert!(configured.message.contains("identity"), "{configured:#?}");
    assert_status(&grade(&ctx, "etcd.secrets-encrypted").await, Status::Fail);
}

#[tokio::test]
async fn etcd_with_tls_and_client_certificates_passes_the_lock_down_checks_and_plain_http_fails() {
    if !require(Component::ControlPlane) {
        return;
    }
    let locked = ControlPlane::builder()
        .etcd_tls(true)
        .start()
        .await
        .unwrap();
    let ctx = context(&locked, locked.client().await);
    assert_status(&grade(&ctx, "etcd.client-cert-auth").await, Status::Pass);
    assert_status(&grade(&ctx, "etcd.apiserver-tls").await, Status::Pass);
    // Reading etcd with etcdctl on the node, with the API server's etcd client certificate.
    let through_node = Context::live(Some(locked.client().await))
        .with_node(Arc::new(LocalNode::new(locked.kubernetes_dir())));
    let encrypted = grade(&through_node, "etcd.secrets-encrypted").await;
    assert_status(&encrypted, Status::Fail);
    assert!(encrypted.evidence.unwrap().contains("etcdctl on local:"));

    let open = hardlab_testkit::shared_control_plane().await;
    let ctx = context(open, open.client().await);
    let etcd_check = grade(&ctx, "etcd.client-cert-auth").await;
    assert_status(&etcd_check, Status::Fail);
    assert!(
        etcd_check
            .message
            .contains("--client-cert-auth is not true")
    );
    let apiserver_check = grade(&ctx, "etcd.apiserver-tls").await;
    assert_status(&apiserver_check, Status::Fail);
    assert!(
        apiserver_check.message.contains("http://127.0.0.1"),
        "{apiserver_check:#?}"
    );
}

/// Fault injection: an etcd reader that hands back a forged value for every key (the real one
/// for listing), as a tampered or foreign value behind a valid-looking prefix would be.
struct ForgedEtcd {
    forged: Vec<u8>,
}

#[async_trait::async_trait]
impl EtcdAccess for ForgedEtcd {
    fn describe(&self) -> String {
        "forged etcd (test fault injection)".into()
    }
    async fn get(&self, _key: &[u8]) -> hardlab_grader::Result<Option<Vec<u8>>> {
        Ok(Some(self.forged.clone()))
    }
    async fn list(&self, _prefix: &[u8]) -> hardlab_grader::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_prefix_alone_is_not_proof_encryption_is_verified_by_decrypting_where_the_key_is_at_hand()
{
    if !require(Component::ControlPlane) {
        return;
    }
    let mut plane = ControlPlane::builder().start().await.unwrap();
    restart_with(&mut plane, &format!("{}{IDENTITY}", aescbc())).await;
    let client = plane.client().await;

    // The key is readable on the node and the API server's ciphertext decrypts to the Secret.
    let verified = grade(&context(&plane, client.clone()), "etcd.secrets-encrypted").await;
    assert_status(&verified, Status::Pass);

    // The same prefix in front of bytes that are not this Secret under key1: not a pass.
    let mut forged = b"k8s:enc:aescbc:v1:key1:".to_vec();
    forged.extend([0x5a; 48]);
    let ctx = Context::live(Some(client.clone()))
        .with_node(Arc::new(LocalNode::new(plane.kubernetes_dir())))
        .with_etcd(Arc::new(ForgedEtcd { forged }));
    let tampered = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&tampered, Status::Warn);
    assert!(
        tampered.message.contains("encryption is not verified"),
        "{tampered:#?}"
    );
    assert!(
        tampered
            .message
            .contains("decrypting with aescbc key \"key1\""),
        "{tampered:#?}"
    );

    // Without the node, the key is not at hand: encrypted, but not verified.
    let etcd: Arc<dyn EtcdAccess> =
        Arc::new(EtcdHttp::new(plane.etcd_endpoint(), None, None, None).unwrap());
    let ctx = Context::live(Some(client)).with_etcd(etcd);
    let unverified = grade(&ctx, "etcd.secrets-encrypted").await;
    assert_status(&unverified, Status::Warn);
    assert!(
        unverified.message.contains("not verified"),
        "{unverified:#?}"
    );
}
