//! The reachability matrix: every source pod to every destination pod, on each port the
//! destination declares or a policy names, with the verdict and the policies that decided it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::engine::{
    Cluster, ContainerPort, Labels, NAMESPACE_NAME_LABEL, Pod, Policy, Protocol, Rejected,
};
use crate::context::Mode;
use crate::inputs::objects::{KubeObject, objects};
use crate::{Context, Error, Result};

/// Kinds whose pod template becomes a pod in static mode, and where the template sits.
const TEMPLATES: &[(&str, &[&str])] = &[
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

/// Builds the engine's view from the run's objects. Static mode also turns workload templates
/// into pods (named after the workload); live mode uses the Pods the cluster has.
pub fn cluster_from(
    objects: &[KubeObject],
    mode: Mode,
    default_namespace: &str,
) -> Result<Cluster> {
    let mut cluster = Cluster::default();
    let namespace_of = |object: &KubeObject| {
        object
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_owned())
    };
    for object in objects {
        match object.kind.as_str() {
            "Namespace" => {
                let mut labels: Labels = object
                    .value
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|map| {
                        map.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                // The API server sets this label on every namespace; files do not carry it.
                labels
                    .entry(NAMESPACE_NAME_LABEL.to_owned())
                    .or_insert_with(|| object.name.clone());
                cluster.namespaces.insert(object.name.clone(), labels);
            }
            "NetworkPolicy" => match Policy::from_object(object, &namespace_of(object)) {
                Ok(policy) => cluster.policies.push(policy),
                Err(error) => refused(&mut cluster, object, mode, error)?,
            },
            "Pod" => match pod(object, &namespace_of(object), &object.value) {
                Ok(pod) => cluster.pods.push(pod),
                Err(error) => refused(&mut cluster, object, mode, error)?,
            },
            kind if mode == Mode::Static => {
                let Some((_, path)) = TEMPLATES.iter().find(|(k, _)| *k == kind) else {
                    continue;
                };
                let mut template = &object.value;
                for key in *path {
                    match template.get(key) {
                        Some(inner) => template = inner,
                        None => break,
                    }
                }
                if template.get("spec").is_some() {
                    match pod(object, &namespace_of(object), template) {
                        Ok(pod) => cluster.pods.push(pod),
                        Err(error) => refused(&mut cluster, object, mode, error)?,
                    }
                }
            }
            _ => {}
        }
    }
    cluster.pods.sort_by_key(Pod::id);
    Ok(cluster)
}

/// A malformed pod or policy: in files, one the API server would refuse, so the cluster would not
/// have it; it is left out and reported, and the rest of the corpus is still judged. Live, the
/// object exists, so failing to read it is an error (the model would be wrong without it).
fn refused(cluster: &mut Cluster, object: &KubeObject, mode: Mode, error: Error) -> Result<()> {
    match (mode, error) {
        (Mode::Static, Error::Invalid { message, .. }) => {
            cluster.rejected.push(Rejected {
                object: object.id(),
                location: object.finding_location(),
                reason: message,
            });
            Ok(())
        }
        (_, error) => Err(error),
    }
}

fn pod(object: &KubeObject, namespace: &str, template: &Value) -> Result<Pod> {
    Pod::from_template(object, namespace, template).map_err(|message| {
        let location = object.finding_location();
        let place = if location.file.is_empty() {
            object.id()
        } else {
            format!("{}:{} ({})", location.file, location.line, object.id())
        };
        Error::invalid(place, message)
    })
}

#[derive(Debug)]
struct ClusterInput(std::result::Result<Arc<Cluster>, (String, String)>);

/// The run's cluster view, built once and shared by the network policy checks. Fails when the
/// objects cannot be read, or when a policy or pod is malformed (naming file, line and field).
pub async fn cluster(ctx: &Context) -> Result<Arc<Cluster>> {
    let objects = objects(ctx).await?;
    let input = ctx
        .input(|| async {
            let default_namespace = ctx.params.namespace.as_deref().unwrap_or("default");
            ClusterInput(
                cluster_from(&objects, ctx.mode, default_namespace)
                    .map(Arc::new)
                    .map_err(|error| match error {
                        Error::Invalid { location, message } => (location, message),
                        other => (String::new(), other.to_string()),
                    }),
            )
        })
        .await;
    match &input.0 {
        Ok(cluster) => Ok(Arc::clone(cluster)),
        Err((location, message)) => Err(Error::invalid(location.clone(), message.clone())),
    }
}

/// A pod in the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// The object it came from, e.g. `Deployment/shop/web`.
    pub object: String,
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Names of the policies that select it for ingress; empty: open.
    pub ingress_policies: Vec<String>,
    pub egress_policies: Vec<String>,
}

/// One judged connection.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    pub allowed: bool,
    /// The policies that decided: those that allowed it, or those whose isolation denied it.
    pub policies: Vec<String>,
    pub egress: super::engine::DirectionVerdict,
    pub ingress: super::engine::DirectionVerdict,
    pub explanation: String,
}

/// Nodes and edges, ready to draw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Matrix {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Pods and policies among the files that the API server would refuse: left out, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

/// The matrix of the run's inputs; with a namespace, only pods there and connections that start
/// or end there.
pub async fn matrix(ctx: &Context, namespace: Option<&str>) -> Result<Matrix> {
    let cluster = cluster(ctx).await?;
    Ok(build(&cluster, namespace))
}

/// The matrix of a cluster view (a pod's connections to itself are left out: always allowed).
pub fn build(cluster: &Cluster, namespace: Option<&str>) -> Matrix {
    let in_scope = |pod: &Pod| namespace.is_none_or(|ns| pod.namespace == ns);
    let ids = |policies: Vec<&Policy>| policies.iter().map(|p| p.id()).collect::<Vec<_>>();
    let nodes = cluster
        .pods
        .iter()
        .filter(|pod| in_scope(pod))
        .map(|pod| Node {
            id: pod.id(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            object: pod.object.clone(),
            labels: pod.labels.clone(),
            ports: pod.ports.clone(),
            ip: pod.ip.map(|ip| ip.to_string()),
            ingress_policies: ids(cluster.selecting(pod, super::engine::Direction::Ingress)),
            egress_policies: ids(cluster.selecting(pod, super::engine::Direction::Egress)),
        })
        .collect();
    let mut edges = Vec::new();
    let ports: BTreeMap<String, Vec<(u16, Protocol)>> = cluster
        .pods
        .iter()
        .map(|pod| (pod.id(), cluster.ports_of(pod)))
        .collect();
    for from in &cluster.pods {
        for to in &cluster.pods {
            if from.id() == to.id() || !(in_scope(from) || in_scope(to)) {
                continue;
            }
            for &(port, protocol) in ports.get(&to.id()).into_iter().flatten() {
                let verdict = cluster.verdict(from, to, port, protocol);
                edges.push(Edge {
                    from: from.id(),
                    to: to.id(),
                    port,
                    protocol,
                    port_name: to
                        .ports
                        .iter()
                        .find(|p| p.port == port && p.protocol == protocol)
                        .and_then(|p| p.name.clone()),
                    allowed: verdict.allowed,
                    policies: verdict.policies(),
                    egress: verdict.egress,
                    ingress: verdict.ingress,
                    explanation: verdict.explanation,
                });
            }
        }
    }
    Matrix {
        nodes,
        edges,
        rejected: cluster.rejected.clone(),
    }
}

impl Matrix {
    /// A table a person can read: one line per edge.
    pub fn to_text(&self) -> String {
        let mut rows = vec![[
            "FROM".to_owned(),
            "TO".to_owned(),
            "PORT".to_owned(),
            "VERDICT".to_owned(),
            "POLICIES".to_owned(),
        ]];
        for edge in &self.edges {
            let port = match &edge.port_name {
                Some(name) => format!("{}/{} ({name})", edge.port, edge.protocol),
                None => format!("{}/{}", edge.port, edge.protocol),
            };
            let policies = if edge.policies.is_empty() {
                "-".to_owned()
            } else {
                edge.policies.join(",")
            };
            rows.push([
                edge.from.clone(),
                edge.to.clone(),
                port,
                if edge.allowed { "allowed" } else { "denied" }.to_owned(),
                policies,
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in &rows {
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
                if index + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        let allowed = self.edges.iter().filter(|edge| edge.allowed).count();
        let _ = writeln!(
            text,
            "{} pods, {} connections: {allowed} allowed, {} denied",
            self.nodes.len(),
            self.edges.len(),
            self.edges.len() - allowed
        );
        for rejected in &self.rejected {
            let _ = writeln!(
                text,
                "left out, the API server would refuse it: {} ({}:{}): {}",
                rejected.object, rejected.location.file, rejected.location.line, rejected.reason
            );
        }
        text
    }

    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        json.push('\n');
        json
    }
}
