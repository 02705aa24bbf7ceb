//! How the grader reaches a cluster beyond the Kubernetes API: the control-plane node's files
//! and etcd's raw values.

use async_trait::async_trait;

use crate::Result;

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
