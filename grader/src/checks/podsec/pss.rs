//! The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
//! baseline and restricted, evaluated on a pod spec the way Pod Security Admission would, by
//! policy version: each control as upstream's pod-security-admission (`policy/check_*.go`)
//! defines it for each release up to v1.37, named by its upstream check ID, with the same
//! overrides (a restricted control replaces its baseline counterpart from the release it exists).

use serde_json::Value;

use super::rules::drops_all_capabilities;
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
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";

/// The newest policy release this grader knows (upstream's newest versioned check).
pub const LATEST_MINOR: u32 = 37;

/// A policy version, `v1.<minor>`; `latest` is [`LATEST_MINOR`] (PSA's policies only change with
/// a minor release of Kubernetes 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyVersion {
    pub minor: u32,
}

impl PolicyVersion {
    pub const LATEST: PolicyVersion = PolicyVersion {
        minor: LATEST_MINOR,
    };

    /// An `enforce-version` label value: `latest` or `v1.N` (upstream's syntax); newer releases
    /// than this grader knows are judged by its newest policy, as PSA judges a newer label.
    pub fn parse(label: &str) -> Option<PolicyVersion> {
        if label == "latest" {
            return Some(Self::LATEST);
        }
        let minor: u32 = label.strip_prefix("v1.")?.parse().ok()?;
        Some(Self::of_release(minor))
    }

    /// The policy of a cluster at release 1.`minor`.
    pub fn of_release(minor: u32) -> PolicyVersion {
        PolicyVersion {
            minor: minor.min(LATEST_MINOR),
        }
    }

    pub fn at_least(self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl std::fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v1.{}", self.minor)
    }
}

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

/// Sysctls baseline allows (the namespaced, isolated ones), with the release that allowed each.
const SAFE_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

/// SELinux types baseline allows, with the release that allowed each.
const SELINUX_TYPES: &[(&str, u32)] = &[
    ("", 0),
    ("container_t", 0),
    ("container_init_t", 0),
    ("container_kvm_t", 0),
    ("container_engine_t", 31),
];

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

/// Every control of `level` at policy `version` the workload breaks, each as
/// `Title (upstream-id): what`; empty when PSA would admit it.
pub fn violations(workload: &Workload, level: Level, version: PolicyVersion) -> Vec<String> {
    let mut found = Vec::new();
    if level >= Level::Baseline {
        baseline(workload, level, version, &mut found);
    }
    if level >= Level::Restricted {
        restricted(workload, version, &mut found);
    }
    found
}

/// `hostUsers: false`: the pod runs in a user namespace (upstream relaxes some controls).
fn in_user_namespace(workload: &Workload) -> bool {
    is_false(workload.spec.get("hostUsers"))
}

/// `spec.os.name: windows` (from 1.25 upstream exempts these from Linux-only restricted controls).
fn is_windows(workload: &Workload) -> bool {
    workload.spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

fn baseline(workload: &Workload, level: Level, version: PolicyVersion, found: &mut Vec<String>) {
    let restricted = level >= Level::Restricted;
    let containers = workload.containers();
    if is_true(
        workload
            .pod_security("windowsOptions")
            .and_then(|w| w.get("hostProcess")),
    ) {
        found.push(format!(
            "HostProcess (windowsHostProcess): {} is true",
            workload.field("securityContext.windowsOptions.hostProcess")
        ));
    }
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(workload.spec.get(field)) {
            found.push(format!(
                "Host Namespaces (hostNamespaces): {} is true",
                workload.field(field)
            ));
        }
    }
    // restrictedVolumes replaces hostPathVolumes under restricted, at every version.
    if !restricted {
        for (index, volume) in volumes(workload) {
            if volume.get("hostPath").is_some() {
                found.push(format!(
                    "HostPath Volumes (hostPathVolumes): {} is a hostPath",
                    workload.field(&format!("volumes[{index}]"))
                ));
            }
        }
    }
    baseline_pod_options(workload, level, version, found);
    // capabilities_restricted replaces the baseline list from 1.22; seccompProfile_restricted
    // the baseline seccomp control from 1.19; procMount_restricted the baseline one from 1.35.
    let caps = !(restricted && version.at_least(22));
    let seccomp = !(restricted && version.at_least(19));
    let proc_mount = !(restricted && version.at_least(35));
    let proc_mount_relaxed = version.at_least(35) && in_user_namespace(workload);
    for container in &containers {
        baseline_container(container, version, found);
        if caps {
            for cap in added_capabilities(container) {
                if !BASELINE_CAPABILITIES.contains(&cap) {
                    found.push(format!(
                        "Capabilities (capabilities_baseline): {}: {} adds {cap}",
                        container.describe(),
                        container.field("securityContext.capabilities.add")
                    ));
                }
            }
        }
        if proc_mount && !proc_mount_relaxed {
            proc_mount_violation(container, "procMount", found);
        }
        if seccomp
            && version.at_least(19)
            && container
                .security("seccompProfile")
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .is_some_and(|kind| !valid_seccomp(kind))
        {
            found.push(format!(
                "Seccomp (seccompProfile_baseline): {}: {} is not RuntimeDefault or Localhost",
                container.describe(),
                container.field("securityContext.seccompProfile.type")
            ));
        }
    }
    if seccomp && !version.at_least(19) {
        // Before 1.19 the field did not exist: upstream judges the annotations.
        seccomp_annotations(workload, "seccompProfile_baseline", found);
    }
}

fn valid_seccomp(kind: &str) -> bool {
    matches!(kind, "RuntimeDefault" | "Localhost")
}

fn seccomp_annotations(workload: &Workload, id: &str, found: &mut Vec<String>) {
    let valid = |value: &str| {
        matches!(value, "runtime/default" | "docker/default") || value.starts_with("localhost/")
    };
    let mut keys = vec!["seccomp.security.alpha.kubernetes.io/pod".to_owned()];
    keys.extend(
        workload
            .containers()
            .iter()
            .map(|c| format!("container.seccomp.security.alpha.kubernetes.io/{}", c.name)),
    );
    for key in keys {
        if let Some(value) = workload.annotation(&key)
            && !valid(value)
        {
            found.push(format!("Seccomp ({id}): annotation {key} is {value:?}"));
        }
    }
}

fn proc_mount_violation(container: &Container, id: &str, found: &mut Vec<String>) {
    if let Some(mount) = container.security("procMount").and_then(Value::as_str)
        && mount != "Default"
    {
        found.push(format!(
            "/proc Mount Type ({id}): {}: {} is {mount}",
            container.describe(),
            container.field("securityContext.procMount")
        ));
    }
}

fn baseline_pod_options(
    workload: &Workload,
    level: Level,
    version: PolicyVersion,
    found: &mut Vec<String>,
) {
    let seccomp_field = level < Level::Restricted && version.at_least(19);
    if seccomp_field
        && let Some(kind) = workload
            .pod_security("seccompProfile")
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
        && !valid_seccomp(kind)
    {
        found.push(format!(
            "Seccomp (seccompProfile_baseline): {} is {kind}",
            workload.field("securityContext.seccompProfile.type")
        ));
    }
    if let Some(options) = workload.pod_security("seLinuxOptions") {
        selinux(
            options,
            &workload.field("securityContext.seLinuxOptions"),
            version,
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
            let allowed = SAFE_SYSCTLS
                .iter()
                .any(|(safe, since)| *safe == name && version.at_least(*since));
            if !allowed {
                found.push(format!(
                    "Sysctls (sysctls): {} sets {name:?}, not a safe sysctl at policy {version}",
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
                if !value.is_empty()
                    && value != "runtime/default"
                    && !value.starts_with("localhost/")
                {
                    found.push(format!(
                        "AppArmor (appArmorProfile): annotation {key} is {value:?}"
                    ));
                }
            }
        }
    }
}

fn baseline_container(container: &Container, version: PolicyVersion, found: &mut Vec<String>) {
    let who = container.describe();
    if is_true(
        container
            .security("windowsOptions")
            .and_then(|w| w.get("hostProcess")),
    ) {
        found.push(format!(
            "HostProcess (windowsHostProcess): {who}: {} is true",
            container.field("securityContext.windowsOptions.hostProcess")
        ));
    }
    if is_true(container.security("privileged")) {
        found.push(format!(
            "Privileged Containers (privileged): {who}: {} is true",
            container.field("securityContext.privileged")
        ));
    }
    if let Some(ports) = container.value.get("ports").and_then(Value::as_array) {
        for (index, port) in ports.iter().enumerate() {
            if port
                .get("hostPort")
                .and_then(Value::as_i64)
                .is_some_and(|p| p != 0)
            {
                found.push(format!(
                    "Host Ports (hostPorts): {who}: {} is set",
                    container.field(&format!("ports[{index}].hostPort"))
                ));
            }
        }
    }
    if let Some(options) = container.security("seLinuxOptions") {
        selinux(
            options,
            &container.field("securityContext.seLinuxOptions"),
            version,
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
    if version.at_least(34) {
        host_probes(container, found);
    }
}

/// Probes and lifecycle handlers that name a host (from 1.34): the kubelet would connect there,
/// which reaches other hosts from the node's network.
fn host_probes(container: &Container, found: &mut Vec<String>) {
    let mut handlers: Vec<(String, &Value)> = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(value) = container.value.get(probe) {
            handlers.push((probe.to_owned(), value));
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(value) = container.value.get("lifecycle").and_then(|l| l.get(hook)) {
            handlers.push((format!("lifecycle.{hook}"), value));
        }
    }
    for (path, handler) in handlers {
        for action in ["httpGet", "tcpSocket"] {
            if let Some(host) = handler
                .get(action)
                .and_then(|a| a.get("host"))
                .and_then(Value::as_str)
                .filter(|host| !host.is_empty())
            {
                found.push(format!(
                    "Host Probes / Lifecycle Hooks (hostProbesAndHostLifecycle): {}: {} is {host:?}",
                    container.describe(),
                    container.field(&format!("{path}.{action}.host"))
                ));
            }
        }
    }
}

fn restricted(workload: &Workload, version: PolicyVersion, found: &mut Vec<String>) {
    for (index, volume) in volumes(workload) {
        let Some(object) = volume.as_object() else {
            continue;
        };
        let allowed = object
            .keys()
            .any(|key| RESTRICTED_VOLUMES.contains(&key.as_str()));
        if !allowed {
            let kind = object
                .keys()
                .find(|key| key.as_str() != "name")
                .map_or("unknown", String::as_str);
            found.push(format!(
                "Volume Types (restrictedVolumes): {} is a {kind} volume",
                workload.field(&format!("volumes[{index}]"))
            ));
        }
    }
    let user_namespace = version.at_least(35) && in_user_namespace(workload);
    // From 1.25 upstream exempts Windows pods from the Linux-only controls.
    let windows = version.at_least(25) && is_windows(workload);
    let pod_non_root = workload.pod_security("runAsNonRoot");
    if !user_namespace {
        if is_false(pod_non_root) {
            found.push(format!(
                "Running as Non-root (runAsNonRoot): {} is false",
                workload.field("securityContext.runAsNonRoot")
            ));
        }
        if version.at_least(23)
            && workload.pod_security("runAsUser").and_then(Value::as_i64) == Some(0)
        {
            found.push(format!(
                "Running as Non-root user (runAsUser): {} is 0",
                workload.field("securityContext.runAsUser")
            ));
        }
    }
    let pod_seccomp = workload
        .pod_security("seccompProfile")
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    if version.at_least(19)
        && !windows
        && let Some(kind) = pod_seccomp
        && !valid_seccomp(kind)
    {
        found.push(format!(
            "Seccomp (seccompProfile_restricted): {} is {kind}",
            workload.field("securityContext.seccompProfile.type")
        ));
    }
    for container in workload.containers() {
        let who = container.describe();
        if version.at_least(8)
            && !windows
            && !is_false(container.security("allowPrivilegeEscalation"))
        {
            found.push(format!(
                "Privilege Escalation (allowPrivilegeEscalation): {who}: {} is not false",
                container.field("securityContext.allowPrivilegeEscalation")
            ));
        }
        if !user_namespace {
            let own = container.security("runAsNonRoot");
            let covered = match own {
                Some(value) => is_true(Some(value)),
                None => is_true(pod_non_root),
            };
            if !covered && !is_false(own) {
                found.push(format!(
                    "Running as Non-root (runAsNonRoot): {who}: runAsNonRoot is not true at {} or {}",
                    container.field("securityContext.runAsNonRoot"),
                    workload.field("securityContext.runAsNonRoot")
                ));
            } else if is_false(own) {
                found.push(format!(
                    "Running as Non-root (runAsNonRoot): {who}: {} is false",
                    container.field("securityContext.runAsNonRoot")
                ));
            }
            if version.at_least(23)
                && container.security("runAsUser").and_then(Value::as_i64) == Some(0)
            {
                found.push(format!(
                    "Running as Non-root user (runAsUser): {who}: {} is 0",
                    container.field("securityContext.runAsUser")
                ));
            }
        }
        if version.at_least(19) && !windows {
            match container
                .security("seccompProfile")
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
            {
                Some(kind) if !valid_seccomp(kind) => found.push(format!(
                    "Seccomp (seccompProfile_restricted): {who}: {} is {kind}",
                    container.field("securityContext.seccompProfile.type")
                )),
                Some(_) => {}
                // The annotations do not count here: upstream reads only the field from 1.19.
                None if !pod_seccomp.is_some_and(valid_seccomp) => found.push(format!(
                    "Seccomp (seccompProfile_restricted): {who}: seccompProfile.type is not RuntimeDefault or Localhost at {} or {}",
                    container.field("securityContext.seccompProfile"),
                    workload.field("securityContext.seccompProfile")
                )),
                None => {}
            }
        }
        if version.at_least(22) && !windows {
            if !drops_all_capabilities(&container) {
                found.push(format!(
                    "Capabilities (capabilities_restricted): {who}: {} does not include ALL",
                    container.field("securityContext.capabilities.drop")
                ));
            }
            for cap in added_capabilities(&container) {
                if cap != "NET_BIND_SERVICE" {
                    found.push(format!(
                        "Capabilities (capabilities_restricted): {who}: {} adds {cap} (only NET_BIND_SERVICE is allowed)",
                        container.field("securityContext.capabilities.add")
                    ));
                }
            }
        }
        if version.at_least(35) {
            proc_mount_violation(&container, "procMount_restricted", found);
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

fn selinux(options: &Value, path: &str, version: PolicyVersion, found: &mut Vec<String>) {
    let kind = options.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed = SELINUX_TYPES
        .iter()
        .any(|(allowed, since)| *allowed == kind && version.at_least(*since));
    if !allowed {
        found.push(format!(
            "SELinux (seLinuxOptions): {path}.type is {kind:?}, not allowed at policy {version}"
        ));
    }
    for field in ["user", "role"] {
        if options
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            found.push(format!("SELinux (seLinuxOptions): {path}.{field} is set"));
        }
    }
}

fn apparmor_field(profile: &Value, path: &str, found: &mut Vec<String>) {
    if let Some(kind) = profile.get("type").and_then(Value::as_str)
        && !matches!(kind, "RuntimeDefault" | "Localhost")
    {
        found.push(format!("AppArmor (appArmorProfile): {path} is {kind}"));
    }
}
