//! The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
//! baseline and restricted, evaluated on a pod spec the way Pod Security Admission would.

use serde_json::Value;

use super::rules::{drops_all_capabilities, seccomp_type};
use super::workload::{Container, Workload, is_false, is_true};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(label: &str) -> Option<Level> {
        match label {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Capabilities baseline lets a container add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows (the namespaced, isolated ones).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every rule of `level` the workload breaks, each as `control: what`; empty when admitted.
pub fn violations(workload: &Workload, level: Level) -> Vec<String> {
    let mut found = Vec::new();
    if level >= Level::Baseline {
        baseline(workload, &mut found);
    }
    if level >= Level::Restricted {
        restricted(workload, &mut found);
    }
    found
}

fn baseline(workload: &Workload, found: &mut Vec<String>) {
    let containers = workload.containers();
    if is_true(
        workload
            .pod_security("windowsOptions")
            .and_then(|w| w.get("hostProcess")),
    ) {
        found.push(format!(
            "HostProcess: {} is true",
            workload.field("securityContext.windowsOptions.hostProcess")
        ));
    }
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(workload.spec.get(field)) {
            found.push(format!(
                "Host Namespaces: {} is true",
                workload.field(field)
            ));
        }
    }
    for (index, volume) in volumes(workload) {
        if volume.get("hostPath").is_some() {
            found.push(format!(
                "HostPath Volumes: {} is a hostPath",
                workload.field(&format!("volumes[{index}]"))
            ));
        }
    }
    baseline_pod_options(workload, found);
    for container in &containers {
        baseline_container(container, found);
    }
}

fn baseline_pod_options(workload: &Workload, found: &mut Vec<String>) {
    if let Some(kind) = workload
        .pod_security("seccompProfile")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        && kind == "Unconfined"
    {
        found.push(format!(
            "Seccomp: {} is Unconfined",
            workload.field("securityContext.seccompProfile.type")
        ));
    }
    if let Some(options) = workload.pod_security("seLinuxOptions") {
        selinux(
            options,
            &workload.field("securityContext.seLinuxOptions"),
            found,
        );
    }
    if let Some(profile) = workload.pod_security("appArmorProfile") {
        apparmor_field(
            profile,
            &workload.field("securityContext.appArmorProfile.type"),
            found,
        );
    }
    if let Some(sysctls) = workload.pod_security("sysctls").and_then(Value::as_array) {
        for sysctl in sysctls {
            let name = sysctl.get("name").and_then(Value::as_str).unwrap_or("");
            if !SAFE_SYSCTLS.contains(&name) {
                found.push(format!(
                    "Sysctls: {} sets the unsafe sysctl {name:?}",
                    workload.field("securityContext.sysctls")
                ));
            }
        }
    }
    if let Some(annotations) = workload
        .pod_metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        for (key, value) in annotations {
            if key.starts_with("container.apparmor.security.beta.kubernetes.io/") {
                let value = value.as_str().unwrap_or("");
                if value != "runtime/default" && !value.starts_with("localhost/") {
                    found.push(format!("AppArmor: annotation {key} is {value:?}"));
                }
            }
        }
    }
}

fn baseline_container(container: &Container, found: &mut Vec<String>) {
    let who = container.describe();
    if is_true(
        container
            .security("windowsOptions")
            .and_then(|w| w.get("hostProcess")),
    ) {
        found.push(format!(
            "HostProcess: {who}: {} is true",
            container.field("securityContext.windowsOptions.hostProcess")
        ));
    }
    if is_true(container.security("privileged")) {
        found.push(format!(
            "Privileged Containers: {who}: {} is true",
            container.field("securityContext.privileged")
        ));
    }
    for cap in added_capabilities(container) {
        if !BASELINE_CAPABILITIES.contains(&cap) {
            found.push(format!(
                "Capabilities: {who}: {} adds {cap}",
                container.field("securityContext.capabilities.add")
            ));
        }
    }
    if let Some(ports) = container.value.get("ports").and_then(Value::as_array) {
        for (index, port) in ports.iter().enumerate() {
            if port
                .get("hostPort")
                .and_then(Value::as_i64)
                .is_some_and(|p| p != 0)
            {
                found.push(format!(
                    "Host Ports: {who}: {} is set",
                    container.field(&format!("ports[{index}].hostPort"))
                ));
            }
        }
    }
    if let Some(options) = container.security("seLinuxOptions") {
        selinux(
            options,
            &container.field("securityContext.seLinuxOptions"),
            found,
        );
    }
    if let Some(profile) = container.security("appArmorProfile") {
        apparmor_field(
            profile,
            &container.field("securityContext.appArmorProfile.type"),
            found,
        );
    }
    if let Some(mount) = container.security("procMount").and_then(Value::as_str)
        && mount != "Default"
    {
        found.push(format!(
            "/proc Mount Type: {who}: {} is {mount}",
            container.field("securityContext.procMount")
        ));
    }
    if container
        .security("seccompProfile")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        == Some("Unconfined")
    {
        found.push(format!(
            "Seccomp: {who}: {} is Unconfined",
            container.field("securityContext.seccompProfile.type")
        ));
    }
}

fn restricted(workload: &Workload, found: &mut Vec<String>) {
    for (index, volume) in volumes(workload) {
        let Some(object) = volume.as_object() else {
            continue;
        };
        for key in object.keys() {
            if key != "name" && !RESTRICTED_VOLUMES.contains(&key.as_str()) && key != "hostPath" {
                found.push(format!(
                    "Volume Types: {} is a {key} volume",
                    workload.field(&format!("volumes[{index}]"))
                ));
            }
        }
    }
    let pod_non_root = workload.pod_security("runAsNonRoot");
    if workload.pod_security("runAsUser").and_then(Value::as_i64) == Some(0) {
        found.push(format!(
            "Running as Non-root user: {} is 0",
            workload.field("securityContext.runAsUser")
        ));
    }
    let pod_seccomp = workload
        .pod_security("seccompProfile")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    for container in workload.containers() {
        let who = container.describe();
        if !is_false(container.security("allowPrivilegeEscalation")) {
            found.push(format!(
                "Privilege Escalation: {who}: {} is not false",
                container.field("securityContext.allowPrivilegeEscalation")
            ));
        }
        let non_root = container.security("runAsNonRoot").or(pod_non_root);
        if !is_true(non_root) {
            found.push(format!(
                "Running as Non-root: {who}: runAsNonRoot is not true at {} or {}",
                container.field("securityContext.runAsNonRoot"),
                workload.field("securityContext.runAsNonRoot")
            ));
        }
        if container.security("runAsUser").and_then(Value::as_i64) == Some(0) {
            found.push(format!(
                "Running as Non-root user: {who}: {} is 0",
                container.field("securityContext.runAsUser")
            ));
        }
        let container_seccomp = container
            .security("seccompProfile")
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let effective = container_seccomp.or(pod_seccomp);
        let annotated = seccomp_type(workload, &container)
            .is_some_and(|(kind, _)| kind == "RuntimeDefault" || kind == "Localhost");
        if !matches!(effective, Some("RuntimeDefault" | "Localhost")) && !annotated {
            found.push(format!(
                "Seccomp: {who}: seccompProfile.type is not RuntimeDefault or Localhost at {} or {}",
                container.field("securityContext.seccompProfile"),
                workload.field("securityContext.seccompProfile")
            ));
        }
        if !drops_all_capabilities(&container) {
            found.push(format!(
                "Capabilities: {who}: {} does not include ALL",
                container.field("securityContext.capabilities.drop")
            ));
        }
        for cap in added_capabilities(&container) {
            if cap != "NET_BIND_SERVICE" {
                found.push(format!(
                    "Capabilities: {who}: {} adds {cap} (only NET_BIND_SERVICE is allowed)",
                    container.field("securityContext.capabilities.add")
                ));
            }
        }
    }
}

fn volumes<'a>(workload: &Workload<'a>) -> impl Iterator<Item = (usize, &'a Value)> {
    workload
        .spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn added_capabilities<'a>(container: &Container<'a>) -> Vec<&'a str> {
    container
        .security("capabilities")
        .and_then(|caps| caps.get("add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn selinux(options: &Value, path: &str, found: &mut Vec<String>) {
    let kind = options.get("type").and_then(Value::as_str).unwrap_or("");
    if !SELINUX_TYPES.contains(&kind) {
        found.push(format!("SELinux: {path}.type is {kind:?}"));
    }
    for field in ["user", "role"] {
        if options
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            found.push(format!("SELinux: {path}.{field} is set"));
        }
    }
}

fn apparmor_field(profile: &Value, path: &str, found: &mut Vec<String>) {
    if let Some(kind) = profile.get("type").and_then(Value::as_str)
        && kind == "Unconfined"
    {
        found.push(format!("AppArmor: {path} is Unconfined"));
    }
}
