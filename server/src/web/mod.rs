//! The web app: one axum `Router` over an [`AppState`].
//!
//! Every page is server-rendered (askama templates in `templates/`); forms work without
//! JavaScript. Subsystems (clusters, terminal, proxy) add their routes in [`app`] and their
//! handles as `Arc` fields of [`AppState`].

pub mod accounts;
mod admin;
pub mod check;
pub mod client_address;
pub mod cluster;
pub mod clusters;
pub mod error;
pub mod headers;
mod health;
pub mod learner_actions;
pub mod pages;
pub mod session;
pub mod signup;
mod targets;
pub mod users;
pub mod workshops;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    /// One grading at a time per learner and step.
    pub gradings: Arc<check::GradingLocks>,
    /// Learners' catch-ups under way (and the last one finished), for their progress.
    pub catch_ups: Arc<learner_actions::CatchUps>,
    /// The user ID of every learner whose progress changed (an attempt stored, a workshop
    /// joined), in this process: what live workshop boards redraw on.
    pub progress_events: tokio::sync::broadcast::Sender<String>,
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
            gradings: Arc::default(),
            catch_ups: Arc::default(),
            progress_events: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// The whole site. Other subsystems merge their routers here; the session layer wraps them all,
/// so every changing request is CSRF-checked and handlers can take a [`session::Session`] (signed
/// in, else redirected to sign-in) or a [`session::Visitor`] (anyone).
pub fn app(state: AppState) -> Router {
    let static_dir = state.config.static_dir.clone();
    let security_headers = Arc::new(headers::SecurityHeaders::from_config(&state.config));
    let proxy = match &state.proxy {
        Some(proxy) => crate::proxy::web::router().with_state(Arc::clone(proxy)),
        None => Router::new(),
    };
    Router::new()
        .merge(proxy)
        .merge(health::routes())
        .merge(accounts::routes())
        .merge(pages::routes())
        .merge(clusters::routes(state.clusters.as_ref()))
        .merge(cluster::routes())
        .merge(admin::routes())
        .merge(workshops::routes())
        .nest_service("/static", ServeDir::new(static_dir))
        .fallback(|| async { WebError::NotFound })
        .layer(middleware::from_fn(error::in_layout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::session_layer,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_request_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(middleware::from_fn_with_state(
            security_headers,
            headers::security_headers,
        ))
        .with_state(state)
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

/// Every request body is read up to `max_request_body_bytes`: a declared larger one gets 413 at
/// once, and an undeclared (chunked) one stops being read at the limit, so no handler, the
/// session layer's CSRF check included, buffers more than that.
async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.max_request_body_bytes;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return payload_too_large(Some(limit));
    }
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}

/// 413, naming the limit when the caller knows which one was hit.
pub fn payload_too_large(limit: Option<usize>) -> Response {
    let limit = limit
        .map(|bytes| format!(" ({bytes} bytes)"))
        .unwrap_or_default();
    (
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        format!("The request body is larger than this server accepts{limit}."),
    )
        .into_response()
}

/// A time in milliseconds since the epoch as the pages show it: `2026-12-02 17:00 UTC`.
pub fn utc_minute(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}
