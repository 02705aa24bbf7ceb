//! How the grader reaches a registered cluster's node files and etcd, from the registration.

use std::sync::Arc;

use hardlab_grader::target::docker::DockerNode;
use hardlab_grader::target::etcd::EtcdHttp;
use hardlab_grader::target::local::LocalNode;
use hardlab_grader::target::{EtcdAccess, NodeAccess};

use super::check::GradingError;
use super::cluster::EtcdEndpoint;

/// `local:/DIR` (files laid out like /etc/kubernetes) or `docker:CONTAINER`.
pub fn node_access(spec: Option<&str>) -> Result<Option<Arc<dyn NodeAccess>>, GradingError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if let Some(dir) = spec.strip_prefix("local:") {
        return Ok(Some(Arc::new(LocalNode::new(dir))));
    }
    if let Some(container) = spec.strip_prefix("docker:") {
        let node = DockerNode::new(container).map_err(|source| GradingError::NodeAccess {
            spec: spec.to_owned(),
            source,
        })?;
        return Ok(Some(Arc::new(node)));
    }
    Err(GradingError::NodeSpec(spec.to_owned()))
}

/// etcd's HTTP gateway with the registered CA and client certificate, held in memory only.
pub fn etcd_access(
    endpoint: Option<&EtcdEndpoint>,
) -> Result<Option<Arc<dyn EtcdAccess>>, GradingError> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let client = EtcdHttp::from_pem(
        &endpoint.url,
        endpoint.ca_pem.as_deref().map(str::as_bytes),
        endpoint.cert_pem.as_deref().map(str::as_bytes),
        endpoint.key_pem.as_deref().map(str::as_bytes),
    )
    .map_err(|source| GradingError::Etcd {
        url: endpoint.url.clone(),
        source,
    })?;
    Ok(Some(Arc::new(client)))
}
