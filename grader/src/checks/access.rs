//! Lab 4: secure access. API server authentication and authorization flags (from its static pod
//! manifest) confirmed by live probes, and RBAC least privilege: decided by `SubjectAccessReview`
//! on a live cluster, re-derived from the RBAC objects in static mode.

mod apiserver;
mod probe;
mod rbac;
mod review;

use std::collections::BTreeMap;

use futures::FutureExt;

use crate::catalog::{CheckDef, Lab};
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::model::{Location, Outcome, Severity};
use crate::{Context, Result};

use apiserver::{ApiServerFlags, apiserver_flags};
use rbac::{Binding, Subject, SubjectKind};
use review::Access;

/// The group `access.developer-read-grant` checks unless the lab step names another.
pub const DEFAULT_DEVELOPER_GROUP: &str = "developer-read";

const NSA_AUTH: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: Authentication and authorization";
const RBAC_GOOD_PRACTICES: &str =
    "https://kubernetes.io/docs/concepts/security/rbac-good-practices/";

pub fn checks() -> Vec<CheckDef> {
    let mut checks = flag_checks();
    checks.extend(rbac_checks());
    checks
}

fn flag_checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.anonymous-auth-disabled",
                "The API server refuses unauthenticated requests",
                "anonymous-auth",
                Severity::High,
                "Add `--anonymous-auth=false` to the kube-apiserver command in /etc/kubernetes/manifests/kube-apiserver.yaml; \
                 an unauthenticated `curl -k https://SERVER/api` must then answer 401. (Health probes need \
                 `--anonymous-auth` or an authenticated probe; kubeadm's livenessProbe uses /livez, which 401s too.)",
                &[
                    "CIS Kubernetes Benchmark 1.2.1",
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/authentication/#anonymous-requests",
                ],
            ),
            run: |ctx| anonymous_auth_disabled(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.insecure-port-disabled",
                "The API server serves no unauthenticated plain-HTTP port",
                "insecure-port",
                Severity::Critical,
                "Below Kubernetes 1.24 set `--insecure-port=0` (and no `--insecure-bind-address`); from 1.24 the \
                 insecure port no longer exists.",
                &[
                    "CIS Kubernetes Benchmark 1.2.19 (v1.6)",
                    NSA_AUTH,
                    "https://kubernetes.io/docs/concepts/security/controlling-access/",
                ],
            ),
            run: |ctx| insecure_port_disabled(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.authorization-rbac",
                "The API server authorizes with RBAC, never AlwaysAllow",
                "authorization",
                Severity::Critical,
                "Set `--authorization-mode=Node,RBAC` on the kube-apiserver (without AlwaysAllow; with no flag the \
                 default is AlwaysAllow).",
                &[
                    "CIS Kubernetes Benchmark 1.2.6",
                    "CIS Kubernetes Benchmark 1.2.8",
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/authorization/",
                ],
            ),
            run: |ctx| authorization_rbac(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.oidc-configured",
                "People sign in through an OIDC identity provider",
                "oidc",
                Severity::Low,
                "Set `--oidc-issuer-url`, `--oidc-client-id` (and `--oidc-username-claim`, `--oidc-groups-claim`) on \
                 the kube-apiserver, or a structured `--authentication-config` with a JWT issuer, so that people \
                 get short-lived tokens instead of client certificates that cannot be revoked.",
                &[
                    "CIS Kubernetes Benchmark 3.1.1",
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/authentication/#openid-connect-tokens",
                ],
            ),
            run: |ctx| oidc_configured(ctx).boxed(),
        },
    ]
}

/// Why the flag-based part of a check did not run.
const NO_FLAGS: &str =
    "flags: not read (no kube-apiserver static pod manifest or mirror pod among the inputs)";

/// Collects what each source (flags, live probe) says, and decides: any "bad" fails; at least one
/// "good" with no "bad" passes; neither skips with the reasons.
#[derive(Debug, Default)]
struct Verdict {
    lines: Vec<String>,
    good: bool,
    bad: bool,
    locations: Vec<Location>,
}

impl Verdict {
    fn good(&mut self, line: String) {
        self.good = true;
        self.lines.push(line);
    }

    fn bad(&mut self, line: String) {
        self.bad = true;
        self.lines.push(line);
    }

    fn note(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    fn locate(&mut self, flags: &ApiServerFlags) {
        self.locations.push(flags.location());
    }

    fn outcome(self, pass: &str, fail: &str) -> Outcome {
        let evidence = self.lines.join("\n");
        let outcome = if self.bad {
            let first = self
                .lines
                .iter()
                .find(|l| !l.starts_with("flags: not read"))
                .cloned();
            Outcome::fail(format!("{fail}: {}", first.unwrap_or_default()))
        } else if self.good {
            Outcome::pass(format!("{pass} ({})", self.lines.join("; ")))
        } else {
            return Outcome::skip(self.lines.join("; "));
        };
        outcome
            .with_evidence(evidence)
            .with_locations(self.locations)
    }
}

async fn anonymous_auth_disabled(ctx: &Context) -> Result<Outcome> {
    let mut verdict = Verdict::default();
    match apiserver_flags(ctx).await? {
        Some(flags) => {
            verdict.locate(&flags);
            if flags.get_bool("--anonymous-auth") == Some(false) {
                verdict.good(format!("{}: --anonymous-auth=false", flags.source));
            } else {
                verdict.bad(format!(
                    "{}: {} (anonymous requests are served as system:anonymous; the default is true)",
                    flags.source,
                    flags.show("--anonymous-auth")
                ));
            }
        }
        None => verdict.note(NO_FLAGS),
    }
    match (ctx.mode, &ctx.endpoint) {
        (Mode::Live, Some(endpoint)) => match probe::anonymous_get_api(endpoint).await {
            Ok(401) => verdict.good(format!(
                "live: an unauthenticated GET {}/api got 401 Unauthorized",
                endpoint.url
            )),
            Ok(status) => verdict.bad(format!(
                "live: an unauthenticated GET {}/api got {status}, not 401: anonymous requests are authenticated{}",
                endpoint.url,
                if status == 403 { " (and then denied by RBAC)" } else { "" }
            )),
            Err(error) if verdict.good || verdict.bad => {
                verdict.note(format!("live: probe failed: {error}"));
            }
            Err(error) => return Err(error),
        },
        (Mode::Live, None) => verdict.note("live: not probed (the API server address is not known to this run)"),
        (Mode::Static, _) => {}
    }
    Ok(verdict.outcome(
        "anonymous requests are refused",
        "anonymous requests are accepted",
    ))
}

/// The version of the API server: live from `/version`, else from the manifest's image tag.
async fn apiserver_version(
    ctx: &Context,
    flags: Option<&ApiServerFlags>,
) -> Result<Option<((u32, u32), String)>> {
    if let Some(client) = live_client(ctx) {
        let version = probe::live_version(client).await?;
        return Ok(Some((version, "GET /version".into())));
    }
    Ok(flags
        .and_then(ApiServerFlags::image)
        .and_then(|image| Some((probe::parse_version(image)?, format!("image {image}")))))
}

async fn insecure_port_disabled(ctx: &Context) -> Result<Outcome> {
    let flags = apiserver_flags(ctx).await?;
    let version = apiserver_version(ctx, flags.as_ref()).await?;
    if let Some(((major, minor), source)) = &version
        && (*major, *minor) >= (1, 24)
    {
        // Nothing to judge, so not a pass: a pass would claim a setting was checked.
        return Ok(Outcome::not_applicable(format!(
            "the API server is v{major}.{minor} ({source}): Kubernetes 1.24 removed the insecure port and \
             its --insecure-port flag, so there is none to disable"
        )));
    }
    let Some(flags) = flags else {
        return Ok(Outcome::skip(match version {
            Some(((major, minor), source)) => {
                format!(
                    "the API server is v{major}.{minor} ({source}), which has --insecure-port; {NO_FLAGS}"
                )
            }
            None => format!("the version is unknown and {NO_FLAGS}"),
        }));
    };
    let which = match &version {
        Some(((major, minor), source)) => format!("v{major}.{minor} ({source})"),
        None => "of unknown version (no readable image tag)".to_owned(),
    };
    let location = vec![flags.location()];
    let evidence = format!(
        "{}: {}, {}",
        flags.source,
        flags.show("--insecure-port"),
        flags.show("--insecure-bind-address")
    );
    let outcome = if flags.get("--insecure-port") == Some("0") {
        Outcome::pass(format!("the API server {which} has --insecure-port=0"))
    } else {
        Outcome::fail(format!(
            "the API server {which} does not set --insecure-port=0: {}",
            flags.show("--insecure-port")
        ))
    };
    Ok(outcome.with_evidence(evidence).with_locations(location))
}

async fn authorization_rbac(ctx: &Context) -> Result<Outcome> {
    let mut verdict = Verdict::default();
    match apiserver_flags(ctx).await? {
        Some(flags) => {
            verdict.locate(&flags);
            // Without the flag the API server authorizes everything.
            let modes_text = flags.get("--authorization-mode").unwrap_or("AlwaysAllow");
            let modes: Vec<&str> = modes_text.split(',').map(str::trim).collect();
            let shown = flags.show("--authorization-mode");
            if modes.contains(&"AlwaysAllow") {
                verdict.bad(format!(
                    "{}: {shown}: AlwaysAllow authorizes every request",
                    flags.source
                ));
            } else if !modes.contains(&"RBAC") {
                verdict.bad(format!("{}: {shown} does not include RBAC", flags.source));
            } else {
                verdict.good(format!("{}: {shown}", flags.source));
            }
        }
        None => verdict.note(NO_FLAGS),
    }
    if let Some(client) = live_client(ctx) {
        let access = Access {
            verb: "delete",
            group: "",
            resource: "namespaces",
            namespace: None,
        };
        let nobody = Some("hardlab:grader:user-without-bindings".to_owned());
        if review::allowed_for(client, nobody, Vec::new(), access).await? {
            verdict.bad(
                "live: a user without any binding may delete namespaces: AlwaysAllow is in effect"
                    .into(),
            );
        } else {
            let groups = client.list_api_groups().await?;
            if groups
                .groups
                .iter()
                .any(|group| group.name == "rbac.authorization.k8s.io")
            {
                verdict.good(
                    "live: a user without bindings is denied and the RBAC API is served".into(),
                );
            } else {
                verdict.bad("live: the rbac.authorization.k8s.io API is not served".into());
            }
        }
    }
    Ok(verdict.outcome("authorization uses RBAC", "authorization is not RBAC-only"))
}

async fn oidc_configured(ctx: &Context) -> Result<Outcome> {
    let Some(flags) = apiserver_flags(ctx).await? else {
        return Ok(Outcome::skip(NO_FLAGS));
    };
    let location = vec![flags.location()];
    let shown = [
        "--oidc-issuer-url",
        "--oidc-client-id",
        "--oidc-username-claim",
        "--oidc-groups-claim",
        "--authentication-config",
    ]
    .map(|name| flags.show(name))
    .join(", ");
    let evidence = format!("{}: {shown}", flags.source);
    let outcome = if flags.get("--authentication-config").is_some() {
        Outcome::pass("structured authentication is configured (--authentication-config)")
    } else if flags.get("--oidc-issuer-url").is_some() && flags.get("--oidc-client-id").is_some() {
        Outcome::pass(format!(
            "OIDC is configured: {}",
            flags.show("--oidc-issuer-url")
        ))
    } else {
        Outcome::warn(
            "no OIDC issuer is configured: people can only use client certificates or tokens",
        )
    };
    Ok(outcome.with_evidence(evidence).with_locations(location))
}

fn rbac_checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.no-anonymous-grants",
                "Anonymous requests get nothing beyond the defaults",
                "rbac-least-privilege",
                Severity::Critical,
                "Delete the RoleBindings and ClusterRoleBindings whose subjects include User `system:anonymous` or \
                 Group `system:unauthenticated` (kubeadm's `system:public-info-viewer` and kube-public `cluster-info` \
                 bindings are the only defaults).",
                &[
                    "CIS Kubernetes Benchmark 5.1.1",
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/rbac/#discovery-roles",
                ],
            ),
            run: |ctx| no_anonymous_grants(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.secrets-readers",
                "Only system components can read Secrets in every namespace",
                "rbac-least-privilege",
                Severity::High,
                "Remove get/list/watch on `secrets` from ClusterRoles bound to people, groups or application \
                 service accounts; grant Secret access per namespace with a Role, for named Secrets where possible.",
                &[
                    "CIS Kubernetes Benchmark 5.1.2",
                    NSA_AUTH,
                    RBAC_GOOD_PRACTICES,
                ],
            ),
            run: |ctx| secrets_readers(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.cluster-admin-bindings",
                "No person or application is bound to cluster-admin",
                "rbac-least-privilege",
                Severity::High,
                "Replace bindings to `cluster-admin` (or to roles with `*` verbs on `*` resources) with roles that \
                 grant what the subject needs; keep break-glass admin on `system:masters` certificates.",
                &[
                    "CIS Kubernetes Benchmark 5.1.1",
                    NSA_AUTH,
                    RBAC_GOOD_PRACTICES,
                ],
            ),
            run: |ctx| cluster_admin_bindings(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.no-wildcard-roles",
                "Bound roles name their verbs and resources",
                "rbac-least-privilege",
                Severity::Medium,
                "Replace `*` in `verbs` and `resources` of roles bound to people or applications with the verbs and \
                 resources they use; a wildcard also grants whatever future versions or CRDs add.",
                &[
                    "CIS Kubernetes Benchmark 5.1.3",
                    NSA_AUTH,
                    RBAC_GOOD_PRACTICES,
                ],
            ),
            run: |ctx| no_wildcard_roles(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::SecureAccess.meta(
                "access.developer-read-grant",
                "The developer group can read pods and their logs, and nothing more",
                "developer-grant",
                Severity::Medium,
                "Create a Role in the lab namespace with `get`, `list`, `watch` on `pods` and `get` on `pods/log`, \
                 and a RoleBinding of it to the group (`kubectl create role` / `kubectl create rolebinding --group`); \
                 do not use the `view` ClusterRole, which also shows services.",
                &[
                    NSA_AUTH,
                    "https://kubernetes.io/docs/reference/access-authn-authz/rbac/",
                    "https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access",
                ],
            )
            .exercise(),
            run: |ctx| developer_read_grant(ctx).boxed(),
        },
    ]
}

/// `ClusterRoleBinding/ops (rbac.yaml:12)`, or the object ID live.
fn describe(object: &KubeObject) -> String {
    match &object.location {
        Some(location) if !location.file.is_empty() => {
            format!("{} ({}:{})", object.id(), location.file, location.line)
        }
        _ => object.id(),
    }
}

/// Problems found, each with the object it concerns when there is one, turned into an outcome.
#[derive(Debug, Default)]
struct Findings {
    lines: Vec<String>,
    locations: Vec<Location>,
}

impl Findings {
    fn add(&mut self, object: Option<&KubeObject>, line: String) {
        if let Some(object) = object {
            let location = object.finding_location();
            if !self.locations.contains(&location) {
                self.locations.push(location);
            }
        }
        self.lines.push(line);
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn into_fail(self, summary: &str) -> Outcome {
        let first = self.lines.first().cloned().unwrap_or_default();
        Outcome::fail(format!("{summary}: {first}"))
            .with_evidence(self.lines.join("\n"))
            .with_locations(self.locations)
    }
}

/// The live client when the run is live; `None` in static mode.
fn live_client(ctx: &Context) -> Option<&kube::Client> {
    match ctx.mode {
        Mode::Live => ctx.kube.as_ref(),
        Mode::Static => None,
    }
}

/// Whether the static analysis has RBAC objects to work on.
fn has_rbac_objects(objects: &[KubeObject]) -> bool {
    objects.iter().any(|object| {
        matches!(
            object.kind.as_str(),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        )
    })
}

/// Bindings every kubeadm cluster has that let anonymous requests read what a client needs
/// before it can authenticate: health and version, and the kube-public `cluster-info`.
fn is_default_anonymous_binding(binding: &Binding) -> bool {
    (binding.role_kind == "ClusterRole" && binding.role_name == "system:public-info-viewer")
        || (binding.role_kind == "Role"
            && binding.role_name == "kubeadm:bootstrap-signer-clusterinfo"
            && binding.namespace.as_deref() == Some("kube-public"))
}

/// What an anonymous request must never be allowed, asked of the authorizer live.
const SENSITIVE: &[(&str, &str, &str)] = &[
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("list", "", "pods"),
    ("create", "", "pods"),
    ("create", "", "pods/exec"),
    ("list", "", "configmaps"),
    ("list", "", "serviceaccounts"),
    ("list", "", "namespaces"),
    ("list", "", "nodes"),
    ("create", "apps", "deployments"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("impersonate", "", "users"),
    ("*", "*", "*"),
];

async fn no_anonymous_grants(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    let mut findings = Findings::default();
    for binding in rbac::bindings(&objects) {
        if is_default_anonymous_binding(&binding) {
            continue;
        }
        for subject in binding.subjects.iter().filter(|s| s.is_anonymous()) {
            findings.add(
                Some(binding.object),
                format!(
                    "{} binds {subject} to {}",
                    describe(binding.object),
                    binding.describe_role()
                ),
            );
        }
    }
    let mut asked = 0;
    if let Some(client) = live_client(ctx) {
        let mut namespaces = vec![None];
        if let Some(lab) = &ctx.params.namespace {
            namespaces.push(Some(lab.as_str()));
        }
        for namespace in namespaces {
            for (verb, group, resource) in SENSITIVE {
                let access = Access {
                    verb,
                    group,
                    resource,
                    namespace,
                };
                asked += 1;
                let anonymous = Subject {
                    kind: SubjectKind::User,
                    name: "system:anonymous".into(),
                    namespace: None,
                };
                if review::allowed(client, &anonymous, access).await? {
                    findings.add(
                        None,
                        format!("the API server allows an anonymous request to {access}"),
                    );
                }
            }
        }
    } else if !has_rbac_objects(&objects) {
        return Ok(Outcome::skip("the inputs hold no RBAC objects"));
    }
    if findings.is_empty() {
        let how = if asked > 0 {
            format!("{asked} access reviews as system:anonymous were denied and ")
        } else {
            String::new()
        };
        return Ok(Outcome::pass(format!(
            "{how}no binding grants system:anonymous or system:unauthenticated more than the defaults"
        )));
    }
    Ok(findings.into_fail("anonymous requests get more than the defaults"))
}

/// Subjects that may matter for cluster-wide grants: every non-system subject of a
/// ClusterRoleBinding, plus the groups that stand for everyone.
fn cluster_wide_candidates<'a>(
    bindings: &'a [Binding<'a>],
) -> BTreeMap<Subject, Vec<&'a Binding<'a>>> {
    let mut candidates: BTreeMap<Subject, Vec<&Binding>> = BTreeMap::new();
    for group in [
        "system:authenticated",
        "system:unauthenticated",
        "system:serviceaccounts",
    ] {
        candidates.entry(Subject::group(group)).or_default();
    }
    for binding in bindings.iter().filter(|b| b.namespace.is_none()) {
        for subject in binding.subjects.iter().filter(|s| !s.is_system()) {
            candidates.entry(subject.clone()).or_default().push(binding);
        }
    }
    candidates
}

async fn secrets_readers(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    let bindings = rbac::bindings(&objects);
    let client = live_client(ctx);
    if client.is_none() && !has_rbac_objects(&objects) {
        return Ok(Outcome::skip("the inputs hold no RBAC objects"));
    }
    let candidates = cluster_wide_candidates(&bindings);
    let mut findings = Findings::default();
    for (subject, via) in &candidates {
        let mut verbs = Vec::new();
        for verb in ["get", "list", "watch"] {
            let can = match client {
                Some(client) => {
                    let access = Access {
                        verb,
                        group: "",
                        resource: "secrets",
                        namespace: None,
                    };
                    review::allowed(client, subject, access).await?
                }
                None => via
                    .iter()
                    .any(|binding| binding.allows(verb, "", "secrets")),
            };
            if can {
                verbs.push(verb);
            }
        }
        if verbs.is_empty() {
            continue;
        }
        let granting: Vec<&&Binding> = via
            .iter()
            .filter(|binding| verbs.iter().any(|verb| binding.allows(verb, "", "secrets")))
            .collect();
        let how = if granting.is_empty() {
            "(granted by the authorizer)".to_owned()
        } else {
            granting
                .iter()
                .map(|b| format!("via {} to {}", describe(b.object), b.describe_role()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let object = granting.first().map(|b| b.object);
        findings.add(
            object,
            format!(
                "{subject} can {} secrets in every namespace {how}",
                verbs.join(", ")
            ),
        );
    }
    if findings.is_empty() {
        let how = if client.is_some() {
            "access reviews"
        } else {
            "the RBAC objects"
        };
        return Ok(Outcome::pass(format!(
            "by {how}, none of the {} subjects bound cluster-wide (nor everyone) can read Secrets in every namespace",
            candidates.len() - 3
        )));
    }
    Ok(findings.into_fail("Secrets are readable cluster-wide by non-system subjects"))
}

async fn cluster_admin_bindings(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    if !has_rbac_objects(&objects) {
        return Ok(Outcome::skip("the inputs hold no RBAC objects"));
    }
    let mut findings = Findings::default();
    for binding in rbac::bindings(&objects)
        .iter()
        .filter(|b| b.is_cluster_admin())
    {
        let scope = match &binding.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => " in every namespace".to_owned(),
        };
        for subject in binding.subjects.iter().filter(|s| !s.is_system()) {
            findings.add(
                Some(binding.object),
                format!(
                    "{} binds {subject} to {} (full access{scope})",
                    describe(binding.object),
                    binding.describe_role()
                ),
            );
        }
    }
    if findings.is_empty() {
        return Ok(Outcome::pass(
            "only system subjects are bound to cluster-admin or to roles with * on *",
        ));
    }
    Ok(findings.into_fail("non-system subjects have full access"))
}

async fn no_wildcard_roles(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    if !has_rbac_objects(&objects) {
        return Ok(Outcome::skip("the inputs hold no RBAC objects"));
    }
    let mut findings = Findings::default();
    let mut judged = 0;
    for binding in rbac::bindings(&objects) {
        let people: Vec<String> = binding
            .subjects
            .iter()
            .filter(|s| !s.is_system())
            .map(ToString::to_string)
            .collect();
        if people.is_empty() {
            continue;
        }
        judged += 1;
        for rule in binding.rules.iter().filter(|rule| rule.has_wildcard()) {
            let role = binding.role.unwrap_or(binding.object);
            findings.add(
                Some(role),
                format!(
                    "{} has the rule {} and is bound to {} by {}",
                    binding.describe_role(),
                    rule.describe(),
                    people.join(", "),
                    describe(binding.object)
                ),
            );
        }
    }
    if findings.is_empty() {
        return Ok(Outcome::pass(format!(
            "none of the {judged} bindings to non-system subjects grants a role with * in verbs or resources"
        )));
    }
    Ok(findings.into_fail("bound roles use wildcards"))
}

/// What the developer group must and must not be able to do in the lab namespace.
const DEVELOPER_EXPECTATIONS: &[(&str, &str, bool)] = &[
    ("get", "pods", true),
    ("list", "pods", true),
    ("watch", "pods", true),
    ("get", "pods/log", true),
    ("list", "services", false),
];

async fn developer_read_grant(ctx: &Context) -> Result<Outcome> {
    let Some(namespace) = ctx.params.namespace.as_deref() else {
        return Ok(Outcome::skip(
            "no lab namespace was given (--namespace), so there is no grant to check",
        ));
    };
    let group = ctx
        .params
        .extra
        .get("group")
        .map_or(DEFAULT_DEVELOPER_GROUP, String::as_str);
    let subject = Subject::group(group);
    let objects = objects(ctx).await?;
    let client = live_client(ctx);
    if client.is_none() && !has_rbac_objects(&objects) {
        return Ok(Outcome::skip("the inputs hold no RBAC objects"));
    }
    let bindings = rbac::bindings(&objects);
    let applicable: Vec<&Binding> = bindings
        .iter()
        .filter(|b| b.namespace.is_none() || b.namespace.as_deref() == Some(namespace))
        .filter(|b| b.subjects.contains(&subject))
        .collect();
    let mut findings = Findings::default();
    let mut granted = Vec::new();
    for (verb, resource, expected) in DEVELOPER_EXPECTATIONS {
        let access = Access {
            verb,
            group: "",
            resource,
            namespace: Some(namespace),
        };
        let can = match client {
            Some(client) => review::allowed(client, &subject, access).await?,
            None => applicable.iter().any(|b| b.allows(verb, "", resource)),
        };
        if can == *expected {
            if can {
                granted.push(access.to_string());
            }
            continue;
        }
        let by: Vec<&KubeObject> = applicable
            .iter()
            .filter(|b| b.allows(verb, "", resource))
            .map(|b| b.object)
            .collect();
        let line = if can {
            let via: Vec<String> = by.iter().map(|o| describe(o)).collect();
            format!(
                "group {group} can {access} but must not (granted by {})",
                via.join(", ")
            )
        } else {
            format!("group {group} cannot {access}")
        };
        findings.add(by.first().copied(), line);
    }
    if findings.is_empty() {
        return Ok(Outcome::pass(format!(
            "group {group} can {} and cannot list services",
            granted.join(", ")
        )));
    }
    if applicable.is_empty() {
        findings.lines.push(format!(
            "no RoleBinding in {namespace} nor ClusterRoleBinding names Group {group}"
        ));
    }
    Ok(findings.into_fail(&format!(
        "group {group} does not have exactly read access to pods in {namespace}"
    )))
}
