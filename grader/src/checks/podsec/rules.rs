//! The per-workload pod security rules. Each returns, for one workload, what is wrong with it,
//! naming the container and the field; an empty list means the workload passes.

use serde_json::Value;

use super::workload::{Container, ContainerKind, Workload, is_false, is_true};

/// The effective value of a securityContext field: the container's, else the pod's, with the path
/// where it was set.
fn effective<'a>(
    workload: &Workload<'a>,
    container: &Container<'a>,
    field: &str,
) -> Option<(&'a Value, String)> {
    if let Some(value) = container.security(field) {
        return Some((value, container.field(&format!("securityContext.{field}"))));
    }
    workload
        .pod_security(field)
        .map(|value| (value, workload.field(&format!("securityContext.{field}"))))
}

/// Restricted's runAsNonRoot and runAsUser controls: `runAsNonRoot: true` on the pod or each
/// container (a non-zero `runAsUser` alone is not accepted: the API cannot see the image's
/// user), never `runAsNonRoot: false` or `runAsUser: 0` at either level; a pod in a user
/// namespace (`hostUsers: false`) is exempt, as upstream exempts it from 1.35.
pub fn run_as_non_root(workload: &Workload) -> Vec<String> {
    let mut problems = Vec::new();
    if is_false(workload.spec.get("hostUsers")) {
        return problems;
    }
    if is_false(workload.pod_security("runAsNonRoot")) {
        problems.push(format!(
            "pod: {} is false",
            workload.field("securityContext.runAsNonRoot")
        ));
    }
    if workload.pod_security("runAsUser").and_then(Value::as_i64) == Some(0) {
        problems.push(format!(
            "pod: runs as root: {} is 0",
            workload.field("securityContext.runAsUser")
        ));
    }
    for container in workload.containers() {
        if container.security("runAsUser").and_then(Value::as_i64) == Some(0) {
            problems.push(format!(
                "{}: runs as root: {} is 0",
                container.describe(),
                container.field("securityContext.runAsUser")
            ));
        }
        match effective(workload, &container, "runAsNonRoot") {
            Some((flag, _)) if is_true(Some(flag)) => {}
            Some((_, path)) => problems.push(format!("{}: {path} is false", container.describe())),
            None => problems.push(format!(
                "{}: neither {} nor {} sets runAsNonRoot: true{}",
                container.describe(),
                container.field("securityContext.runAsNonRoot"),
                workload.field("securityContext.runAsNonRoot"),
                if effective(workload, &container, "runAsUser").is_some() {
                    " (a non-zero runAsUser alone is not enough: restricted requires runAsNonRoot)"
                } else {
                    ""
                }
            )),
        }
    }
    problems
}

/// `spec.os.name: windows`: restricted exempts these pods from its Linux-only controls.
fn is_windows(workload: &Workload) -> bool {
    workload.spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Restricted's Volume Types control: only the volume types above.
pub fn restricted_volumes(workload: &Workload) -> Vec<String> {
    let Some(volumes) = workload.spec.get("volumes").and_then(Value::as_array) else {
        return Vec::new();
    };
    volumes
        .iter()
        .enumerate()
        .filter_map(|(index, volume)| {
            let object = volume.as_object()?;
            if object
                .keys()
                .any(|key| RESTRICTED_VOLUMES.contains(&key.as_str()))
            {
                return None;
            }
            let kind = object
                .keys()
                .find(|key| key.as_str() != "name")
                .map_or("unknown", String::as_str);
            Some(format!(
                "volume {:?}: {} is a {kind} volume (restricted allows {})",
                volume.get("name").and_then(Value::as_str).unwrap_or("?"),
                workload.field(&format!("volumes[{index}]")),
                RESTRICTED_VOLUMES.join(", ")
            ))
        })
        .collect()
}

pub fn no_privilege_escalation(workload: &Workload) -> Vec<String> {
    if is_windows(workload) {
        return Vec::new();
    }
    workload
        .containers()
        .iter()
        .filter_map(|container| {
            let value = container.security("allowPrivilegeEscalation");
            let path = container.field("securityContext.allowPrivilegeEscalation");
            if is_false(value) {
                None
            } else if is_true(value) {
                Some(format!("{}: {path} is true", container.describe()))
            } else {
                Some(format!(
                    "{}: {path} is not set (it defaults to true)",
                    container.describe()
                ))
            }
        })
        .collect()
}

pub fn drops_all_capabilities(container: &Container) -> bool {
    container
        .security("capabilities")
        .and_then(|caps| caps.get("drop"))
        .and_then(Value::as_array)
        .is_some_and(|drop| drop.iter().any(|cap| cap.as_str() == Some("ALL")))
}

/// Restricted's capabilities control: drop ALL, and add back nothing but NET_BIND_SERVICE. An
/// added capability counts whatever the drop list says (`drop: [ALL]` with `add: [SYS_TIME]`
/// still grants SYS_TIME), and in every namespace, labelled for admission or not.
pub fn capabilities_dropped(workload: &Workload) -> Vec<String> {
    let mut problems = Vec::new();
    if is_windows(workload) {
        return problems;
    }
    for container in workload.containers() {
        if !drops_all_capabilities(&container) {
            problems.push(format!(
                "{}: {} does not include ALL",
                container.describe(),
                container.field("securityContext.capabilities.drop")
            ));
        }
        let added = added_capabilities(&container);
        let extra: Vec<&str> = added
            .iter()
            .copied()
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            problems.push(format!(
                "{}: {} adds {} (restricted allows only NET_BIND_SERVICE)",
                container.describe(),
                container.field("securityContext.capabilities.add"),
                extra.join(", ")
            ));
        }
    }
    problems
}

/// The capabilities a container adds, as spelled (upstream compares them as given).
pub fn added_capabilities<'a>(container: &Container<'a>) -> Vec<&'a str> {
    container
        .security("capabilities")
        .and_then(|caps| caps.get("add"))
        .and_then(Value::as_array)
        .map(|add| add.iter().map(|cap| cap.as_str().unwrap_or("?")).collect())
        .unwrap_or_default()
}

pub fn no_privileged(workload: &Workload) -> Vec<String> {
    workload
        .containers()
        .iter()
        .filter(|container| is_true(container.security("privileged")))
        .map(|container| {
            format!(
                "{}: {} is true",
                container.describe(),
                container.field("securityContext.privileged")
            )
        })
        .collect()
}

pub fn no_host_namespaces(workload: &Workload) -> Vec<String> {
    ["hostPID", "hostIPC", "hostNetwork"]
        .into_iter()
        .filter(|field| is_true(workload.spec.get(*field)))
        .map(|field| format!("pod: {} is true", workload.field(field)))
        .collect()
}

pub fn no_host_path(workload: &Workload) -> Vec<String> {
    let Some(volumes) = workload.spec.get("volumes").and_then(Value::as_array) else {
        return Vec::new();
    };
    volumes
        .iter()
        .enumerate()
        .filter_map(|(index, volume)| {
            let host_path = volume.get("hostPath")?;
            Some(format!(
                "volume {:?}: {} mounts the node's {}",
                volume.get("name").and_then(Value::as_str).unwrap_or("?"),
                workload.field(&format!("volumes[{index}].hostPath")),
                host_path
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("(no path)")
            ))
        })
        .collect()
}

/// The seccomp profile type a container runs with, and where it was set. The legacy annotations
/// (before 1.19, removed in 1.27) count where no field is set.
pub fn seccomp_type(workload: &Workload, container: &Container) -> Option<(String, String)> {
    if let Some((profile, path)) = effective(workload, container, "seccompProfile")
        && let Some(kind) = profile.get("type").and_then(Value::as_str)
    {
        return Some((kind.to_owned(), format!("{path}.type")));
    }
    let container_key = format!(
        "container.seccomp.security.alpha.kubernetes.io/{}",
        container.name
    );
    for key in [
        container_key.as_str(),
        "seccomp.security.alpha.kubernetes.io/pod",
    ] {
        if let Some(value) = workload.annotation(key) {
            let kind = match value {
                "runtime/default" | "docker/default" => "RuntimeDefault",
                "unconfined" => "Unconfined",
                local if local.starts_with("localhost/") => "Localhost",
                _ => "Unknown",
            };
            return Some((kind.to_owned(), format!("annotation {key}")));
        }
    }
    None
}

/// Restricted's seccomp control: the `seccompProfile` field, RuntimeDefault or Localhost, on the
/// pod or each container. The legacy annotations do not count: the kubelet ignores them since
/// 1.27 and restricted reads only the field since 1.19.
pub fn seccomp_profile(workload: &Workload) -> Vec<String> {
    if is_windows(workload) {
        return Vec::new();
    }
    workload
        .containers()
        .iter()
        .filter_map(|container| {
            let field =
                effective(workload, container, "seccompProfile").and_then(|(profile, path)| {
                    Some((
                        profile.get("type")?.as_str()?.to_owned(),
                        format!("{path}.type"),
                    ))
                });
            match field {
                Some((kind, _)) if kind == "RuntimeDefault" || kind == "Localhost" => None,
                Some((kind, path)) => Some(format!("{}: {path} is {kind}", container.describe())),
                None => {
                    let legacy = seccomp_type(workload, container)
                        .filter(|(_, path)| path.starts_with("annotation"))
                        .map(|(_, path)| {
                            format!(
                                " (only the legacy {path}, which the kubelet ignores since 1.27)"
                            )
                        })
                        .unwrap_or_default();
                    Some(format!(
                        "{}: no seccompProfile at {} or {}{legacy}",
                        container.describe(),
                        container.field("securityContext.seccompProfile"),
                        workload.field("securityContext.seccompProfile")
                    ))
                }
            }
        })
        .collect()
}

pub fn read_only_root_fs(workload: &Workload) -> Vec<String> {
    workload
        .containers()
        .iter()
        .filter(|container| !is_true(container.security("readOnlyRootFilesystem")))
        .map(|container| {
            format!(
                "{}: {} is not true",
                container.describe(),
                container.field("securityContext.readOnlyRootFilesystem")
            )
        })
        .collect()
}

pub fn resource_limits(workload: &Workload) -> Vec<String> {
    workload
        .containers()
        .iter()
        // Ephemeral containers may not declare resources.
        .filter(|container| container.kind != ContainerKind::Ephemeral)
        .filter_map(|container| {
            let limits = container
                .value
                .get("resources")
                .and_then(|r| r.get("limits"));
            let missing: Vec<&str> = ["cpu", "memory"]
                .into_iter()
                .filter(|resource| limits.and_then(|l| l.get(*resource)).is_none())
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "{}: {} has no {}",
                    container.describe(),
                    container.field("resources.limits"),
                    missing.join(" or ")
                )
            })
        })
        .collect()
}

/// Why an image reference is not pinned, or `None` when it names a digest or a fixed tag.
pub fn unpinned_reason(image: &str) -> Option<&'static str> {
    if image.contains("@sha256:") {
        return None;
    }
    // The tag follows the last ':' after the last '/', which keeps a registry port out of it.
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.split_once(':') {
        None => Some("has no tag (it means latest)"),
        Some((_, "latest")) => Some("uses the latest tag"),
        Some((_, "")) => Some("has an empty tag"),
        Some(_) => None,
    }
}

pub fn image_pinned(workload: &Workload) -> Vec<String> {
    workload
        .containers()
        .iter()
        .filter_map(|container| {
            let image = container.value.get("image").and_then(Value::as_str);
            let path = container.field("image");
            match image {
                None => Some(format!("{}: {path} is not set", container.describe())),
                Some(image) => unpinned_reason(image)
                    .map(|reason| format!("{}: {path} {image:?} {reason}", container.describe())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unpinned_reason;

    #[test]
    fn image_references_are_pinned_by_digest_or_fixed_tag() {
        assert_eq!(
            unpinned_reason("nginx"),
            Some("has no tag (it means latest)")
        );
        assert_eq!(unpinned_reason("nginx:latest"), Some("uses the latest tag"));
        assert_eq!(
            unpinned_reason("registry:5000/team/app"),
            Some("has no tag (it means latest)")
        );
        assert_eq!(unpinned_reason("registry:5000/team/app:1.2"), None);
        assert_eq!(unpinned_reason("nginx@sha256:abcd"), None);
    }
}
