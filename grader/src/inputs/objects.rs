//! Kubernetes objects as the checks see them, whether listed from a live cluster or read from files.

use std::sync::Arc;

use futures::future::join_all;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use crate::inputs::InputDocument;
use crate::model::Location;
use crate::{Context, Error, Result, context::Mode};

/// One Kubernetes object with where it came from.
#[derive(Debug, Clone)]
pub struct KubeObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object as JSON.
    pub value: Value,
    /// File and line in static mode; `None` for live objects.
    pub location: Option<Location>,
}

impl KubeObject {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// A location for findings: the file position in static mode, the object ID live.
    pub fn finding_location(&self) -> Location {
        self.location.clone().unwrap_or_else(|| Location {
            file: String::new(),
            line: 0,
            object: Some(self.id()),
        })
    }

    fn from_value(value: Value, location: Option<Location>) -> Option<Self> {
        let kind = value.get("kind")?.as_str()?.to_owned();
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let metadata = value.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let location = location.map(|mut location| {
            location.object = Some(match &namespace {
                Some(ns) => format!("{kind}/{ns}/{name}"),
                None => format!("{kind}/{name}"),
            });
            location
        });
        Some(Self {
            api_version,
            kind,
            namespace,
            name,
            value,
            location,
        })
    }
}

/// The kinds listed from a live cluster: (group, version, kind, plural, namespaced).
const LIVE_KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
    (
        "security.istio.io",
        "v1beta1",
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
    ("policy.linkerd.io", "v1beta1", "Server", "servers", true),
    (
        "policy.linkerd.io",
        "v1alpha1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
    ),
    (
        "policy.linkerd.io",
        "v1alpha1",
        "MeshTLSAuthentication",
        "meshtlsauthentications",
        true,
    ),
];

#[derive(Debug)]
struct ObjectsInput(std::result::Result<Arc<Vec<KubeObject>>, String>);

/// Every object of the kinds the checks judge: from the files in static mode, listed from the API
/// live (kinds whose API is not installed, such as Istio's, are left out). Collected once per run.
pub async fn objects(ctx: &Context) -> Result<Arc<Vec<KubeObject>>> {
    let input = ctx
        .input(|| async { ObjectsInput(collect(ctx).await) })
        .await;
    match &input.0 {
        Ok(objects) => Ok(Arc::clone(objects)),
        Err(message) => Err(Error::Unreachable {
            what: "Kubernetes API".into(),
            message: message.clone(),
        }),
    }
}

async fn collect(ctx: &Context) -> std::result::Result<Arc<Vec<KubeObject>>, String> {
    match (ctx.mode, &ctx.kube) {
        (Mode::Static, _) => Ok(Arc::clone(&ctx.objects)),
        (Mode::Live, None) => Err("no kubeconfig was given".into()),
        (Mode::Live, Some(client)) => list_live(client).await.map(Arc::new),
    }
}

/// The objects in documents read from files, `List` kinds expanded, each with its file and line.
/// The documents are consumed: each object's JSON is moved, never copied.
pub fn objects_in_documents(documents: Vec<InputDocument>) -> Vec<KubeObject> {
    let mut objects = Vec::with_capacity(documents.len());
    for document in documents {
        let location = Location {
            file: document.file,
            line: document.line,
            object: None,
        };
        let mut value = document.value;
        let is_list = value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind == "List" || kind.ends_with("List"));
        match value.get_mut("items") {
            Some(Value::Array(items)) if is_list => {
                objects.extend(
                    std::mem::take(items)
                        .into_iter()
                        .filter_map(|item| KubeObject::from_value(item, Some(location.clone()))),
                );
            }
            _ => objects.extend(KubeObject::from_value(value, Some(location))),
        }
    }
    objects
}

async fn list_live(client: &kube::Client) -> std::result::Result<Vec<KubeObject>, String> {
    let lists = join_all(LIVE_KINDS.iter().map(|(group, version, kind, plural, _)| {
        let client = client.clone();
        async move {
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
            let api: Api<DynamicObject> = Api::all_with(client, &resource);
            match api.list(&ListParams::default()).await {
                Ok(list) => Ok(list
                    .items
                    .into_iter()
                    .filter_map(|item| {
                        let mut value = serde_json::to_value(item).ok()?;
                        if let Some(map) = value.as_object_mut() {
                            map.insert("kind".into(), Value::String((*kind).into()));
                            map.insert(
                                "apiVersion".into(),
                                Value::String(resource.api_version.clone()),
                            );
                        }
                        KubeObject::from_value(value, None)
                    })
                    .collect::<Vec<_>>()),
                // The API group is not installed (no mesh, older cluster): nothing of that kind.
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
                Err(error) => Err(format!("listing {plural}: {error}")),
            }
        }
    }))
    .await;
    let mut objects = Vec::new();
    for list in lists {
        objects.extend(list?);
    }
    Ok(objects)
}
