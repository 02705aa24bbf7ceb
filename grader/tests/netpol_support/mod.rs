//! The netpol and mtls live tests' shared parts: the testkit's real etcd + kube-apiserver, and
//! helpers to create objects through its API. There is no kubelet: pods stay Pending, which is
//! what the "not run" paths need.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; tests may unwrap

use std::path::PathBuf;

pub use hardlab_testkit::ControlPlane;
use hardlab_testkit::{Component, require, shared_control_plane};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;

/// The control plane this test binary shares, or `None` (after printing why) when etcd or
/// kube-apiserver is absent outside CI.
pub async fn shared() -> Option<&'static ControlPlane> {
    if !require(Component::ControlPlane) {
        return None;
    }
    Some(shared_control_plane().await)
}

/// A control plane of the test's own, for a test that needs one nobody else changes.
pub async fn own() -> Option<ControlPlane> {
    if !require(Component::ControlPlane) {
        return None;
    }
    Some(ControlPlane::builder().start().await.unwrap())
}

/// A namespace name no other test uses.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// The plural the API uses for a kind the tests create.
fn plural(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        "PeerAuthentication" => "peerauthentications".into(),
        "AuthorizationPolicy" => "authorizationpolicies".into(),
        "MeshTLSAuthentication" => "meshtlsauthentications".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// Creates every object of a multi-document YAML text through the API; namespaced objects go
/// to `namespace` (overriding what the file says), so one fixture serves many tests.
pub async fn create(client: &kube::Client, yaml: &str, namespace: Option<&str>) {
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap().to_owned();
        let kind = value["kind"].as_str().unwrap().to_owned();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &kind),
            &plural(&kind),
        );
        let cluster_scoped = matches!(kind.as_str(), "Namespace" | "CustomResourceDefinition");
        let target_namespace = if cluster_scoped {
            None
        } else {
            namespace
                .map(str::to_owned)
                .or_else(|| value["metadata"]["namespace"].as_str().map(str::to_owned))
        };
        if let Some(ns) = &target_namespace {
            value["metadata"]["namespace"] = Value::String(ns.clone());
        }
        let object: DynamicObject = serde_json::from_value(value).unwrap();
        let api: Api<DynamicObject> = match &target_namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("creating {kind}: {error}"));
    }
}

/// Creates a namespace with these labels and annotations.
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect::<serde_json::Map<_, _>>()
    };
    let namespace = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)}
    });
    create(client, &serde_yaml::to_string(&namespace).unwrap(), None).await;
}

pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}
