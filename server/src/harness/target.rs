//! The cluster a verification runs against: a disposable one the harness creates through the
//! Docker provider (and removes), or an existing one named on the command line. Scripts run in
//! its control-plane node; the grader reaches it exactly as a learner's Check does: certificates
//! captured at creation, the node's files through the engine's archive endpoint, etcd over its
//! published port.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hardlab_grader::context::{ApiEndpoint, Params};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::{Error, Result};
use crate::clusters::{
    ClusterCredentials, ClusterProvider, ClusterSpec, DockerProvider, ExecOutput, Ownership,
};

/// Where scripts are copied in the node before they run.
/// Capabilities hardlab knows how to detect; anything else must be declared with `--capability`.
pub const DETECTED: &[&str] = &["pods", "kms-v2", "psa", "insecure-port"];

pub use crate::clusters::{ScriptRun, run_script_in};

pub struct Target {
    provider: DockerProvider,
    cluster: String,
    owned: bool,
    /// Captured when the harness made the cluster (or when it was named), as for learners.
    credentials: ClusterCredentials,
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
            pids_limit: None,
            nano_cpus: None,
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
        let created = provider.create(&spec, &quiet).await?;
        Ok(Target {
            provider,
            cluster,
            owned: true,
            credentials: created.credentials,
        })
    }

    /// An existing cluster, named by whoever runs the harness; left in place afterwards.
    pub async fn existing(provider: DockerProvider, cluster: &str) -> Result<Self> {
        let credentials = provider.capture_credentials(cluster).await?;
        Ok(Target {
            provider,
            cluster: cluster.to_owned(),
            owned: false,
            credentials,
        })
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

    /// The host's address on the node's Docker network: where the node reaches a server the
    /// harness runs on the host (the host never dials the node's address).
    pub async fn host_address_for_node(&self) -> Result<std::net::IpAddr> {
        let network = self
            .provider
            .docker()
            .inspect_network(&crate::clusters::network_name(&self.cluster), None)
            .await
            .map_err(|e| Error::Node(format!("the node's network: {e}")))?;
        super::proxy::gateway_of(&network)
            .ok_or_else(|| Error::Node("the node's network has no gateway address".into()))
    }

    /// A kubeconfig for the cluster from the captured certificates (as the server holds one).
    pub async fn kubeconfig(&self) -> Result<String> {
        let address = self.provider.address(&self.cluster).await?;
        Ok(self.credentials.kubeconfig_yaml(&self.cluster, &address))
    }

    /// Writes a file into the node (root's).
    pub async fn write_file(&self, path: &str, contents: &[u8]) -> std::result::Result<(), String> {
        let written = self
            .exec(
                &[
                    "sh",
                    "-c",
                    "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"",
                    "sh",
                    path,
                ],
                Some(contents.to_vec()),
            )
            .await
            .map_err(|e| e.to_string())?;
        if written.exit_code != 0 {
            return Err(written.short_output());
        }
        Ok(())
    }

    /// Runs a lab script as root in the control-plane node, as `bash -euo pipefail` with the
    /// admin kubeconfig, the way the lab format promises.
    pub async fn run_script(&self, script: &str, timeout: Duration) -> Result<ScriptRun> {
        self.run_script_with_env(script, &[], timeout).await
    }

    /// [`Self::run_script`] with `NAME=value` variables a learner would have set (their
    /// password and authenticator code for `hardlab login`).
    pub async fn run_script_with_env(
        &self,
        script: &str,
        env: &[String],
        timeout: Duration,
    ) -> Result<ScriptRun> {
        Ok(run_script_in(&self.provider, &self.cluster, script, env, timeout).await?)
    }

    async fn client(&self) -> Result<(kube::Client, ApiEndpoint)> {
        let address = self.provider.address(&self.cluster).await?;
        Ok(self
            .credentials
            .kube_client(&self.cluster, &address)
            .await?)
    }

    /// A grader context for this cluster, with the lab's parameters: the same clients a learner's
    /// Check uses (captured certificates, node files through the engine, etcd over its port).
    pub async fn context(&self, params: &Params) -> Result<hardlab_grader::Context> {
        let address = self.provider.address(&self.cluster).await?;
        let (client, endpoint) = self.client().await?;
        let mut ctx = hardlab_grader::Context::live(Some(client))
            .with_endpoint(endpoint)
            .with_node(self.provider.node_files(&self.cluster))
            .with_params(params.clone());
        if let Some(etcd) = self.credentials.etcd(&address)? {
            ctx = ctx.with_etcd(Arc::new(etcd));
        }
        Ok(ctx)
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
        let (client, _) = self.client().await?;
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
        let (client, _) = self.client().await?;
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
