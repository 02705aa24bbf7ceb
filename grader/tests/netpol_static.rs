//! Network policy checks on real manifest files (the lab app in namespace shop), as
//! `hardlab-grade static` reads them, and the `matrix` command's output.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::process::Command;

use hardlab_grader::context::Params;
use hardlab_grader::inputs::documents::read_paths;
use hardlab_grader::{Context, Outcome, Status, catalog};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netpol/app")
        .join(name)
}

async fn run(id: &str, files: &[&str]) -> Outcome {
    let paths: Vec<PathBuf> = files.iter().map(|name| fixture(name)).collect();
    let ctx = Context::from_documents(read_paths(&paths).unwrap().documents).with_params(Params {
        namespace: Some("shop".into()),
        ..Params::default()
    });
    let check = catalog::find(id).unwrap();
    (check.run)(&ctx).await.unwrap()
}

const HARDENED: &[&str] = &["shop.yaml", "hardened-policies.yaml"];
const LEAKY: &[&str] = &["shop.yaml", "leaky-policies.yaml"];

#[tokio::test]
async fn the_hardened_app_passes_both_default_deny_checks_and_the_intended_matrix() {
    for id in [
        "netpol.default-deny-ingress",
        "netpol.default-deny-egress",
        "netpol.intended-matrix",
    ] {
        let outcome = run(id, HARDENED).await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
    }
}

#[tokio::test]
async fn an_app_without_policies_fails_every_check_with_each_pod_named() {
    let ingress = run("netpol.default-deny-ingress", &["shop.yaml"]).await;
    assert_eq!(ingress.status, Status::Fail);
    let evidence = ingress.evidence.unwrap();
    for pod in ["shop/frontend", "shop/backend", "shop/db"] {
        assert!(evidence.contains(&format!("{pod} (")), "{evidence}");
    }
    assert_eq!(ingress.locations.len(), 3);
    assert!(ingress.locations[0].file.ends_with("shop.yaml"));

    let matrix = run("netpol.intended-matrix", &["shop.yaml"]).await;
    assert_eq!(matrix.status, Status::Fail);
    assert!(
        matrix
            .message
            .contains("shop/frontend -> shop/db on 3306/TCP is allowed, should be denied"),
        "{}",
        matrix.message
    );
}

#[tokio::test]
async fn a_rule_less_policy_without_policy_types_is_no_egress_default_deny() {
    let outcome = run("netpol.default-deny-egress", LEAKY).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome
            .message
            .contains("isolates egress only when its policyTypes lists Egress"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn an_ingress_rule_admitting_everything_defeats_the_ingress_default_deny() {
    let outcome = run("netpol.default-deny-ingress", LEAKY).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome
            .message
            .contains("shop/frontend-open has a rule that allows every peer on every port"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn the_intended_matrix_lists_each_deviation_of_the_leaky_policies() {
    let outcome = run("netpol.intended-matrix", LEAKY).await;
    assert_eq!(outcome.status, Status::Fail);
    let evidence = outcome.evidence.clone().unwrap();
    for deviation in [
        // podSelector {} in the db's `from` admits the frontend too.
        "shop/frontend -> shop/db on 3306/TCP is allowed, should be denied",
        // ingress [{}] on the frontend admits the db.
        "shop/db -> shop/frontend on 80/TCP is allowed, should be denied",
        // A rule without ports admits the frontend on every port of the backend.
        "shop/frontend -> shop/backend on 65432/TCP (a port nobody declares) is allowed, should be denied",
    ] {
        assert!(evidence.contains(deviation), "{deviation} in\n{evidence}");
    }
    assert!(!evidence.contains("should be allowed"), "{evidence}");
    assert!(
        outcome
            .locations
            .iter()
            .any(|l| l.object.as_deref() == Some("NetworkPolicy/shop/db-from-namespace")),
        "{:?}",
        outcome.locations
    );
}

#[tokio::test]
async fn a_missing_dns_allowance_is_a_deviation() {
    // The hardened set without allow-dns: egress is denied, name resolution too.
    let text = std::fs::read_to_string(fixture("hardened-policies.yaml")).unwrap();
    let without_dns: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("name: allow-dns"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-dns.yaml");
    std::fs::write(&path, without_dns.join("\n---\n")).unwrap();
    let ctx = Context::from_documents(read_paths(&[fixture("shop.yaml"), path]).unwrap().documents)
        .with_params(Params {
            namespace: Some("shop".into()),
            ..Params::default()
        });
    let outcome = (catalog::find("netpol.intended-matrix").unwrap().run)(&ctx)
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains(
            "shop/backend -> kube-system/kube-dns on 53/UDP is denied, should be allowed"
        ),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn policies_selecting_every_pod_by_label_only_warn_that_new_pods_would_be_open() {
    let outcome = run(
        "netpol.default-deny-ingress",
        &["shop.yaml", "labelled-only-policies.yaml"],
    )
    .await;
    assert_eq!(outcome.status, Status::Warn, "{outcome:?}");
    assert!(
        outcome
            .message
            .contains("a new pod with other labels would be open")
    );
}

#[tokio::test]
async fn an_app_with_a_pod_missing_fails_the_intended_matrix_naming_it() {
    let text = std::fs::read_to_string(fixture("shop.yaml")).unwrap();
    let without_db: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("name: db"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.yaml");
    std::fs::write(&path, without_db.join("\n---\n")).unwrap();
    let ctx = Context::from_documents(read_paths(&[path]).unwrap().documents).with_params(Params {
        namespace: Some("shop".into()),
        ..Params::default()
    });
    let outcome = (catalog::find("netpol.intended-matrix").unwrap().run)(&ctx)
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(
        outcome.message,
        "the app is incomplete in shop: no pod labelled app=db"
    );
}

#[tokio::test]
async fn the_live_probe_reports_not_run_on_files() {
    let outcome = run("netpol.live-probe", HARDENED).await;
    assert_eq!(outcome.status, Status::Skip);
    assert!(
        outcome
            .message
            .starts_with("not run: pods are not running (needs a full cluster)")
    );
}

fn grade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_matrix_command_prints_the_json_contract() {
    let shop = fixture("shop.yaml");
    let policies = fixture("hardened-policies.yaml");
    let output = grade(&[
        "matrix",
        shop.to_str().unwrap(),
        policies.to_str().unwrap(),
        "--namespace",
        "shop",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let edges = json["edges"].as_array().unwrap();
    let edge = |from: &str, to: &str, port: u64| {
        edges
            .iter()
            .find(|e| e["from"] == from && e["to"] == to && e["port"] == port)
            .unwrap_or_else(|| panic!("{from} -> {to}:{port}"))
    };
    let allowed = edge("shop/frontend", "shop/backend", 8080);
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["protocol"], "TCP");
    assert_eq!(
        allowed["policies"],
        serde_json::json!(["shop/frontend-egress", "shop/frontend-to-backend"])
    );
    let denied = edge("shop/frontend", "shop/db", 3306);
    assert_eq!(denied["allowed"], false);
    // Denied both ways: every policy isolating the frontend's egress and the db's ingress.
    assert_eq!(
        denied["policies"],
        serde_json::json!([
            "shop/allow-dns",
            "shop/backend-to-db",
            "shop/default-deny",
            "shop/frontend-egress"
        ])
    );
    assert_eq!(denied["egress"]["verdict"], "denied");
    assert_eq!(denied["ingress"]["verdict"], "denied");
    assert_eq!(edges.iter().filter(|e| e["allowed"] == true).count(), 2);
    assert_eq!(json["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn the_matrix_command_prints_a_table_by_default() {
    let shop = fixture("shop.yaml");
    let output = grade(&["matrix", shop.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("FROM"), "{text}");
    assert!(
        text.lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == [
                    "shop/backend",
                    "shop/db",
                    "3306/TCP",
                    "(mysql)",
                    "allowed",
                    "-"
                ]),
        "{text}"
    );
    assert!(
        text.contains("3 pods, 6 connections: 6 allowed, 0 denied"),
        "{text}"
    );
}

#[test]
fn the_matrix_command_names_the_file_and_field_of_a_broken_policy() {
    let broken = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netpol/engine/bad-operator.yaml");
    // The API server would refuse the policy: it is left out and named, not the whole run.
    let output = grade(&["matrix", broken.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("bad-operator.yaml:1"), "{stdout}");
    assert!(
        stdout.contains("spec.podSelector.matchExpressions[0].operator"),
        "{stdout}"
    );
}
