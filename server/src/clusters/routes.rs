//! HTTP routes for clusters: Start, progress as server-sent events, extend, remove, and the
//! terminal's WebSocket. The web app merges `router()` and provides a `ClustersState` (who is
//! signed in, what a lab asks of its cluster) through `FromRef`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRef, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Serialize;

use super::lifecycle::LabClusterRequest;
use super::{ClusterManager, ClusterRecord, ClusterState, Error};
use crate::terminal::TerminalHub;

/// The signed-in user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: String,
    /// Instructors and admins may open any learner's terminal.
    pub staff: bool,
}

/// What the web app tells the cluster routes.
#[async_trait]
pub trait Site: Send + Sync {
    /// The signed-in user of this request (its session cookie, or what the web app's session
    /// layer put into the extensions), if any.
    async fn viewer(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Viewer>;
    /// What a lab asks of its cluster; `None` when there is no such lab.
    fn lab_request(&self, lab_id: &str) -> Option<LabClusterRequest>;
    /// A learner's cluster for `lab_id` is ready (created, or claimed from the pool): what the
    /// site does with it (lab 6 puts it behind the access proxy), and the files to write into its
    /// node (the `hardlab` client's configuration). `Err` is the reason the learner reads.
    async fn lab_ready(
        &self,
        _user_id: &str,
        _lab_id: &str,
        _kubeconfig: &str,
    ) -> Result<Vec<NodeFile>, String> {
        Ok(Vec::new())
    }
}

/// A file the site writes into a learner's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub path: String,
    pub contents: Vec<u8>,
}

#[derive(Clone)]
pub struct ClustersState {
    pub manager: Arc<ClusterManager>,
    pub terminals: Arc<TerminalHub>,
    pub site: Arc<dyn Site>,
}

/// `/api/labs/{lab}/cluster` (POST: Start) and `/api/clusters/{id}[/events|/extend|/terminal]`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ClustersState: FromRef<S>,
{
    Router::new()
        .route("/api/labs/{lab}/cluster", post(start))
        .route("/api/clusters/{id}", get(show).delete(remove))
        .route("/api/clusters/{id}/events", get(events))
        .route("/api/clusters/{id}/extend", post(extend))
        .route("/api/clusters/{id}/terminal", get(terminal))
}

/// The cluster as the browser sees it (no ports, no owner).
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub id: String,
    pub lab: String,
    pub state: ClusterState,
    pub phase: Option<String>,
    pub phase_text: Option<String>,
    pub reason: Option<String>,
    pub expires_at: i64,
}

impl From<&ClusterRecord> for ClusterView {
    fn from(record: &ClusterRecord) -> Self {
        let event = record.event();
        ClusterView {
            id: record.id.clone(),
            lab: record.lab_id.clone(),
            state: record.state,
            phase: event.phase,
            phase_text: event.phase_text,
            reason: record.failure_reason.clone(),
            expires_at: record.expires_at,
        }
    }
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::DockerUnreachable(_) | Error::AtCapacity(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::InvalidName(_)
        | Error::Invalid(_)
        | Error::Terminal(crate::terminal::TerminalError::TooMany { .. }) => {
            StatusCode::BAD_REQUEST
        }
        Error::AlreadyExists(_) | Error::UserAtCapacity(_) | Error::ExtendCeiling(_) => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "cluster request failed");
    }
    failure(status, error.to_string())
}

/// A cross-site page must not drive a learner's cluster or terminal: when the browser sends an
/// Origin, its host must be this server's Host. `required` for WebSockets, which browsers always
/// send it with.
pub fn same_origin(headers: &HeaderMap, required: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return !required;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('/');
    authority.eq_ignore_ascii_case(host)
}

async fn viewer(
    state: &ClustersState,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Viewer, Response> {
    state
        .site
        .viewer(headers, extensions)
        .await
        .ok_or_else(|| failure(StatusCode::UNAUTHORIZED, "sign in first"))
}

/// The cluster, when the viewer owns it or is staff.
async fn owned(
    state: &ClustersState,
    headers: &HeaderMap,
    extensions: &Extensions,
    id: &str,
) -> Result<(Viewer, ClusterRecord), Response> {
    let viewer = viewer(state, headers, extensions).await?;
    let record = match state.manager.get(id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Err(failure(StatusCode::NOT_FOUND, format!("no cluster {id}"))),
        Err(error) => return Err(error_response(&error)),
    };
    if record.owner_id.as_deref() != Some(viewer.user_id.as_str()) && !viewer.staff {
        return Err(failure(StatusCode::FORBIDDEN, "this is not your cluster"));
    }
    Ok((viewer, record))
}

async fn start(
    State(state): State<ClustersState>,
    Path(lab): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if !same_origin(&headers, false) {
        return failure(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let viewer = match viewer(&state, &headers, &extensions).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let Some(request) = state.site.lab_request(&lab) else {
        return failure(StatusCode::NOT_FOUND, format!("no lab {lab}"));
    };
    match state.manager.start(&viewer.user_id, None, &request).await {
        Ok(record) => (StatusCode::ACCEPTED, Json(ClusterView::from(&record))).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn show(
    State(state): State<ClustersState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    match owned(&state, &headers, &extensions, &id).await {
        Ok((_, record)) => Json(ClusterView::from(&record)).into_response(),
        Err(response) => response,
    }
}

async fn extend(
    State(state): State<ClustersState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if !same_origin(&headers, false) {
        return failure(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if let Err(response) = owned(&state, &headers, &extensions, &id).await {
        return response;
    }
    match state.manager.extend(&id).await {
        Ok(record) => Json(ClusterView::from(&record)).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn remove(
    State(state): State<ClustersState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if !same_origin(&headers, false) {
        return failure(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if let Err(response) = owned(&state, &headers, &extensions, &id).await {
        return response;
    }
    state.terminals.close_cluster(&id).await;
    match state.manager.delete(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error),
    }
}

/// Progress as server-sent events (`event: cluster`, JSON data), starting with the current state.
async fn events(
    State(state): State<ClustersState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let record = match owned(&state, &headers, &extensions, &id).await {
        Ok((_, record)) => record,
        Err(response) => return response,
    };
    let receiver = state.manager.subscribe();
    Sse::new(event_stream(record, receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn event_stream(
    first: ClusterRecord,
    receiver: tokio::sync::broadcast::Receiver<super::lifecycle::ClusterEvent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let id = first.id.clone();
    let initial = futures::stream::once(async move { Ok(sse_event(&ClusterView::from(&first))) });
    let updates = futures::stream::unfold(receiver, move |mut receiver| {
        let id = id.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if event.cluster == id => {
                        let view = ClusterView {
                            id: event.cluster,
                            lab: String::new(),
                            state: event.state,
                            phase: event.phase,
                            phase_text: event.phase_text,
                            reason: event.reason,
                            expires_at: event.expires_at,
                        };
                        return Some((Ok(sse_event(&view)), receiver));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    futures::StreamExt::chain(initial, updates)
}

fn sse_event(view: &ClusterView) -> Event {
    Event::default()
        .event("cluster")
        .data(serde_json::to_string(view).unwrap_or_default())
}

/// The terminal: only the cluster's owner (or staff), only from this site's pages, only when ready.
async fn terminal(
    State(state): State<ClustersState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers, true) {
        return failure(StatusCode::FORBIDDEN, "cross-origin terminal refused");
    }
    let (viewer, record) = match owned(&state, &headers, &extensions, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if record.state != ClusterState::Ready {
        return failure(
            StatusCode::CONFLICT,
            format!("the cluster is {}, not ready", record.state.as_str()),
        );
    }
    let shell = match state.terminals.open(&viewer.user_id, &id).await {
        Ok(shell) => shell,
        Err(error) => return error_response(&error.into()),
    };
    let manager = Arc::clone(&state.manager);
    let hub = Arc::clone(&state.terminals);
    let limit = hub.config().max_message_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let on_input = move || {
                let manager = Arc::clone(&manager);
                let id = id.clone();
                tokio::spawn(async move {
                    let _ = manager.touch(&id).await;
                });
            };
            hub.serve(socket, shell, on_input).await;
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn only_this_sites_origin_may_open_a_terminal() {
        assert!(same_origin(
            &headers(&[
                ("host", "lab.example:8080"),
                ("origin", "https://lab.example:8080")
            ]),
            true
        ));
        assert!(!same_origin(
            &headers(&[
                ("host", "lab.example:8080"),
                ("origin", "https://evil.example")
            ]),
            true
        ));
        assert!(
            !same_origin(&headers(&[("host", "lab.example:8080")]), true),
            "a WebSocket needs an Origin"
        );
        assert!(
            same_origin(&headers(&[("host", "lab.example:8080")]), false),
            "curl sends none"
        );
        assert!(!same_origin(
            &headers(&[("host", "a"), ("origin", "null")]),
            false
        ));
    }
}
