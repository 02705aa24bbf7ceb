//! The web app: one axum `Router` over an [`AppState`].
//!
//! Every page is server-rendered (askama templates in `templates/`); forms work without
//! JavaScript. Subsystems (clusters, terminal, proxy) add their routes in [`app`] and their
//! handles as `Arc` fields of [`AppState`].

pub mod accounts;
mod admin;
pub mod check;
pub mod cluster;
pub mod error;
mod health;
pub mod pages;
pub mod session;
mod targets;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use sqlx::AnyPool;
use tower_http::services::ServeDir;

use crate::config::Config;
use crate::db::seal::Sealer;
use crate::labs::Labs;
use crate::metrics::Metrics;

pub use error::WebError;

/// Everything a request handler can reach. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub db: AnyPool,
    pub config: Arc<Config>,
    pub labs: Arc<Labs>,
    pub metrics: Arc<Metrics>,
    /// Learners' clusters and terminals; `None` until `serve` has started them.
    pub clusters: Option<crate::clusters::routes::ClustersState>,
    /// Seals stored kubeconfigs and etcd keys.
    pub sealer: Arc<Sealer>,
    /// The access proxy's web side; `None` until `serve` has started the proxy.
    pub proxy: Option<Arc<crate::proxy::web::ProxyWeb>>,
}

impl AppState {
    pub fn new(db: AnyPool, config: Config, labs: Labs) -> Self {
        AppState {
            db,
            sealer: Arc::new(Sealer::new(config.secret_key_file.clone())),
            config: Arc::new(config),
            labs: Arc::new(labs),
            metrics: Arc::new(Metrics::default()),
            clusters: None,
            proxy: None,
        }
    }
}

/// The whole site. Other subsystems merge their routers here; the session layer wraps them all,
/// so every changing request is CSRF-checked and handlers can take a [`session::Session`] (signed
/// in, else redirected to sign-in) or a [`session::Visitor`] (anyone).
pub fn app(state: AppState) -> Router {
    let static_dir = state.config.static_dir.clone();
    let proxy = match &state.proxy {
        Some(proxy) => crate::proxy::web::router().with_state(Arc::clone(proxy)),
        None => Router::new(),
    };
    Router::new()
        .merge(proxy)
        .merge(health::routes())
        .merge(accounts::routes())
        .merge(pages::routes())
        .merge(crate::clusters::app::routes(state.clusters.as_ref()))
        .merge(cluster::routes())
        .merge(admin::routes())
        .nest_service("/static", ServeDir::new(static_dir))
        .fallback(|| async { WebError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::session_layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

/// `hardlab serve`: labs, database, first-admin link, then the listener until Ctrl-C or SIGTERM.
pub async fn serve(
    config: Config,
    cluster_args: &crate::clusters::app::ClusterArgs,
) -> crate::Result<()> {
    let labs = crate::labs::load(&config.labs_dir)?;
    tracing::info!(labs = labs.all().len(), dir = %config.labs_dir.display(), "labs loaded");
    let db = crate::db::connect(&config.database_url).await?;
    if let Some(token) = accounts::issue_setup_token(&db).await? {
        let base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen));
        // Printed, not logged: the token must not end up in log storage.
        println!(
            "No admin yet. Create the first one at {}/setup?token={token} (works once), or run \
             `hardlab admin create-user NAME --admin`.",
            base.trim_end_matches('/')
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| crate::Error::io(config.listen.to_string(), e))?;
    tracing::info!(address = %config.listen, "listening");
    let mut state = AppState::new(db, config, labs);
    state.sealer.ensure_key()?;
    match crate::clusters::app::start(
        state.db.clone(),
        Arc::clone(&state.labs),
        cluster_args,
        Arc::clone(&state.sealer),
    )
    .await
    {
        Ok(clusters) => state.clusters = Some(clusters),
        Err(error) => tracing::error!(%error, "clusters are unavailable"),
    }
    let mut proxy_settings = crate::proxy::service::ProxySettings::from_env()?;
    proxy_settings.apply_config(&state.config)?;
    match crate::proxy::web::start(state.db.clone(), Arc::clone(&state.sealer), proxy_settings)
        .await
    {
        Ok(proxy) => state.proxy = Some(proxy),
        Err(error) => tracing::error!(%error, "the access proxy is unavailable"),
    }
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| crate::Error::io("listener", e))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // The route template, not the path, so learner and lab IDs do not explode the label set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.record_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
