//! The one app builder. `hardlab serve` and every test that needs the app go through it, so a
//! test exercises exactly what ships: the labs, the sealing key, learners' clusters and their
//! terminals, the access proxy, and every route and layer of [`crate::web::app`].

use std::future::Future;
use std::sync::Arc;

use sqlx::AnyPool;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::web::AppState;
use crate::{Error, Result};

/// Everything the server runs, wired and started, on an open database: labs loaded, the server
/// key read (or made), clusters started when the settings have them, the access proxy listening.
/// A subsystem that cannot start (no Docker engine, the proxy's port taken) is logged and left
/// out; the rest of the site works without it.
pub async fn build(config: Config, db: AnyPool) -> Result<AppState> {
    let labs = crate::labs::load(&config.labs_dir)?;
    tracing::info!(labs = labs.all().len(), dir = %config.labs_dir.display(), "labs loaded");
    let mut state = AppState::new(db, config, labs);
    state.sealer.ensure_key()?;
    // The proxy before the clusters: a lab 6 cluster is put behind it as soon as it is ready.
    // A setting that is not valid stops the start, naming it; a proxy that cannot start does not.
    let proxy_settings = crate::proxy::service::ProxySettings::from_config(&state.config)?;
    match crate::proxy::web::start(state.db.clone(), Arc::clone(&state.sealer), proxy_settings)
        .await
    {
        Ok(proxy) => state.proxy = Some(proxy),
        Err(error) => tracing::error!(%error, "the access proxy is unavailable"),
    }
    if let Some(settings) = &state.config.clusters {
        let site = Arc::new(crate::web::clusters::AppSite {
            labs: Arc::clone(&state.labs),
            proxy: state.proxy.clone(),
            server_url: state.config.link_base(),
        });
        match crate::clusters::setup::start(
            state.db.clone(),
            &state.labs,
            settings,
            Arc::clone(&state.sealer),
            site,
        )
        .await
        {
            Ok(clusters) => state.clusters = Some(clusters),
            Err(error) => tracing::error!(%error, "clusters are unavailable"),
        }
    }
    let privileged_nodes = state
        .config
        .clusters
        .as_ref()
        .is_some_and(|settings| !settings.node_unprivileged)
        && state.clusters.is_some();
    for warning in crate::web::accounts::startup_warnings(&state.config, privileged_nodes) {
        tracing::warn!("{warning}");
    }
    Ok(state)
}

/// Serves the app on `listener` until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let clusters = state.clusters.clone();
    let served = axum::serve(
        listener,
        crate::web::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| Error::io("listener", e));
    // A stopped server renews no more leases: its clusters pass to another server sharing the
    // database within a lease period.
    if let Some(clusters) = clusters {
        clusters.manager.stop_background();
    }
    served
}

/// `hardlab serve`: the database, the first admin's setup link, [`build`], then [`serve`] on the
/// configured address until Ctrl-C or SIGTERM.
pub async fn launch(config: Config) -> Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    if config.setup_token
        && let Some(token) = crate::web::accounts::issue_setup_token(&db).await?
    {
        let base = config.link_base();
        // Printed, not logged: the token must not end up in log storage.
        println!(
            "No admin yet. Create the first one at {}/setup?token={token} (works once), or run \
             `hardlab admin create-user NAME --admin`.",
            base.trim_end_matches('/')
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(config.listen.to_string(), e))?;
    tracing::info!(address = %config.listen, "listening");
    let state = build(config, db).await?;
    serve(state, listener, shutdown_signal()).await
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
