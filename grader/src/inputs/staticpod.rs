//! The kube-apiserver and etcd static pods and the flags in their `command` and `args`.
//!
//! Where they come from: in static mode, the given files (recognized by content: a Pod whose
//! container is named, or runs, `kube-apiserver` / `etcd`); live, the node's
//! `<kubernetes_dir>/manifests/` when the grader can reach the node, else the mirror pods in
//! `kube-system` (labels `component=kube-apiserver` / `component=etcd`) through the API.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::inputs::flags::{Component, FlagProblem, Flags};
use crate::inputs::objects::KubeObject;
use crate::inputs::{InputDocument, documents};
use crate::model::Location;
use crate::target::NodeAccess;
use crate::{Context, Error, Result, context::Mode};

/// One control-plane static pod, with its parsed flags.
#[derive(Debug, Clone)]
pub struct StaticPod {
    pub component: Component,
    /// Where it was read, for messages: a file path (`/etc/kubernetes/manifests/etcd.yaml`,
    /// `docker:kind-control-plane:/etc/...`) or `Pod/kube-system/<name>`.
    pub source: String,
    /// File and line (static mode and node files) or the object (mirror pods), for findings.
    pub location: Location,
    /// The container whose command line was read.
    pub container: String,
    /// Its image (`registry.k8s.io/kube-apiserver:v1.31.0`), which tells the version.
    pub image: Option<String>,
    /// `command` (without the program) followed by `args`.
    pub flags: Flags,
    /// The whole Pod as JSON.
    pub pod: Value,
}

impl StaticPod {
    /// Arguments the component would refuse to start with.
    pub fn problems(&self) -> &[FlagProblem] {
        self.flags.problems()
    }

    /// A location for a finding about this pod.
    pub fn finding_location(&self) -> Location {
        self.location.clone()
    }

    /// The version in the image tag (`v1.31.0` → `(1, 31)`), when there is one.
    pub fn version(&self) -> Option<(u32, u32)> {
        let tag = self.image.as_deref()?.rsplit_once(':')?.1;
        let mut parts = tag.trim_start_matches('v').split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }

    /// Reads a static pod from a Pod object when it runs `component`.
    pub fn from_pod(
        component: Component,
        pod: &Value,
        source: String,
        location: Location,
    ) -> Option<Self> {
        let program = program_name(component);
        let containers = pod.pointer("/spec/containers")?.as_array()?;
        let container = containers.iter().find(|container| {
            container.get("name").and_then(Value::as_str) == Some(program)
                || first_word(container).is_some_and(|word| runs(word, program))
        })?;
        let words = |field: &str| -> Vec<String> {
            container
                .get(field)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| match item {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut arguments = words("command");
        // The first command word is the program; without a command the image's entrypoint is.
        if !arguments.is_empty() {
            arguments.remove(0);
        }
        arguments.extend(words("args"));
        Some(StaticPod {
            component,
            source,
            location,
            container: container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(program)
                .to_owned(),
            image: container
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_owned),
            flags: Flags::parse(component, &arguments),
            pod: pod.clone(),
        })
    }
}

fn program_name(component: Component) -> &'static str {
    match component {
        Component::ApiServer => "kube-apiserver",
        Component::Etcd => "etcd",
    }
}

fn first_word(container: &Value) -> Option<&str> {
    container.pointer("/command/0").and_then(Value::as_str)
}

fn runs(word: &str, program: &str) -> bool {
    word.rsplit('/').next() == Some(program)
}

fn is_pod(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("Pod")
}

/// Both control-plane static pods found in one place.
#[derive(Debug, Clone, Default)]
struct StaticPods {
    apiserver: Option<Arc<StaticPod>>,
    etcd: Option<Arc<StaticPod>>,
}

impl StaticPods {
    fn add_documents(&mut self, documents: &[InputDocument], source_prefix: &str) {
        self.add_pods(
            documents
                .iter()
                .map(|document| (document.file.as_str(), document.line, &document.value)),
            source_prefix,
        );
    }

    /// Static mode: the Pods among the objects read from files.
    fn add_objects(&mut self, objects: &[KubeObject]) {
        self.add_pods(
            objects.iter().filter_map(|object| {
                let location = object.location.as_ref()?;
                Some((location.file.as_str(), location.line, &object.value))
            }),
            "",
        );
    }

    /// Each Pod's (file, line, JSON) that runs the API server or etcd fills its slot, first found first.
    fn add_pods<'a>(
        &mut self,
        pods: impl Iterator<Item = (&'a str, usize, &'a Value)>,
        source_prefix: &str,
    ) {
        for (file, line, value) in pods.filter(|(_, _, value)| is_pod(value)) {
            let location = Location {
                file: file.to_owned(),
                line,
                object: None,
            };
            let source = format!("{source_prefix}{file}");
            for (component, slot) in [
                (Component::ApiServer, &mut self.apiserver),
                (Component::Etcd, &mut self.etcd),
            ] {
                if slot.is_none() {
                    *slot = StaticPod::from_pod(component, value, source.clone(), location.clone())
                        .map(Arc::new);
                }
            }
        }
    }
}

/// Why collecting failed, kept so that every check asking gets the same error.
#[derive(Debug, Clone)]
enum Failure {
    Invalid { location: String, message: String },
    Node(String),
    Api(String),
}

impl Failure {
    fn from_error(error: Error) -> Self {
        match error {
            Error::Invalid { location, message } => Failure::Invalid { location, message },
            Error::Kube(error) => Failure::Api(describe_kube_error(&error)),
            other => Failure::Node(other.to_string()),
        }
    }

    fn to_error(&self) -> Error {
        match self {
            Failure::Invalid { location, message } => Error::invalid(location, message),
            Failure::Node(message) => Error::Node(message.clone()),
            Failure::Api(message) => Error::Unreachable {
                what: "Kubernetes API".into(),
                message: message.clone(),
            },
        }
    }
}

/// `forbidden: ...` for 403 answers, so the check's error says what is missing.
pub(crate) fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!("forbidden: {}", status.message),
        other => other.to_string(),
    }
}

#[derive(Debug)]
struct StaticPodsInput(std::result::Result<StaticPods, Failure>);

async fn static_pods(ctx: &Context) -> Result<StaticPods> {
    let input = ctx
        .input(|| async { StaticPodsInput(collect(ctx).await.map_err(Failure::from_error)) })
        .await;
    input.0.clone().map_err(|failure| failure.to_error())
}

/// The kube-apiserver static pod, or `None` when none is among the inputs.
pub async fn apiserver(ctx: &Context) -> Result<Option<Arc<StaticPod>>> {
    Ok(static_pods(ctx).await?.apiserver)
}

/// The etcd static pod, or `None` when none is among the inputs (e.g. an external etcd).
pub async fn etcd(ctx: &Context) -> Result<Option<Arc<StaticPod>>> {
    Ok(static_pods(ctx).await?.etcd)
}

async fn collect(ctx: &Context) -> Result<StaticPods> {
    let mut pods = StaticPods::default();
    match ctx.mode {
        Mode::Static => pods.add_objects(&ctx.objects),
        Mode::Live => {
            if let Some(node) = &ctx.node {
                pods = from_node(node.as_ref()).await?;
            }
            if let (None, Some(client)) = (&pods.apiserver, &ctx.kube) {
                pods.apiserver = mirror_pod(client, Component::ApiServer).await?;
            }
            if let (None, Some(client)) = (&pods.etcd, &ctx.kube) {
                pods.etcd = mirror_pod(client, Component::Etcd).await?;
            }
        }
    }
    Ok(pods)
}

/// Reads `<kubernetes_dir>/manifests/*.{yaml,yml,json}` on the node.
async fn from_node(node: &dyn NodeAccess) -> Result<StaticPods> {
    let directory = format!("{}/manifests", node.kubernetes_dir().trim_end_matches('/'));
    let mut names = node.list_dir(&directory).await?;
    names.sort();
    let mut pods = StaticPods::default();
    let prefix = node_prefix(node);
    for name in names {
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        let path = format!("{directory}/{name}");
        let Some(bytes) = node.read_file(&path).await? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let documents = documents::parse_text(&path, &text)?;
        pods.add_documents(&documents, &prefix);
    }
    Ok(pods)
}

/// How to name a file on the node in messages: local files need no prefix.
pub(crate) fn node_prefix(node: &dyn NodeAccess) -> String {
    let described = node.describe();
    if described.starts_with("local") {
        String::new()
    } else {
        format!("{described}:")
    }
}

async fn mirror_pod(client: &kube::Client, component: Component) -> Result<Option<Arc<StaticPod>>> {
    let program = program_name(component);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let listed = pods
        .list(&ListParams::default().labels(&format!("component={program}")))
        .await?;
    for pod in listed.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Ok(mut value) = serde_json::to_value(&pod) else {
            continue;
        };
        if let Some(map) = value.as_object_mut() {
            map.insert("kind".into(), Value::String("Pod".into()));
        }
        let id = format!("Pod/kube-system/{name}");
        let location = Location {
            file: String::new(),
            line: 0,
            object: Some(id.clone()),
        };
        if let Some(found) = StaticPod::from_pod(component, &value, id, location) {
            return Ok(Some(Arc::new(found)));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn flags_come_from_command_then_args_without_the_program() {
        let value = pod(r"
kind: Pod
metadata: {name: kube-apiserver-node}
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.31.2
    command: [kube-apiserver, --anonymous-auth=false]
    args: [--etcd-servers, https://127.0.0.1:2379, --anonymous-auth]
");
        let found = StaticPod::from_pod(
            Component::ApiServer,
            &value,
            "x.yaml".into(),
            Location {
                file: "x.yaml".into(),
                line: 1,
                object: None,
            },
        )
        .unwrap();
        assert_eq!(
            found.flags.get("etcd-servers"),
            Some("https://127.0.0.1:2379")
        );
        assert_eq!(found.flags.get_bool("anonymous-auth"), Some(true));
        assert_eq!(found.version(), Some((1, 31)));
        assert!(found.problems().is_empty());
    }

    #[test]
    fn a_pod_is_recognized_by_its_program_not_its_container_name() {
        let value = pod(r"
kind: Pod
spec:
  containers:
  - name: main
    command: [/usr/local/bin/etcd, --client-cert-auth=true]
");
        let found = StaticPod::from_pod(
            Component::Etcd,
            &value,
            "etcd.yaml".into(),
            Location {
                file: "etcd.yaml".into(),
                line: 1,
                object: None,
            },
        )
        .unwrap();
        assert_eq!(found.flags.get_bool("client-cert-auth"), Some(true));
        assert!(
            StaticPod::from_pod(Component::ApiServer, &value, String::new(), found.location)
                .is_none()
        );
    }
}
