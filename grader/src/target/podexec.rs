//! Running a shell command inside a pod: how the live probes (`netpol.live-probe`,
//! `mtls.plaintext-refused`) attempt connections from where the traffic would start. A trait so
//! that the probes' judging can be driven with recorded outputs where no pod can run.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

/// Runs `sh -c SCRIPT` in a pod's first container and returns what it printed on stdout;
/// `Err` when the command could not be run at all (exec refused, no shell, no answer in time).
#[async_trait]
pub trait PodExec: Send + Sync {
    async fn run(
        &self,
        namespace: &str,
        pod: &str,
        script: &str,
        timeout: Duration,
    ) -> std::result::Result<String, String>;
}

/// The exec subresource of the API server.
pub struct KubePodExec {
    client: kube::Client,
}

impl KubePodExec {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl PodExec for KubePodExec {
    async fn run(
        &self,
        namespace: &str,
        pod: &str,
        script: &str,
        timeout: Duration,
    ) -> std::result::Result<String, String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = AttachParams::default().stdout(true).stderr(false);
        let attempt = async {
            let mut process = pods
                .exec(pod, ["sh", "-c", script], &params)
                .await
                .map_err(|error| format!("exec failed: {error}"))?;
            let mut output = String::new();
            if let Some(mut stdout) = process.stdout() {
                stdout
                    .read_to_string(&mut output)
                    .await
                    .map_err(|error| format!("reading the command's output: {error}"))?;
            }
            let _ = process.join().await;
            Ok(output)
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err("the command did not finish in time".to_owned()))
    }
}
