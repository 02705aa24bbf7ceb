//! Lab 6: the identity-aware access proxy. The cluster side (the developer-read grant) is asked of
//! the API server with `SubjectAccessReview`; hardlab's own side (roles, who holds them, the
//! proxy's audit log) comes from the server, which passes it as `Params.extra["proxy_state"]`
//! (JSON, built by `hardlab_server::proxy::service::grading_state`). Without it those checks skip.

use std::collections::BTreeMap;

use futures::FutureExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::Deserialize;

use crate::catalog::{CheckDef, Lab};
use crate::context::Mode;
use crate::model::{Outcome, Severity};
use crate::{Context, Result};

/// The `Params.extra` key holding the proxy's state for the learner's cluster.
pub const STATE_PARAM: &str = "proxy_state";
const MASTERS: &str = "system:masters";
const DEFAULT_USER: &str = "bob";
const DEFAULT_GROUP: &str = "developer-read";

const TELEPORT_KUBE_ACCESS: &str =
    "https://goteleport.com/docs/enroll-resources/kubernetes-access/controls/";
const IMPERSONATION: &str =
    "https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation";
const NSA_AUTH: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: Authentication and authorization";

pub fn checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.no-role-refused",
                "A user without a role for the cluster is refused by the proxy",
                "no-role",
                Severity::High,
                "Log in as a user with no hardlab role (`hardlab login`, `hardlab kube login --cluster NAME`) and run \
                 `kubectl get pods`: the proxy must answer 403 itself, before the API server sees the request.",
                &[TELEPORT_KUBE_ACCESS, NSA_AUTH],
            )
            .exercise(),
            run: |ctx| no_role_refused(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.admin-reaches-cluster",
                "The admin reaches the cluster through the proxy with a role mapping to system:masters",
                "admin-role",
                Severity::Medium,
                "Create a role (e.g. `kubernetes-admins`) with `kubernetes_groups: [system:masters]` and \
                 `kubernetes_labels: {'*': '*'}`, give it to the admin, log in again (the roles are in the \
                 certificate) and run `kubectl get pods` through the proxy. Outside a lab, map admins to a bound \
                 ClusterRole instead: system:masters skips RBAC entirely and cannot be revoked by any binding.",
                &[TELEPORT_KUBE_ACCESS, IMPERSONATION],
            )
            .exercise(),
            run: |ctx| admin_reaches_cluster(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.developer-read-rbac",
                "Group developer-read can read pods and their logs, and cannot list services",
                "developer-rbac",
                Severity::High,
                "Create a Role `dev-read` in the namespace with `get`, `list`, `watch` on `pods` and `pods/log`, and a \
                 RoleBinding `dev-read-binding` of it to Group `developer-read`.",
                &[
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/rbac/",
                ],
            )
            .exercise(),
            run: |ctx| developer_read_rbac(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.developer-role-mapped",
                "A hardlab role maps the developer to group developer-read, and to nothing stronger",
                "developer-role",
                Severity::High,
                "Create a hardlab role `developer-read` with `kubernetes_groups: [developer-read]` and labels that \
                 reach the cluster, and give it to bob (web UI Access page, or the proxy config file).",
                &[TELEPORT_KUBE_ACCESS],
            )
            .exercise(),
            run: |ctx| developer_role_mapped(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.developer-reads-pods-only",
                "Bob listed pods (200) and was forbidden services (403) by the cluster's RBAC",
                "bob-reads",
                Severity::Medium,
                "Log in as bob, `hardlab kube login --cluster NAME`, then `kubectl get pods` and `kubectl get services`.",
                &[TELEPORT_KUBE_ACCESS, IMPERSONATION],
            )
            .exercise(),
            run: |ctx| developer_reads_pods_only(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.audit-chain-intact",
                "The proxy's audit log is intact: every event's hash chains to the one before",
                "bob-reads",
                Severity::High,
                "Run `hardlab audit verify`; a broken chain means a row was changed or deleted in the database. \
                 Restore the audit table from a backup and find out who had write access to it.",
                &[
                    "NSA/CISA Kubernetes Hardening Guide v1.2: Audit logging and threat detection",
                    "https://goteleport.com/docs/reference/audit-events/",
                ],
            )
            .exercise(),
            run: |ctx| audit_chain_intact(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::AccessProxy.meta(
                "proxy.developer-restricted-to-prod",
                "Bob's roles reach only env: prod clusters, and the dev cluster refuses him",
                "labels",
                Severity::Medium,
                "Set the developer role's `kubernetes_labels` to `{env: prod}`, then as bob run `kubectl get pods` \
                 against this (env: dev) cluster: the proxy answers 403 and the audit log says proxy_deny.",
                &[TELEPORT_KUBE_ACCESS],
            )
            .exercise(),
            run: |ctx| developer_restricted_to_prod(ctx).boxed(),
        },
    ]
}

/// What the server passes: the roles, who holds them, the cluster's labels and its audit events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProxyState {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub users: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
    #[serde(default)]
    pub audit_chain_intact: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub kubernetes_labels: BTreeMap<String, LabelValues>,
    #[serde(default)]
    pub kubernetes_groups: Vec<String>,
}

pub use crate::labels::LabelValues;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditEvent {
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub kubernetes_groups: Vec<String>,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub resource_kind: String,
    #[serde(default)]
    pub response_code: u16,
    #[serde(default)]
    pub decision: String,
    #[serde(default)]
    pub reason: String,
}

impl AuditEvent {
    fn line(&self) -> String {
        let what = if self.resource_kind.is_empty() {
            "a non-resource path"
        } else {
            &self.resource_kind
        };
        format!(
            "#{} {} got {} on {} {what} ({})",
            self.seq, self.user, self.response_code, self.verb, self.decision
        )
    }
}

impl Role {
    /// The proxy's own rule (`crate::labels`).
    fn reaches(&self, labels: &BTreeMap<String, String>) -> bool {
        crate::labels::reaches(&self.kubernetes_labels, labels)
    }
}

enum StateOrSkip {
    State(Box<ProxyState>),
    Outcome(Outcome),
}

fn state(ctx: &Context) -> StateOrSkip {
    let Some(text) = ctx.params.extra.get(STATE_PARAM) else {
        return StateOrSkip::Outcome(Outcome::skip(
            "hardlab's proxy state was not given: run this check from the hardlab server (Check on lab 6), \
             which passes the roles and the audit log of your cluster",
        ));
    };
    match serde_json::from_str::<ProxyState>(text) {
        Ok(state) => StateOrSkip::State(Box::new(state)),
        Err(error) => StateOrSkip::Outcome(Outcome::error(format!(
            "the proxy state passed in {STATE_PARAM} is not valid: {error}"
        ))),
    }
}

macro_rules! state_or_return {
    ($ctx:expr) => {
        match state($ctx) {
            StateOrSkip::State(state) => state,
            StateOrSkip::Outcome(outcome) => return Ok(outcome),
        }
    };
}

fn param<'a>(ctx: &'a Context, key: &str, default: &'a str) -> &'a str {
    ctx.params.extra.get(key).map_or(default, String::as_str)
}

async fn no_role_refused(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    let refused = state
        .audit
        .iter()
        .rev()
        .find(|e| e.decision == "proxy_deny" && e.kubernetes_groups.is_empty());
    Ok(match refused {
        Some(event) => Outcome::pass(format!(
            "the proxy refused {} itself: {}",
            event.user, event.reason
        ))
        .with_evidence(event.line()),
        None => Outcome::fail(format!(
            "no request on cluster {} was refused for lack of a role yet",
            state.cluster
        ))
        .with_evidence(recent(&state.audit)),
    })
}

async fn admin_reaches_cluster(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    let masters_roles: Vec<&str> = state
        .roles
        .iter()
        .filter(|r| r.kubernetes_groups.iter().any(|g| g == MASTERS) && r.reaches(&state.labels))
        .map(|r| r.name.as_str())
        .collect();
    if masters_roles.is_empty() {
        return Ok(Outcome::fail(format!(
            "no hardlab role maps to {MASTERS} on cluster {}",
            state.cluster
        )));
    }
    let reached = state.audit.iter().rev().find(|e| {
        e.decision == "upstream"
            && (200..300).contains(&e.response_code)
            && e.kubernetes_groups.iter().any(|g| g == MASTERS)
    });
    Ok(match reached {
        Some(event) => Outcome::pass(format!(
            "{} reached the cluster as {MASTERS} through role {}",
            event.user,
            masters_roles.join(", ")
        ))
        .with_evidence(event.line()),
        None => Outcome::fail(format!(
            "role {} maps to {MASTERS}, but nobody has used it through the proxy yet (log in again: roles are in the certificate)",
            masters_roles.join(", ")
        ))
        .with_evidence(recent(&state.audit)),
    })
}

/// (verb, resource, expected) for the developer group, as in the talk's dev-read Role.
const DEVELOPER_EXPECTATIONS: &[(&str, &str, bool)] = &[
    ("get", "pods", true),
    ("list", "pods", true),
    ("watch", "pods", true),
    ("get", "pods/log", true),
    ("list", "services", false),
];

async fn developer_read_rbac(ctx: &Context) -> Result<Outcome> {
    let (Mode::Live, Some(client)) = (ctx.mode, ctx.kube.as_ref()) else {
        return Ok(Outcome::skip("needs a live cluster (SubjectAccessReview)"));
    };
    let group = param(ctx, "group", DEFAULT_GROUP);
    let namespace = ctx.params.namespace.as_deref().unwrap_or("default");
    let mut wrong = Vec::new();
    let mut right = Vec::new();
    for (verb, resource, expected) in DEVELOPER_EXPECTATIONS {
        let allowed = group_allowed(client, group, verb, resource, namespace).await?;
        let line = format!(
            "{} {verb} {resource} in {namespace}",
            if allowed { "can" } else { "cannot" }
        );
        if allowed == *expected {
            right.push(line);
        } else {
            wrong.push(line);
        }
    }
    if wrong.is_empty() {
        return Ok(Outcome::pass(format!(
            "group {group}: {}",
            right.join("; ")
        )));
    }
    Ok(
        Outcome::fail(format!("group {group}: {}", wrong.join("; ")))
            .with_evidence(format!("as expected: {}", right.join("; "))),
    )
}

async fn group_allowed(
    client: &kube::Client,
    group: &str,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            // A made-up user: only the group's grants count.
            user: Some("hardlab-grader:developer-probe".to_owned()),
            groups: Some(vec![group.to_owned(), "system:authenticated".to_owned()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: Some(namespace.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

async fn developer_role_mapped(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    let user = param(ctx, "user", DEFAULT_USER);
    let group = param(ctx, "group", DEFAULT_GROUP);
    let held: Vec<&Role> = held_roles(&state, user);
    let mapping: Vec<&&Role> = held
        .iter()
        .filter(|r| r.kubernetes_groups.iter().any(|g| g == group))
        .collect();
    if mapping.is_empty() {
        return Ok(Outcome::fail(format!(
            "{user} holds no hardlab role mapping to group {group} (holds: {})",
            names(&held)
        )));
    }
    if let Some(strong) = held
        .iter()
        .find(|r| r.kubernetes_groups.iter().any(|g| g == MASTERS))
    {
        return Ok(Outcome::fail(format!(
            "{user} also holds role {}, which maps to {MASTERS}: the read-only role is pointless",
            strong.name
        )));
    }
    Ok(Outcome::pass(format!(
        "{user} holds {}, mapping to group {group}",
        mapping
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

async fn developer_reads_pods_only(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    let user = param(ctx, "user", DEFAULT_USER);
    let mine: Vec<&AuditEvent> = state.audit.iter().filter(|e| e.user == user).collect();
    let pods = mine.iter().rev().find(|e| {
        e.decision == "upstream"
            && e.response_code == 200
            && e.resource_kind == "pods"
            && (e.verb == "list" || e.verb == "get")
    });
    let services = mine.iter().rev().find(|e| {
        e.decision == "upstream" && e.response_code == 403 && e.resource_kind == "services"
    });
    match (pods, services) {
        (Some(pods), Some(services)) => Ok(Outcome::pass(format!(
            "{user} read pods and the cluster's RBAC forbade services"
        ))
        .with_evidence(format!("{}\n{}", pods.line(), services.line()))),
        (pods, services) => {
            let mut missing = Vec::new();
            if pods.is_none() {
                missing.push(format!("no 200 for {user} on get/list pods"));
            }
            if services.is_none() {
                missing.push(format!("no 403 from the API server for {user} on services"));
            }
            Ok(Outcome::fail(missing.join("; ")).with_evidence(recent(&state.audit)))
        }
    }
}

async fn audit_chain_intact(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    if !state.audit_chain_intact {
        return Ok(Outcome::fail(
            "the audit chain is broken: an event was changed or removed (hardlab audit verify names it)",
        ));
    }
    if state.audit.is_empty() {
        return Ok(Outcome::fail(format!(
            "the audit log holds no event for cluster {} yet",
            state.cluster
        )));
    }
    Ok(Outcome::pass(format!(
        "{} events for cluster {}, chain intact",
        state.audit.len(),
        state.cluster
    )))
}

async fn developer_restricted_to_prod(ctx: &Context) -> Result<Outcome> {
    let state = state_or_return!(ctx);
    let user = param(ctx, "user", DEFAULT_USER);
    let held = held_roles(&state, user);
    if held.is_empty() {
        return Ok(Outcome::fail(format!("{user} holds no hardlab role")));
    }
    if let Some(reaching) = held.iter().find(|r| r.reaches(&state.labels)) {
        return Ok(Outcome::fail(format!(
            "{user}'s role {} still reaches cluster {} (labels {})",
            reaching.name,
            state.cluster,
            labels_text(&state.labels)
        )));
    }
    let prod = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
    if !held.iter().any(|r| r.reaches(&prod)) {
        return Ok(Outcome::fail(format!(
            "none of {user}'s roles ({}) reaches env: prod clusters",
            names(&held)
        )));
    }
    let last = state.audit.iter().rev().find(|e| e.user == user);
    match last {
        Some(event) if event.decision == "proxy_deny" => Ok(Outcome::pass(format!(
            "{user} reaches only env: prod clusters and was refused here: {}",
            event.reason
        ))
        .with_evidence(event.line())),
        _ => Ok(Outcome::fail(format!(
            "{user}'s roles are restricted, but the proxy has not refused {user} on this cluster since \
             (run kubectl get pods as {user})"
        ))
        .with_evidence(recent(&state.audit))),
    }
}

fn held_roles<'a>(state: &'a ProxyState, user: &str) -> Vec<&'a Role> {
    let names = state.users.get(user).cloned().unwrap_or_default();
    state
        .roles
        .iter()
        .filter(|r| names.contains(&r.name))
        .collect()
}

fn names(roles: &[&Role]) -> String {
    if roles.is_empty() {
        return "none".into();
    }
    roles
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last few events, for evidence.
fn recent(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return "the audit log for this cluster is empty".into();
    }
    let start = events.len().saturating_sub(8);
    events[start..]
        .iter()
        .map(AuditEvent::line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::context::Params;
    use crate::model::Status;

    fn run(check: &str, state: &serde_json::Value) -> Outcome {
        let mut params = Params::default();
        params
            .extra
            .insert(STATE_PARAM.to_owned(), state.to_string());
        let ctx = Context::live(None).with_params(params);
        let def = checks().into_iter().find(|c| c.meta.id == check).unwrap();
        futures::executor::block_on((def.run)(&ctx)).unwrap()
    }

    fn event(
        user: &str,
        verb: &str,
        kind: &str,
        code: u16,
        decision: &str,
        groups: &[&str],
    ) -> serde_json::Value {
        serde_json::json!({"seq": 1, "user": user, "verb": verb, "resource_kind": kind,
            "response_code": code, "decision": decision, "kubernetes_groups": groups,
            "reason": if decision == "proxy_deny" { "no role" } else { "" }})
    }

    fn base(audit: &[serde_json::Value]) -> serde_json::Value {
        serde_json::json!({
            "cluster": "lab", "labels": {"env": "dev"},
            "roles": [
                {"name": "kubernetes-admins", "kubernetes_labels": {"*": "*"}, "kubernetes_groups": ["system:masters"]},
                {"name": "developer-read", "kubernetes_labels": {"env": "dev"}, "kubernetes_groups": ["developer-read"]}
            ],
            "users": {"alice": ["kubernetes-admins"], "bob": ["developer-read"]},
            "audit": audit, "audit_chain_intact": true
        })
    }

    #[test]
    fn checks_on_hardlab_state_skip_without_it() {
        let ctx = Context::live(None);
        for def in checks() {
            if def.meta.id == "proxy.developer-read-rbac" {
                continue;
            }
            let outcome = futures::executor::block_on((def.run)(&ctx)).unwrap();
            assert_eq!(outcome.status, Status::Skip, "{}", def.meta.id);
        }
    }

    #[test]
    fn a_refusal_for_lack_of_a_role_passes_and_its_absence_fails() {
        let before = base(&[event(
            "alice",
            "list",
            "pods",
            200,
            "upstream",
            &["system:masters"],
        )]);
        assert_eq!(run("proxy.no-role-refused", &before).status, Status::Fail);
        let after = base(&[event("carol", "list", "pods", 403, "proxy_deny", &[])]);
        assert_eq!(run("proxy.no-role-refused", &after).status, Status::Pass);
    }

    #[test]
    fn the_admin_check_needs_a_masters_role_and_a_successful_request_through_it() {
        let mut no_role = base(&[]);
        no_role["roles"] = serde_json::json!([]);
        assert_eq!(
            run("proxy.admin-reaches-cluster", &no_role).status,
            Status::Fail
        );
        assert_eq!(
            run("proxy.admin-reaches-cluster", &base(&[])).status,
            Status::Fail
        );
        let used = base(&[event(
            "alice",
            "list",
            "pods",
            200,
            "upstream",
            &["system:masters", "system:authenticated"],
        )]);
        assert_eq!(
            run("proxy.admin-reaches-cluster", &used).status,
            Status::Pass
        );
    }

    #[test]
    fn the_developer_role_must_map_to_the_group_and_not_to_masters() {
        assert_eq!(
            run("proxy.developer-role-mapped", &base(&[])).status,
            Status::Pass
        );
        let mut too_strong = base(&[]);
        too_strong["users"]["bob"] = serde_json::json!(["developer-read", "kubernetes-admins"]);
        assert_eq!(
            run("proxy.developer-role-mapped", &too_strong).status,
            Status::Fail
        );
        let mut none = base(&[]);
        none["users"]["bob"] = serde_json::json!([]);
        assert_eq!(
            run("proxy.developer-role-mapped", &none).status,
            Status::Fail
        );
    }

    #[test]
    fn bob_needs_a_200_on_pods_and_an_upstream_403_on_services() {
        let only_pods = base(&[event(
            "bob",
            "list",
            "pods",
            200,
            "upstream",
            &["developer-read"],
        )]);
        assert_eq!(
            run("proxy.developer-reads-pods-only", &only_pods).status,
            Status::Fail
        );
        let proxy_refused = base(&[
            event("bob", "list", "pods", 200, "upstream", &["developer-read"]),
            event("bob", "list", "services", 403, "proxy_deny", &[]),
        ]);
        assert_eq!(
            run("proxy.developer-reads-pods-only", &proxy_refused).status,
            Status::Fail
        );
        let both = base(&[
            event("bob", "list", "pods", 200, "upstream", &["developer-read"]),
            event(
                "bob",
                "list",
                "services",
                403,
                "upstream",
                &["developer-read"],
            ),
        ]);
        assert_eq!(
            run("proxy.developer-reads-pods-only", &both).status,
            Status::Pass
        );
    }

    #[test]
    fn a_broken_or_empty_audit_chain_fails() {
        let mut broken = base(&[event("bob", "list", "pods", 200, "upstream", &[])]);
        broken["audit_chain_intact"] = serde_json::json!(false);
        assert_eq!(
            run("proxy.audit-chain-intact", &broken).status,
            Status::Fail
        );
        assert_eq!(
            run("proxy.audit-chain-intact", &base(&[])).status,
            Status::Fail
        );
        let fine = base(&[event("bob", "list", "pods", 200, "upstream", &[])]);
        assert_eq!(run("proxy.audit-chain-intact", &fine).status, Status::Pass);
    }

    #[test]
    fn bob_restricted_to_prod_needs_prod_labels_and_a_refusal_here() {
        let dev_reach = base(&[]);
        assert_eq!(
            run("proxy.developer-restricted-to-prod", &dev_reach).status,
            Status::Fail
        );
        let mut prod = base(&[event(
            "bob",
            "list",
            "pods",
            200,
            "upstream",
            &["developer-read"],
        )]);
        prod["roles"][1]["kubernetes_labels"] = serde_json::json!({"env": "prod"});
        assert_eq!(
            run("proxy.developer-restricted-to-prod", &prod).status,
            Status::Fail
        );
        prod["audit"].as_array_mut().unwrap().push(event(
            "bob",
            "list",
            "pods",
            403,
            "proxy_deny",
            &[],
        ));
        assert_eq!(
            run("proxy.developer-restricted-to-prod", &prod).status,
            Status::Pass
        );
    }
}
