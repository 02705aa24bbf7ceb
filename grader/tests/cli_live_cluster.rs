//! `hardlab-grade live` end to end against a real etcd and kube-apiserver (hardlab_testkit):
//! exit codes 0 and 1 from real verdicts, and a kubeconfig without rights reporting `error`
//! (forbidden) for the checks it cannot run, and exit 1, while every check still reports.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hardlab_testkit::{Component, ControlPlane, require, shared_control_plane};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

async fn grade(args: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A kubeconfig for `user` (a client certificate signed by the cluster CA), with no RBAC rights
/// unless a test grants them.
fn kubeconfig_for(plane: &ControlPlane, user: &str, dir: &Path) -> String {
    let (cert, key) = plane.issue_client_cert(user, &[]);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {user}\n  context:\n    cluster: test\n    user: {user}\ncurrent-context: {user}\n",
        plane.server_url(),
        BASE64.encode(plane.ca_pem()),
        BASE64.encode(cert),
        BASE64.encode(key),
    );
    let path = dir.join(format!("{user}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_cluster_admin_binding_to_a_person_turns_exit_0_into_exit_1() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let args = strings(&[
        "live",
        "--kubeconfig",
        &kubeconfig,
        "--check",
        "access.cluster-admin-bindings",
        "--format",
        "json",
    ]);

    let clean = grade(args.clone()).await;
    let report = json(&clean);
    assert_eq!(report["results"][0]["status"], "pass", "{report}");
    assert_eq!(clean.status.code(), Some(0));
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .contains(&plane.server_url()),
        "{report}"
    );

    let bindings: Api<ClusterRoleBinding> = Api::all(plane.client().await);
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "cli-test-mallory-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let flagged = grade(args).await;
    let _ = bindings
        .delete("cli-test-mallory-admin", &DeleteParams::default())
        .await;
    let report = json(&flagged);
    assert_eq!(report["results"][0]["status"], "fail", "{report}");
    assert!(
        report["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("mallory")
            || report["results"][0]["evidence"]
                .as_str()
                .unwrap_or_default()
                .contains("mallory"),
        "{report}"
    );
    assert_eq!(flagged.status.code(), Some(1));
}

#[tokio::test]
async fn a_kubeconfig_without_rights_reports_forbidden_as_error_and_exits_1() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(plane, "nobody", dir.path());
    let output = grade(strings(&[
        "live",
        "--kubeconfig",
        &kubeconfig,
        "--lab",
        "pod-security",
        "--check",
        "access.anonymous-auth-disabled",
        "--format",
        "json",
    ]))
    .await;
    let report = json(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let results = report["results"].as_array().unwrap();
    let privileged = results
        .iter()
        .find(|result| result["check"] == "podsec.no-privileged")
        .unwrap();
    assert_eq!(privileged["status"], "error", "{privileged}");
    assert!(
        privileged["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("forbidden"),
        "{privileged}"
    );
    // One check's failure to read its input does not stop the others: every selected check reports.
    let expected = hardlab_grader::catalog::all()
        .iter()
        .filter(|check| check.meta.lab.id() == "pod-security")
        .count()
        + 1;
    assert_eq!(results.len(), expected, "{report}");
    assert!(report["summary"]["error"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn every_format_parses_for_a_live_run() {
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    for format in ["json", "sarif", "junit", "text"] {
        let file = dir.path().join(format!("report.{format}"));
        let output = grade(strings(&[
            "live",
            "--kubeconfig",
            &kubeconfig,
            "--lab",
            "secure-access",
            "--format",
            format,
            "--output",
            &file.display().to_string(),
        ]))
        .await;
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        match format {
            "json" | "sarif" => {
                let _: Value = serde_json::from_str(&text).unwrap();
            }
            "junit" => {
                let mut reader = quick_xml::Reader::from_str(&text);
                while !matches!(reader.read_event().unwrap(), quick_xml::events::Event::Eof) {}
            }
            _ => assert!(text.contains("access.authorization-rbac"), "{text}"),
        }
    }
}
