//! Suppressions in live mode: the `hardlab/skip` annotation read from an object listed from a real
//! kube-apiserver (hardlab_testkit), through the built `hardlab-grade live`.
#![allow(clippy::unwrap_used)]

use hardlab_testkit::{Component, require, shared_control_plane};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

#[tokio::test]
async fn an_annotated_cluster_admin_binding_is_suppressed_with_its_reason_live() {
    if !require(Component::ControlPlane) {
        return;
    }
    // This binary's own control plane: no other test sees the binding.
    let plane = shared_control_plane().await;
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let reason = "the deploy bot installs cluster-wide CRDs (PLAT-7)";
    let bindings: Api<ClusterRoleBinding> = Api::all(plane.client().await);
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": "deploy-bot-admin",
            "annotations": {"hardlab/skip": format!("access.cluster-admin-bindings: {reason}")},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "deploy-bot"}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args([
            "--no-config",
            "live",
            "--kubeconfig",
            &kubeconfig,
            "--check",
            "access.cluster-admin-bindings",
            "--format",
            "json",
        ])
        .output()
        .await
        .unwrap();
    let _ = bindings
        .delete("deploy-bot-admin", &DeleteParams::default())
        .await;
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["results"][0]["check_status"], "fail", "{report}");
    assert_eq!(report["results"][0]["status"], "pass", "{report}");
    let finding = &report["findings"][0];
    assert_eq!(
        finding["object"], "ClusterRoleBinding/deploy-bot-admin",
        "{report}"
    );
    assert_eq!(finding["disposition"]["state"], "suppressed");
    assert_eq!(finding["disposition"]["reason"], reason);
    assert_eq!(
        finding["disposition"]["source"]["object"],
        "ClusterRoleBinding/deploy-bot-admin"
    );
}
