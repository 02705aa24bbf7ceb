//! A node container (kind, minikube's docker driver) read through `docker exec` with bollard.
//!
//! Both keep the static pod manifests in `/etc/kubernetes/manifests`; kind keeps certificates in
//! `/etc/kubernetes/pki`, minikube in `/var/lib/minikube/certs` (and its API server listens on
//! 8443). The grader follows the paths the manifests name, so both layouts are read the same way.

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures::StreamExt;

use super::{CommandOutput, NodeAccess};
use crate::{Error, Result};

/// Exit code our read script uses for "no such file", distinct from `cat` failing.
const MISSING: i64 = 44;

pub struct DockerNode {
    docker: Docker,
    container: String,
}

impl std::fmt::Debug for DockerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerNode")
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

impl DockerNode {
    /// Connects to the local Docker engine (`DOCKER_HOST` or the default socket).
    pub fn new(container: impl Into<String>) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|error| Error::Node(format!("connecting to Docker: {error}")))?;
        Ok(Self {
            docker,
            container: container.into(),
        })
    }

    /// Whether the container is a minikube node (its certificates live elsewhere).
    pub async fn is_minikube(&self) -> Result<bool> {
        Ok(self
            .read_file("/var/lib/minikube/certs/ca.crt")
            .await?
            .is_some())
    }

    async fn run(&self, argv: Vec<String>) -> Result<CommandOutput> {
        let docker_error = |what: &str, error: bollard::errors::Error| {
            Error::Node(format!("docker:{} {what}: {error}", self.container))
        };
        let created = self
            .docker
            .create_exec(
                &self.container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| docker_error("exec", error))?;
        let mut output = CommandOutput::default();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|error| docker_error("exec", error))?
        {
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|error| docker_error("output", error))? {
                    LogOutput::StdErr { message } => output.stderr.extend_from_slice(&message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        output.stdout.extend_from_slice(&message);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|error| docker_error("exec inspect", error))?;
        output.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(output)
    }
}

fn script(body: &str, path: &str) -> Vec<String> {
    ["sh", "-c", body, "hardlab", path]
        .iter()
        .map(|word| (*word).to_owned())
        .collect()
}

#[async_trait]
impl NodeAccess for DockerNode {
    fn describe(&self) -> String {
        format!("docker:{}", self.container)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let output = self
            .run(script("[ -e \"$1\" ] || exit 44; cat \"$1\"", path))
            .await?;
        match output.exit_code {
            0 => Ok(Some(output.stdout)),
            MISSING => Ok(None),
            code => Err(Error::Node(format!(
                "reading {path} in docker:{} failed (exit {code}): {}",
                self.container,
                output.short_output()
            ))),
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let output = self
            .run(script("[ -d \"$1\" ] || exit 0; ls -1A \"$1\"", path))
            .await?;
        if output.exit_code != 0 {
            return Err(Error::Node(format!(
                "listing {path} in docker:{} failed: {}",
                self.container,
                output.short_output()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }

    async fn exec(&self, argv: &[String]) -> Result<CommandOutput> {
        self.run(argv.to_vec()).await
    }
}
