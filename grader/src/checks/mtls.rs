//! Lab 3: pod-to-pod mTLS. Either mesh may satisfy it: Istio (PeerAuthentication STRICT and a
//! sidecar on every workload) or Linkerd (a proxy on every workload and an inbound policy that
//! refuses unauthenticated clients). Live, where pods run, a plaintext request from an unmeshed
//! pod to a meshed service must fail.

mod plaintext;
pub use plaintext::{
    PlaintextAnswer, classify as classify_plaintext, judge_plaintext, request_script,
};

use std::collections::{BTreeMap, BTreeSet};

use futures::FutureExt;
use serde_json::Value;

use crate::catalog::{CheckDef, Lab};
use crate::checks::podsec::SYSTEM_NAMESPACES;
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::model::{Location, Outcome, Severity};
use crate::{Context, Result};

/// Istio's root namespace: a PeerAuthentication there without a selector is mesh-wide.
pub const ISTIO_ROOT_NAMESPACE: &str = "istio-system";
/// Namespaces of the meshes themselves, never judged as workloads.
const MESH_NAMESPACES: &[&str] = &["istio-system", "linkerd", "linkerd-viz", "linkerd-jaeger"];
const LINKERD_INBOUND: &str = "config.linkerd.io/default-inbound-policy";
/// Linkerd default inbound policies that refuse clients without a mesh identity.
const LINKERD_AUTHENTICATED: &[&str] = &["all-authenticated", "cluster-authenticated", "deny"];
pub const NOT_RUN: &str = "not run: needs a full cluster with a mesh";

const ISTIO_PA_URL: &str =
    "https://istio.io/latest/docs/reference/config/security/peer_authentication/";
const LINKERD_URL: &str = "https://linkerd.io/2/reference/authorization-policy/";
const NSA: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: Network separation and hardening (encrypt traffic between pods)";

pub fn checks() -> Vec<CheckDef> {
    vec![
        CheckDef {
            meta: Lab::PodMtls.meta(
                "mtls.strict-mode",
                "Pod-to-pod traffic must be mutual TLS (Istio STRICT or Linkerd authenticated-only)",
                "enforce-mtls",
                Severity::High,
                "Istio: apply a PeerAuthentication named default in istio-system (mesh-wide) or in the namespace with \
                 `mtls.mode: STRICT` and no PERMISSIVE or DISABLE `portLevelMtls` or workload-level overrides. \
                 Linkerd: annotate the namespace with `config.linkerd.io/default-inbound-policy: all-authenticated`, or \
                 add a Server and an AuthorizationPolicy requiring a MeshTLSAuthentication.",
                &[
                    NSA,
                    ISTIO_PA_URL,
                    "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/",
                    LINKERD_URL,
                ],
            ),
            run: |ctx| strict_mode(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::PodMtls.meta(
                "mtls.workloads-meshed",
                "Every workload in scope runs with a mesh proxy",
                "inject-sidecars",
                Severity::High,
                "Label the namespace `istio-injection=enabled` (or `istio.io/rev`) or annotate it `linkerd.io/inject: \
                 enabled`, remove `sidecar.istio.io/inject: \"false\"` and `linkerd.io/inject: disabled` from workloads, \
                 and restart the pods so the proxy is injected.",
                &[
                    NSA,
                    "istioctl analyze IST0102 NamespaceNotInjected, IST0103 PodMissingProxy",
                    "https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/",
                    "https://linkerd.io/2/features/proxy-injection/",
                ],
            ),
            run: |ctx| workloads_meshed(ctx).boxed(),
        },
        CheckDef {
            meta: Lab::PodMtls.meta(
                "mtls.plaintext-refused",
                "A plaintext request from an unmeshed pod to a meshed service fails",
                "enforce-mtls",
                Severity::High,
                "Enforce STRICT (Istio) or an authenticated-only inbound policy (Linkerd); PERMISSIVE accepts plaintext.",
                &[NSA, ISTIO_PA_URL, LINKERD_URL],
            ),
            run: |ctx| plaintext::plaintext_refused(ctx).boxed(),
        },
    ]
}

/// One pod spec in scope: a Pod, or (static mode) a workload's pod template.
#[derive(Debug, Clone)]
pub struct MeshWorkload {
    pub namespace: String,
    /// `Kind/namespace/name`.
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<String>,
    /// The container ports it declares (what PeerAuthentication's portLevelMtls and Linkerd's
    /// Server name).
    pub ports: Vec<(u16, Option<String>)>,
    /// A live Pod (judged by what runs), not a template (judged by what injection will do).
    pub is_live_pod: bool,
    pub phase: Option<String>,
    pub location: Location,
}

const TEMPLATES: &[(&str, &[&str])] = &[
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The namespaces judged: the lab's, or every namespace with workloads except the system and
/// mesh ones.
fn in_scope(namespace: &str, ctx: &Context) -> bool {
    match &ctx.params.namespace {
        Some(lab) => lab == namespace,
        None => !SYSTEM_NAMESPACES.contains(&namespace) && !MESH_NAMESPACES.contains(&namespace),
    }
}

fn namespace_of<'a>(object: &'a KubeObject, ctx: &'a Context) -> &'a str {
    object
        .namespace
        .as_deref()
        .or(ctx.params.namespace.as_deref())
        .unwrap_or("default")
}

/// The workloads in scope: live Pods in live mode; Pods and workload templates in static mode.
pub fn workloads(objects: &[KubeObject], ctx: &Context) -> Vec<MeshWorkload> {
    let mut found = Vec::new();
    for object in objects {
        let namespace = namespace_of(object, ctx);
        if !in_scope(namespace, ctx) {
            continue;
        }
        let template = if object.kind == "Pod" {
            Some(&object.value)
        } else if ctx.mode == Mode::Static {
            TEMPLATES
                .iter()
                .find(|(kind, _)| *kind == object.kind)
                .and_then(|(_, path)| path.iter().try_fold(&object.value, |v, key| v.get(key)))
        } else {
            None
        };
        let Some(template) = template else { continue };
        let metadata = template.get("metadata");
        let spec = template.get("spec");
        let containers = ["containers", "initContainers"]
            .iter()
            .filter_map(|list| spec?.get(list)?.as_array())
            .flatten()
            .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
            .collect();
        let ports = ["containers", "initContainers"]
            .iter()
            .filter_map(|list| spec?.get(list)?.as_array())
            .flatten()
            .filter_map(|c| c.get("ports")?.as_array())
            .flatten()
            .filter_map(|port| {
                let number = u16::try_from(port.get("containerPort")?.as_u64()?).ok()?;
                let name = port.get("name").and_then(Value::as_str).map(str::to_owned);
                Some((number, name))
            })
            .collect();
        found.push(MeshWorkload {
            ports,
            namespace: namespace.to_owned(),
            id: format!("{}/{namespace}/{}", object.kind, object.name),
            name: object.name.clone(),
            labels: string_map(metadata.and_then(|m| m.get("labels"))),
            annotations: string_map(metadata.and_then(|m| m.get("annotations"))),
            containers,
            is_live_pod: object.kind == "Pod" && ctx.mode == Mode::Live,
            phase: template
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map(str::to_owned),
            location: object.finding_location(),
        });
    }
    found
}

/// A namespace's labels and annotations.
type NamespaceMeta = (BTreeMap<String, String>, BTreeMap<String, String>);

/// Namespace name to (labels, annotations); namespaces without an object have neither.
fn namespaces(objects: &[KubeObject]) -> BTreeMap<String, NamespaceMeta> {
    objects
        .iter()
        .filter(|object| object.kind == "Namespace")
        .map(|object| {
            (
                object.name.clone(),
                (
                    string_map(object.value.pointer("/metadata/labels")),
                    string_map(object.value.pointer("/metadata/annotations")),
                ),
            )
        })
        .collect()
}

/// Which mesh (if any) puts a proxy next to a workload, or why none does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meshing {
    Istio(&'static str),
    Linkerd(&'static str),
    None(String),
}

pub fn meshing(
    workload: &MeshWorkload,
    namespace_labels: &BTreeMap<String, String>,
    namespace_annotations: &BTreeMap<String, String>,
) -> Meshing {
    let has = |name: &str| workload.containers.iter().any(|c| c == name);
    if has("istio-proxy") || workload.annotations.contains_key("sidecar.istio.io/status") {
        return Meshing::Istio("has the istio-proxy sidecar");
    }
    if has("linkerd-proxy") {
        return Meshing::Linkerd("has the linkerd-proxy");
    }
    let istio_opt_out = workload
        .labels
        .get("sidecar.istio.io/inject")
        .map(String::as_str)
        == Some("false")
        || workload
            .annotations
            .get("sidecar.istio.io/inject")
            .map(String::as_str)
            == Some("false");
    let linkerd_opt_out = workload
        .annotations
        .get("linkerd.io/inject")
        .map(String::as_str)
        == Some("disabled");
    let istio_namespace = namespace_labels.get("istio-injection").map(String::as_str)
        == Some("enabled")
        || (namespace_labels.contains_key("istio.io/rev")
            && namespace_labels.get("istio-injection").map(String::as_str) != Some("disabled"));
    let istio_pod = workload
        .labels
        .get("sidecar.istio.io/inject")
        .map(String::as_str)
        == Some("true");
    let linkerd_namespace = namespace_annotations
        .get("linkerd.io/inject")
        .map(String::as_str)
        == Some("enabled");
    let linkerd_pod = workload
        .annotations
        .get("linkerd.io/inject")
        .map(String::as_str)
        == Some("enabled");
    let istio_injected = (istio_namespace || istio_pod) && !istio_opt_out;
    let linkerd_injected = (linkerd_namespace || linkerd_pod) && !linkerd_opt_out;
    if workload.is_live_pod {
        // A running pod gets its proxy only when created; injection enabled later needs a restart.
        if istio_injected || linkerd_injected {
            return Meshing::None(
                "injection is enabled but the pod has no proxy container: it was created before; restart it"
                    .into(),
            );
        }
    } else if istio_injected {
        return Meshing::Istio("will get the istio-proxy sidecar (injection enabled)");
    } else if linkerd_injected {
        return Meshing::Linkerd("will get the linkerd-proxy (linkerd.io/inject: enabled)");
    }
    if istio_opt_out && (istio_namespace || istio_pod) {
        return Meshing::None("opts out with sidecar.istio.io/inject: \"false\"".into());
    }
    if linkerd_opt_out && (linkerd_namespace || linkerd_pod) {
        return Meshing::None("opts out with linkerd.io/inject: disabled".into());
    }
    Meshing::None(format!(
        "has no mesh proxy and namespace {} enables no injection",
        workload.namespace
    ))
}

/// Whether the inputs carry any mesh at all: a mesh's own objects, a namespace or workload that
/// asks for injection or sets an inbound policy, or a workload that has a proxy.
fn mesh_among(objects: &[KubeObject], ctx: &Context) -> bool {
    let mesh_kind = objects.iter().any(|object| {
        object.api_version.starts_with("security.istio.io/")
            || object.api_version.starts_with("networking.istio.io/")
            || object.api_version.starts_with("policy.linkerd.io/")
    });
    let namespace_opts_in = namespaces(objects).values().any(|(labels, annotations)| {
        labels.contains_key("istio-injection")
            || labels.contains_key("istio.io/rev")
            || annotations.contains_key("linkerd.io/inject")
            || annotations.contains_key(LINKERD_INBOUND)
    });
    let empty = BTreeMap::new();
    let workload_meshed = workloads(objects, ctx).iter().any(|workload| {
        !matches!(meshing(workload, &empty, &empty), Meshing::None(_))
            || workload.annotations.contains_key(LINKERD_INBOUND)
    });
    mesh_kind || namespace_opts_in || workload_meshed
}

/// A static scan without a lab namespace judges a mesh only when the files carry one: a
/// repository that uses no mesh gets `skip` with the reason, not a failure about a mesh it never
/// meant to have. Live, and for a lab's namespace, a missing mesh is a finding.
fn no_mesh_given(objects: &[KubeObject], ctx: &Context) -> Option<Outcome> {
    (ctx.mode == Mode::Static && ctx.params.namespace.is_none() && !mesh_among(objects, ctx)).then(
        || {
            Outcome::skip(
                "no service mesh among the inputs (no Istio or Linkerd object, no injection label or \
                 annotation, no proxy): mTLS is not judged; pass --namespace to require one",
            )
        },
    )
}

async fn workloads_meshed(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    if let Some(skipped) = no_mesh_given(&objects, ctx) {
        return Ok(skipped);
    }
    let workloads = workloads(&objects, ctx);
    if workloads.is_empty() {
        return Ok(Outcome::skip(format!(
            "no workloads in {}",
            scope_name(ctx)
        )));
    }
    let namespaces = namespaces(&objects);
    let empty = (BTreeMap::new(), BTreeMap::new());
    let mut unmeshed = Vec::new();
    let mut locations = Vec::new();
    let mut meshes = BTreeSet::new();
    for workload in &workloads {
        let (labels, annotations) = namespaces.get(&workload.namespace).unwrap_or(&empty);
        match meshing(workload, labels, annotations) {
            Meshing::Istio(_) => {
                meshes.insert("Istio");
            }
            Meshing::Linkerd(_) => {
                meshes.insert("Linkerd");
            }
            Meshing::None(reason) => {
                unmeshed.push(format!("{}: {reason}", workload.id));
                locations.push(workload.location.clone());
            }
        }
    }
    if !unmeshed.is_empty() {
        return Ok(Outcome::fail(format!(
            "{} of {} workloads in {} are not meshed: {}",
            unmeshed.len(),
            workloads.len(),
            scope_name(ctx),
            unmeshed.join("; ")
        ))
        .with_evidence(unmeshed.join("\n"))
        .with_locations(locations));
    }
    Ok(Outcome::pass(format!(
        "all {} workloads in {} are meshed ({})",
        workloads.len(),
        scope_name(ctx),
        meshes.into_iter().collect::<Vec<_>>().join(", ")
    )))
}

fn scope_name(ctx: &Context) -> String {
    match &ctx.params.namespace {
        Some(namespace) => format!("namespace {namespace}"),
        None => "the non-system namespaces".into(),
    }
}

/// A PeerAuthentication, reduced to what decides STRICT.
#[derive(Debug, Clone)]
pub struct PeerAuthentication {
    namespace: String,
    name: String,
    selector: Option<BTreeMap<String, String>>,
    mode: Option<String>,
    port_modes: Vec<(String, String)>,
    location: Location,
}

impl PeerAuthentication {
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub fn peer_authentications(objects: &[KubeObject], ctx: &Context) -> Vec<PeerAuthentication> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for object in objects.iter().filter(|o| o.kind == "PeerAuthentication") {
        let namespace = namespace_of(object, ctx).to_owned();
        // Served under two versions, a live object is listed twice.
        if !seen.insert((namespace.clone(), object.name.clone())) {
            continue;
        }
        let spec = object.value.get("spec");
        let selector = spec
            .and_then(|s| s.get("selector"))
            .map(|s| string_map(s.get("matchLabels")))
            .filter(|labels| !labels.is_empty());
        let mode = spec
            .and_then(|s| s.pointer("/mtls/mode"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let port_modes = spec
            .and_then(|s| s.get("portLevelMtls"))
            .and_then(Value::as_object)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|(port, setting)| {
                        Some((port.clone(), setting.get("mode")?.as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.push(PeerAuthentication {
            namespace,
            name: object.name.clone(),
            selector,
            mode,
            port_modes,
            location: object.finding_location(),
        });
    }
    found
}

/// The mode a policy sets, `None` when it sets none or `UNSET` (which inherits from its parent).
fn set_mode(mode: Option<&str>) -> Option<&str> {
    mode.filter(|mode| *mode != "UNSET")
}

/// Of several policies at one level Istio uses the oldest; files carry no creation time, so the
/// one named `default`, else the first by name, stands for it (and the others are reported).
fn pick<'a>(candidates: &[&'a PeerAuthentication]) -> Option<&'a PeerAuthentication> {
    candidates
        .iter()
        .find(|p| p.name == "default")
        .or_else(|| candidates.iter().min_by(|a, b| a.name.cmp(&b.name)))
        .copied()
}

/// The effective mTLS mode for one workload on one port, and the policy that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMode {
    pub mode: String,
    /// `namespace/name` of the deciding policy; `None` for Istio's default (PERMISSIVE).
    pub decided_by: Option<String>,
}

/// Istio's precedence for a workload: a workload-selector policy over the namespace's policy over
/// the root namespace's mesh-wide one, each level's `UNSET` (or no mode) inheriting the level
/// above; port-level settings (only honoured on selector policies) override the workload's mode
/// for their port, `UNSET` there inheriting it. Without any policy the mode is PERMISSIVE.
pub fn istio_effective(
    policies: &[PeerAuthentication],
    workload: &MeshWorkload,
    port: Option<u16>,
) -> EffectiveMode {
    let mesh: Vec<&PeerAuthentication> = policies
        .iter()
        .filter(|p| p.namespace == ISTIO_ROOT_NAMESPACE && p.selector.is_none())
        .collect();
    let namespace: Vec<&PeerAuthentication> = policies
        .iter()
        .filter(|p| {
            p.namespace == workload.namespace
                && p.namespace != ISTIO_ROOT_NAMESPACE
                && p.selector.is_none()
        })
        .collect();
    let selecting: Vec<&PeerAuthentication> = policies
        .iter()
        .filter(|p| p.namespace == workload.namespace)
        .filter(|p| {
            p.selector.as_ref().is_some_and(|selector| {
                selector
                    .iter()
                    .all(|(k, v)| workload.labels.get(k) == Some(v))
            })
        })
        .collect();
    let mut effective = EffectiveMode {
        mode: "PERMISSIVE".into(),
        decided_by: None,
    };
    for level in [pick(&mesh), pick(&namespace), pick(&selecting)]
        .into_iter()
        .flatten()
    {
        if let Some(mode) = set_mode(level.mode.as_deref()) {
            effective = EffectiveMode {
                mode: mode.to_owned(),
                decided_by: Some(level.id()),
            };
        }
    }
    if let (Some(port), Some(policy)) = (port, pick(&selecting))
        && let Some((_, mode)) = policy
            .port_modes
            .iter()
            .find(|(key, _)| key.parse::<u16>().ok() == Some(port))
        && let Some(mode) = set_mode(Some(mode.as_str()))
    {
        effective = EffectiveMode {
            mode: mode.to_owned(),
            decided_by: Some(format!("{} (portLevelMtls {port})", policy.id())),
        };
    }
    effective
}

/// `Some(problems)` when Istio is configured at all; empty problems means STRICT holds for every
/// workload in scope on every port it declares or a policy names.
fn istio_verdict(
    policies: &[PeerAuthentication],
    scope: &[String],
    workloads: &[MeshWorkload],
) -> Option<(Vec<String>, Vec<Location>, Vec<String>)> {
    let relevant: Vec<PeerAuthentication> = policies
        .iter()
        .filter(|p| p.namespace == ISTIO_ROOT_NAMESPACE || scope.contains(&p.namespace))
        .cloned()
        .collect();
    if relevant.is_empty() {
        return None;
    }
    let mut problems = Vec::new();
    let mut locations = Vec::new();
    let mut strict_by = Vec::new();
    let judged: Vec<&MeshWorkload> = workloads
        .iter()
        .filter(|w| scope.contains(&w.namespace))
        .collect();
    for workload in &judged {
        let selects = |p: &PeerAuthentication| {
            p.namespace == workload.namespace
                && p.selector.as_ref().is_some_and(|selector| {
                    selector
                        .iter()
                        .all(|(k, v)| workload.labels.get(k) == Some(v))
                })
        };
        let mut ports: BTreeSet<u16> = workload.ports.iter().map(|(port, _)| *port).collect();
        for policy in relevant.iter().filter(|p| selects(p)) {
            ports.extend(
                policy
                    .port_modes
                    .iter()
                    .filter_map(|(port, _)| port.parse::<u16>().ok()),
            );
        }
        // The workload's own mode (every port), then each port whose mode differs from it.
        let base = istio_effective(&relevant, workload, None);
        let mut verdicts = vec![(None, base.clone())];
        for port in ports {
            let effective = istio_effective(&relevant, workload, Some(port));
            if effective != base {
                verdicts.push((Some(port), effective));
            }
        }
        for (port, effective) in verdicts {
            let on = port.map_or_else(|| "every port".to_owned(), |p| format!("port {p}"));
            match effective.mode.as_str() {
                "STRICT" => strict_by.extend(effective.decided_by.clone()),
                mode => {
                    problems.push(match &effective.decided_by {
                        Some(policy) => format!("{} on {on} is {mode}, set by {policy}", workload.id),
                        None => format!(
                            "{} on {on} is PERMISSIVE: no PeerAuthentication sets a mode for it, in its \
                             namespace or mesh-wide in {ISTIO_ROOT_NAMESPACE} (Istio's default)",
                            workload.id
                        ),
                    });
                    let deciding = relevant.iter().find(|p| {
                        effective
                            .decided_by
                            .as_deref()
                            .is_some_and(|by| by.starts_with(&p.id()))
                    });
                    if let Some(policy) = deciding
                        && !locations.contains(&policy.location)
                    {
                        locations.push(policy.location.clone());
                    }
                }
            }
        }
    }
    if judged.is_empty() {
        let mesh = pick(
            &relevant
                .iter()
                .filter(|p| p.namespace == ISTIO_ROOT_NAMESPACE && p.selector.is_none())
                .collect::<Vec<_>>(),
        );
        match mesh.and_then(|p| set_mode(p.mode.as_deref()).map(|m| (p, m))) {
            Some((policy, "STRICT")) => strict_by.push(policy.id()),
            _ => problems.push(format!(
                "no workloads to judge and no mesh-wide STRICT PeerAuthentication in {ISTIO_ROOT_NAMESPACE}"
            )),
        }
    }
    strict_by.sort();
    strict_by.dedup();
    Some((problems, locations, strict_by))
}

/// Linkerd's cluster-wide default inbound policy, from the `linkerd-config` ConfigMap when the
/// inputs have it (`proxy.defaultInboundPolicy` in its values), else Linkerd's own default.
fn linkerd_cluster_default(objects: &[KubeObject]) -> (String, String) {
    let configured = objects
        .iter()
        .filter(|o| o.kind == "ConfigMap" && o.name == "linkerd-config")
        .find_map(|config| {
            let values = config.value.pointer("/data/values")?.as_str()?;
            values.lines().find_map(|line| {
                let value = line.trim().strip_prefix("defaultInboundPolicy:")?;
                Some(value.trim().trim_matches('"').to_owned())
            })
        });
    match configured {
        Some(policy) => (policy, "the cluster default (linkerd-config)".to_owned()),
        None => (
            "all-unauthenticated".to_owned(),
            "Linkerd's default (no linkerd-config among the inputs)".to_owned(),
        ),
    }
}

/// Whether Linkerd refuses unauthenticated clients for a workload on every port it serves, and
/// how; `Err` names the port and the policy that lets plaintext in. Per port, a Server that
/// selects the workload decides (only its AuthorizationPolicies admit anyone: none admits nobody,
/// a NetworkAuthentication alone admits unauthenticated clients); elsewhere the default inbound
/// policy decides, the workload's annotation over the namespace's over the cluster's.
fn linkerd_policy_for(
    workload: &MeshWorkload,
    namespace_annotations: &BTreeMap<String, String>,
    objects: &[KubeObject],
    ctx: &Context,
) -> std::result::Result<String, String> {
    let (cluster_policy, cluster_source) = linkerd_cluster_default(objects);
    let (default_policy, default_source) =
        if let Some(policy) = workload.annotations.get(LINKERD_INBOUND) {
            (policy.clone(), "workload annotation".to_owned())
        } else if let Some(policy) = namespace_annotations.get(LINKERD_INBOUND) {
            (policy.clone(), "namespace annotation".to_owned())
        } else {
            (cluster_policy, cluster_source)
        };
    let default_ok = LINKERD_AUTHENTICATED.contains(&default_policy.as_str());
    let in_namespace = |kind: &'static str| {
        objects.iter().filter(move |o| {
            o.kind == kind
                && o.api_version.starts_with("policy.linkerd.io/")
                && namespace_of(o, ctx) == workload.namespace
        })
    };
    let servers: Vec<&KubeObject> = in_namespace("Server")
        .filter(|server| {
            let selector = string_map(server.value.pointer("/spec/podSelector/matchLabels"));
            !selector.is_empty()
                && selector
                    .iter()
                    .all(|(k, v)| workload.labels.get(k) == Some(v))
        })
        .collect();
    let server_for = |port: u16, name: Option<&str>| {
        servers
            .iter()
            .find(|server| match server.value.pointer("/spec/port") {
                Some(Value::Number(number)) => number.as_u64() == Some(u64::from(port)),
                Some(Value::String(text)) => {
                    Some(text.as_str()) == name || text.parse::<u16>().ok() == Some(port)
                }
                _ => false,
            })
    };
    let mut how = BTreeSet::new();
    let mut gaps = Vec::new();
    let mut ports = workload.ports.clone();
    if ports.is_empty() {
        // No declared port: only the default policy can be judged.
        ports.push((0, None));
    }
    for (port, name) in &ports {
        let on = if *port == 0 {
            "its ports".to_owned()
        } else {
            format!("port {port}")
        };
        if *port != 0
            && let Some(server) = server_for(*port, name.as_deref())
        {
            let policies: Vec<&KubeObject> = in_namespace("AuthorizationPolicy")
                .filter(|policy| {
                    let target = policy.value.pointer("/spec/targetRef");
                    let kind = target.and_then(|t| t.get("kind")).and_then(Value::as_str);
                    let target_name = target.and_then(|t| t.get("name")).and_then(Value::as_str);
                    (kind == Some("Server") && target_name == Some(server.name.as_str()))
                        || kind == Some("Namespace")
                })
                .collect();
            let open: Vec<&str> = policies
                .iter()
                .filter(|policy| {
                    !policy
                        .value
                        .pointer("/spec/requiredAuthenticationRefs")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter().any(|r| {
                                r.get("kind").and_then(Value::as_str)
                                    == Some("MeshTLSAuthentication")
                            })
                        })
                })
                .map(|policy| policy.name.as_str())
                .collect();
            if open.is_empty() {
                how.insert(format!(
                    "Server {}/{} admits only MeshTLSAuthentication identities",
                    workload.namespace, server.name
                ));
            } else {
                gaps.push(format!(
                    "{} on {on}: Server {}/{} is authorized by {} without a MeshTLSAuthentication \
                     (unauthenticated clients are admitted)",
                    workload.id,
                    workload.namespace,
                    server.name,
                    open.join(", ")
                ));
            }
            continue;
        }
        if default_ok {
            how.insert(format!(
                "{default_source} {LINKERD_INBOUND}: {default_policy}"
            ));
        } else {
            gaps.push(format!(
                "{} on {on}: the default inbound policy is {default_policy} ({default_source}), which \
                 admits unauthenticated clients, and no Server with a MeshTLSAuthentication policy covers it",
                workload.id
            ));
        }
    }
    if gaps.is_empty() {
        Ok(how.into_iter().collect::<Vec<_>>().join("; "))
    } else {
        Err(gaps.join("; "))
    }
}

async fn strict_mode(ctx: &Context) -> Result<Outcome> {
    let objects = objects(ctx).await?;
    if let Some(skipped) = no_mesh_given(&objects, ctx) {
        return Ok(skipped);
    }
    let workloads = workloads(&objects, ctx);
    let namespace_objects = namespaces(&objects);
    let mut scope: Vec<String> = match &ctx.params.namespace {
        Some(namespace) => vec![namespace.clone()],
        None => workloads.iter().map(|w| w.namespace.clone()).collect(),
    };
    scope.sort();
    scope.dedup();

    let policies = peer_authentications(&objects, ctx);
    let empty = (BTreeMap::new(), BTreeMap::new());
    let linkerd_workloads: Vec<&MeshWorkload> = workloads
        .iter()
        .filter(|w| {
            let (labels, annotations) = namespace_objects.get(&w.namespace).unwrap_or(&empty);
            matches!(meshing(w, labels, annotations), Meshing::Linkerd(_))
        })
        .collect();

    // Linkerd: every meshed workload refuses unauthenticated clients.
    let mut linkerd_gaps = Vec::new();
    let mut linkerd_locations = Vec::new();
    let mut linkerd_how = BTreeSet::new();
    for workload in &linkerd_workloads {
        let (_, annotations) = namespace_objects.get(&workload.namespace).unwrap_or(&empty);
        match linkerd_policy_for(workload, annotations, &objects, ctx) {
            Ok(how) => {
                linkerd_how.insert(how);
            }
            Err(gap) => {
                linkerd_gaps.push(format!(
                    "{} is meshed by Linkerd but accepts unauthenticated clients: {gap}",
                    workload.id
                ));
                linkerd_locations.push(workload.location.clone());
            }
        }
    }
    let unmeshed_by_linkerd = workloads.len() - linkerd_workloads.len();

    match istio_verdict(&policies, &scope, &workloads) {
        Some((problems, _, strict_by)) if problems.is_empty() => {
            return Ok(Outcome::pass(format!(
                "Istio mTLS is STRICT for {} ({})",
                scope_list(&scope),
                strict_by.join(", ")
            )));
        }
        Some((problems, locations, _)) => {
            // A fully authenticated Linkerd mesh still satisfies the requirement.
            if linkerd_passes(&linkerd_workloads, &linkerd_gaps, unmeshed_by_linkerd) {
                return Ok(linkerd_pass(&linkerd_how, linkerd_workloads.len()));
            }
            return Ok(
                Outcome::fail(format!("Istio mTLS is not STRICT: {}", problems.join("; ")))
                    .with_evidence(problems.join("\n"))
                    .with_locations(locations),
            );
        }
        None => {}
    }
    if linkerd_workloads.is_empty() {
        return Ok(Outcome::fail(format!(
            "no mesh found: no PeerAuthentication{} and no Linkerd-meshed workload in {}",
            if ctx.mode == Mode::Live {
                " (or the Istio API is not installed)"
            } else {
                ""
            },
            scope_name(ctx)
        )));
    }
    if linkerd_passes(&linkerd_workloads, &linkerd_gaps, unmeshed_by_linkerd) {
        return Ok(linkerd_pass(&linkerd_how, linkerd_workloads.len()));
    }
    let mut problems = linkerd_gaps;
    if unmeshed_by_linkerd > 0 {
        problems.push(format!(
            "{unmeshed_by_linkerd} workload(s) in {} are not meshed by Linkerd (see mtls.workloads-meshed)",
            scope_name(ctx)
        ));
    }
    Ok(Outcome::fail(format!(
        "Linkerd does not refuse plaintext: {}",
        problems.join("; ")
    ))
    .with_evidence(problems.join("\n"))
    .with_locations(linkerd_locations))
}

fn linkerd_passes(meshed: &[&MeshWorkload], gaps: &[String], unmeshed: usize) -> bool {
    !meshed.is_empty() && gaps.is_empty() && unmeshed == 0
}

fn linkerd_pass(how: &BTreeSet<String>, count: usize) -> Outcome {
    Outcome::pass(format!(
        "Linkerd refuses unauthenticated clients for all {count} workloads ({})",
        how.iter().cloned().collect::<Vec<_>>().join("; ")
    ))
}

fn scope_list(scope: &[String]) -> String {
    if scope.is_empty() {
        "the mesh".into()
    } else {
        format!("namespace(s) {}", scope.join(", "))
    }
}
