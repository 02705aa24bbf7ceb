//! The kube-apiserver's command-line flags as the access checks read them, from the static pod
//! input (the manifest file in static mode; live, the node's manifests dir when the grader can
//! reach the node, else the kube-apiserver mirror pod in kube-system).

use std::sync::Arc;

use crate::inputs::staticpod::{self, StaticPod};
use crate::model::Location;
use crate::{Context, Result};

#[derive(Debug, Clone)]
pub struct ApiServerFlags {
    pod: Arc<StaticPod>,
    /// Where the flags were read: a file, `docker:node:/etc/...`, or `Pod/kube-system/...`.
    pub source: String,
}

impl ApiServerFlags {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pod.flags.get(name)
    }

    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.pod.flags.get_bool(name)
    }

    /// `--name=value` as the API server reads it, or `--name (not set)`, for evidence.
    pub fn show(&self, name: &str) -> String {
        match self.get(name) {
            Some(value) => format!("{name}={value}"),
            None => format!("{name} (not set)"),
        }
    }

    /// The container image, which names the version (`registry.k8s.io/kube-apiserver:v1.31.0`).
    pub fn image(&self) -> Option<&str> {
        self.pod.image.as_deref()
    }

    pub fn location(&self) -> Location {
        self.pod.finding_location()
    }
}

/// The API server's flags, or `None` when no kube-apiserver static pod is among the inputs.
pub async fn apiserver_flags(ctx: &Context) -> Result<Option<ApiServerFlags>> {
    Ok(staticpod::apiserver(ctx).await?.map(|pod| ApiServerFlags {
        source: pod.source.clone(),
        pod,
    }))
}
