//! Starts a real control plane for benchmarking the etcd checks (see grader/benches/etcd.sh):
//! etcd with TLS and client certificates, kube-apiserver with aescbc encryption at rest and 50
//! Secrets. Prints the `hardlab-grade live` arguments that reach it, then runs until stdin closes.
#![allow(clippy::expect_used, clippy::print_stdout)]

use std::io::Read;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;

#[tokio::main]
async fn main() {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let config = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {key}\n      - identity: {{}}\n"
    );
    let plane = hardlab_testkit::ControlPlane::builder()
        .etcd_tls(true)
        .file("enc/enc.yaml", config)
        .apiserver_flag("--encryption-provider-config={dir}/enc/enc.yaml")
        .start()
        .await
        .expect("control plane");
    let secrets: Api<Secret> = Api::namespaced(plane.client().await, "default");
    for index in 0..50 {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("bench-{index}")},
            "stringData": {"password": format!("value-{index}")},
        }))
        .expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    let cert = plane.etcd_client_cert().expect("etcd TLS");
    println!(
        "--kubeconfig {} --node local:{} --etcd {} --etcd-ca {} --etcd-cert {} --etcd-key {}",
        plane.kubeconfig_path().display(),
        plane.kubernetes_dir().display(),
        plane.etcd_endpoint(),
        cert.ca.display(),
        cert.cert.display(),
        cert.key.display()
    );
    // Runs until the benchmark script closes our stdin; the control plane stops on drop.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
