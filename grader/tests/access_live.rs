//! Secure access checks against a real kube-apiserver (v1.20.2): the unauthenticated probe, access
//! reviews for RBAC, and API server flags read live from a kube-apiserver mirror pod.
//!
//! The RBAC tests change cluster-wide objects, so they take a lock and clean up after themselves.

#![allow(clippy::unwrap_used)]

#[path = "access_live/control_plane.rs"]
mod control_plane;

use control_plane::{ControlPlane, create, delete};
use hardlab_grader::context::Params;
use hardlab_grader::target::local::LocalNode;
use hardlab_grader::{Context, Outcome, Status, catalog};
use tokio::sync::Mutex;

static CLUSTER_WIDE: Mutex<()> = Mutex::const_new(());

async fn context(plane: &ControlPlane, params: Params) -> Context {
    Context::live(Some(plane.client().await))
        .with_endpoint(control_plane::endpoint(plane).await)
        .with_params(params)
}

async fn run(id: &str, ctx: &Context) -> Outcome {
    let check = catalog::find(id).unwrap_or_else(|| panic!("{id} is in the catalog"));
    (check.run)(ctx).await.expect("the check runs")
}

fn evidence(outcome: &Outcome) -> &str {
    outcome.evidence.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn with_anonymous_auth_on_an_unauthenticated_get_api_gets_403_and_the_check_fails() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let outcome = run(
        "access.anonymous-auth-disabled",
        &context(plane, Params::default()).await,
    )
    .await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    assert!(
        evidence(&outcome).contains("/api got 403, not 401"),
        "{}",
        evidence(&outcome)
    );
    assert!(evidence(&outcome).contains("flags: not read"));
}

#[tokio::test]
async fn with_anonymous_auth_false_an_unauthenticated_get_api_gets_401_and_the_check_passes() {
    if !control_plane::available() {
        return;
    }
    let plane = control_plane::start_with(&["--anonymous-auth=false"]).await;
    // With node access the flags come from the manifest the API server runs with.
    let node = LocalNode::new(plane.kubernetes_dir());
    let ctx = context(&plane, Params::default())
        .await
        .with_node(std::sync::Arc::new(node));
    let outcome = run("access.anonymous-auth-disabled", &ctx).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert!(
        outcome.message.contains("got 401 Unauthorized"),
        "{}",
        outcome.message
    );
    assert!(
        outcome
            .message
            .contains("kube-apiserver.yaml: --anonymous-auth=false"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn rbac_authorization_is_confirmed_by_an_access_review_when_no_flags_are_readable() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let outcome = run(
        "access.authorization-rbac",
        &context(plane, Params::default()).await,
    )
    .await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert!(
        outcome
            .message
            .contains("a user without bindings is denied")
    );
}

const MIRROR_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver-control-plane
  namespace: kube-system
  labels: {component: kube-apiserver, tier: control-plane}
spec:
  containers:
    - name: kube-apiserver
      image: k8s.gcr.io/kube-apiserver:v1.20.2
      command:
        - kube-apiserver
        - --authorization-mode=AlwaysAllow
        - --insecure-port=0
"#;

#[tokio::test]
async fn flags_are_read_live_from_the_api_servers_mirror_pod() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let client = plane.client().await;
    let without = run(
        "access.insecure-port-disabled",
        &context(plane, Params::default()).await,
    )
    .await;
    assert_eq!(without.status, Status::Skip, "{without:?}");
    assert!(
        without.message.contains("v1.20 (GET /version)"),
        "{}",
        without.message
    );

    let created = create(&client, MIRROR_POD).await;
    let ctx = context(plane, Params::default()).await;
    let authorization = run("access.authorization-rbac", &ctx).await;
    let insecure_port = run("access.insecure-port-disabled", &ctx).await;
    let oidc = run("access.oidc-configured", &ctx).await;
    delete(&client, &created).await;

    // The flags say AlwaysAllow even though the live review is denied: the flags decide.
    assert_eq!(authorization.status, Status::Fail, "{authorization:?}");
    assert!(
        authorization
            .message
            .contains("Pod/kube-system/kube-apiserver-control-plane")
    );
    assert!(
        authorization
            .message
            .contains("AlwaysAllow authorizes every request")
    );
    assert_eq!(insecure_port.status, Status::Pass, "{insecure_port:?}");
    assert!(insecure_port.message.contains("v1.20"));
    assert_eq!(oidc.status, Status::Warn);
}

#[tokio::test]
async fn a_cluster_role_binding_that_lets_a_person_read_secrets_is_found_by_access_review() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let client = plane.client().await;
    let before = run(
        "access.secrets-readers",
        &context(plane, Params::default()).await,
    )
    .await;
    assert_eq!(before.status, Status::Pass, "{before:?}");

    let created = create(
        &client,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hardlab-test-secret-reader}
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hardlab-test-eve-reads-secrets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hardlab-test-secret-reader}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: eve}
"#,
    )
    .await;
    let after = run(
        "access.secrets-readers",
        &context(plane, Params::default()).await,
    )
    .await;
    delete(&client, &created).await;
    assert_eq!(after.status, Status::Fail, "{after:?}");
    assert!(
        evidence(&after).contains("User eve can get, list secrets in every namespace via ClusterRoleBinding/hardlab-test-eve-reads-secrets"),
        "{}",
        evidence(&after)
    );
}

#[tokio::test]
async fn a_grant_to_system_unauthenticated_is_confirmed_by_an_anonymous_access_review() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let client = plane.client().await;
    let before = run(
        "access.no-anonymous-grants",
        &context(plane, Params::default()).await,
    )
    .await;
    assert_eq!(before.status, Status::Pass, "{before:?}");
    assert!(
        before
            .message
            .contains("access reviews as system:anonymous were denied")
    );

    let created = create(
        &client,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hardlab-test-pod-lister}
rules:
  - {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hardlab-test-status-page}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hardlab-test-pod-lister}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:unauthenticated"}
"#,
    )
    .await;
    let after = run(
        "access.no-anonymous-grants",
        &context(plane, Params::default()).await,
    )
    .await;
    delete(&client, &created).await;
    assert_eq!(after.status, Status::Fail, "{after:?}");
    let evidence = evidence(&after);
    assert!(evidence.contains(
        "ClusterRoleBinding/hardlab-test-status-page binds Group system:unauthenticated"
    ));
    assert!(
        evidence
            .contains("the API server allows an anonymous request to list pods in all namespaces")
    );
}

#[tokio::test]
async fn a_service_account_bound_to_cluster_admin_and_a_wildcard_role_fail() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let client = plane.client().await;
    for id in ["access.cluster-admin-bindings", "access.no-wildcard-roles"] {
        let before = run(id, &context(plane, Params::default()).await).await;
        assert_eq!(before.status, Status::Pass, "{id}: {before:?}");
    }
    let created = create(
        &client,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hardlab-test-ci-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: ServiceAccount, name: deployer, namespace: ci}
"#,
    )
    .await;
    let ctx = context(plane, Params::default()).await;
    let admin = run("access.cluster-admin-bindings", &ctx).await;
    let wildcard = run("access.no-wildcard-roles", &ctx).await;
    delete(&client, &created).await;
    assert_eq!(admin.status, Status::Fail, "{admin:?}");
    assert!(evidence(&admin).contains(
        "ClusterRoleBinding/hardlab-test-ci-admin binds ServiceAccount ci/deployer to ClusterRole cluster-admin"
    ));
    assert_eq!(wildcard.status, Status::Fail, "{wildcard:?}");
    assert!(
        evidence(&wildcard).contains("ClusterRole cluster-admin has the rule apiGroups [\"*\"]")
    );
}

#[tokio::test]
async fn the_developer_group_reads_pods_and_logs_and_nothing_more_by_impersonated_review() {
    if !control_plane::available() {
        return;
    }
    let _lock = CLUSTER_WIDE.lock().await;
    let plane = control_plane::shared().await;
    let client = plane.client().await;
    let params = Params {
        namespace: Some("dev-live".into()),
        ..Params::default()
    };
    let namespace = create(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev-live}\n",
    )
    .await;
    let missing = run(
        "access.developer-read-grant",
        &context(plane, params.clone()).await,
    )
    .await;
    assert_eq!(missing.status, Status::Fail, "{missing:?}");
    assert!(evidence(&missing).contains("group developer-read cannot get pods in dev-live"));

    let exact = create(
        &client,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev-read, namespace: dev-live}
rules:
  - {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-read, namespace: dev-live}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-read}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: developer-read}
"#,
    )
    .await;
    let granted = run(
        "access.developer-read-grant",
        &context(plane, params.clone()).await,
    )
    .await;
    assert_eq!(granted.status, Status::Pass, "{granted:?}");

    let too_much = create(
        &client,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev-view, namespace: dev-live}
rules:
  - {apiGroups: [""], resources: [pods, services, endpoints], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-view, namespace: dev-live}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: developer-read}
"#,
    )
    .await;
    let over = run("access.developer-read-grant", &context(plane, params).await).await;
    delete(&client, &too_much).await;
    delete(&client, &exact).await;
    delete(&client, &namespace).await;
    assert_eq!(over.status, Status::Fail, "{over:?}");
    assert!(
        evidence(&over).contains("group developer-read can list services in dev-live but must not"),
        "{}",
        evidence(&over)
    );
}
