//! How the grader reaches a cluster beyond the Kubernetes API: the control-plane node's files
//! and etcd's raw values.

pub mod apipod;
pub mod docker;
pub mod etcd;
pub mod local;
pub mod podexec;

use async_trait::async_trait;

use crate::{Error, Result};

/// What a command run on the node printed, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i64,
}

impl CommandOutput {
    /// The start of stderr (or stdout), for error messages.
    pub fn short_output(&self) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        String::from_utf8_lossy(&text[..text.len().min(400)])
            .trim()
            .to_owned()
    }

    /// The output when the command succeeded, else an error quoting its stderr.
    pub fn success(self, what: &str) -> Result<Vec<u8>> {
        if self.exit_code == 0 {
            Ok(self.stdout)
        } else {
            Err(Error::Node(format!(
                "{what} exited with {}: {}",
                self.exit_code,
                String::from_utf8_lossy(&self.stderr).trim()
            )))
        }
    }
}

/// Reads files on the control-plane node: locally, through `docker exec`, or through the
/// static pods' exec subresource.
#[async_trait]
pub trait NodeAccess: Send + Sync {
    /// A short description for messages, e.g. `docker:hardlab-abc-control-plane`.
    fn describe(&self) -> String;
    /// The file's bytes, or `None` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Names of the entries of a directory (empty when it does not exist).
    async fn list_dir(&self, path: &str) -> Result<Vec<String>>;
    /// Where kubeadm keeps its files on this node (`/etc/kubernetes` for kind and kubeadm).
    fn kubernetes_dir(&self) -> &str {
        "/etc/kubernetes"
    }
    /// Runs a program on the node (used for `etcdctl` with the node's certificates); not every
    /// access can.
    async fn exec(&self, argv: &[String]) -> Result<CommandOutput> {
        let _ = argv;
        Err(Error::Node(format!(
            "{} cannot run commands on the node",
            self.describe()
        )))
    }
}

/// Reads raw values from etcd, bypassing the API server, as an attacker with etcd access would.
#[async_trait]
pub trait EtcdAccess: Send + Sync {
    fn describe(&self) -> String;
    /// The raw stored value of one key.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// All keys and values under a prefix.
    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}
