//! The web app's side of learners' clusters: who is signed in (from the session layer) and what a
//! lab asks of its cluster, for the cluster routes; the routes themselves; `/readyz`'s view.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::http::{Extensions, HeaderMap};

use super::AppState;
use super::accounts::Role;
use super::session::Visitor;
use crate::clusters::lifecycle::LabClusterRequest;
use crate::clusters::routes::{ClustersState, Site, Viewer};
use crate::labs::Labs;

/// The signed-in user and the loaded labs, as the cluster routes ask for them.
pub struct AppSite {
    pub labs: Arc<Labs>,
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
