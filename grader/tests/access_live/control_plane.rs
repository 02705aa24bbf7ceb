//! The real control plane for the live access and pod security tests, from hardlab_testkit
//! (etcd and kube-apiserver v1.20.2 with an admin client certificate), and helpers to create and
//! delete the objects a test needs.
#![allow(dead_code, clippy::unwrap_used)]

use hardlab_grader::context::ApiEndpoint;
pub use hardlab_testkit::ControlPlane;
use hardlab_testkit::{Component, require};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde::Deserialize;

/// Whether a control plane can start here; prints why not, and panics under `CI=true`.
pub fn available() -> bool {
    require(Component::ControlPlane)
}

/// One control plane per test binary for the tests that do not change API server flags.
pub async fn shared() -> &'static ControlPlane {
    hardlab_testkit::shared_control_plane().await
}

/// A control plane of its own with extra kube-apiserver flags (e.g. `--anonymous-auth=false`).
pub async fn start_with(flags: &[&str]) -> ControlPlane {
    ControlPlane::builder()
        .apiserver_flags(flags.iter().copied())
        .start()
        .await
        .unwrap()
}

/// The API server address and CA of the plane, as the CLI hands them to the grader.
pub async fn endpoint(plane: &ControlPlane) -> ApiEndpoint {
    ApiEndpoint::from_config(&plane.config().await.unwrap())
}

fn resource_of(value: &serde_json::Value) -> (ApiResource, Option<String>) {
    let api_version = value["apiVersion"].as_str().unwrap();
    let kind = value["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Namespace" => "namespaces",
        "Pod" => "pods",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "StatefulSet" => "statefulsets",
        "Job" => "jobs",
        other => panic!("no plural for {other}"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
    (resource, namespace)
}

fn api(client: &kube::Client, value: &serde_json::Value) -> Api<DynamicObject> {
    let (resource, namespace) = resource_of(value);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Creates every document of `yaml`; returns them for [`delete`].
pub async fn create(client: &kube::Client, yaml: &str) -> Vec<serde_json::Value> {
    let mut created = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value =
            serde_json::to_value(serde_yaml::Value::deserialize(document).unwrap()).unwrap();
        let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        api(client, &value)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("creating {value}: {error}"));
        created.push(value);
    }
    created
}

pub async fn delete(client: &kube::Client, objects: &[serde_json::Value]) {
    for value in objects {
        let name = value["metadata"]["name"].as_str().unwrap();
        let _ = api(client, value)
            .delete(name, &DeleteParams::default())
            .await;
    }
}
