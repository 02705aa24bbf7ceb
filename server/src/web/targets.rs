//! How the grader reaches a registered cluster's node files and etcd, from the registration.

use std::sync::Arc;

use hardlab_grader::target::docker::DockerNode;
use hardlab_grader::target::etcd::EtcdHttp;
use hardlab_grader::target::local::LocalNode;
use hardlab_grader::target::{EtcdAccess, NodeAccess};

use super::cluster::EtcdEndpoint;
use crate::{Error, Result};

/// `local:/DIR` (files laid out like /etc/kubernetes) or `docker:CONTAINER`.
pub fn node_access(spec: Option<&str>) -> Result<Option<Arc<dyn NodeAccess>>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if let Some(dir) = spec.strip_prefix("local:") {
        return Ok(Some(Arc::new(LocalNode::new(dir))));
    }
    if let Some(container) = spec.strip_prefix("docker:") {
        let node = DockerNode::new(container)
            .map_err(|e| Error::Cluster(format!("node access {spec:?}: {e}")))?;
        return Ok(Some(Arc::new(node)));
    }
    Err(Error::Cluster(format!(
        "node access {spec:?} is not local:/DIR or docker:CONTAINER"
    )))
}

/// etcd's HTTP gateway with the registered CA and client certificate. The grader's client takes
/// PEM files, so they are written to a private temporary folder that is gone once it has read them.
pub fn etcd_access(endpoint: Option<&EtcdEndpoint>) -> Result<Option<Arc<dyn EtcdAccess>>> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|e| Error::io("temporary folder", e))?;
    let write = |name: &str, pem: &Option<String>| -> Result<Option<std::path::PathBuf>> {
        let Some(pem) = pem else {
            return Ok(None);
        };
        let path = dir.path().join(name);
        std::fs::write(&path, pem).map_err(|e| Error::io(&path, e))?;
        Ok(Some(path))
    };
    let ca = write("ca.pem", &endpoint.ca_pem)?;
    let cert = write("cert.pem", &endpoint.cert_pem)?;
    let key = write("key.pem", &endpoint.key_pem)?;
    let client = EtcdHttp::new(
        &endpoint.url,
        ca.as_deref(),
        cert.as_deref(),
        key.as_deref(),
    )
    .map_err(|e| Error::Cluster(format!("etcd at {}: {e}", endpoint.url)))?;
    Ok(Some(Arc::new(client)))
}
