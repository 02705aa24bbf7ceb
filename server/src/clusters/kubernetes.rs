//! Learners' clusters on a Kubernetes host cluster: each cluster is one kind-node pod (hardlab's
//! node image) in a namespace of its own, the way Educates-style platforms run events past one
//! host. The namespace carries everything: a ResourceQuota and LimitRange that hold the node to
//! its share, a NetworkPolicy that lets only hardlab's servers in and only the allowed egress out,
//! Pod Security `privileged` (the node runs systemd and containerd, as kind's nodes do) and a
//! Service in front of the node's API server and etcd. Deleting the namespace deletes the cluster.
//!
//! Commands run in the node through the `pods/exec` subresource; the same kind sequence as the
//! Docker provider's brings the control plane up ([`super::bootstrap`]), and the credentials are
//! captured the same way, before anyone has a shell in the node.
//!
//! The provider's own rights are in `deploy/rbac.yaml`: it manages namespaces, and inside the
//! namespaces it creates it holds the `hardlab-node-manager` ClusterRole through a RoleBinding it
//! creates there (Kubernetes lets it bind that one role and no other).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hardlab_grader::target::apipod::{ApiPodNode, PodRef, exec_in_pod};
use hardlab_grader::target::docker::NodeLimits;
use hardlab_grader::target::{CommandOutput, NodeAccess};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::bootstrap::{self, NodeIdentity, NodeRunner};
use super::credentials::{ClusterAddress, ClusterCredentials};
use super::{
    Bootstrap, ClusterProvider, ClusterSpec, CreatedCluster, Error, ExecOutput, NodeInfo,
    Ownership, Phase, PhaseSink, Result, labels,
};

/// The node pod's name in its namespace, and its single container's.
pub const NODE_POD: &str = "node";
/// The Service in front of the node's API server (6443) and etcd (2379).
pub const NODE_SERVICE: &str = "api";
/// The ClusterRole the provider binds to itself in each cluster namespace (deploy/rbac.yaml).
pub const NODE_MANAGER_ROLE: &str = "hardlab-node-manager";

pub use crate::config::KubernetesSettings;
/// Annotations on the namespace: who and what the cluster is for (label values are too narrow
/// for user names).
const OWNER_ANNOTATION: &str = "hardlab.io/owner";
const LAB_ANNOTATION: &str = "hardlab.io/lab";
const SESSION_ANNOTATION: &str = "hardlab.io/session";
const EXPIRY_ANNOTATION: &str = "hardlab.io/expiry";

/// Clusters as pods on a host cluster.
pub struct KubernetesProvider {
    client: kube::Client,
    settings: KubernetesSettings,
    instance: String,
    node_limits: NodeLimits,
}

impl KubernetesProvider {
    /// Connects with the settings' kubeconfig, else the in-cluster configuration.
    pub async fn connect(settings: KubernetesSettings) -> Result<Self> {
        let config = match &settings.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    Error::Kubeconfig(format!(
                        "the host cluster's kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| {
                        Error::Kubeconfig(format!(
                            "the host cluster's kubeconfig {}: {e}",
                            path.display()
                        ))
                    })?
            }
            None => kube::Config::incluster().map_err(|e| {
                Error::Kubeconfig(format!(
                    "not running in a cluster and no host kubeconfig was given: {e}"
                ))
            })?,
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Kubeconfig(format!("the host cluster's client: {e}")))?;
        Ok(Self::with_client(client, settings))
    }

    pub fn with_client(client: kube::Client, settings: KubernetesSettings) -> Self {
        KubernetesProvider {
            client,
            settings,
            instance: "hardlab".to_owned(),
            node_limits: NodeLimits::default(),
        }
    }

    /// The installation's label value, as for the Docker provider.
    pub fn with_instance(mut self, instance: &str) -> Self {
        instance.clone_into(&mut self.instance);
        self
    }

    pub fn namespace(&self, cluster: &str) -> String {
        format!("{}{cluster}", self.settings.namespace_prefix)
    }

    /// The node's host name; kubeadm names the node after it, as kind names it after the container.
    pub fn node_name(cluster: &str) -> String {
        format!("{cluster}-control-plane")
    }

    fn service_host(&self, cluster: &str) -> String {
        format!("{NODE_SERVICE}.{}.svc", self.namespace(cluster))
    }

    /// What the provider creates in a cluster's namespace, in order.
    pub fn namespace_objects(&self, spec: &ClusterSpec) -> Vec<Value> {
        let namespace = self.namespace(&spec.name);
        let memory = spec.memory_bytes.map(|bytes| bytes.to_string());
        let cpu = spec.nano_cpus.map(|nano| format!("{}m", nano / 1_000_000));
        let mut limits = serde_json::Map::new();
        if let Some(memory) = &memory {
            limits.insert("memory".into(), json!(memory));
        }
        if let Some(cpu) = &cpu {
            limits.insert("cpu".into(), json!(cpu));
        }
        let mut quota = serde_json::Map::new();
        quota.insert("pods".into(), json!("1"));
        quota.insert("services".into(), json!("1"));
        quota.insert("persistentvolumeclaims".into(), json!("0"));
        quota.insert("services.loadbalancers".into(), json!("0"));
        quota.insert("services.nodeports".into(), json!("0"));
        if let Some(memory) = &memory {
            quota.insert("limits.memory".into(), json!(memory));
            quota.insert("requests.memory".into(), json!(memory));
        }
        if let Some(cpu) = &cpu {
            quota.insert("limits.cpu".into(), json!(cpu));
        }
        let from_servers = json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.settings.server_namespace}},
            "podSelector": {"matchLabels": self.settings.server_pod_labels},
        });
        let mut egress = vec![json!({
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        })];
        if !self.settings.egress_cidrs.is_empty() {
            let blocks: Vec<Value> = self
                .settings
                .egress_cidrs
                .iter()
                .map(|cidr| json!({"ipBlock": {"cidr": cidr}}))
                .collect();
            egress.push(json!({"to": blocks}));
        }
        let node_labels = json!({
            labels::MANAGED: self.instance,
            labels::CLUSTER: spec.name,
            "app.kubernetes.io/name": "hardlab-node",
        });
        vec![
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "hardlab-provider", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NODE_MANAGER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": self.settings.service_account, "namespace": self.settings.server_namespace}],
            }),
            json!({
                "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "hardlab-node", "namespace": namespace},
                "spec": {"hard": quota},
            }),
            json!({
                "apiVersion": "v1", "kind": "LimitRange",
                "metadata": {"name": "hardlab-node", "namespace": namespace},
                "spec": {"limits": [{"type": "Container", "default": limits, "defaultRequest": limits, "max": limits}]},
            }),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "hardlab-node", "namespace": namespace},
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [from_servers], "ports": [{"protocol": "TCP", "port": 6443}, {"protocol": "TCP", "port": 2379}]}],
                    "egress": egress,
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": NODE_SERVICE, "namespace": namespace, "labels": node_labels},
                "spec": {
                    "type": "ClusterIP",
                    "selector": {labels::CLUSTER: spec.name},
                    "ports": [{"name": "api", "port": 6443, "targetPort": 6443}, {"name": "etcd", "port": 2379, "targetPort": 2379}],
                },
            }),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": NODE_POD, "namespace": namespace, "labels": node_labels},
                "spec": self.node_pod_spec(spec, &limits),
            }),
        ]
    }

    fn node_pod_spec(&self, spec: &ClusterSpec, limits: &serde_json::Map<String, Value>) -> Value {
        let tolerations: Vec<Value> = self
            .settings
            .tolerations
            .iter()
            .map(|text| toleration(text))
            .collect();
        json!({
            // The node is the learner's: it gets no token for the host cluster, no links to the
            // host's Services, and is not restarted behind the lifecycle's back.
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "hostname": Self::node_name(&spec.name),
            "nodeSelector": self.settings.node_selector,
            "tolerations": tolerations,
            "containers": [{
                "name": NODE_POD,
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "container", "value": "docker"}],
                "securityContext": {"privileged": spec.privileged},
                "resources": {"limits": limits, "requests": limits},
                "ports": [{"containerPort": 6443, "name": "api"}, {"containerPort": 2379, "name": "etcd"}],
                "volumeMounts": [
                    {"name": "var", "mountPath": "/var"},
                    {"name": "run", "mountPath": "/run"},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "modules", "mountPath": "/lib/modules", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "var", "emptyDir": {}},
                {"name": "run", "emptyDir": {"medium": "Memory"}},
                {"name": "tmp", "emptyDir": {"medium": "Memory"}},
                {"name": "modules", "hostPath": {"path": "/lib/modules", "type": "Directory"}},
            ],
        })
    }

    fn namespace_object(&self, spec: &ClusterSpec) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "name": self.namespace(&spec.name),
                "labels": {
                    labels::MANAGED: self.instance,
                    labels::CLUSTER: spec.name,
                    // The node runs systemd and containerd; nothing else on the host gets this.
                    "pod-security.kubernetes.io/enforce": "privileged",
                    "pod-security.kubernetes.io/warn": "privileged",
                },
                "annotations": {
                    OWNER_ANNOTATION: spec.ownership.owner,
                    LAB_ANNOTATION: spec.ownership.lab,
                    SESSION_ANNOTATION: spec.ownership.session,
                    EXPIRY_ANNOTATION: spec.ownership.expiry_ms.to_string(),
                },
            },
        })
    }

    async fn create_object(&self, object: &Value) -> Result<()> {
        let kind = object["kind"].as_str().unwrap_or("object").to_owned();
        let namespace = object["metadata"]["namespace"].as_str();
        let action = format!("creating the cluster's {kind}");
        match kind.as_str() {
            "Namespace" => post::<Namespace>(Api::all(self.client.clone()), object, &action).await,
            "Pod" => {
                // A new namespace gets its `default` ServiceAccount from the controller manager a
                // moment later; admission refuses pods until it exists.
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match post::<Pod>(self.namespaced(namespace), object, &action).await {
                        Err(Error::HostCluster { source, .. })
                            if Instant::now() < deadline
                                && source.to_string().contains("serviceaccount") =>
                        {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        other => break other,
                    }
                }
            }
            "Service" => {
                post::<k8s_openapi::api::core::v1::Service>(
                    self.namespaced(namespace),
                    object,
                    &action,
                )
                .await
            }
            "ResourceQuota" => {
                post::<k8s_openapi::api::core::v1::ResourceQuota>(
                    self.namespaced(namespace),
                    object,
                    &action,
                )
                .await
            }
            "LimitRange" => {
                post::<k8s_openapi::api::core::v1::LimitRange>(
                    self.namespaced(namespace),
                    object,
                    &action,
                )
                .await
            }
            "NetworkPolicy" => {
                post::<k8s_openapi::api::networking::v1::NetworkPolicy>(
                    self.namespaced(namespace),
                    object,
                    &action,
                )
                .await
            }
            "RoleBinding" => {
                post::<k8s_openapi::api::rbac::v1::RoleBinding>(
                    self.namespaced(namespace),
                    object,
                    &action,
                )
                .await
            }
            other => Err(Error::Invalid(format!("no way to create a {other}"))),
        }
    }

    fn namespaced<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace.unwrap_or("default"))
    }

    /// Waits until the node pod runs; a pod that cannot be scheduled says why.
    async fn wait_for_pod(&self, cluster: &str) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace(cluster));
        let deadline = Instant::now() + self.settings.schedule_timeout;
        let mut why = "no status yet".to_owned();
        while Instant::now() < deadline {
            let pod = pods
                .get(NODE_POD)
                .await
                .map_err(host_error("reading the node pod"))?;
            let status = pod.status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("Running") => return Ok(()),
                Some(phase @ ("Failed" | "Succeeded")) => {
                    return Err(Error::NotReady(format!("the node pod ended ({phase})")));
                }
                phase => {
                    why = pending_reason(phase, &status.conditions.unwrap_or_default());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::NotReady(format!(
            "the node pod did not start within {} s: {why}",
            self.settings.schedule_timeout.as_secs()
        )))
    }

    async fn wait_for_systemd(&self, cluster: &str) -> Result<()> {
        let runner = self.runner(cluster);
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = ["systemctl", "is-active", "multi-user.target"].map(str::to_owned);
        while Instant::now() < deadline {
            if let Ok(output) = runner.run(&probe, None).await
                && output.exit_code == 0
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::NotReady(
            "systemd in the node did not reach multi-user within 60 s".to_owned(),
        ))
    }

    fn runner(&self, cluster: &str) -> PodRunner {
        PodRunner {
            client: self.client.clone(),
            namespace: self.namespace(cluster),
            limits: self.node_limits,
        }
    }

    async fn capture_credentials(&self, cluster: &str) -> Result<ClusterCredentials> {
        let node = self.node_files(cluster);
        ClusterCredentials::capture(node.as_ref()).await
    }

    async fn create_inner(
        &self,
        spec: &ClusterSpec,
        progress: PhaseSink<'_>,
    ) -> Result<CreatedCluster> {
        for object in self.namespace_objects(spec) {
            self.create_object(&object).await?;
        }
        self.wait_for_pod(&spec.name).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace(&spec.name));
        let pod_ip = pods
            .get(NODE_POD)
            .await
            .map_err(host_error("reading the node pod"))?
            .status
            .and_then(|status| status.pod_ip)
            .ok_or_else(|| Error::NotReady("the node pod has no IP address".to_owned()))?;
        let runner = self.runner(&spec.name);
        match spec.bootstrap {
            Bootstrap::Kind => {
                self.wait_for_systemd(&spec.name).await?;
                let host = self.service_host(&spec.name);
                let sans = [
                    host.clone(),
                    format!("{host}.{}", self.settings.cluster_domain),
                ];
                let node_name = Self::node_name(&spec.name);
                let identity = NodeIdentity {
                    node_name: &node_name,
                    node_ip: &pod_ip,
                    extra_sans: &sans,
                    registry_mirror: self.settings.registry_mirror.as_deref(),
                };
                bootstrap::kind(&runner, spec, &identity, progress).await?;
            }
            Bootstrap::SelfStarting => progress(Phase::StartingControlPlane),
        }
        progress(Phase::WaitingForApiServer);
        bootstrap::wait_for_api_server(&runner, self.settings.ready_timeout).await?;
        progress(Phase::ExportingKubeconfig);
        let credentials = self.capture_credentials(&spec.name).await?;
        let node = self.inspect(&spec.name).await?;
        Ok(CreatedCluster { node, credentials })
    }

    async fn node_info(&self, namespace: &Namespace) -> Option<NodeInfo> {
        let metadata = &namespace.metadata;
        let labels_map = metadata.labels.clone().unwrap_or_default();
        let cluster = labels_map.get(labels::CLUSTER)?.clone();
        let annotations = metadata.annotations.clone().unwrap_or_default();
        let annotation = |key: &str| annotations.get(key).cloned().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace(&cluster));
        let pod = pods.get_opt(NODE_POD).await.ok().flatten();
        let status = pod.and_then(|pod| pod.status).unwrap_or_default();
        let terminated = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .find_map(|container| container.state?.terminated);
        Some(NodeInfo {
            container: format!("{}/{NODE_POD}", self.namespace(&cluster)),
            running: status.phase.as_deref() == Some("Running")
                && metadata.deletion_timestamp.is_none(),
            api_port: Some(6443),
            etcd_port: Some(2379),
            ownership: Ownership {
                owner: annotation(OWNER_ANNOTATION),
                lab: annotation(LAB_ANNOTATION),
                session: annotation(SESSION_ANNOTATION),
                expiry_ms: annotation(EXPIRY_ANNOTATION).parse().unwrap_or(0),
            },
            exit_code: terminated.map(|state| i64::from(state.exit_code)),
            cluster,
        })
    }

    fn managed_selector(&self) -> String {
        format!("{}={}", labels::MANAGED, self.instance)
    }
}

async fn post<K>(api: Api<K>, object: &Value, action: &str) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object.clone())
        .map_err(|e| Error::Invalid(format!("{action}: {e}")))?;
    api.create(&PostParams::default(), &typed)
        .await
        .map(|_| ())
        .map_err(host_error(action))
}

fn host_error(action: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::HostCluster {
        action: action.to_owned(),
        source: Box::new(source),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// A toleration from `key=value:Effect`, `key:Effect`, `key=value` or `key`.
fn toleration(text: &str) -> Value {
    let (rest, effect) = match text.rsplit_once(':') {
        Some((rest, effect)) => (rest, Some(effect)),
        None => (text, None),
    };
    let mut toleration = serde_json::Map::new();
    match rest.split_once('=') {
        Some((key, value)) => {
            toleration.insert("key".into(), json!(key));
            toleration.insert("operator".into(), json!("Equal"));
            toleration.insert("value".into(), json!(value));
        }
        None => {
            toleration.insert("key".into(), json!(rest));
            toleration.insert("operator".into(), json!("Exists"));
        }
    }
    if let Some(effect) = effect {
        toleration.insert("effect".into(), json!(effect));
    }
    Value::Object(toleration)
}

fn pending_reason(
    phase: Option<&str>,
    conditions: &[k8s_openapi::api::core::v1::PodCondition],
) -> String {
    conditions
        .iter()
        .find(|condition| condition.status == "False")
        .map(|condition| {
            format!(
                "{} ({}{})",
                phase.unwrap_or("Pending"),
                condition.reason.as_deref().unwrap_or(&condition.type_),
                condition
                    .message
                    .as_deref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_else(|| {
            format!(
                "{} (not scheduled: no node has taken it yet)",
                phase.unwrap_or("Pending")
            )
        })
}

/// `pods/exec` in one node pod.
struct PodRunner {
    client: kube::Client,
    namespace: String,
    limits: NodeLimits,
}

impl PodRunner {
    async fn command(&self, argv: &[String], stdin: Option<Vec<u8>>) -> Result<CommandOutput> {
        exec_in_pod(
            &self.client,
            &PodRef {
                namespace: &self.namespace,
                pod: NODE_POD,
                container: Some(NODE_POD),
            },
            argv,
            stdin,
            self.limits,
        )
        .await
        .map_err(|e| Error::NotReady(format!("running {} in the node: {e}", argv.join(" "))))
    }
}

#[async_trait]
impl NodeRunner for PodRunner {
    async fn run(&self, argv: &[String], stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        let output = self.command(argv, stdin).await?;
        Ok(ExecOutput {
            exit_code: output.exit_code,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// Resizes a `pods/exec` TTY through the exec stream's resize channel.
struct PodResizer {
    sizes: tokio::sync::Mutex<Option<futures::channel::mpsc::Sender<kube::api::TerminalSize>>>,
    /// Kept so the exec's connection lives as long as the shell.
    _process: kube::api::AttachedProcess,
}

#[async_trait]
impl crate::terminal::Resizer for PodResizer {
    async fn resize(&self, cols: u16, rows: u16) {
        use futures::SinkExt;
        if let Some(sizes) = self.sizes.lock().await.as_mut() {
            let _ = sizes
                .send(kube::api::TerminalSize {
                    width: cols,
                    height: rows,
                })
                .await;
        }
    }
}

/// The web terminal's shells, through `pods/exec` with a TTY.
#[async_trait]
impl crate::terminal::ShellBackend for KubernetesProvider {
    async fn spawn(
        &self,
        cluster: &str,
        argv: Vec<String>,
    ) -> crate::terminal::Result<crate::terminal::SpawnedShell> {
        self.start_shell(cluster, argv)
            .await
            .map_err(|error| crate::terminal::TerminalError::Start(Box::new(error)))
    }

    async fn run_quietly(&self, cluster: &str, argv: Vec<String>) {
        let _ = self.runner(cluster).run(&argv, None).await;
    }
}

impl KubernetesProvider {
    /// A login shell through `pods/exec` with a TTY in the cluster's node pod.
    async fn start_shell(
        &self,
        cluster: &str,
        argv: Vec<String>,
    ) -> Result<crate::terminal::SpawnedShell> {
        use futures::StreamExt;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace(cluster));
        let params = kube::api::AttachParams::interactive_tty().container(NODE_POD);
        let mut process = pods
            .exec(NODE_POD, argv, &params)
            .await
            .map_err(host_error("opening a terminal in the node pod"))?;
        let (Some(input), Some(output)) = (process.stdin(), process.stdout()) else {
            return Err(Error::Invalid(
                "the node pod's exec has no TTY streams".to_owned(),
            ));
        };
        let output = tokio_util::io::ReaderStream::new(output)
            .take_while(|chunk| std::future::ready(chunk.is_ok()))
            .filter_map(|chunk| std::future::ready(chunk.ok()))
            .boxed();
        let sizes = process.terminal_size();
        Ok(crate::terminal::SpawnedShell {
            input: Box::pin(input),
            output,
            resizer: Box::new(PodResizer {
                sizes: tokio::sync::Mutex::new(sizes),
                _process: process,
            }),
        })
    }
}

#[async_trait]
impl ClusterProvider for KubernetesProvider {
    async fn create(&self, spec: &ClusterSpec, progress: PhaseSink<'_>) -> Result<CreatedCluster> {
        super::validate_name(&spec.name)?;
        progress(Phase::PreparingNode);
        self.health().await?;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(&self.namespace(&spec.name))
            .await
            .map_err(host_error("looking for the cluster's namespace"))?
            .is_some()
        {
            return Err(Error::AlreadyExists(spec.name.clone()));
        }
        // The namespace first and on its own: whatever fails after it, deleting it removes the rest.
        self.create_object(&self.namespace_object(spec)).await?;
        match self.create_inner(spec, progress).await {
            Ok(created) => Ok(created),
            Err(error) => {
                tracing::warn!(cluster = %spec.name, %error, "cluster creation failed; removing its namespace");
                if let Err(cleanup) = self.delete(&spec.name).await {
                    tracing::error!(cluster = %spec.name, error = %cleanup, "could not remove a failed cluster");
                }
                Err(error)
            }
        }
    }

    async fn delete(&self, cluster: &str) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces
            .delete(&self.namespace(cluster), &DeleteParams::foreground())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(host_error("deleting the cluster's namespace")(error)),
        }
    }

    async fn list_own(&self) -> Result<Vec<NodeInfo>> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let list = namespaces
            .list(&ListParams::default().labels(&self.managed_selector()))
            .await
            .map_err(host_error("listing the cluster namespaces"))?;
        let mut nodes = Vec::new();
        for namespace in &list.items {
            // A namespace being deleted is a cluster on its way out, not one to adopt.
            if namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(node) = self.node_info(namespace).await {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    async fn exec(
        &self,
        cluster: &str,
        command: &[String],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput> {
        self.runner(cluster).run(command, stdin).await
    }

    async fn address(&self, cluster: &str) -> Result<ClusterAddress> {
        let node = self.inspect(cluster).await?;
        if !node.running {
            return Err(Error::NotReady(format!(
                "the node pod of {cluster} is not running"
            )));
        }
        Ok(ClusterAddress {
            host: self.service_host(cluster),
            api_port: 6443,
            etcd_port: Some(2379),
        })
    }

    fn node_files(&self, cluster: &str) -> Arc<dyn NodeAccess> {
        // `cat` and `ls` through `pods/exec`, bounded in bytes and time. There is no archive
        // endpoint on this runtime, so after hand-over a learner who replaces `cat` changes what
        // their own grading sees, never anything on the server: the bytes are judged as data.
        Arc::new(ApiPodNode::for_pod(
            self.client.clone(),
            &self.namespace(cluster),
            NODE_POD,
            NODE_POD,
        ))
    }

    async fn inspect(&self, cluster: &str) -> Result<NodeInfo> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace = namespaces
            .get_opt(&self.namespace(cluster))
            .await
            .map_err(host_error("reading the cluster's namespace"))?
            .ok_or_else(|| Error::NotFound(cluster.to_owned()))?;
        let managed = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels_map| labels_map.get(labels::MANAGED))
            == Some(&self.instance);
        if !managed {
            return Err(Error::NotFound(cluster.to_owned()));
        }
        self.node_info(&namespace)
            .await
            .ok_or_else(|| Error::NotFound(cluster.to_owned()))
    }

    async fn health(&self) -> Result<()> {
        self.client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(host_error("asking the host cluster for its version"))
    }

    async fn image_defaults(&self, _image: &str) -> Result<(Bootstrap, bool)> {
        // The host cluster pulls the image on the node it picks; its labels cannot be read from
        // here. hardlab's node image is a kind node: it bootstraps with kubeadm, privileged.
        Ok((Bootstrap::Kind, true))
    }

    async fn remove_strays(&self, keep: &HashSet<String>) -> Result<Vec<String>> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let list = namespaces
            .list(&ListParams::default().labels(&self.managed_selector()))
            .await
            .map_err(host_error("listing the cluster namespaces"))?;
        let mut removed = Vec::new();
        for namespace in list.items {
            let Some(cluster) = namespace
                .metadata
                .labels
                .as_ref()
                .and_then(|labels_map| labels_map.get(labels::CLUSTER))
                .cloned()
            else {
                continue;
            };
            if keep.contains(&cluster) || namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            self.delete(&cluster).await?;
            removed.push(cluster);
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_are_read_in_kubectl_taint_syntax() {
        assert_eq!(
            toleration("hardlab.io/learners=true:NoSchedule"),
            json!({"key": "hardlab.io/learners", "operator": "Equal", "value": "true", "effect": "NoSchedule"})
        );
        assert_eq!(
            toleration("dedicated:NoExecute"),
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})
        );
        assert_eq!(
            toleration("pool=labs"),
            json!({"key": "pool", "operator": "Equal", "value": "labs"})
        );
    }
}
