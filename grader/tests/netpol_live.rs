//! Network policy checks and the matrix against a real kube-apiserver: namespaces, pods and
//! policies created through the API, listed back by the grader. Pods stay Pending (no kubelet),
//! so the live probe must say it did not run.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod netpol_support;

use std::process::Command;

use hardlab_grader::checks::netpol::{NOT_RUNNING, matrix};
use hardlab_grader::context::Params;
use hardlab_grader::{Context, Outcome, Status, catalog};
use netpol_support::{create, create_namespace, fixture, shared, unique_namespace};

/// A namespace holding the lab app's pods and the policies of one fixture.
async fn app_namespace(client: &kube::Client, policies: Option<&str>) -> String {
    let namespace = unique_namespace("netpol");
    create_namespace(client, &namespace, &[], &[]).await;
    create(client, &fixture("netpol/live/pods.yaml"), Some(&namespace)).await;
    if let Some(file) = policies {
        create(client, &fixture(file), Some(&namespace)).await;
    }
    namespace
}

async fn run(client: &kube::Client, id: &str, namespace: &str) -> Outcome {
    let ctx = Context::live(Some(client.clone())).with_params(Params {
        namespace: Some(namespace.to_owned()),
        ..Params::default()
    });
    (catalog::find(id).unwrap().run)(&ctx).await.unwrap()
}

#[tokio::test]
async fn the_hardened_policies_pass_live_and_the_probe_reports_not_run_for_pending_pods() {
    let Some(plane) = shared().await else { return };
    let client = plane.client().await;
    let namespace = app_namespace(&client, Some("netpol/app/hardened-policies.yaml")).await;
    for id in [
        "netpol.default-deny-ingress",
        "netpol.default-deny-egress",
        "netpol.intended-matrix",
    ] {
        let outcome = run(&client, id, &namespace).await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
    }
    let probe = run(&client, "netpol.live-probe", &namespace).await;
    assert_eq!(probe.status, Status::Skip, "{probe:?}");
    assert!(probe.message.starts_with(NOT_RUNNING), "{}", probe.message);
    assert!(
        probe
            .message
            .contains(&format!("{namespace}/db is Pending")),
        "{}",
        probe.message
    );
}

#[tokio::test]
async fn the_leaky_policies_fail_live_naming_the_deviations() {
    let Some(plane) = shared().await else { return };
    let client = plane.client().await;
    let namespace = app_namespace(&client, Some("netpol/app/leaky-policies.yaml")).await;
    let egress = run(&client, "netpol.default-deny-egress", &namespace).await;
    assert_eq!(egress.status, Status::Fail, "{egress:?}");
    let ingress = run(&client, "netpol.default-deny-ingress", &namespace).await;
    assert_eq!(ingress.status, Status::Fail, "{ingress:?}");
    assert!(
        ingress
            .message
            .contains(&format!("{namespace}/frontend-open has a rule"))
    );
    let intended = run(&client, "netpol.intended-matrix", &namespace).await;
    assert_eq!(intended.status, Status::Fail);
    assert!(
        intended.message.contains(&format!(
            "{namespace}/frontend -> {namespace}/db on 3306/TCP is allowed, should be denied"
        )),
        "{}",
        intended.message
    );
    // Live findings point at the objects by ID (there is no file).
    assert!(
        intended.locations.iter().any(|l| l.object.as_deref()
            == Some(&*format!("NetworkPolicy/{namespace}/db-from-namespace"))),
        "{:?}",
        intended.locations
    );
}

#[tokio::test]
async fn a_namespace_without_policies_fails_default_deny_live() {
    let Some(plane) = shared().await else { return };
    let client = plane.client().await;
    let namespace = app_namespace(&client, None).await;
    let outcome = run(&client, "netpol.default-deny-ingress", &namespace).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(outcome.locations.len(), 3, "{outcome:?}");
}

#[tokio::test]
async fn the_live_matrix_lists_the_namespace_connections_with_their_policies() {
    let Some(plane) = shared().await else { return };
    let client = plane.client().await;
    let namespace = app_namespace(&client, Some("netpol/app/hardened-policies.yaml")).await;
    let ctx = Context::live(Some(client.clone()));
    let matrix = matrix(&ctx, Some(&namespace)).await.unwrap();
    let id = |pod: &str| format!("{namespace}/{pod}");
    let allowed: Vec<(String, String, u16)> = matrix
        .edges
        .iter()
        .filter(|e| e.allowed && e.from.starts_with(&namespace) && e.to.starts_with(&namespace))
        .map(|e| (e.from.clone(), e.to.clone(), e.port))
        .collect();
    assert_eq!(
        allowed,
        [
            (id("backend"), id("db"), 3306),
            (id("frontend"), id("backend"), 8080)
        ]
    );
    let edge = matrix
        .edges
        .iter()
        .find(|e| e.from == id("frontend") && e.to == id("backend"))
        .unwrap();
    assert_eq!(
        edge.policies,
        [
            format!("{namespace}/frontend-egress"),
            format!("{namespace}/frontend-to-backend")
        ]
    );
}

#[tokio::test]
async fn the_matrix_command_reads_a_live_cluster_through_a_kubeconfig() {
    let Some(plane) = shared().await else { return };
    let client = plane.client().await;
    let namespace = app_namespace(&client, Some("netpol/app/hardened-policies.yaml")).await;
    let output = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .arg("matrix")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["--namespace", &namespace, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let edges = json["edges"].as_array().unwrap();
    let from_frontend_to_db = edges
        .iter()
        .find(|e| {
            e["from"] == format!("{namespace}/frontend")
                && e["to"] == format!("{namespace}/db")
                && e["port"] == 3306
        })
        .unwrap();
    assert_eq!(from_frontend_to_db["allowed"], false);
    assert_eq!(from_frontend_to_db["protocol"], "TCP");
}
