//! The control plane starts real processes, answers as an admin, describes itself in a
//! kubeadm-like folder, and restarts with new flags.
#![allow(clippy::unwrap_used)]

use hardlab_testkit::{Component, ControlPlane, require, shared_control_plane};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

#[tokio::test]
async fn shared_control_plane_answers_an_admin_and_writes_kubeadm_manifests() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let namespaces: Api<Namespace> = Api::all(plane.client().await);
    let listed = namespaces.list(&ListParams::default()).await.unwrap();
    assert!(
        listed
            .items
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("default"))
    );

    let manifest =
        std::fs::read_to_string(plane.kubernetes_dir().join("manifests/kube-apiserver.yaml"))
            .unwrap();
    assert!(manifest.contains(&format!("--etcd-servers={}", plane.etcd_endpoint())));
    assert!(plane.kubernetes_dir().join("manifests/etcd.yaml").is_file());
    assert!(plane.kubernetes_dir().join("pki/ca.crt").is_file());
    assert!(plane.kubeconfig_path().is_file());
    assert!(plane.etcd_client_cert().is_none());
}

#[tokio::test]
async fn tls_etcd_and_a_restart_with_new_flags_keep_the_api_server_serving() {
    if !require(Component::ControlPlane) {
        return;
    }
    let mut plane = ControlPlane::builder()
        .etcd_tls(true)
        .file(
            "audit/policy.yaml",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        )
        .apiserver_flag("--audit-policy-file={dir}/audit/policy.yaml")
        .start()
        .await
        .unwrap();
    assert!(plane.etcd_endpoint().starts_with("https://"));
    let cert = plane.etcd_client_cert().unwrap();
    assert!(cert.key.is_file());
    let manifest =
        std::fs::read_to_string(plane.kubernetes_dir().join("manifests/etcd.yaml")).unwrap();
    assert!(manifest.contains("--client-cert-auth=true"));

    plane
        .restart_apiserver(["--anonymous-auth=false"])
        .await
        .unwrap();
    let manifest =
        std::fs::read_to_string(plane.kubernetes_dir().join("manifests/kube-apiserver.yaml"))
            .unwrap();
    assert!(manifest.contains("--anonymous-auth=false"));
    assert!(!manifest.contains("--audit-policy-file"));
    let namespaces: Api<Namespace> = Api::all(plane.client().await);
    namespaces.get("default").await.unwrap();
}

#[tokio::test]
async fn an_issued_client_certificate_names_the_user_and_groups() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let (cert, key) = plane.issue_client_cert("bob", &["developers"]);
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
}
