//! Pod specs as they appear in Pods and in the pod templates of workload controllers, with the
//! path of each field so that findings can name it.

use serde_json::Value;

use crate::context::{Mode, Params};
use crate::inputs::objects::KubeObject;

/// Namespaces that hold the cluster's own components; left out unless the lab names one.
pub const SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// One pod spec: a Pod's own, or the template of a Deployment, StatefulSet, DaemonSet, Job,
/// CronJob or ReplicaSet.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub object: &'a KubeObject,
    pub spec: &'a Value,
    /// The pod's (or template's) metadata, for the seccomp and AppArmor annotations.
    pub pod_metadata: Option<&'a Value>,
    /// Path of `spec` inside the object, e.g. `spec.template.spec`.
    pub spec_path: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Container,
    Init,
    Ephemeral,
}

impl ContainerKind {
    fn list_field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
        }
    }
}

/// One container of a pod spec, with where it sits.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    pub kind: ContainerKind,
    pub index: usize,
    pub name: &'a str,
    pub value: &'a Value,
    spec_path: &'static str,
}

impl<'a> Container<'a> {
    /// Path of a field of this container, e.g. `spec.containers[0].securityContext.privileged`.
    pub fn field(&self, field: &str) -> String {
        format!(
            "{}.{}[{}].{field}",
            self.spec_path,
            self.kind.list_field(),
            self.index
        )
    }

    /// `container "app"`, `init container "setup"`.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.kind.describe(), self.name)
    }

    /// A field of the container's securityContext.
    pub fn security(&self, field: &str) -> Option<&'a Value> {
        self.value.get("securityContext")?.get(field)
    }
}

impl<'a> Workload<'a> {
    /// The pod spec inside an object, when the object is a Pod or a workload with a pod template.
    pub fn of(object: &'a KubeObject) -> Option<Self> {
        let value = &object.value;
        let (template_path, spec_path): (&[&str], &'static str) = match object.kind.as_str() {
            "Pod" => (&[], "spec"),
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "ReplicaSet"
            | "ReplicationController" => (&["spec", "template"], "spec.template.spec"),
            "CronJob" => (
                &["spec", "jobTemplate", "spec", "template"],
                "spec.jobTemplate.spec.template.spec",
            ),
            _ => return None,
        };
        let mut pod = value;
        for key in template_path {
            pod = pod.get(key)?;
        }
        Some(Self {
            object,
            spec: pod.get("spec")?,
            pod_metadata: pod.get("metadata"),
            spec_path,
        })
    }

    /// Every container: regular, init and ephemeral, in that order.
    pub fn containers(&self) -> Vec<Container<'a>> {
        let mut containers = Vec::new();
        for kind in [
            ContainerKind::Container,
            ContainerKind::Init,
            ContainerKind::Ephemeral,
        ] {
            let Some(list) = self.spec.get(kind.list_field()).and_then(Value::as_array) else {
                continue;
            };
            for (index, value) in list.iter().enumerate() {
                containers.push(Container {
                    kind,
                    index,
                    name: value.get("name").and_then(Value::as_str).unwrap_or("?"),
                    value,
                    spec_path: self.spec_path,
                });
            }
        }
        containers
    }

    /// A field of the pod-level securityContext.
    pub fn pod_security(&self, field: &str) -> Option<&'a Value> {
        self.spec.get("securityContext")?.get(field)
    }

    /// Path of a pod-level field, e.g. `spec.template.spec.hostPID`.
    pub fn field(&self, field: &str) -> String {
        format!("{}.{field}", self.spec_path)
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.pod_metadata?.get("annotations")?.get(key)?.as_str()
    }
}

/// The namespace an object lives in, filling in what `kubectl apply` would for manifests without one.
pub fn effective_namespace<'a>(object: &'a KubeObject, params: &'a Params) -> &'a str {
    object
        .namespace
        .as_deref()
        .or(params.namespace.as_deref())
        .unwrap_or("default")
}

/// Whether a namespace is one the pod security checks judge: the lab's, or any but the system ones.
pub fn namespace_in_scope(namespace: &str, params: &Params) -> bool {
    match &params.namespace {
        Some(lab) => lab == namespace,
        None => !SYSTEM_NAMESPACES.contains(&namespace),
    }
}

/// The workloads in scope among the objects. Live, the system namespaces are the cluster's own
/// and are left out; in a static scan they are what the repository's owners wrote and asked to
/// have judged, so they are in, except the control plane's static pods, which run on the host
/// by design and are judged by the etcd and access checks instead.
pub fn workloads_in_scope<'a>(
    objects: &'a [KubeObject],
    params: &Params,
    mode: Mode,
) -> Vec<Workload<'a>> {
    objects
        .iter()
        .filter_map(Workload::of)
        .filter(|workload| {
            let namespace = effective_namespace(workload.object, params);
            match (mode, &params.namespace) {
                (Mode::Static, None) => !is_control_plane_static_pod(workload),
                _ => namespace_in_scope(namespace, params),
            }
        })
        .collect()
}

/// The control-plane components kubeadm runs as static pods in kube-system.
const CONTROL_PLANE: &[&str] = &[
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A kube-system Pod labelled as a control-plane component whose containers run that component
/// (a label alone is not enough: any pod could carry it to escape the scan).
pub fn is_control_plane_static_pod(workload: &Workload) -> bool {
    let object = workload.object;
    let component = object
        .value
        .pointer("/metadata/labels/component")
        .and_then(Value::as_str);
    let Some(component) = component.filter(|c| CONTROL_PLANE.contains(c)) else {
        return false;
    };
    object.kind == "Pod"
        && object.namespace.as_deref() == Some("kube-system")
        && workload.containers().iter().all(|container| {
            let command = container
                .value
                .pointer("/command/0")
                .and_then(Value::as_str)
                .unwrap_or_default();
            container.name == component
                && (command.is_empty() || command.rsplit('/').next() == Some(component))
        })
}

pub fn is_true(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool) == Some(true)
}

pub fn is_false(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool) == Some(false)
}
