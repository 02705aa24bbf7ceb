//! Node access for clusters reached only through their API (kubeadm clusters given just a
//! kubeconfig): exec into the control-plane static pods through the `pods/exec` subresource.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use tokio::io::AsyncReadExt;

use super::{CommandOutput, NodeAccess};
use crate::{Error, Result};

/// Runs commands in a control-plane static pod: the etcd pod by default, since its image
/// carries `etcdctl` and it mounts the etcd certificates. Distroless images have no `cat`;
/// reading files then fails with a clear error and the checks fall back to the mirror pods.
#[derive(Clone)]
pub struct ApiPodNode {
    client: kube::Client,
    component: String,
}

impl std::fmt::Debug for ApiPodNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPodNode")
            .field("component", &self.component)
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
            component: component.to_owned(),
        }
    }

    async fn pod_name(&self) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let list = pods
            .list(&ListParams::default().labels(&format!("component={}", self.component)))
            .await?;
        list.items
            .into_iter()
            .find_map(|pod| pod.metadata.name)
            .ok_or_else(|| {
                Error::Node(format!(
                    "no {} pod in kube-system (is this a kubeadm cluster?)",
                    self.component
                ))
            })
    }
}

#[async_trait]
impl NodeAccess for ApiPodNode {
    fn describe(&self) -> String {
        format!("api:{}", self.component)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let output = self.exec(&["cat".to_owned(), path.to_owned()]).await?;
        if output.exit_code == 0 {
            return Ok(Some(output.stdout));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No such file") {
            Ok(None)
        } else {
            Err(Error::Node(format!(
                "reading {path} in the {} pod: {}",
                self.component,
                stderr.trim()
            )))
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let output = self
            .exec(&["ls".to_owned(), "-1A".to_owned(), path.to_owned()])
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
        let pod = self.pod_name().await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let params = AttachParams::default().stdout(true).stderr(true);
        let mut process = pods.exec(&pod, argv.to_vec(), &params).await?;
        let mut output = CommandOutput::default();
        let read = |what: &'static str| {
            move |error: std::io::Error| Error::Node(format!("reading {what} of exec: {error}"))
        };
        let (stdout, stderr) = (process.stdout(), process.stderr());
        let collect_stdout = async {
            if let Some(mut stdout) = stdout {
                stdout
                    .read_to_end(&mut output.stdout)
                    .await
                    .map_err(read("stdout"))?;
            }
            Ok::<_, Error>(())
        };
        let mut stderr_bytes = Vec::new();
        let collect_stderr = async {
            if let Some(mut stderr) = stderr {
                stderr
                    .read_to_end(&mut stderr_bytes)
                    .await
                    .map_err(read("stderr"))?;
            }
            Ok::<_, Error>(())
        };
        let status = process.take_status();
        let (out, err) = tokio::join!(collect_stdout, collect_stderr);
        out?;
        err?;
        output.stderr = stderr_bytes;
        output.exit_code = match status {
            Some(status) => match status.await {
                Some(status) if status.status.as_deref() == Some("Success") => 0,
                Some(_) => 1,
                None => 0,
            },
            None => 0,
        };
        Ok(output)
    }
}
