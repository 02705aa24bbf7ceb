//! Lab 2: network policies. Judged by reachability, not by presence: the [`engine`] evaluates
//! NetworkPolicy semantics, the [`matrix`] lists every pod-to-pod connection with its verdict,
//! and the checks compare that with a default deny and with the lab app's intended matrix.

pub mod engine;
pub mod matrix;
mod probe;
pub use probe::{connect_script, probe_cluster};

use std::collections::BTreeSet;

use futures::FutureExt;

use crate::catalog::{CheckDef, Lab};
use crate::context::Mode;
use crate::model::{Location, Outcome, Severity, Status};
use crate::{Context, Result};
use engine::{Cluster, ContainerPort, Direction, Labels, Pod, Protocol};
pub use matrix::{Edge, Matrix, Node, cluster, matrix};

const NSA: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: Network separation and hardening";
const CIS_532: &str =
    "CIS Kubernetes Benchmark 5.3.2 (all namespaces have NetworkPolicies defined)";
const DOCS: &str = "https://kubernetes.io/docs/concepts/services-networking/network-policies/";

/// A port no app declares, judged too so that a rule allowing every port is caught.
const UNDECLARED_PORT: u16 = 65432;
const MYSQL_PORT: u16 = 3306;
const DNS_PORT: u16 = 53;
pub const NOT_RUNNING: &str = "not run: pods are not running (needs a full cluster)";

pub fn checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::NetworkPolicies.meta(
                "netpol.default-deny-ingress",
                "Every pod in the lab namespace denies ingress unless a rule allows it",
                "default-deny",
                Severity::High,
                "Apply a NetworkPolicy with `podSelector: {}` and `policyTypes: [Ingress]` and no ingress rules in the \
                 namespace, then allow only the connections the app needs; remove rules that allow every source on \
                 every port (`ingress: [{}]`).",
                &[NSA, CIS_532, DOCS],
            ),
            run: |ctx| default_deny(ctx, Direction::Ingress).boxed(),
        },
        CheckDef {
            meta: Lab::NetworkPolicies.meta(
                "netpol.default-deny-egress",
                "Every pod in the lab namespace denies egress unless a rule allows it",
                "default-deny",
                Severity::Medium,
                "Apply a NetworkPolicy with `podSelector: {}` and `policyTypes: [Egress]` (a policy without egress \
                 rules only isolates egress when `policyTypes` names Egress), then allow DNS and what the app needs.",
                &[NSA, CIS_532, DOCS],
            ),
            run: |ctx| default_deny(ctx, Direction::Egress).boxed(),
        },
        CheckDef {
            meta: Lab::NetworkPolicies.meta(
                "netpol.intended-matrix",
                "Only frontend to backend, backend to db on 3306 and DNS are allowed",
                "allow-app-traffic",
                Severity::High,
                "Allow ingress to app=backend from app=frontend on the backend's port, ingress to app=db from \
                 app=backend on TCP 3306, egress for the matching sources, and egress to kube-dns on UDP and TCP 53; \
                 nothing else. Run `hardlab-grade matrix` to see every connection and the policy that decides it.",
                &[NSA, DOCS],
            )
            .exercise(),
            run: |ctx| intended_matrix_with_refused(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::NetworkPolicies.meta(
                "netpol.live-probe",
                "Connections attempted between running pods match the computed matrix",
                "allow-app-traffic",
                Severity::Medium,
                "Make sure the cluster's CNI enforces NetworkPolicy (flannel alone does not); compare \
                 the failing connections with `hardlab-grade matrix`.",
                &[
                    NSA,
                    "CIS Kubernetes Benchmark 5.3.1 (the CNI in use supports NetworkPolicies)",
                    DOCS,
                ],
            ),
            run: |ctx| probe::live_probe(ctx).boxed(),
        },
    ]
}

/// The lab's namespace: the run's parameter, else `default`.
fn lab_namespace(ctx: &Context) -> &str {
    ctx.params.namespace.as_deref().unwrap_or("default")
}

fn pods_in<'a>(cluster: &'a Cluster, namespace: &str) -> Vec<&'a Pod> {
    cluster
        .pods
        .iter()
        .filter(|pod| pod.namespace == namespace && !pod.host_network)
        .collect()
}

/// The namespaces a default-deny check judges: the lab's (`--namespace`), live the `default`
/// namespace, and in a static scan without a namespace every namespace that has pods among the
/// inputs (the files are what was given; a namespace they do not mention is not judged).
fn judged_namespaces(ctx: &Context, cluster: &Cluster) -> Vec<String> {
    if ctx.params.namespace.is_some() || ctx.mode == Mode::Live {
        return vec![lab_namespace(ctx).to_owned()];
    }
    let namespaces: BTreeSet<String> = cluster
        .pods
        .iter()
        .filter(|pod| !pod.host_network)
        .map(|pod| pod.namespace.clone())
        .collect();
    namespaces.into_iter().collect()
}

async fn default_deny(ctx: &Context, direction: Direction) -> Result<Outcome> {
    let cluster = cluster(ctx).await?;
    Ok(with_refused(
        default_deny_of(ctx, &cluster, direction),
        &cluster,
    ))
}

/// Adds the objects the API server would refuse (left out of the model) to an outcome: named,
/// located, and a pass becomes a warning, since those manifests would not apply as written.
fn with_refused(mut outcome: Outcome, cluster: &Cluster) -> Outcome {
    if cluster.rejected.is_empty() {
        return outcome;
    }
    let listed: Vec<String> = cluster
        .rejected
        .iter()
        .map(|rejected| format!("{}: {}", rejected.object, rejected.reason))
        .collect();
    outcome.message.push_str(&format!(
        "; {} object(s) left out because the API server would refuse them: {}",
        listed.len(),
        listed.join("; ")
    ));
    let mut evidence = outcome.evidence.take().unwrap_or_default();
    for line in &listed {
        if !evidence.is_empty() {
            evidence.push('\n');
        }
        evidence.push_str("refused: ");
        evidence.push_str(line);
    }
    outcome.evidence = Some(evidence);
    outcome
        .locations
        .extend(cluster.rejected.iter().map(|r| r.location.clone()));
    if outcome.status == Status::Pass {
        outcome.status = Status::Warn;
    }
    outcome
}

fn default_deny_of(ctx: &Context, cluster: &Cluster, direction: Direction) -> Outcome {
    let what = direction.as_str();
    let namespaces = judged_namespaces(ctx, cluster);
    if ctx.mode == Mode::Static && ctx.params.namespace.is_none() {
        // A scan judges what it was given: without pods, or without any policy at all, the
        // files do not hold the subject (the policies may live elsewhere); skip, never fail.
        if namespaces.is_empty() {
            return Outcome::skip(format!(
                "no pods among the inputs: nothing to judge for a default deny of {what}"
            ));
        }
        if cluster.policies.is_empty() {
            return Outcome::skip(format!(
                "no NetworkPolicy among the inputs: {} pod(s) in {} were given without their policies;                  add the policies to the scan (or pass --namespace) to judge {what} isolation",
                namespaces
                    .iter()
                    .map(|ns| pods_in(cluster, ns).len())
                    .sum::<usize>(),
                namespaces.join(", ")
            ));
        }
    }
    let verdicts: Vec<NamespaceVerdict> = namespaces
        .iter()
        .map(|namespace| judge_namespace(cluster, namespace, direction))
        .collect();
    let hint = match direction {
        Direction::Ingress => "",
        Direction::Egress => {
            " (a policy without egress rules isolates egress only when its policyTypes lists Egress)"
        }
    };

    let failing: Vec<&NamespaceVerdict> = verdicts
        .iter()
        .filter(|verdict| !verdict.problems.is_empty())
        .collect();
    if !failing.is_empty() {
        let problems: Vec<&String> = failing.iter().flat_map(|v| &v.problems).collect();
        let locations: Vec<Location> = failing
            .iter()
            .flat_map(|v| v.locations.iter().cloned())
            .collect();
        let where_ = names(failing.iter().map(|v| v.namespace.clone()));
        let first = problems[0];
        let message = if problems.len() == 1 {
            format!("no default deny for {what} in {where_}: {first}{hint}")
        } else {
            format!(
                "no default deny for {what} in {where_}: {first}, and {} more{hint}",
                problems.len() - 1
            )
        };
        let evidence: Vec<&str> = problems.iter().map(|p| p.as_str()).collect();
        return Outcome::fail(message)
            .with_evidence(evidence.join("\n"))
            .with_locations(locations);
    }

    let warnings: Vec<&NamespaceVerdict> =
        verdicts.iter().filter(|v| v.warning.is_some()).collect();
    let locations: Vec<Location> = verdicts
        .iter()
        .flat_map(|v| v.policy_locations.iter().cloned())
        .collect();
    if !warnings.is_empty() {
        return Outcome::warn(
            warnings
                .iter()
                .filter_map(|v| v.warning.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
        .with_locations(locations);
    }
    Outcome::pass(
        verdicts
            .iter()
            .map(|v| v.passed.clone())
            .collect::<Vec<_>>()
            .join("; "),
    )
    .with_locations(locations)
}

/// One namespace's default-deny verdict: problems fail it, a warning weakens a pass.
struct NamespaceVerdict {
    namespace: String,
    problems: Vec<String>,
    locations: Vec<Location>,
    warning: Option<String>,
    passed: String,
    policy_locations: Vec<Location>,
}

fn judge_namespace(cluster: &Cluster, namespace: &str, direction: Direction) -> NamespaceVerdict {
    let what = direction.as_str();
    let policies: Vec<_> = cluster
        .policies
        .iter()
        .filter(|policy| policy.namespace == namespace && policy.isolates(direction))
        .collect();
    let namespace_wide: Vec<_> = policies
        .iter()
        .filter(|policy| policy.pod_selector.is_empty())
        .collect();
    let pods = pods_in(cluster, namespace);

    let mut problems = Vec::new();
    let mut locations = Vec::new();
    for pod in &pods {
        if cluster.selecting(pod, direction).is_empty() {
            problems.push(format!(
                "{} ({}) is not selected by any {what} policy: all {what} is allowed",
                pod.id(),
                pod.object
            ));
            locations.push(pod.location.clone());
        }
    }
    for policy in &policies {
        if policy.allows_everything(direction) {
            problems.push(format!(
                "{} has a rule that allows every peer on every port: the pods it selects are open for {what}",
                policy.id()
            ));
            locations.push(policy.location.clone());
        }
    }
    if pods.is_empty() && namespace_wide.is_empty() {
        problems.push(format!(
            "namespace {namespace} has no pods and no policy with `podSelector: {{}}` isolating {what}"
        ));
    }
    let policy_locations: Vec<Location> = policies.iter().map(|p| p.location.clone()).collect();
    let warning = namespace_wide.is_empty().then(|| {
        format!(
            "every pod in {namespace} is selected for {what} by {}, but no policy has `podSelector: {{}}`: \
             a new pod with other labels would be open",
            names(policies.iter().map(|p| p.id()))
        )
    });
    NamespaceVerdict {
        namespace: namespace.to_owned(),
        problems,
        locations,
        warning,
        passed: format!(
            "{what} is denied by default in {namespace}: every pod is selected by {} ({} pods judged)",
            names(namespace_wide.iter().map(|p| p.id())),
            pods.len()
        ),
        policy_locations,
    }
}

fn names(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A connection the intended matrix judges, and whether it should be allowed.
struct Expectation<'a> {
    from: &'a Pod,
    to: &'a Pod,
    port: u16,
    protocol: Protocol,
    /// `Some(true)` must be allowed, `Some(false)` must be denied, `None` either is fine.
    allowed: Option<bool>,
    port_label: String,
}

fn has_label(pod: &Pod, key: &str, value: &str) -> bool {
    pod.labels.get(key).is_some_and(|v| v == value)
}

/// The kube-dns pods the app may reach; a stand-in when the inputs have none (static manifests).
fn dns_pods(cluster: &Cluster) -> (Vec<Pod>, bool) {
    let real: Vec<Pod> = cluster
        .pods
        .iter()
        .filter(|pod| pod.namespace == "kube-system" && has_label(pod, "k8s-app", "kube-dns"))
        .cloned()
        .collect();
    if !real.is_empty() {
        return (real, false);
    }
    let stand_in = Pod {
        namespace: "kube-system".into(),
        name: "kube-dns".into(),
        object: "Pod/kube-system/kube-dns (assumed)".into(),
        labels: Labels::from([("k8s-app".to_owned(), "kube-dns".to_owned())]),
        ip: None,
        ports: [Protocol::Udp, Protocol::Tcp]
            .into_iter()
            .map(|protocol| ContainerPort {
                port: DNS_PORT,
                protocol,
                name: None,
            })
            .collect(),
        phase: None,
        host_network: false,
        location: Location {
            file: String::new(),
            line: 0,
            object: None,
        },
    };
    (vec![stand_in], true)
}

async fn intended_matrix_with_refused(ctx: &Context) -> Result<Outcome> {
    let outcome = intended_matrix(ctx).await?;
    Ok(with_refused(outcome, &*cluster(ctx).await?))
}

async fn intended_matrix(ctx: &Context) -> Result<Outcome> {
    let cluster = cluster(ctx).await?;
    let namespace = lab_namespace(ctx);
    let role = |pod: &Pod| -> Option<&'static str> {
        if pod.namespace != namespace {
            return None;
        }
        ["frontend", "backend", "db"]
            .into_iter()
            .find(|app| has_label(pod, "app", app))
    };
    let missing: Vec<&str> = ["frontend", "backend", "db"]
        .into_iter()
        .filter(|app| !cluster.pods.iter().any(|pod| role(pod) == Some(app)))
        .collect();
    if !missing.is_empty() {
        return Ok(Outcome::fail(format!(
            "the app is incomplete in {namespace}: no pod labelled {}",
            missing
                .iter()
                .map(|app| format!("app={app}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    let (dns, dns_assumed) = dns_pods(&cluster);
    let mut destinations: Vec<&Pod> = cluster.pods.iter().collect();
    if dns_assumed {
        destinations.extend(dns.iter());
    }
    let is_dns =
        |pod: &Pod| pod.namespace == "kube-system" && has_label(pod, "k8s-app", "kube-dns");

    let mut deviations = Vec::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut backend_ports_missing = Vec::new();
    let mut judged = 0usize;
    for from in cluster.pods.iter().filter(|pod| !pod.host_network) {
        for &to in destinations.iter().filter(|pod| !pod.host_network) {
            if from.id() == to.id() || (from.namespace != namespace && to.namespace != namespace) {
                continue;
            }
            let mut ports: BTreeSet<(u16, Protocol)> = cluster.ports_of(to).into_iter().collect();
            ports.insert((UNDECLARED_PORT, Protocol::Tcp));
            if role(to) == Some("db") {
                ports.insert((MYSQL_PORT, Protocol::Tcp));
            }
            if role(from) == Some("frontend") && role(to) == Some("backend") && to.ports.is_empty()
            {
                backend_ports_missing.push(to.id());
            }
            for (port, protocol) in ports {
                let declared = to
                    .ports
                    .iter()
                    .any(|p| p.port == port && p.protocol == protocol);
                let allowed = match (role(from), role(to)) {
                    (Some("frontend"), Some("backend")) => Some(declared),
                    (Some("backend"), Some("db")) => {
                        Some(port == MYSQL_PORT && protocol == Protocol::Tcp)
                    }
                    _ if from.namespace == namespace && is_dns(to) => match port == DNS_PORT {
                        // Every app pod needs name resolution; other pods may have it.
                        true if role(from).is_some() => Some(true),
                        true => None,
                        false => Some(false),
                    },
                    _ => Some(false),
                };
                let port_label = if port == UNDECLARED_PORT && !declared {
                    format!("{port}/{protocol} (a port nobody declares)")
                } else {
                    format!("{port}/{protocol}")
                };
                let expectation = Expectation {
                    from,
                    to,
                    port,
                    protocol,
                    allowed,
                    port_label,
                };
                judged += 1;
                judge(&cluster, &expectation, &mut deviations, &mut locations);
            }
        }
    }
    for backend in backend_ports_missing.iter().collect::<BTreeSet<_>>() {
        deviations.push(format!(
            "{backend} declares no container port, so frontend to backend has no port to allow"
        ));
    }
    let dns_note = if dns_assumed {
        " (no kube-dns pod in the inputs: judged against kube-system pods labelled k8s-app=kube-dns)"
    } else {
        ""
    };
    if deviations.is_empty() {
        return Ok(Outcome::pass(format!(
            "the matrix in {namespace} is exactly the intended one: {judged} connections judged{dns_note}"
        )));
    }
    locations.sort_by(|a, b| (&a.file, a.line, &a.object).cmp(&(&b.file, b.line, &b.object)));
    locations.dedup();
    Ok(Outcome::fail(format!(
        "{} deviation(s) from the intended matrix in {namespace}: {}{dns_note}",
        deviations.len(),
        deviations
            .iter()
            .map(|line| line.split(" [").next().unwrap_or(line))
            .collect::<Vec<_>>()
            .join("; ")
    ))
    .with_evidence(deviations.join("\n"))
    .with_locations(locations))
}

fn judge(
    cluster: &Cluster,
    expectation: &Expectation<'_>,
    deviations: &mut Vec<String>,
    locations: &mut Vec<Location>,
) {
    let Some(expected) = expectation.allowed else {
        return;
    };
    let verdict = cluster.verdict(
        expectation.from,
        expectation.to,
        expectation.port,
        expectation.protocol,
    );
    if verdict.allowed == expected {
        return;
    }
    let (is, should) = if expected {
        ("denied", "allowed")
    } else {
        ("allowed", "denied")
    };
    deviations.push(format!(
        "{} -> {} on {} is {is}, should be {should} [{}]",
        expectation.from.id(),
        expectation.to.id(),
        expectation.port_label,
        verdict.explanation
    ));
    if expected {
        for policy in verdict.policies() {
            if let Some(policy) = cluster.policies.iter().find(|p| p.id() == policy) {
                locations.push(policy.location.clone());
            }
        }
    } else {
        // An unwanted connection is open where a pod is unselected: point at that pod.
        for (direction, pod) in [
            (&verdict.egress, expectation.from),
            (&verdict.ingress, expectation.to),
        ] {
            match direction {
                engine::DirectionVerdict::Allowed(policies) => {
                    for policy in policies {
                        if let Some(policy) = cluster.policies.iter().find(|p| &p.id() == policy) {
                            locations.push(policy.location.clone());
                        }
                    }
                }
                engine::DirectionVerdict::Open
                    if !pod.location.file.is_empty() || pod.location.object.is_some() =>
                {
                    locations.push(pod.location.clone());
                }
                _ => {}
            }
        }
    }
}
