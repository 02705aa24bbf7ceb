//! Disposable per-learner clusters: node containers created through the Docker API the way kind
//! creates them, their lifecycle in the database (TTL, idle reaping, a cap per host, a warm pool,
//! adoption after a restart) and the admin CLI.

pub mod bootstrap;
pub mod capacity;
pub mod cli;
pub mod credentials;
pub mod docker;
pub mod kind;
pub mod kubeconfig;
pub mod kubernetes;
pub mod lifecycle;
pub mod node_image;
pub mod routes;
pub mod server_address;
pub mod setup;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use hardlab_grader::target::NodeAccess;

pub use credentials::{ClusterAddress, ClusterCredentials};

pub use docker::DockerProvider;
pub use lifecycle::{ClusterManager, ClusterRecord, ClusterState, ManagerConfig};

/// Labels on every container, network and volume hardlab creates, so it can find its own.
pub mod labels {
    /// On everything hardlab manages; the value is the server instance's name (default `hardlab`).
    pub const MANAGED: &str = "io.hardlab.managed";
    pub const CLUSTER: &str = "io.hardlab.cluster";
    pub const OWNER: &str = "io.hardlab.owner";
    pub const LAB: &str = "io.hardlab.lab";
    pub const SESSION: &str = "io.hardlab.session";
    /// Unix milliseconds after which the cluster may be removed.
    pub const EXPIRY: &str = "io.hardlab.expiry";
    pub const ROLE: &str = "io.hardlab.role";
    /// Set on a node image: `kind` (the provider runs `kubeadm init`) or `self-starting`.
    pub const IMAGE_BOOTSTRAP: &str = "io.hardlab.node.bootstrap";
    /// Set on a node image: `false` when its containers need no privileges.
    pub const IMAGE_PRIVILEGED: &str = "io.hardlab.node.privileged";
}

/// The error type of cluster operations; messages are written to be shown to a learner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Docker engine is not reachable ({0}); clusters cannot be created until it is back"
    )]
    DockerUnreachable(String),
    #[error("Docker refused {action}: {message}")]
    Docker { action: String, message: String },
    #[error(
        "the node image {0} is not on this Docker host and could not be pulled; whoever runs hardlab builds it with docker/node/build.sh or picks another with --node-image"
    )]
    ImageMissing(String),
    #[error("building the node image {image} failed: {message}")]
    ImageBuild { image: String, message: String },
    #[error(
        "cluster name {0:?} is not valid: use 1-40 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    InvalidName(String),
    #[error("no cluster named {0}")]
    NotFound(String),
    #[error("a cluster named {0} already exists")]
    AlreadyExists(String),
    #[error("the cluster did not become ready: {0}")]
    NotReady(String),
    #[error("`{command}` failed in the node with exit code {code}: {output}")]
    CommandFailed {
        command: String,
        code: i64,
        output: String,
    },
    #[error("the node's kubeconfig is not usable: {0}")]
    Kubeconfig(String),
    #[error("`{command}` printed more than {limit} bytes; the server stopped reading it")]
    OutputTooLarge { command: String, limit: usize },
    #[error("the cluster's stored credentials cannot be opened: {0}")]
    Credentials(String),
    #[error("you already have {0} clusters, the most one learner may have; remove one first")]
    UserAtCapacity(usize),
    #[error(
        "this cluster cannot live longer than {0} minutes in all; start a new one when it ends"
    )]
    ExtendCeiling(u64),
    #[error("this server already runs {0} clusters, its limit; try again in a few minutes")]
    AtCapacity(usize),
    #[error("the host cluster refused {action}: {source}")]
    HostCluster {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Terminal(#[from] crate::terminal::TerminalError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a node image brings up its control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// A kind node image: the provider writes `/kind/kubeadm.conf`, runs `kubeadm init` and the add-ons.
    Kind,
    /// The image starts its own control plane (the test image); the provider waits for `/readyz`.
    SelfStarting,
}

impl Bootstrap {
    pub fn from_label(value: Option<&str>) -> Self {
        match value {
            Some("self-starting") => Bootstrap::SelfStarting,
            _ => Bootstrap::Kind,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Bootstrap::Kind => "kind",
            Bootstrap::SelfStarting => "self-starting",
        }
    }
}

/// A host file mounted into the node and on into the API server (an EncryptionConfiguration, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerMount {
    pub host_path: String,
    pub node_path: String,
    pub read_only: bool,
}

/// Who a cluster is for; written as labels on everything created for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub owner: String,
    pub lab: String,
    pub session: String,
    /// Unix milliseconds.
    pub expiry_ms: i64,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub image: String,
    pub bootstrap: Bootstrap,
    pub privileged: bool,
    /// Memory limit of the node container in bytes (memory and memory+swap), `None` for no limit.
    pub memory_bytes: Option<i64>,
    /// Processes the node may run at once (a fork bomb in it stops there), `None` for no limit.
    pub pids_limit: Option<i64>,
    /// CPU time the node may use, in billionths of a CPU (Docker's `NanoCpus`), `None` for no limit.
    pub nano_cpus: Option<i64>,
    pub ownership: Ownership,
    /// Extra API server flags (name without `--` → value).
    pub apiserver_flags: BTreeMap<String, String>,
    pub apiserver_mounts: Vec<ApiServerMount>,
}

/// A cluster as found on the Docker host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub cluster: String,
    pub container: String,
    pub running: bool,
    /// The host port on 127.0.0.1 that forwards to the API server's 6443.
    pub api_port: Option<u16>,
    /// The host port that forwards to etcd's 2379.
    pub etcd_port: Option<u16>,
    pub ownership: Ownership,
    /// How the node's main process ended, when it has (from an inspection, not a listing).
    pub exit_code: Option<i64>,
}

/// A new cluster and the certificates captured from it before hand-over.
#[derive(Debug, Clone)]
pub struct CreatedCluster {
    pub node: NodeInfo,
    pub credentials: ClusterCredentials,
}

/// Where [`run_script_in`] puts a script in the node before running it.
const SCRIPT_PATH: &str = "/tmp/hardlab-harness-script.sh";

/// How a script run ended.
#[derive(Debug, Clone)]
pub struct ScriptRun {
    pub exit_code: i64,
    pub output: String,
}

/// Runs a lab script as root in a cluster's control-plane node, as `bash -euo pipefail` with the
/// admin kubeconfig (the lab format's promise): the one runner of lab scripts for the harness and
/// for a learner's catch-up.
pub async fn run_script_in(
    provider: &dyn ClusterProvider,
    cluster: &str,
    script: &str,
    env: &[String],
    timeout: Duration,
) -> Result<ScriptRun> {
    let copy = ["sh", "-c", &format!("cat > {SCRIPT_PATH}")].map(str::to_owned);
    let copied = provider
        .exec(cluster, &copy, Some(script.as_bytes().to_vec()))
        .await?;
    if copied.exit_code != 0 {
        return Err(Error::CommandFailed {
            command: "copying the lab script into the node".to_owned(),
            code: copied.exit_code,
            output: copied.short_output(),
        });
    }
    let mut command: Vec<String> = vec!["env".to_owned()];
    command.extend(env.iter().cloned());
    command.extend(lab_script_command(SCRIPT_PATH));
    let run = provider.exec(cluster, &command, None);
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

/// How a lab script runs in a node, for the lab harness and for learners' new clusters alike: as
/// root, `bash -euo pipefail`, with the admin kubeconfig and etcdctl's v3 API (docs/authoring.md).
pub fn lab_script_command(path: &str) -> Vec<String> {
    [
        "env",
        "KUBECONFIG=/etc/kubernetes/admin.conf",
        "ETCDCTL_API=3",
        "bash",
        "-euo",
        "pipefail",
        path,
    ]
    .map(str::to_owned)
    .into()
}

/// A step of creation, shown to the learner as progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The node image is missing and being built from the checkout (minutes, once).
    BuildingNodeImage,
    PreparingNode,
    WritingConfiguration,
    StartingControlPlane,
    InstallingCni,
    InstallingStorage,
    WaitingForApiServer,
    ExportingKubeconfig,
    /// The lab's `setup.sh` creates its starting state (planted workloads, files on the node).
    PreparingLab,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::BuildingNodeImage => "building-node-image",
            Phase::PreparingNode => "preparing-node",
            Phase::WritingConfiguration => "writing-configuration",
            Phase::StartingControlPlane => "starting-control-plane",
            Phase::InstallingCni => "installing-cni",
            Phase::InstallingStorage => "installing-storage",
            Phase::WaitingForApiServer => "waiting-for-api-server",
            Phase::ExportingKubeconfig => "exporting-kubeconfig",
            Phase::PreparingLab => "preparing-lab",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            Phase::BuildingNodeImage,
            Phase::PreparingNode,
            Phase::WritingConfiguration,
            Phase::StartingControlPlane,
            Phase::InstallingCni,
            Phase::InstallingStorage,
            Phase::WaitingForApiServer,
            Phase::ExportingKubeconfig,
            Phase::PreparingLab,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == text)
    }
    /// What the learner reads while it happens.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::BuildingNodeImage => {
                "Building the node image (first start on this host; this takes some minutes)"
            }
            Phase::PreparingNode => "Preparing the node container",
            Phase::WritingConfiguration => "Writing the kubeadm configuration",
            Phase::StartingControlPlane => "Starting the control plane",
            Phase::InstallingCni => "Installing the pod network",
            Phase::InstallingStorage => "Installing the storage class",
            Phase::WaitingForApiServer => "Waiting for the API server",
            Phase::ExportingKubeconfig => "Exporting the kubeconfig",
            Phase::PreparingLab => "Setting up the lab's starting state",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output of a command run in a node.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// stderr, else stdout, trimmed to a readable length for an error message.
    pub fn short_output(&self) -> String {
        let text = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            String::from_utf8_lossy(&self.stderr)
        } else {
            String::from_utf8_lossy(&self.stdout)
        };
        let text = text.trim();
        let tail: String = text
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        tail
    }
}

/// Receives creation phases as they start.
pub type PhaseSink<'a> = &'a (dyn Fn(Phase) + Send + Sync);

/// Where clusters come from: a Docker engine ([`DockerProvider`]) or a Kubernetes host cluster
/// ([`kubernetes::KubernetesProvider`]); the lifecycle code knows only this trait.
#[async_trait]
pub trait ClusterProvider: Send + Sync {
    /// Creates the cluster and waits until its API server answers. On failure everything created
    /// for it is removed again before the error is returned.
    async fn create(&self, spec: &ClusterSpec, progress: PhaseSink<'_>) -> Result<CreatedCluster>;
    /// Removes the node container, its volume and its network; a missing part is not an error.
    async fn delete(&self, cluster: &str) -> Result<()>;
    /// Every cluster this provider created, found by its labels.
    async fn list_own(&self) -> Result<Vec<NodeInfo>>;
    /// Runs a command in the control-plane node and collects its output.
    async fn exec(
        &self,
        cluster: &str,
        command: &[String],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput>;
    /// Where the cluster's API server and etcd are published, from the container runtime's own
    /// view of the node (never from inside it); an error when the node is not running.
    async fn address(&self, cluster: &str) -> Result<ClusterAddress>;
    /// The node's files for the grader, read without running anything in the node.
    fn node_files(&self, cluster: &str) -> std::sync::Arc<dyn NodeAccess>;
    /// The node as the runtime sees it (running or not, how it exited).
    async fn inspect(&self, cluster: &str) -> Result<NodeInfo>;
    /// Whether the container runtime answers.
    async fn health(&self) -> Result<()>;
    /// How an image bootstraps and whether its containers need privileges (from its labels).
    async fn image_defaults(&self, image: &str) -> Result<(Bootstrap, bool)>;
    /// Removes every labelled container, volume and network whose cluster is not in `keep`;
    /// returns the clusters removed.
    async fn remove_strays(&self, keep: &std::collections::HashSet<String>) -> Result<Vec<String>>;
}

/// The node container's name for a cluster, following kind's `<cluster>-control-plane`.
pub fn node_container_name(cluster: &str) -> String {
    format!("hardlab-{cluster}-control-plane")
}

pub fn network_name(cluster: &str) -> String {
    format!("hardlab-{cluster}")
}

pub fn volume_name(cluster: &str) -> String {
    format!("hardlab-{cluster}-var")
}

/// Cluster names become container, network and host names.
pub fn validate_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = (1..=40).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

/// A fresh random cluster name.
pub fn random_name() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("c-{suffix}")
}

pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_that_are_not_dns_labels_are_refused() {
        assert!(validate_name("lab-1").is_ok());
        assert!(validate_name(&random_name()).is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn phases_round_trip_through_their_names() {
        for phase in [
            Phase::PreparingNode,
            Phase::InstallingCni,
            Phase::ExportingKubeconfig,
        ] {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(Phase::parse("nonsense"), None);
    }
}
