//! The cluster a verification runs against: a disposable one the harness creates through the
//! Docker provider (and removes), or an existing one named on the command line. Scripts run in
//! its control-plane node; the grader reaches it through its kubeconfig, `docker exec` for the
//! node's files, and `etcdctl` on the node for etcd.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hardlab_grader::context::{ApiEndpoint, Params};
use hardlab_grader::target::{EtcdAccess, NodeAccess};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Error, Result};
use crate::clusters::{
    ClusterProvider, ClusterSpec, DockerProvider, ExecOutput, Ownership, node_container_name,
};

/// Where scripts are copied in the node before they run.
const SCRIPT_PATH: &str = "/tmp/hardlab-harness-script.sh";
/// Capabilities hardlab knows how to detect; anything else must be declared with `--capability`.
pub const DETECTED: &[&str] = &["pods", "kms-v2", "psa", "insecure-port"];

/// How a script run ended.
#[derive(Debug, Clone)]
pub struct ScriptRun {
    pub exit_code: i64,
    pub output: String,
}

pub struct Target {
    provider: DockerProvider,
    cluster: String,
    owned: bool,
}

impl Target {
    /// Creates a disposable cluster; it is removed by [`Target::remove`].
    pub async fn create(
        provider: DockerProvider,
        image: &str,
        unprivileged: bool,
        plan: &super::plan::LabPlan,
    ) -> Result<Self> {
        let (bootstrap, privileged) = provider.image_defaults(image).await?;
        let cluster = format!("verify-{}", crate::clusters::random_name());
        let spec = ClusterSpec {
            name: cluster.clone(),
            image: image.to_owned(),
            bootstrap,
            privileged: privileged && !unprivileged,
            memory_bytes: None,
            ownership: Ownership {
                owner: "hardlab-labs-verify".to_owned(),
                lab: plan.id.clone(),
                session: cluster.clone(),
                // Found and removed as expired by a server even if this process dies.
                expiry_ms: crate::clusters::now_ms() + 2 * 60 * 60 * 1000,
            },
            apiserver_flags: plan.apiserver_flags.clone(),
            apiserver_mounts: Vec::new(),
        };
        let quiet = |_phase: crate::clusters::Phase| {};
        provider.create(&spec, &quiet).await?;
        Ok(Target {
            provider,
            cluster,
            owned: true,
        })
    }

    /// An existing cluster; left in place afterwards.
    pub fn existing(provider: DockerProvider, cluster: &str) -> Self {
        Target {
            provider,
            cluster: cluster.to_owned(),
            owned: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.cluster
    }

    /// Removes the cluster when the harness created it.
    pub async fn remove(&self) -> Result<()> {
        if self.owned {
            self.provider.delete(&self.cluster).await?;
        }
        Ok(())
    }

    async fn exec(&self, argv: &[&str], stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        Ok(self.provider.exec(&self.cluster, &argv, stdin).await?)
    }

    /// Runs a lab script as root in the control-plane node, as `bash -euo pipefail` with the
    /// admin kubeconfig, the way the lab format promises.
    pub async fn run_script(&self, script: &str, timeout: Duration) -> Result<ScriptRun> {
        let copied = self
            .exec(
                &["sh", "-c", &format!("cat > {SCRIPT_PATH}")],
                Some(script.as_bytes().to_vec()),
            )
            .await?;
        if copied.exit_code != 0 {
            return Err(Error::Node(format!(
                "copying the script into the node failed: {}",
                copied.short_output()
            )));
        }
        let command = crate::clusters::lab_script_command(SCRIPT_PATH);
        let argv: Vec<&str> = command.iter().map(String::as_str).collect();
        let run = self.exec(&argv, None);
        match tokio::time::timeout(timeout, run).await {
            Ok(output) => {
                let output = output?;
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                Ok(ScriptRun {
                    exit_code: output.exit_code,
                    output: text,
                })
            }
            Err(_) => Ok(ScriptRun {
                exit_code: -1,
                output: format!("did not finish within {} s", timeout.as_secs()),
            }),
        }
    }

    async fn kube_config(&self) -> Result<kube::Config> {
        let yaml = self.provider.kubeconfig(&self.cluster).await?;
        let kubeconfig =
            Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Node(format!("kubeconfig: {e}")))?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Node(format!("kubeconfig: {e}")))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        config.write_timeout = Some(Duration::from_secs(60));
        Ok(config)
    }

    /// A grader context for this cluster, with the lab's parameters.
    pub async fn context(&self, params: &Params) -> Result<hardlab_grader::Context> {
        let config = self.kube_config().await?;
        let endpoint = ApiEndpoint::from_config(&config);
        let client = kube::Client::try_from(config).map_err(|e| Error::Node(e.to_string()))?;
        let node = Arc::new(DockerNodeFiles {
            provider: self.provider.clone(),
            cluster: self.cluster.clone(),
        });
        let etcd = Arc::new(NodeEtcdctl {
            provider: self.provider.clone(),
            cluster: self.cluster.clone(),
        });
        Ok(hardlab_grader::Context::live(Some(client))
            .with_endpoint(endpoint)
            .with_node(node)
            .with_etcd(etcd)
            .with_params(params.clone()))
    }

    /// Publishes the node's static pod manifests as mirror pods in kube-system, as the kubelet
    /// does. Only for nodes without a kubelet (the offline test node): the grader reads the
    /// control plane's flags from mirror pods, and there nothing else creates them.
    pub async fn publish_mirror_pods(&self) -> Result<()> {
        let node_name = self
            .exec(&["hostname"], None)
            .await?
            .stdout_text()
            .trim()
            .to_owned();
        let listing = self
            .exec(&["ls", "-1", "/etc/kubernetes/manifests"], None)
            .await?;
        let client = kube::Client::try_from(self.kube_config().await?)
            .map_err(|e| Error::Node(e.to_string()))?;
        let pods: Api<Pod> = Api::namespaced(client, "kube-system");
        for file in listing
            .stdout_text()
            .lines()
            .filter(|f| f.ends_with(".yaml"))
        {
            let path = format!("/etc/kubernetes/manifests/{file}");
            let text = self.exec(&["cat", &path], None).await?.stdout_text();
            let Ok(mut pod) = serde_yaml::from_str::<Pod>(&text) else {
                // A manifest the kubelet could not read either; the grader reports what it lacks.
                continue;
            };
            let Some(base) = pod.metadata.name.clone() else {
                continue;
            };
            let name = format!("{base}-{node_name}");
            pod.metadata.name = Some(name.clone());
            pod.metadata.namespace = Some("kube-system".to_owned());
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    "kubernetes.io/config.mirror".to_owned(),
                    "hardlab-harness".to_owned(),
                );
            pod.status = None;
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(node_name.clone());
            }
            let gone = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            match pods.delete(&name, &gone).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(Error::Node(format!("replacing mirror pod {name}: {e}"))),
            }
            pods.create(&PostParams::default(), &pod)
                .await
                .map_err(|e| Error::Node(format!("creating mirror pod {name}: {e}")))?;
        }
        Ok(())
    }

    /// What this cluster can host: the detected capabilities plus those declared by the operator.
    pub async fn capabilities(&self, declared: &[String]) -> Result<BTreeSet<String>> {
        let client = kube::Client::try_from(self.kube_config().await?)
            .map_err(|e| Error::Node(e.to_string()))?;
        let mut capabilities: BTreeSet<String> = declared.iter().cloned().collect();
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| Error::Node(format!("GET /version: {e}")))?;
        let minor: u32 = version.minor.trim_end_matches('+').parse().map_err(|_| {
            Error::Node(format!(
                "unexpected server minor version {:?}",
                version.minor
            ))
        })?;
        if minor >= 27 {
            capabilities.insert("kms-v2".to_owned());
        }
        if minor >= 23 {
            capabilities.insert("psa".to_owned());
        }
        if minor < 24 {
            capabilities.insert("insecure-port".to_owned());
        }
        let nodes: Api<Node> = Api::all(client);
        let ready = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Node(format!("listing nodes: {e}")))?
            .items
            .iter()
            .any(|node| {
                node.status
                    .as_ref()
                    .and_then(|status| status.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            });
        if ready {
            capabilities.insert("pods".to_owned());
        }
        Ok(capabilities)
    }
}

/// The node's files through `docker exec` (`cat`, `ls`).
struct DockerNodeFiles {
    provider: DockerProvider,
    cluster: String,
}

#[async_trait]
impl NodeAccess for DockerNodeFiles {
    fn describe(&self) -> String {
        format!("docker:{}", node_container_name(&self.cluster))
    }

    async fn read_file(&self, path: &str) -> hardlab_grader::Result<Option<Vec<u8>>> {
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "if [ -e \"$1\" ]; then cat \"$1\"; else exit 44; fi".to_owned(),
            "read".to_owned(),
            path.to_owned(),
        ];
        let output = self
            .provider
            .exec(&self.cluster, &argv, None)
            .await
            .map_err(|e| hardlab_grader::Error::Node(e.to_string()))?;
        match output.exit_code {
            0 => Ok(Some(output.stdout)),
            44 => Ok(None),
            code => Err(hardlab_grader::Error::Node(format!(
                "reading {path} in {} failed (exit {code}): {}",
                self.describe(),
                output.short_output()
            ))),
        }
    }

    async fn list_dir(&self, path: &str) -> hardlab_grader::Result<Vec<String>> {
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "[ -d \"$1\" ] || exit 0; ls -1A \"$1\"".to_owned(),
            "list".to_owned(),
            path.to_owned(),
        ];
        let output = self
            .provider
            .exec(&self.cluster, &argv, None)
            .await
            .map_err(|e| hardlab_grader::Error::Node(e.to_string()))?;
        if output.exit_code != 0 {
            return Err(hardlab_grader::Error::Node(format!(
                "listing {path} in {} failed: {}",
                self.describe(),
                output.short_output()
            )));
        }
        Ok(output
            .stdout_text()
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// etcd read with `etcdctl` on the node, using the API server's etcd client certificate.
struct NodeEtcdctl {
    provider: DockerProvider,
    cluster: String,
}

#[derive(serde::Deserialize)]
struct EtcdctlGet {
    #[serde(default)]
    kvs: Vec<EtcdctlKv>,
}

#[derive(serde::Deserialize)]
struct EtcdctlKv {
    key: String,
    #[serde(default)]
    value: String,
}

impl NodeEtcdctl {
    async fn get_json(&self, key: &[u8], prefix: bool) -> hardlab_grader::Result<EtcdctlGet> {
        let etcd_error = |message: String| hardlab_grader::Error::Etcd(message);
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| etcd_error("etcd keys read by the harness must be UTF-8".to_owned()))?;
        let mut argv: Vec<String> = [
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
            "--cert=/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "--key=/etc/kubernetes/pki/apiserver-etcd-client.key",
            "--command-timeout=20s",
            "-w",
            "json",
            "get",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.push(key);
        if prefix {
            argv.push("--prefix".to_owned());
        }
        let mut command = vec!["env".to_owned(), "ETCDCTL_API=3".to_owned()];
        command.extend(argv);
        let output = self
            .provider
            .exec(&self.cluster, &command, None)
            .await
            .map_err(|e| etcd_error(e.to_string()))?;
        if output.exit_code != 0 {
            return Err(etcd_error(format!(
                "etcdctl on {} failed: {}",
                node_container_name(&self.cluster),
                output.short_output()
            )));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| etcd_error(format!("etcdctl printed something other than JSON: {e}")))
    }
}

fn decode(text: &str) -> hardlab_grader::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| hardlab_grader::Error::Etcd(format!("etcdctl JSON: {e}")))
}

#[async_trait]
impl EtcdAccess for NodeEtcdctl {
    fn describe(&self) -> String {
        format!(
            "etcdctl in docker:{} (https://127.0.0.1:2379)",
            node_container_name(&self.cluster)
        )
    }

    async fn get(&self, key: &[u8]) -> hardlab_grader::Result<Option<Vec<u8>>> {
        let answer = self.get_json(key, false).await?;
        answer.kvs.first().map(|kv| decode(&kv.value)).transpose()
    }

    async fn list(&self, prefix: &[u8]) -> hardlab_grader::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let answer = self.get_json(prefix, true).await?;
        answer
            .kvs
            .iter()
            .map(|kv| Ok((decode(&kv.key)?, decode(&kv.value)?)))
            .collect()
    }
}
