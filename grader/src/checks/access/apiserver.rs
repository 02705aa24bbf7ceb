//! The kube-apiserver's command-line flags, as the access checks need them.
//!
//! They come from the API server's pod: the static pod manifest in static mode, the mirror pod
//! that the kubelet publishes in kube-system live (kubeadm and kind clusters have one; managed
//! clusters and bare envtest do not, and then the flag-based parts of the checks skip).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::inputs::objects::{KubeObject, objects};
use crate::{Context, Result};

/// The flags of one kube-apiserver container, read as pflag parses them.
#[derive(Debug, Clone, Default)]
pub struct ApiServerFlags {
    flags: BTreeMap<String, String>,
    /// The container image, which names the version (`registry.k8s.io/kube-apiserver:v1.31.0`).
    pub image: Option<String>,
    /// Where the flags were read, for evidence: `kube-apiserver.yaml:1` or `Pod/kube-system/...`.
    pub source: String,
    pub object: Option<KubeObject>,
}

impl ApiServerFlags {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// `--name=value` as written, or `--name (not set)`, for evidence.
    pub fn show(&self, name: &str) -> String {
        match self.get(name) {
            Some(value) => format!("{name}={value}"),
            None => format!("{name} (not set)"),
        }
    }

    /// Parses `command` then `args`: `--flag=value`, `--flag value` and a bare `--flag` (true);
    /// a later occurrence wins, as with pflag.
    pub fn parse(words: &[&str]) -> BTreeMap<String, String> {
        let mut flags = BTreeMap::new();
        let mut index = 0;
        while index < words.len() {
            let word = words[index];
            index += 1;
            let Some(flag) = word.strip_prefix("--") else {
                continue;
            };
            if let Some((name, value)) = flag.split_once('=') {
                flags.insert(format!("--{name}"), value.to_owned());
            } else if let Some(next) = words.get(index).filter(|next| !next.starts_with('-')) {
                flags.insert(format!("--{flag}"), (*next).to_owned());
                index += 1;
            } else {
                flags.insert(format!("--{flag}"), "true".to_owned());
            }
        }
        flags
    }
}

fn is_apiserver_pod(object: &KubeObject) -> bool {
    if object.kind != "Pod" {
        return false;
    }
    let component = object
        .value
        .pointer("/metadata/labels/component")
        .and_then(Value::as_str);
    component == Some("kube-apiserver") || object.name.starts_with("kube-apiserver")
}

/// The API server's flags, or `None` when no kube-apiserver pod is among the inputs.
pub async fn apiserver_flags(ctx: &Context) -> Result<Option<ApiServerFlags>> {
    let objects = objects(ctx).await?;
    let Some(pod) = objects.iter().find(|object| is_apiserver_pod(object)) else {
        return Ok(None);
    };
    let containers = pod
        .value
        .pointer("/spec/containers")
        .and_then(Value::as_array);
    let Some(container) = containers.and_then(|list| {
        list.iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some("kube-apiserver"))
            .or_else(|| list.first())
    }) else {
        return Ok(None);
    };
    let words: Vec<&str> = ["command", "args"]
        .into_iter()
        .filter_map(|field| container.get(field).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let source = match &pod.location {
        Some(location) if !location.file.is_empty() => {
            format!("{}:{}", location.file, location.line)
        }
        _ => pod.id(),
    };
    Ok(Some(ApiServerFlags {
        flags: ApiServerFlags::parse(&words),
        image: container
            .get("image")
            .and_then(Value::as_str)
            .map(str::to_owned),
        source,
        object: Some(pod.clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::ApiServerFlags;

    #[test]
    fn flags_are_read_with_equals_with_a_separate_value_and_bare() {
        let flags = ApiServerFlags::parse(&[
            "kube-apiserver",
            "--anonymous-auth=false",
            "--authorization-mode",
            "Node,RBAC",
            "--profiling",
            "--insecure-port=0",
            "--anonymous-auth=true",
        ]);
        assert_eq!(flags["--anonymous-auth"], "true");
        assert_eq!(flags["--authorization-mode"], "Node,RBAC");
        assert_eq!(flags["--profiling"], "true");
        assert_eq!(flags["--insecure-port"], "0");
    }
}
