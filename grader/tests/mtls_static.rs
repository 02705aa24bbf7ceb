//! mTLS checks on real manifest files: Istio and Linkerd, done right and undermined.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use hardlab_grader::context::Params;
use hardlab_grader::inputs::documents::read_paths;
use hardlab_grader::{Context, Outcome, Status, catalog};

async fn run(id: &str, file: &str) -> Outcome {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mtls")
        .join(file);
    let ctx = Context::from_documents(read_paths(&[path]).unwrap().documents).with_params(Params {
        namespace: Some("shop".into()),
        ..Params::default()
    });
    (catalog::find(id).unwrap().run)(&ctx).await.unwrap()
}

#[tokio::test]
async fn istio_strict_mesh_wide_with_injection_passes_strict_mode_and_meshing() {
    let strict = run("mtls.strict-mode", "istio-strict.yaml").await;
    assert_eq!(strict.status, Status::Pass, "{strict:?}");
    assert!(
        strict.message.contains("istio-system/default"),
        "{}",
        strict.message
    );
    let meshed = run("mtls.workloads-meshed", "istio-strict.yaml").await;
    assert_eq!(meshed.status, Status::Pass, "{meshed:?}");
    assert!(meshed.message.contains("(Istio)"));
}

#[tokio::test]
async fn a_permissive_namespace_policy_and_a_disabled_port_undermine_mesh_wide_strict() {
    let outcome = run("mtls.strict-mode", "istio-undermined.yaml").await;
    assert_eq!(outcome.status, Status::Fail);
    let evidence = outcome.evidence.clone().unwrap();
    assert!(
        evidence.contains("Deployment/shop/web on every port is PERMISSIVE, set by shop/default"),
        "{evidence}"
    );
    assert!(
        evidence.contains(
            "Deployment/shop/api on port 8080 is DISABLE, set by shop/api-metrics (portLevelMtls 8080)"
        ),
        "{evidence}"
    );
    assert_eq!(outcome.locations.len(), 2);
}

#[tokio::test]
async fn a_workload_opting_out_of_sidecar_injection_is_caught() {
    let outcome = run("mtls.workloads-meshed", "istio-undermined.yaml").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome
            .message
            .contains("Deployment/shop/api: opts out with sidecar.istio.io/inject: \"false\""),
        "{}",
        outcome.message
    );
    assert!(!outcome.message.contains("Deployment/shop/web"));
}

#[tokio::test]
async fn linkerd_with_an_all_authenticated_namespace_passes() {
    let strict = run("mtls.strict-mode", "linkerd-authenticated.yaml").await;
    assert_eq!(strict.status, Status::Pass, "{strict:?}");
    assert!(strict.message.contains(
        "namespace annotation config.linkerd.io/default-inbound-policy: all-authenticated"
    ));
    let meshed = run("mtls.workloads-meshed", "linkerd-authenticated.yaml").await;
    assert_eq!(meshed.status, Status::Pass, "{meshed:?}");
    assert!(meshed.message.contains("(Linkerd)"));
}

#[tokio::test]
async fn linkerd_with_a_server_and_a_mesh_tls_authorization_policy_passes() {
    let strict = run("mtls.strict-mode", "linkerd-server-policy.yaml").await;
    assert_eq!(strict.status, Status::Pass, "{strict:?}");
    assert!(
        strict
            .message
            .contains("Server shop/api-http admits only MeshTLSAuthentication identities")
    );
}

#[tokio::test]
async fn linkerd_with_the_default_inbound_policy_accepts_plaintext_and_fails() {
    let outcome = run("mtls.strict-mode", "linkerd-unauthenticated.yaml").await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        outcome.message.contains(
            "Deployment/shop/web is meshed by Linkerd but accepts unauthenticated clients"
        ),
        "{}",
        outcome.message
    );
    // Meshed it is, though.
    let meshed = run("mtls.workloads-meshed", "linkerd-unauthenticated.yaml").await;
    assert_eq!(meshed.status, Status::Pass);
}

#[tokio::test]
async fn without_any_mesh_strict_mode_and_meshing_fail() {
    let strict = run("mtls.strict-mode", "no-mesh.yaml").await;
    assert_eq!(strict.status, Status::Fail);
    assert!(
        strict.message.starts_with("no mesh found"),
        "{}",
        strict.message
    );
    let meshed = run("mtls.workloads-meshed", "no-mesh.yaml").await;
    assert_eq!(meshed.status, Status::Fail);
    assert!(
        meshed
            .message
            .contains("2 of 2 workloads in namespace shop are not meshed"),
        "{}",
        meshed.message
    );
}

#[tokio::test]
async fn the_plaintext_probe_reports_not_run_on_files() {
    let outcome = run("mtls.plaintext-refused", "istio-strict.yaml").await;
    assert_eq!(outcome.status, Status::Skip);
    assert!(
        outcome
            .message
            .starts_with("not run: needs a full cluster with a mesh")
    );
}
