//! What kind does inside a kind node image after the container is up (kind v0.32.0's action
//! sequence, `pkg/cluster/internal/create/create.go`): the kubeadm configuration it writes to
//! `/kind/kubeadm.conf`, and the commands for `kubeadm init`, untainting, CNI and storage.
//! Pure functions, so unit tests pin them; the kind-e2e workflow runs them for real.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ApiServerMount, Error, Phase, Result};

pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/16";
pub const BOOTSTRAP_TOKEN: &str = "abcdef.0123456789abcdef";
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
pub const KUBEADM_CONFIG_PATH: &str = "/kind/kubeadm.conf";

/// A Kubernetes version as `kind` reads it from `/kind/version` (`v1.36.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubeVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches('v');
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(str::parse::<u32>);
        Some(KubeVersion {
            major: parts.next()?.ok()?,
            minor: parts.next()?.ok()?,
            patch: parts.next()?.ok()?,
        })
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the configuration is rendered from.
#[derive(Debug, Clone)]
pub struct KubeadmInputs<'a> {
    pub version: KubeVersion,
    pub cluster_name: &'a str,
    pub node_name: &'a str,
    pub node_ip: &'a str,
    pub apiserver_flags: &'a BTreeMap<String, String>,
    pub apiserver_mounts: &'a [ApiServerMount],
    /// Further names the API server's and etcd's serving certificates must carry (the Service a
    /// host cluster puts in front of a node pod); empty for Docker, which publishes on 127.0.0.1.
    pub extra_sans: &'a [String],
}

fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

/// kind's kubeadm configuration (v1beta3 below Kubernetes 1.36, v1beta4 from 1.36), with the lab's
/// API server flags and mounts merged in as kind's `kubeadmConfigPatches` would merge them.
pub fn kubeadm_config(inputs: &KubeadmInputs<'_>) -> String {
    let v1beta4 = inputs.version.minor >= 36 || inputs.version.major > 1;
    let api_version = if v1beta4 {
        "kubeadm.k8s.io/v1beta4"
    } else {
        "kubeadm.k8s.io/v1beta3"
    };
    let endpoint = format!("{}:6443", inputs.node_name);
    let provider_id = format!("kind://docker/{}/{}", inputs.cluster_name, inputs.node_name);

    let mut apiserver_args: BTreeMap<String, String> = BTreeMap::new();
    apiserver_args.insert("runtime-config".to_owned(), String::new());
    for (name, value) in inputs.apiserver_flags {
        apiserver_args.insert(name.trim_start_matches('-').to_owned(), value.clone());
    }
    let args_block = |args: &BTreeMap<String, String>, indent: &str| -> String {
        let mut out = String::new();
        for (name, value) in args {
            if v1beta4 {
                out.push_str(&format!(
                    "{indent}- name: {}\n{indent}  value: {}\n",
                    quote(name),
                    quote(value)
                ));
            } else {
                out.push_str(&format!("{indent}  {}: {}\n", quote(name), quote(value)));
            }
        }
        out
    };
    let mut controller_args = BTreeMap::new();
    controller_args.insert("enable-hostpath-provisioner".to_owned(), "true".to_owned());
    let mut kubelet_args = BTreeMap::new();
    kubelet_args.insert("node-ip".to_owned(), inputs.node_ip.to_owned());
    kubelet_args.insert("provider-id".to_owned(), provider_id);
    kubelet_args.insert("node-labels".to_owned(), String::new());

    let mut volumes = String::new();
    for (index, mount) in inputs.apiserver_mounts.iter().enumerate() {
        volumes.push_str(&format!(
            "  - name: hardlab-mount-{index}\n    hostPath: {path}\n    mountPath: {path}\n    readOnly: {ro}\n    pathType: File\n",
            path = quote(&mount.node_path),
            ro = mount.read_only
        ));
    }
    let extra_volumes = if volumes.is_empty() {
        String::new()
    } else {
        format!("  extraVolumes:\n{volumes}")
    };
    let san_lines = |indent: &str| -> String {
        inputs
            .extra_sans
            .iter()
            .map(|name| format!("{indent}- {}\n", quote(name)))
            .collect()
    };
    let kubelet_cgroup_driver = if inputs.version.minor >= 24 || inputs.version.major > 1 {
        "systemd"
    } else {
        "cgroupfs"
    };

    format!(
        "apiVersion: {api_version}
kind: ClusterConfiguration
kubernetesVersion: {version}
clusterName: {cluster}
controlPlaneEndpoint: {endpoint}
apiServer:
  certSANs:
  - localhost
  - \"127.0.0.1\"
{extra_sans}  extraArgs:
{apiserver_args}{extra_volumes}{etcd_sans}controllerManager:
  extraArgs:
{controller_args}networking:
  podSubnet: {pod_subnet}
  serviceSubnet: {service_subnet}
---
apiVersion: {api_version}
kind: InitConfiguration
bootstrapTokens:
- token: {token}
localAPIEndpoint:
  advertiseAddress: {node_ip}
  bindPort: 6443
nodeRegistration:
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
{kubelet_args}skipPhases:
- preflight
---
apiVersion: {api_version}
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: {endpoint}
    token: {token}
    unsafeSkipCAVerification: true
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: {kubelet_cgroup_driver}
cgroupRoot: /kubelet
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: \"0%\"
  nodefs.inodesFree: \"0%\"
  imagefs.available: \"0%\"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
iptables:
  minSyncPeriod: 1s
conntrack:
  maxPerCore: 0
",
        version = inputs.version,
        cluster = quote(inputs.cluster_name),
        endpoint = quote(&endpoint),
        apiserver_args = args_block(&apiserver_args, "  "),
        controller_args = args_block(&controller_args, "  "),
        kubelet_args = args_block(&kubelet_args, "  "),
        pod_subnet = quote(POD_SUBNET),
        service_subnet = quote(SERVICE_SUBNET),
        token = quote(BOOTSTRAP_TOKEN),
        node_ip = quote(inputs.node_ip),
        extra_sans = san_lines("  "),
        etcd_sans = if inputs.extra_sans.is_empty() {
            String::new()
        } else {
            format!(
                "etcd:\n  local:\n    serverCertSANs:\n{}",
                san_lines("    ")
            )
        },
    )
}

/// One command the provider runs in the node, with what it feeds to stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    pub phase: Phase,
    pub argv: Vec<String>,
    pub stdin: Option<String>,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// Writing the configuration and `kubeadm init`, then untainting the single node (kind's
/// `kubeadminit` action). Kubernetes before 1.23 is not supported (no `skipPhases` in the config).
pub fn init_commands(config: &str, version: KubeVersion) -> Vec<NodeCommand> {
    let mut commands = vec![
        NodeCommand {
            phase: Phase::WritingConfiguration,
            argv: argv(&["mkdir", "-p", "/kind"]),
            stdin: None,
        },
        NodeCommand {
            phase: Phase::WritingConfiguration,
            argv: argv(&["cp", "/dev/stdin", KUBEADM_CONFIG_PATH]),
            stdin: Some(config.to_owned()),
        },
        NodeCommand {
            phase: Phase::StartingControlPlane,
            argv: argv(&[
                "kubeadm",
                "init",
                "--config=/kind/kubeadm.conf",
                "--skip-token-print",
                "--v=6",
            ]),
            stdin: None,
        },
    ];
    let mut taints = vec!["node-role.kubernetes.io/control-plane-"];
    if version.minor < 25 && version.major == 1 {
        taints.push("node-role.kubernetes.io/master-");
    }
    for taint in taints {
        commands.push(NodeCommand {
            phase: Phase::StartingControlPlane,
            argv: argv(&[
                "kubectl",
                "--kubeconfig=/etc/kubernetes/admin.conf",
                "taint",
                "nodes",
                "--all",
                taint,
            ]),
            stdin: None,
        });
    }
    commands.push(NodeCommand {
        phase: Phase::StartingControlPlane,
        argv: argv(&[
            "kubectl",
            "--kubeconfig=/etc/kubernetes/admin.conf",
            "label",
            "nodes",
            "--all",
            "node.kubernetes.io/exclude-from-external-load-balancers-",
        ]),
        stdin: None,
    });
    commands
}

pub const CNI_MANIFEST: &str = "/kind/manifests/default-cni.yaml";
pub const STORAGE_MANIFEST: &str = "/kind/manifests/default-storage.yaml";

/// kind's default CNI manifest, prepared the way kind prepares it: a manifest marked "template
/// this file" gets the pod subnet; one marked "patch this file" gets the control plane's address
/// as `CONTROL_PLANE_ENDPOINT` in its DaemonSet's first container (kindnet reaches the API server
/// through it). `control_plane_endpoint` is `<node>:6443`.
pub fn cni_command(manifest: &str, control_plane_endpoint: &str) -> Result<NodeCommand> {
    let mut manifest = if manifest.contains("would you kindly template this file") {
        manifest
            .replace("{{ .PodSubnet }}", POD_SUBNET)
            .replace("{{.PodSubnet}}", POD_SUBNET)
    } else {
        manifest.to_owned()
    };
    if manifest.contains("would you kindly patch this file") {
        manifest = add_control_plane_endpoint(&manifest, control_plane_endpoint)?;
    }
    Ok(NodeCommand {
        phase: Phase::InstallingCni,
        argv: argv(&[
            "kubectl",
            "create",
            "--kubeconfig=/etc/kubernetes/admin.conf",
            "-f",
            "-",
        ]),
        stdin: Some(manifest),
    })
}

fn add_control_plane_endpoint(manifest: &str, endpoint: &str) -> Result<String> {
    let invalid = |why: String| Error::Invalid(format!("{CNI_MANIFEST}: {why}"));
    let mut documents = Vec::new();
    let mut patched = false;
    for document in serde_yaml::Deserializer::from_str(manifest) {
        let mut value = serde_yaml::Value::deserialize(document)
            .map_err(|e| invalid(format!("does not parse as YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(serde_yaml::Value::as_str) == Some("DaemonSet") {
            let container = value
                .get_mut("spec")
                .and_then(|v| v.get_mut("template"))
                .and_then(|v| v.get_mut("spec"))
                .and_then(|v| v.get_mut("containers"))
                .and_then(|v| v.get_mut(0))
                .and_then(serde_yaml::Value::as_mapping_mut)
                .ok_or_else(|| invalid("its DaemonSet has no containers to patch".into()))?;
            let env = container
                .entry("env".into())
                .or_insert_with(|| serde_yaml::Value::Sequence(Vec::new()));
            let entry: serde_yaml::Value = serde_yaml::from_str(&format!(
                "{{name: CONTROL_PLANE_ENDPOINT, value: {}}}",
                serde_json::Value::String(endpoint.to_owned())
            ))
            .map_err(|e| invalid(e.to_string()))?;
            env.as_sequence_mut()
                .ok_or_else(|| invalid("its DaemonSet's env is not a list".into()))?
                .push(entry);
            patched = true;
        }
        documents.push(serde_yaml::to_string(&value).map_err(|e| invalid(e.to_string()))?);
    }
    if !patched {
        return Err(invalid("asks to be patched but has no DaemonSet".into()));
    }
    Ok(documents.join("---\n"))
}

/// kind's fallback when the image has no storage manifest.
pub const FALLBACK_STORAGE: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: \"true\"
provisioner: kubernetes.io/host-path
";

pub fn storage_command(manifest: Option<&str>) -> NodeCommand {
    NodeCommand {
        phase: Phase::InstallingStorage,
        argv: argv(&[
            "kubectl",
            "--kubeconfig=/etc/kubernetes/admin.conf",
            "apply",
            "-f",
            "-",
        ]),
        stdin: Some(manifest.unwrap_or(FALLBACK_STORAGE).to_owned()),
    }
}

/// The API server's readiness, asked from inside the node (both bootstrap modes).
pub fn readyz_command() -> Vec<String> {
    argv(&[
        "kubectl",
        "--kubeconfig=/etc/kubernetes/admin.conf",
        "get",
        "--raw",
        "/readyz",
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inputs<'a>(
        version: &str,
        flags: &'a BTreeMap<String, String>,
        mounts: &'a [ApiServerMount],
    ) -> KubeadmInputs<'a> {
        KubeadmInputs {
            version: KubeVersion::parse(version).unwrap(),
            cluster_name: "c-1",
            node_name: "hardlab-c-1-control-plane",
            node_ip: "172.18.0.2",
            apiserver_flags: flags,
            apiserver_mounts: mounts,
            extra_sans: &[],
        }
    }

    #[test]
    fn versions_are_read_the_way_kind_writes_them() {
        assert_eq!(
            KubeVersion::parse("v1.36.1\n"),
            Some(KubeVersion {
                major: 1,
                minor: 36,
                patch: 1
            })
        );
        assert_eq!(
            KubeVersion::parse("v1.37.0-rc.1"),
            Some(KubeVersion {
                major: 1,
                minor: 37,
                patch: 0
            })
        );
        assert_eq!(KubeVersion::parse("garbage"), None);
    }

    #[test]
    fn a_1_36_node_gets_a_v1beta4_configuration_with_kinds_values_and_the_labs_flags() {
        let mut flags = BTreeMap::new();
        flags.insert(
            "encryption-provider-config".to_owned(),
            "/etc/kubernetes/enc.yaml".to_owned(),
        );
        let mounts = [ApiServerMount {
            host_path: "/srv/enc.yaml".to_owned(),
            node_path: "/etc/kubernetes/enc.yaml".to_owned(),
            read_only: true,
        }];
        let config = kubeadm_config(&inputs("v1.36.1", &flags, &mounts));
        let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&config)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(documents.len(), 5);
        let cluster = &documents[0];
        assert_eq!(cluster["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(cluster["kubernetesVersion"], "v1.36.1");
        assert_eq!(
            cluster["controlPlaneEndpoint"],
            "hardlab-c-1-control-plane:6443"
        );
        assert_eq!(
            cluster["apiServer"]["certSANs"],
            serde_yaml::from_str::<serde_yaml::Value>("[localhost, '127.0.0.1']").unwrap()
        );
        let args = &cluster["apiServer"]["extraArgs"];
        assert_eq!(args[0]["name"], "encryption-provider-config");
        assert_eq!(args[0]["value"], "/etc/kubernetes/enc.yaml");
        assert_eq!(args[1]["name"], "runtime-config");
        assert_eq!(args[1]["value"], "");
        let volume = &cluster["apiServer"]["extraVolumes"][0];
        assert_eq!(volume["hostPath"], "/etc/kubernetes/enc.yaml");
        assert_eq!(volume["mountPath"], "/etc/kubernetes/enc.yaml");
        assert_eq!(volume["readOnly"], true);
        assert_eq!(volume["pathType"], "File");
        assert_eq!(
            cluster["controllerManager"]["extraArgs"][0]["name"],
            "enable-hostpath-provisioner"
        );
        assert_eq!(cluster["networking"]["podSubnet"], "10.244.0.0/16");
        assert_eq!(cluster["networking"]["serviceSubnet"], "10.96.0.0/16");

        let init = &documents[1];
        assert_eq!(init["kind"], "InitConfiguration");
        assert_eq!(
            init["bootstrapTokens"][0]["token"],
            "abcdef.0123456789abcdef"
        );
        assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "172.18.0.2");
        assert_eq!(
            init["nodeRegistration"]["criSocket"],
            "unix:///run/containerd/containerd.sock"
        );
        let kubelet_args = &init["nodeRegistration"]["kubeletExtraArgs"];
        assert_eq!(kubelet_args[0]["name"], "node-ip");
        assert_eq!(kubelet_args[0]["value"], "172.18.0.2");
        assert_eq!(kubelet_args[2]["name"], "provider-id");
        assert_eq!(
            kubelet_args[2]["value"],
            "kind://docker/c-1/hardlab-c-1-control-plane"
        );
        assert_eq!(init["skipPhases"][0], "preflight");
        assert_eq!(
            documents[2]["discovery"]["bootstrapToken"]["unsafeSkipCAVerification"],
            true
        );
        assert_eq!(documents[3]["cgroupDriver"], "systemd");
        assert_eq!(documents[3]["cgroupRoot"], "/kubelet");
        assert_eq!(documents[3]["evictionHard"]["nodefs.available"], "0%");
        assert_eq!(documents[4]["mode"], "iptables");
    }

    #[test]
    fn a_node_behind_a_service_gets_its_names_in_the_api_server_and_etcd_certificates() {
        let flags = BTreeMap::new();
        let sans = ["api.hardlab-c-1.svc".to_owned()];
        let mut inputs = inputs("v1.36.1", &flags, &[]);
        inputs.extra_sans = &sans;
        let config = kubeadm_config(&inputs);
        let cluster: serde_yaml::Value = serde_yaml::Deserializer::from_str(&config)
            .next()
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .unwrap();
        assert_eq!(
            cluster["apiServer"]["certSANs"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "[localhost, '127.0.0.1', api.hardlab-c-1.svc]"
            )
            .unwrap()
        );
        assert_eq!(
            cluster["etcd"]["local"]["serverCertSANs"],
            serde_yaml::from_str::<serde_yaml::Value>("[api.hardlab-c-1.svc]").unwrap()
        );
    }

    #[test]
    fn a_1_35_node_gets_v1beta3_with_map_style_extra_args() {
        let flags = BTreeMap::from([("anonymous-auth".to_owned(), "false".to_owned())]);
        let config = kubeadm_config(&inputs("v1.35.0", &flags, &[]));
        let cluster: serde_yaml::Value = serde::Deserialize::deserialize(
            serde_yaml::Deserializer::from_str(&config).next().unwrap(),
        )
        .unwrap();
        assert_eq!(cluster["apiVersion"], "kubeadm.k8s.io/v1beta3");
        assert_eq!(cluster["apiServer"]["extraArgs"]["anonymous-auth"], "false");
        assert_eq!(cluster["apiServer"]["extraArgs"]["runtime-config"], "");
        assert!(cluster["apiServer"].get("extraVolumes").is_none());
    }

    #[test]
    fn init_runs_kubeadm_with_kinds_arguments_then_untaints_the_single_node() {
        let commands = init_commands("CONFIG", KubeVersion::parse("v1.36.1").unwrap());
        let lines: Vec<String> = commands.iter().map(|c| c.argv.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "mkdir -p /kind",
                "cp /dev/stdin /kind/kubeadm.conf",
                "kubeadm init --config=/kind/kubeadm.conf --skip-token-print --v=6",
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf taint nodes --all node-role.kubernetes.io/control-plane-",
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf label nodes --all node.kubernetes.io/exclude-from-external-load-balancers-",
            ]
        );
        assert_eq!(commands[1].stdin.as_deref(), Some("CONFIG"));
        let old = init_commands("CONFIG", KubeVersion::parse("v1.24.0").unwrap());
        assert!(
            old.iter()
                .any(|c| c.argv.last().map(String::as_str)
                    == Some("node-role.kubernetes.io/master-"))
        );
    }

    #[test]
    fn a_cni_manifest_marked_for_patching_gets_the_control_plane_endpoint_in_its_daemonset() {
        let manifest = "# would you kindly patch this file
apiVersion: v1
kind: ServiceAccount
metadata: {name: kindnet, namespace: kube-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kindnet, namespace: kube-system}
spec:
  template:
    spec:
      containers:
      - name: kindnet-cni
        image: docker.io/kindest/kindnetd:v20250512
        env:
        - {name: HOST_IP, value: x}
";
        let command = cni_command(manifest, "hardlab-c-abc-control-plane:6443").unwrap();
        let patched = command.stdin.unwrap();
        let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&patched)
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["kind"], "ServiceAccount");
        let env = &documents[1]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["name"], "HOST_IP");
        assert_eq!(env[1]["name"], "CONTROL_PLANE_ENDPOINT");
        assert_eq!(env[1]["value"], "hardlab-c-abc-control-plane:6443");

        let broken = cni_command("# would you kindly patch this file\nkind: [", "x:6443");
        assert!(broken.unwrap_err().to_string().contains(CNI_MANIFEST));
        let no_daemonset = cni_command(
            "# would you kindly patch this file\nkind: ConfigMap\n",
            "x:6443",
        );
        assert!(
            no_daemonset
                .unwrap_err()
                .to_string()
                .contains("no DaemonSet")
        );
    }

    #[test]
    fn the_cni_manifest_is_templated_with_the_pod_subnet_and_created() {
        let command = cni_command(
            "# would you kindly template this file\nvalue: {{ .PodSubnet }}\n",
            "c-control-plane:6443",
        )
        .unwrap();
        assert_eq!(
            command.argv.join(" "),
            "kubectl create --kubeconfig=/etc/kubernetes/admin.conf -f -"
        );
        assert!(
            command
                .stdin
                .as_deref()
                .unwrap()
                .contains("value: 10.244.0.0/16")
        );
        let untouched = cni_command("value: {{ .PodSubnet }}\n", "c-control-plane:6443").unwrap();
        assert!(
            untouched
                .stdin
                .as_deref()
                .unwrap()
                .contains("{{ .PodSubnet }}")
        );
    }

    #[test]
    fn storage_falls_back_to_kinds_standard_class() {
        let command = storage_command(None);
        assert_eq!(
            command.argv.join(" "),
            "kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -"
        );
        assert!(
            command
                .stdin
                .as_deref()
                .unwrap()
                .contains("provisioner: kubernetes.io/host-path")
        );
        assert_eq!(storage_command(Some("x")).stdin.as_deref(), Some("x"));
    }
}
