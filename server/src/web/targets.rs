//! How the grader reaches a registered cluster's node files and etcd, from the registration.

use std::sync::Arc;

use hardlab_grader::target::{EtcdAccess, NodeAccess};

use super::cluster::EtcdEndpoint;
use crate::{Error, Result};

pub fn node_access(spec: Option<&str>) -> Result<Option<Arc<dyn NodeAccess>>> {
    match spec {
        None => Ok(None),
        Some(spec) => Err(Error::Cluster(format!(
            "node access {spec:?} is not available in this build yet"
        ))),
    }
}

pub fn etcd_access(endpoint: Option<&EtcdEndpoint>) -> Result<Option<Arc<dyn EtcdAccess>>> {
    match endpoint {
        None => Ok(None),
        Some(endpoint) => Err(Error::Cluster(format!(
            "etcd access at {} is not available in this build yet",
            endpoint.url
        ))),
    }
}
