//! The etcd checks on files (static mode): an EncryptionConfiguration judged alone, kube-apiserver
//! and etcd manifests judged on their flags, and the checks that need a cluster skipping.
#![allow(clippy::unwrap_used)]

use hardlab_grader::context::Context;
use hardlab_grader::inputs::documents::parse_text;
use hardlab_grader::{Outcome, Status, catalog};

async fn grade(files: &[(&str, &str)], id: &str) -> Outcome {
    let mut documents = Vec::new();
    for (name, text) in files {
        documents.extend(parse_text(name, text).unwrap());
    }
    let ctx = Context::from_documents(documents);
    (catalog::find(id).unwrap().run)(&ctx).await.unwrap()
}

const KMS_V2_FIRST: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: hardlab-kms
          endpoint: unix:///var/run/kms/kms.sock
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/ISEhISE=
      - identity: {}
";

const IDENTITY_FIRST: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - identity: {}
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/ISEhISE=
";

const CONFIGMAPS_ONLY: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [configmaps]
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=
";

fn apiserver(flags: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.31.0\n    command:\n    - kube-apiserver\n{flags}"
    )
}

fn etcd(flags: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.15-0\n    command:\n    - etcd\n{flags}"
    )
}

const ETCD_LOCKED: &str =
    "    - --listen-client-urls=https://127.0.0.1:2379,https://172.18.0.2:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --client-cert-auth=true
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --peer-client-cert-auth=true
";

#[tokio::test]
async fn an_encryption_configuration_alone_is_judged_on_its_first_provider_for_secrets() {
    let kms = [("enc.yaml", KMS_V2_FIRST)];
    assert_eq!(
        grade(&kms, "etcd.encryption-configured").await.status,
        Status::Pass
    );
    assert_eq!(
        grade(&kms, "etcd.encryption-kms-v2").await.status,
        Status::Pass
    );

    let identity = [("enc.yaml", IDENTITY_FIRST)];
    let outcome = grade(&identity, "etcd.encryption-configured").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(outcome.message.contains("identity"), "{outcome:#?}");
    assert_eq!(
        grade(&identity, "etcd.encryption-kms-v2").await.status,
        Status::Fail
    );

    let uncovered = grade(
        &[("enc.yaml", CONFIGMAPS_ONLY)],
        "etcd.encryption-configured",
    )
    .await;
    assert_eq!(uncovered.status, Status::Fail);
    assert!(uncovered.message.contains("does not cover `secrets`"));
}

#[tokio::test]
async fn a_wildcard_resource_covers_secrets() {
    let text = CONFIGMAPS_ONLY.replace("[configmaps]", "['*.']");
    let outcome = grade(&[("enc.yaml", &text)], "etcd.encryption-configured").await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:#?}");
}

#[tokio::test]
async fn an_api_server_manifest_without_the_flag_fails_and_a_stray_argument_is_a_finding() {
    let without = apiserver("    - --etcd-servers=https://127.0.0.1:2379\n");
    let outcome = grade(
        &[("kube-apiserver.yaml", &without)],
        "etcd.encryption-configured",
    )
    .await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(outcome.message.contains("no --encryption-provider-config"));

    let stray = apiserver(
        "    - --encryption-provider-config\n    - /etc/kubernetes/enc/enc.yaml\n    - --anonymous-auth\n    - \"false\"\n",
    );
    let outcome = grade(
        &[("kube-apiserver.yaml", &stray)],
        "etcd.encryption-configured",
    )
    .await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains("would refuse to start"),
        "{outcome:#?}"
    );
    assert_eq!(outcome.locations[0].file, "kube-apiserver.yaml");
}

#[tokio::test]
async fn the_manifest_and_the_configuration_it_names_are_judged_together() {
    let with_flag = apiserver("    - --encryption-provider-config=/etc/kubernetes/enc/enc.yaml\n");
    let outcome = grade(
        &[
            ("kube-apiserver.yaml", &with_flag),
            ("enc/enc.yaml", KMS_V2_FIRST),
        ],
        "etcd.encryption-kms-v2",
    )
    .await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:#?}");
    let alone = grade(
        &[("kube-apiserver.yaml", &with_flag)],
        "etcd.encryption-configured",
    )
    .await;
    assert_eq!(alone.status, Status::Skip);
}

#[tokio::test]
async fn etcd_flags_decide_client_certificate_auth() {
    let locked = etcd(ETCD_LOCKED);
    assert_eq!(
        grade(&[("etcd.yaml", &locked)], "etcd.client-cert-auth")
            .await
            .status,
        Status::Pass
    );

    let open = etcd(&format!(
        "{}    - --listen-client-urls=https://127.0.0.1:2379,http://0.0.0.0:4001\n    - --client-cert-auth=false\n",
        ETCD_LOCKED
    ));
    let outcome = grade(&[("etcd.yaml", &open)], "etcd.client-cert-auth").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains("http://0.0.0.0:4001"),
        "{outcome:#?}"
    );
    assert!(outcome.message.contains("--client-cert-auth is not true"));

    let bare_false = etcd(&format!(
        "{ETCD_LOCKED}    - --client-cert-auth\n    - \"false\"\n"
    ));
    let outcome = grade(&[("etcd.yaml", &bare_false)], "etcd.client-cert-auth").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains("would refuse to start"),
        "{outcome:#?}"
    );
}

#[tokio::test]
async fn the_api_server_must_reach_etcd_over_https_with_a_client_certificate() {
    let tls = apiserver(
        "    - --etcd-servers=https://127.0.0.1:2379\n    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt\n    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt\n    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key\n",
    );
    assert_eq!(
        grade(&[("a.yaml", &tls)], "etcd.apiserver-tls")
            .await
            .status,
        Status::Pass
    );
    let plain = apiserver("    - --etcd-servers=http://127.0.0.1:2379\n");
    let outcome = grade(&[("a.yaml", &plain)], "etcd.apiserver-tls").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(outcome.message.contains("--etcd-certfile is not set"));
}

#[tokio::test]
async fn checks_that_read_etcd_skip_in_static_mode_and_missing_inputs_skip_with_a_reason() {
    let files = [("enc.yaml", KMS_V2_FIRST)];
    assert_eq!(
        grade(&files, "etcd.secrets-encrypted").await.status,
        Status::Skip
    );
    assert_eq!(
        grade(&files, "etcd.no-plaintext-secrets").await.status,
        Status::Skip
    );
    let outcome = grade(&files, "etcd.client-cert-auth").await;
    assert_eq!(outcome.status, Status::Skip);
    assert!(outcome.message.contains("no etcd static pod"));
    assert_eq!(
        grade(&files, "etcd.apiserver-tls").await.status,
        Status::Skip
    );
}
