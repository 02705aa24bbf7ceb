//! The web app's side of learners' clusters: who is signed in (from the session layer) and what a
//! lab asks of its cluster, for the cluster routes; the routes themselves; `/readyz`'s view.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::http::{Extensions, HeaderMap};

use super::AppState;
use super::session::Visitor;
use super::users::Role;
use crate::clusters::lifecycle::LabClusterRequest;
use crate::clusters::routes::{ClustersState, NodeFile, Site, Viewer};
use crate::labs::Labs;

/// The signed-in user and the loaded labs, as the cluster routes ask for them; the access proxy
/// for the labs that judge it (lab 6).
pub struct AppSite {
    pub labs: Arc<Labs>,
    pub proxy: Option<Arc<crate::proxy::web::ProxyWeb>>,
    /// The server's public URL (the configured one, else its listening address), written into
    /// lab 6 nodes for `hardlab login`.
    pub server_url: String,
}

#[async_trait]
impl Site for AppSite {
    async fn viewer(&self, _headers: &HeaderMap, extensions: &Extensions) -> Option<Viewer> {
        let user = extensions.get::<Visitor>()?.user()?.clone();
        Some(Viewer {
            user_id: user.id,
            staff: user.role >= Role::Instructor,
        })
    }

    fn lab_request(&self, lab_id: &str) -> Option<LabClusterRequest> {
        self.labs
            .get(lab_id)
            .map(|lab| crate::clusters::setup::lab_request(lab))
    }

    /// For a lab whose steps judge the access proxy: the learner's tenant, their cluster behind
    /// the proxy (label `env: dev`), and the `hardlab` client's configuration in the node.
    async fn lab_ready(
        &self,
        user_id: &str,
        lab_id: &str,
        kubeconfig: &str,
    ) -> Result<Vec<NodeFile>, String> {
        let Some(lab) = self.labs.get(lab_id) else {
            return Ok(Vec::new());
        };
        let judges_proxy = lab
            .steps
            .iter()
            .any(|step| step.checks.iter().any(|id| id.starts_with("proxy.")));
        if !judges_proxy {
            return Ok(Vec::new());
        }
        let Some(proxy) = &self.proxy else {
            return Err(
                "this lab needs hardlab's access proxy, which is not running on this server".into(),
            );
        };
        let lab_cluster = proxy
            .register_lab_cluster(user_id, kubeconfig)
            .await
            .map_err(|error| {
                tracing::error!(%error, "registering a lab cluster behind the proxy failed");
                "the lab cluster could not be put behind the access proxy".to_owned()
            })?;
        Ok(crate::proxy::web::node_client_files(
            &self.server_url,
            &lab_cluster,
        ))
    }
}

/// The cluster routes; none when the server runs without clusters.
pub fn routes(clusters: Option<&ClustersState>) -> Router<AppState> {
    match clusters {
        Some(state) => crate::clusters::routes::router::<ClustersState>().with_state(state.clone()),
        None => Router::new(),
    }
}

/// For `/readyz`: `Err` with a message when clusters cannot be created now.
pub async fn readiness(clusters: Option<&ClustersState>) -> Result<(), String> {
    match clusters {
        Some(state) => state.manager.health().await.map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
