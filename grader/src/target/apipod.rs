//! Node access for clusters reached only through their API (kubeadm clusters given just a
//! kubeconfig): exec into the control-plane static pods through the `pods/exec` subresource.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::docker::NodeLimits;
use super::{CommandOutput, NodeAccess};
use crate::{Error, Result};

/// Runs commands in a control-plane static pod: the etcd pod by default, since its image
/// carries `etcdctl` and it mounts the etcd certificates. Distroless images have no `cat`;
/// reading files then fails with a clear error and the checks fall back to the mirror pods.
#[derive(Clone)]
pub struct ApiPodNode {
    client: kube::Client,
    target: PodTarget,
}

/// Which pod the commands run in.
#[derive(Debug, Clone)]
enum PodTarget {
    /// The static pod labelled `component=<name>` in kube-system, looked up per command.
    Component(String),
    /// One named pod and container (a learner's node pod on a host cluster).
    Fixed {
        namespace: String,
        pod: String,
        container: String,
    },
}

impl std::fmt::Debug for ApiPodNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPodNode")
            .field("target", &self.target)
            .finish()
    }
}

impl ApiPodNode {
    pub fn new(client: kube::Client) -> Self {
        Self::for_component(client, "etcd")
    }

    /// Exec into the static pod labelled `component=<component>` in kube-system.
    pub fn for_component(client: kube::Client, component: &str) -> Self {
        Self {
            client,
            target: PodTarget::Component(component.to_owned()),
        }
    }

    /// Exec into one named pod's container (no lookup).
    pub fn for_pod(client: kube::Client, namespace: &str, pod: &str, container: &str) -> Self {
        Self {
            client,
            target: PodTarget::Fixed {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.to_owned(),
            },
        }
    }

    fn name(&self) -> String {
        match &self.target {
            PodTarget::Component(component) => component.clone(),
            PodTarget::Fixed { namespace, pod, .. } => format!("{namespace}/{pod}"),
        }
    }

    async fn component_pod(&self, component: &str) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let list = pods
            .list(&ListParams::default().labels(&format!("component={component}")))
            .await?;
        list.items
            .into_iter()
            .find_map(|pod| pod.metadata.name)
            .ok_or_else(|| {
                Error::Node(format!(
                    "no {component} pod in kube-system (is this a kubeadm cluster?)"
                ))
            })
    }
}

#[async_trait]
impl NodeAccess for ApiPodNode {
    fn describe(&self) -> String {
        format!("api:{}", self.name())
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let output = self
            .exec(&["cat".to_owned(), "--".to_owned(), path.to_owned()])
            .await?;
        if output.exit_code == 0 {
            return Ok(Some(output.stdout));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No such file") {
            Ok(None)
        } else {
            Err(Error::Node(format!(
                "reading {path} in the {} pod: {}",
                self.name(),
                stderr.trim()
            )))
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let output = self
            .exec(&[
                "ls".to_owned(),
                "-1A".to_owned(),
                "--".to_owned(),
                path.to_owned(),
            ])
            .await?;
        // The manifests directory is not mounted into the static pods: "not there" is an empty
        // listing, so the static pod input falls back to the mirror pods.
        if output.exit_code != 0 && String::from_utf8_lossy(&output.stderr).contains("No such file")
        {
            return Ok(Vec::new());
        }
        Ok(String::from_utf8_lossy(&output.success("ls")?)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    async fn exec(&self, argv: &[String]) -> Result<CommandOutput> {
        let looked_up;
        let target = match &self.target {
            PodTarget::Component(component) => {
                looked_up = self.component_pod(component).await?;
                PodRef {
                    namespace: "kube-system",
                    pod: &looked_up,
                    container: None,
                }
            }
            PodTarget::Fixed {
                namespace,
                pod,
                container,
            } => PodRef {
                namespace,
                pod,
                container: Some(container),
            },
        };
        exec_in_pod(&self.client, &target, argv, None, NodeLimits::default()).await
    }
}

/// Which pod (and container) a command runs in.
#[derive(Debug, Clone, Copy)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    /// `None`: the pod's only (or first) container.
    pub container: Option<&'a str>,
}

/// Runs `argv` (no shell) in a pod through the `pods/exec` subresource, with stdin if given, and
/// collects what it printed. What a pod prints is untrusted: each stream is cut off at
/// `limits.max_bytes` (an error, not a truncated answer) and the whole command at
/// `limits.deadline`. The exit code comes from the API server's final status.
pub async fn exec_in_pod(
    client: &kube::Client,
    target: &PodRef<'_>,
    argv: &[String],
    stdin: Option<Vec<u8>>,
    limits: NodeLimits,
) -> Result<CommandOutput> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), target.namespace);
    let mut params = AttachParams::default()
        .stdout(true)
        .stderr(true)
        .stdin(stdin.is_some());
    if let Some(container) = target.container {
        params = params.container(container);
    }
    let command = argv.join(" ");
    let run = async {
        let mut process = pods.exec(target.pod, argv.to_vec(), &params).await?;
        if let (Some(bytes), Some(mut writer)) = (stdin, process.stdin()) {
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| Error::Node(format!("writing stdin of {command}: {e}")))?;
            // Dropping the writer closes stdin, so a command that reads to the end finishes.
            drop(writer);
        }
        let (stdout, stderr) = (process.stdout(), process.stderr());
        let status = process.take_status();
        let (stdout, stderr) = tokio::join!(
            read_bounded(stdout, limits.max_bytes, &command, "stdout"),
            read_bounded(stderr, limits.max_bytes, &command, "stderr"),
        );
        let exit_code = match status {
            Some(status) => exit_code(status.await),
            None => 0,
        };
        Ok(CommandOutput {
            exit_code,
            stdout: stdout?,
            stderr: stderr?,
        })
    };
    tokio::time::timeout(limits.deadline, run)
        .await
        .map_err(|_| {
            Error::Node(format!(
                "`{command}` in pod {}/{} did not finish within {} s",
                target.namespace,
                target.pod,
                limits.deadline.as_secs()
            ))
        })?
}

async fn read_bounded(
    stream: Option<impl tokio::io::AsyncRead + Unpin>,
    max_bytes: usize,
    command: &str,
    what: &str,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let Some(stream) = stream else {
        return Ok(bytes);
    };
    // One byte past the limit tells "exactly at the limit" from "more than the limit".
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    stream
        .take(limit)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::Node(format!("reading {what} of {command}: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(Error::Node(format!(
            "`{command}` printed more than {max_bytes} bytes on {what}; the rest was not read"
        )));
    }
    Ok(bytes)
}

/// The API server reports a command's end as a `Status`: `Success`, or `Failure` with the exit
/// code in a `ExitCode` cause (`NonZeroExitCode`); any other failure counts as 1.
fn exit_code(status: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> i64 {
    let Some(status) = status else {
        return 0;
    };
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    status
        .details
        .and_then(|details| details.causes)
        .unwrap_or_default()
        .into_iter()
        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))
        .and_then(|cause| cause.message?.parse().ok())
        .unwrap_or(1)
}
