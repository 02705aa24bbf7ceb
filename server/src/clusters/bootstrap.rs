//! kind's sequence inside a node (see [`super::kind`]) run through whichever runtime holds the
//! node: the Docker provider's `docker exec` and the Kubernetes provider's `pods/exec` both hand
//! the same commands to this module, so the two bring clusters up identically.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::kind::{self, KubeVersion, KubeadmInputs, NodeCommand};
use super::{ClusterSpec, Error, ExecOutput, Phase, PhaseSink, Result};

/// Runs a program (no shell) as root in a node and collects its output.
#[async_trait]
pub trait NodeRunner: Send + Sync {
    async fn run(&self, argv: &[String], stdin: Option<Vec<u8>>) -> Result<ExecOutput>;
}

/// Runs a command and turns a non-zero exit into [`Error::CommandFailed`].
pub async fn run_checked(node: &dyn NodeRunner, command: &NodeCommand) -> Result<ExecOutput> {
    let output = node
        .run(&command.argv, command.stdin.clone().map(String::into_bytes))
        .await?;
    if output.exit_code != 0 {
        return Err(Error::CommandFailed {
            command: command.argv.join(" "),
            code: output.exit_code,
            output: output.short_output(),
        });
    }
    Ok(output)
}

/// Where the node is, as the runtime sees it.
pub struct NodeIdentity<'a> {
    /// The node's host name, which kubeadm uses as its name and in the control-plane endpoint.
    pub node_name: &'a str,
    pub node_ip: &'a str,
    pub extra_sans: &'a [String],
}

/// `kubeadm init` with kind's configuration, then the CNI and the storage class, once the node's
/// systemd is up.
pub async fn kind(
    node: &dyn NodeRunner,
    spec: &ClusterSpec,
    identity: &NodeIdentity<'_>,
    progress: PhaseSink<'_>,
) -> Result<()> {
    progress(Phase::WritingConfiguration);
    let cat = |phase: Phase, path: &str| NodeCommand {
        phase,
        argv: vec!["cat".into(), path.into()],
        stdin: None,
    };
    let version_text = run_checked(node, &cat(Phase::WritingConfiguration, "/kind/version"))
        .await?
        .stdout_text();
    let version = KubeVersion::parse(&version_text).ok_or_else(|| {
        Error::NotReady(format!("/kind/version in the image says {version_text:?}"))
    })?;
    let config = kind::kubeadm_config(&KubeadmInputs {
        version,
        cluster_name: &spec.name,
        node_name: identity.node_name,
        node_ip: identity.node_ip,
        apiserver_flags: &spec.apiserver_flags,
        apiserver_mounts: &spec.apiserver_mounts,
        extra_sans: identity.extra_sans,
    });
    let mut current = Phase::WritingConfiguration;
    for command in kind::init_commands(&config, version) {
        if command.phase != current {
            current = command.phase;
            progress(current);
        }
        run_checked(node, &command).await?;
    }
    progress(Phase::InstallingCni);
    let cni = run_checked(node, &cat(Phase::InstallingCni, kind::CNI_MANIFEST))
        .await?
        .stdout_text();
    let endpoint = format!("{}:6443", identity.node_name);
    run_checked(node, &kind::cni_command(&cni, &endpoint)?).await?;
    progress(Phase::InstallingStorage);
    let storage = node
        .run(
            &cat(Phase::InstallingStorage, kind::STORAGE_MANIFEST).argv,
            None,
        )
        .await?;
    let storage = (storage.exit_code == 0).then(|| storage.stdout_text());
    run_checked(node, &kind::storage_command(storage.as_deref())).await?;
    Ok(())
}

/// Waits until the API server answers `/readyz` from inside the node.
pub async fn wait_for_api_server(node: &dyn NodeRunner, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let output = node.run(&kind::readyz_command(), None).await?;
        if output.exit_code == 0 {
            return Ok(());
        }
        last = output.short_output();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(Error::NotReady(format!(
        "the API server did not answer /readyz within {} s (last answer: {last})",
        timeout.as_secs()
    )))
}
