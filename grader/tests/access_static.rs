//! Secure access checks on RBAC manifests, as `hardlab-grade static` reads them: the RBAC
//! objects are evaluated as the authorizer would (bindings, role references, aggregation).

use std::path::PathBuf;

use hardlab_grader::context::Params;
use hardlab_grader::inputs::documents::read_paths;
use hardlab_grader::{Context, Outcome, Status, catalog};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/access")
        .join(name)
}

async fn run_with(id: &str, files: &[&str], params: Params) -> Outcome {
    let paths: Vec<PathBuf> = files.iter().map(|name| fixture(name)).collect();
    let read = read_paths(&paths).expect("fixtures parse");
    let ctx = Context::from_documents(read.documents).with_params(params);
    let check = catalog::find(id).unwrap_or_else(|| panic!("{id} is in the catalog"));
    (check.run)(&ctx).await.expect("the check runs")
}

async fn run(id: &str, files: &[&str]) -> Outcome {
    run_with(id, files, Params::default()).await
}

fn shop() -> Params {
    Params {
        namespace: Some("shop".into()),
        ..Params::default()
    }
}

fn evidence(outcome: &Outcome) -> &str {
    outcome.evidence.as_deref().unwrap_or_default()
}

fn flagged(outcome: &Outcome) -> Vec<String> {
    outcome
        .locations
        .iter()
        .filter_map(|location| location.object.clone())
        .collect()
}

const HARDENED: &[&str] = &["rbac-defaults.yaml", "rbac-least-privilege.yaml"];
const OVERGRANTED: &[&str] = &["rbac-defaults.yaml", "rbac-overgranted.yaml"];

#[tokio::test]
async fn a_cluster_with_only_the_default_bindings_and_the_lab_roles_passes_every_rbac_check() {
    for id in [
        "access.no-anonymous-grants",
        "access.secrets-readers",
        "access.cluster-admin-bindings",
        "access.no-wildcard-roles",
        "access.developer-read-grant",
    ] {
        let outcome = run_with(id, HARDENED, shop()).await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
    }
}

#[tokio::test]
async fn a_binding_of_system_unauthenticated_beyond_the_defaults_fails() {
    let outcome = run("access.no-anonymous-grants", OVERGRANTED).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(flagged(&outcome), ["ClusterRoleBinding/public-pods"]);
    assert!(
        evidence(&outcome).contains("binds Group system:unauthenticated to ClusterRole pod-lister"),
        "{}",
        evidence(&outcome)
    );
    let location = &outcome.locations[0];
    assert!(location.file.ends_with("rbac-overgranted.yaml") && location.line > 1);
}

#[tokio::test]
async fn secrets_readable_through_an_aggregated_cluster_role_are_found() {
    let outcome = run("access.secrets-readers", OVERGRANTED).await;
    assert_eq!(outcome.status, Status::Fail);
    let evidence = evidence(&outcome);
    assert!(
        evidence.contains("Group auditors can list, watch secrets in every namespace via ClusterRoleBinding/auditors"),
        "{evidence}"
    );
    // cluster-admin reads everything, Secrets included.
    assert!(evidence.contains("User alice@example.com can get, list, watch secrets"));
    // The namespace controller reads Secrets too, but it is the cluster's own.
    assert!(!evidence.contains("namespace-controller"));
}

#[tokio::test]
async fn a_person_bound_to_cluster_admin_fails_while_system_masters_does_not() {
    let outcome = run("access.cluster-admin-bindings", OVERGRANTED).await;
    assert_eq!(outcome.status, Status::Fail);
    assert_eq!(flagged(&outcome), ["ClusterRoleBinding/alice-admin"]);
    assert!(!evidence(&outcome).contains("system:masters"));
}

#[tokio::test]
async fn wildcard_roles_bound_to_applications_fail() {
    let outcome = run("access.no-wildcard-roles", OVERGRANTED).await;
    assert_eq!(outcome.status, Status::Fail);
    let evidence = evidence(&outcome);
    assert!(
        evidence.contains(
            "Role shop-operator has the rule apiGroups [\"apps\"] resources [\"*\"] verbs [\"*\"]"
        ),
        "{evidence}"
    );
    assert!(evidence.contains("ServiceAccount shop/operator"));
    assert!(flagged(&outcome).contains(&"Role/shop/shop-operator".to_owned()));
}

#[tokio::test]
async fn a_developer_grant_that_also_shows_services_fails() {
    let outcome = run_with("access.developer-read-grant", OVERGRANTED, shop()).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(
        evidence(&outcome).contains("group developer-read can list services in shop but must not"),
        "{}",
        evidence(&outcome)
    );
    assert_eq!(flagged(&outcome), ["RoleBinding/shop/developer-read"]);
}

#[tokio::test]
async fn a_developer_grant_for_another_group_is_not_the_one_the_lab_asks_for() {
    let mut params = shop();
    params.extra.insert("group".into(), "qa-read".into());
    let outcome = run_with("access.developer-read-grant", HARDENED, params).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(evidence(&outcome).contains("group qa-read cannot get pods in shop"));
    assert!(evidence(&outcome).contains("nor ClusterRoleBinding names Group qa-read"));
}

#[tokio::test]
async fn the_developer_grant_skips_without_a_lab_namespace() {
    let outcome = run("access.developer-read-grant", HARDENED).await;
    assert_eq!(outcome.status, Status::Skip);
}

const HARDENED_APISERVER: &[&str] = &["kube-apiserver-hardened.yaml"];
const INSECURE_APISERVER: &[&str] = &["kube-apiserver-insecure.yaml"];
const CURRENT_APISERVER: &[&str] = &["kube-apiserver-v1.31.yaml"];

#[tokio::test]
async fn the_hardened_api_server_manifest_passes_every_flag_check() {
    for id in [
        "access.anonymous-auth-disabled",
        "access.insecure-port-disabled",
        "access.authorization-rbac",
        "access.oidc-configured",
    ] {
        let outcome = run(id, HARDENED_APISERVER).await;
        assert_eq!(outcome.status, Status::Pass, "{id}: {outcome:?}");
    }
}

#[tokio::test]
async fn anonymous_auth_left_at_its_default_fails_with_the_manifest_location() {
    for files in [INSECURE_APISERVER, CURRENT_APISERVER] {
        let outcome = run("access.anonymous-auth-disabled", files).await;
        assert_eq!(outcome.status, Status::Fail, "{files:?}");
        assert!(
            outcome.message.contains("--anonymous-auth (not set)"),
            "{}",
            outcome.message
        );
        assert!(outcome.locations[0].file.ends_with(files[0]));
    }
}

#[tokio::test]
async fn an_open_insecure_port_fails_below_1_24() {
    let outcome = run("access.insecure-port-disabled", INSECURE_APISERVER).await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(outcome.message.contains("v1.20"), "{}", outcome.message);
    assert!(evidence(&outcome).contains("--insecure-port=8080"));
    assert!(evidence(&outcome).contains("--insecure-bind-address=0.0.0.0"));
}

#[tokio::test]
async fn from_1_24_there_is_no_insecure_port_and_the_check_says_it_does_not_apply() {
    let outcome = run("access.insecure-port-disabled", CURRENT_APISERVER).await;
    // Nothing was judged, so not a pass.
    assert_eq!(outcome.status, Status::NotApplicable);
    assert!(outcome.message.contains("v1.31"), "{}", outcome.message);
    assert!(outcome.message.contains("removed the insecure port"));
}

#[tokio::test]
async fn always_allow_or_a_mode_list_without_rbac_fails() {
    let always = run("access.authorization-rbac", INSECURE_APISERVER).await;
    assert_eq!(always.status, Status::Fail);
    assert!(
        always
            .message
            .contains("AlwaysAllow authorizes every request")
    );
    let node_only = run("access.authorization-rbac", CURRENT_APISERVER).await;
    assert_eq!(node_only.status, Status::Fail);
    assert!(
        node_only
            .message
            .contains("--authorization-mode=Node does not include RBAC")
    );
}

#[tokio::test]
async fn missing_oidc_is_a_warning_never_a_failure() {
    let outcome = run("access.oidc-configured", INSECURE_APISERVER).await;
    assert_eq!(outcome.status, Status::Warn);
    assert!(evidence(&outcome).contains("--oidc-issuer-url (not set)"));
}

#[tokio::test]
async fn flag_checks_skip_with_the_reason_when_no_api_server_manifest_is_given() {
    for id in [
        "access.anonymous-auth-disabled",
        "access.insecure-port-disabled",
        "access.authorization-rbac",
        "access.oidc-configured",
    ] {
        let outcome = run(id, HARDENED).await;
        assert_eq!(outcome.status, Status::Skip, "{id}: {outcome:?}");
        assert!(
            outcome.message.contains("kube-apiserver"),
            "{id}: {}",
            outcome.message
        );
    }
}
