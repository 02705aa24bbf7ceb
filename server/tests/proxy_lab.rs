//! Lab 6 step by step against a real kube-apiserver through the proxy, graded by the real grader
//! with the state the web app passes (`ProxyWeb::add_lab_state`): each `proxy.*` check fails
//! before its step and passes after.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::sync::Arc;

use hardlab_grader::context::Params;
use hardlab_grader::{Context, Status};
use hardlab_server::proxy::store;
use hardlab_server::proxy::tenant::Tenant;
use hardlab_server::proxy::web::{AppAccounts, ProxyWeb, lab_cluster_name};
use hardlab_server::web::accounts;
use proxy_common::{role, shared, stderr};

const HOUR: time::Duration = time::Duration::hours(1);

#[test]
fn every_lab_6_check_fails_before_its_step_and_passes_after() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let pool = h.pool.clone();
    let learner = shared
        .block_on(accounts::create_user(
            &pool,
            "learner",
            "a long enough passphrase 42",
            accounts::Role::Admin,
        ))
        .unwrap();
    let web = ProxyWeb {
        service: Arc::clone(&h.service),
        accounts: Arc::new(AppAccounts { db: pool.clone() }),
    };
    let admin_kubeconfig = std::fs::read_to_string(&h.plane.admin_kubeconfig).unwrap();
    let cluster = lab_cluster_name("learner");
    let client = shared.block_on(h.admin_client());
    let grade = |check: &str| {
        shared.block_on(async {
            let mut params = Params {
                namespace: Some("default".into()),
                ..Params::default()
            };
            params.extra.insert("group".into(), "developer-read".into());
            web.add_lab_state(&learner.id, &admin_kubeconfig, &mut params)
                .await
                .unwrap();
            let ctx = Context::live(Some(client.clone())).with_params(params);
            let def = hardlab_grader::catalog::find(check).unwrap();
            (def.run)(&ctx).await.unwrap()
        })
    };
    // The learner's lab tenant: their roles and users, nobody else's.
    let tenant = Tenant::for_learner("learner");
    let kubectl_as = |user: &str, roles: &[&str], args: &[&str]| {
        let kubeconfig = h.user_kubeconfig_in(&tenant, &h.service.ca, user, roles, HOUR, &cluster);
        h.kubectl(&kubeconfig, args)
    };
    // Registers the cluster as lab-learner before anyone uses it.
    assert_eq!(grade("proxy.no-role-refused").status, Status::Fail);

    // Step no-role: a user without a role is refused by the proxy.
    let refused = kubectl_as("newcomer", &[], &["get", "pods"]);
    assert!(!refused.status.success());
    let outcome = grade("proxy.no-role-refused");
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");

    // Step admin-role: kubernetes-admins (system:masters) exists in the tenant; nobody used it
    // here yet.
    for spec in [
        "{name: kubernetes-admins, kubernetes_labels: {'*': '*'}, kubernetes_groups: ['system:masters']}",
        "{name: developer-read, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}",
    ] {
        shared
            .block_on(store::put_role(&pool, &tenant, &role(spec)))
            .unwrap();
    }
    shared.block_on(h.service.reload());
    assert_eq!(grade("proxy.admin-reaches-cluster").status, Status::Fail);
    let admin = kubectl_as("alice", &["kubernetes-admins"], &["get", "pods"]);
    assert!(admin.status.success(), "{}", stderr(&admin));
    assert_eq!(grade("proxy.admin-reaches-cluster").status, Status::Pass);

    // Step developer-rbac: without the RoleBinding the group reads nothing.
    h.plane
        .kubectl_admin(&["delete", "rolebinding", "dev-read-binding", "-n", "default"]);
    assert_eq!(grade("proxy.developer-read-rbac").status, Status::Fail);
    h.plane.apply(proxy_common::DEV_READ_RBAC);
    let outcome = grade("proxy.developer-read-rbac");
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");

    // Step developer-role: bob must hold developer-read and nothing mapping to system:masters.
    shared
        .block_on(store::set_user_roles(
            &pool,
            &tenant,
            "bob",
            &["developer-read".into(), "kubernetes-admins".into()],
        ))
        .unwrap();
    assert_eq!(grade("proxy.developer-role-mapped").status, Status::Fail);
    shared
        .block_on(store::set_user_roles(
            &pool,
            &tenant,
            "bob",
            &["developer-read".into()],
        ))
        .unwrap();
    assert_eq!(grade("proxy.developer-role-mapped").status, Status::Pass);

    // Step bob-reads: pods yes, services refused by RBAC.
    assert_eq!(
        grade("proxy.developer-reads-pods-only").status,
        Status::Fail
    );
    let pods = kubectl_as("bob", &["developer-read"], &["get", "pods"]);
    assert!(pods.status.success(), "{}", stderr(&pods));
    let services = kubectl_as("bob", &["developer-read"], &["get", "services"]);
    assert!(!services.status.success());
    let outcome = grade("proxy.developer-reads-pods-only");
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert_eq!(grade("proxy.audit-chain-intact").status, Status::Pass);

    // Step labels: bob's role moves to env: prod; this env: dev cluster refuses him.
    assert_eq!(
        grade("proxy.developer-restricted-to-prod").status,
        Status::Fail
    );
    shared
        .block_on(store::put_role(
            &pool,
            &tenant,
            &role("{name: developer-read, kubernetes_labels: {env: prod}, kubernetes_groups: [developer-read]}"),
        ))
        .unwrap();
    shared.block_on(h.service.reload());
    assert_eq!(
        grade("proxy.developer-restricted-to-prod").status,
        Status::Fail,
        "restricted, but not yet refused here"
    );
    let refused = kubectl_as("bob", &["developer-read"], &["get", "pods"]);
    assert!(
        !refused.status.success(),
        "the proxy refuses bob on env=dev"
    );
    let outcome = grade("proxy.developer-restricted-to-prod");
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");

    // A tampered audit row turns the chain check red.
    shared
        .block_on(
            sqlx::query("UPDATE proxy_audit SET response_code = 200 WHERE response_code = 403")
                .execute(&pool),
        )
        .unwrap();
    assert_eq!(grade("proxy.audit-chain-intact").status, Status::Fail);
}
