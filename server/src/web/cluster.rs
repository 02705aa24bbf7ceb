//! The "static" cluster provider: a learner's own cluster registered by kubeconfig, by the learner
//! (kubeconfig only) or by an admin (also how the grader reaches the node's files and etcd).
//!
//! The kubeconfig and the etcd client key are sealed at rest and never rendered back. Kubeconfigs
//! may only carry inline credentials: `exec` and `auth-provider` plugins and file paths would let
//! whoever registers one run commands or read files on the server. The API server address must
//! pass the installation's address rules (`clusters::server_address`), at registration and at
//! every Check, so a registration cannot aim the server at its own network.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hardlab_grader::context::ApiEndpoint;
use serde::Deserialize;

use super::session::{Session, Visitor};
use super::users::Role;
use super::{AppState, WebError};
use crate::clusters::kubeconfig::{
    ClientTimeouts, InlineCredentials, KubeconfigError, parse_inline,
};
use crate::clusters::server_address::{
    AddressError, AddressPolicy, resolve_checked, resolve_checked_all,
};
use crate::db::now_ms;
use crate::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cluster", get(own_page).post(register_own))
        .route("/cluster/remove", post(remove_own))
        .route("/cluster/running/{id}/extend", post(extend_running))
        .route("/cluster/running/{id}/remove", post(remove_running))
        .route(
            "/admin/users/{user_id}/cluster",
            get(admin_page).post(register_for_user),
        )
        .route(
            "/admin/users/{user_id}/cluster/remove",
            post(remove_for_user),
        )
}

/// What is shown about a registration (nothing secret).
#[derive(Debug, Clone)]
pub struct StaticClusterView {
    pub name: String,
    pub server: String,
    pub node_spec: Option<String>,
    pub etcd_endpoint: Option<String>,
    pub updated_at: i64,
}

/// Everything the grader needs to reach a registered cluster.
pub struct StaticCluster {
    pub name: String,
    pub kubeconfig: String,
    pub node_spec: Option<String>,
    pub etcd: Option<EtcdEndpoint>,
}

pub struct EtcdEndpoint {
    pub url: String,
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

/// The address rules this installation applies to registered API servers.
pub fn address_policy(state: &AppState) -> AddressPolicy {
    AddressPolicy {
        allow_private: state.config.allow_private_cluster_addresses,
    }
}

/// A kubeconfig a person may register: only inline credentials (see
/// [`crate::clusters::kubeconfig::parse_inline`]) and an API server address the installation's
/// rules allow. Errors are written for the person who pasted it.
pub async fn validate_kubeconfig(text: &str, policy: AddressPolicy) -> Result<InlineCredentials> {
    let credentials = parse_inline(text).map_err(|e| Error::InvalidInput(e.to_string()))?;
    // Only judged here, not dialled: registering does not connect anywhere.
    let (host, port) = server_host_and_port(&credentials);
    resolve_checked_all(&host, port, policy)
        .await
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(credentials)
}

fn server_host_and_port(credentials: &InlineCredentials) -> (String, u16) {
    // parse_inline only keeps https URLs with a host, so this always has one.
    credentials
        .host_and_port()
        .unwrap_or_else(|| (String::new(), 443))
}

/// The address to connect to for the credentials' server, after the address rules.
async fn checked_address(
    credentials: &InlineCredentials,
    policy: AddressPolicy,
) -> std::result::Result<SocketAddr, AddressError> {
    let (host, port) = server_host_and_port(credentials);
    resolve_checked(&host, port, policy).await
}

/// A kube client and the API endpoint for a registered kubeconfig. The kubeconfig is checked again
/// (a registration stored before a rule existed gets no pass) and the host resolved and checked
/// again, and the client connects to the address that was checked.
pub async fn connect(
    kubeconfig: &str,
    policy: AddressPolicy,
) -> std::result::Result<(kube::Client, ApiEndpoint), ConnectError> {
    let credentials = parse_inline(kubeconfig)?;
    let address = checked_address(&credentials, policy).await?;
    Ok(credentials
        .client_at(ClientTimeouts::default(), Some(address))
        .await?)
}

/// Why the server would not connect to a registered cluster.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Address(#[from] AddressError),
}

/// Whether the user has registered a cluster (without opening the sealed kubeconfig).
pub async fn is_registered(state: &AppState, owner_id: &str) -> Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT owner_id FROM static_clusters WHERE owner_id = $1")
            .bind(owner_id)
            .fetch_optional(&state.db)
            .await?;
    Ok(row.is_some())
}

pub async fn view(state: &AppState, owner_id: &str) -> Result<Option<StaticClusterView>> {
    type Row = (String, String, Option<String>, Option<String>, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT name, kubeconfig_sealed, node_spec, etcd_endpoint, updated_at \
         FROM static_clusters WHERE owner_id = $1",
    )
    .bind(owner_id)
    .fetch_optional(&state.db)
    .await?;
    let Some((name, sealed, node_spec, etcd_endpoint, updated_at)) = row else {
        return Ok(None);
    };
    let kubeconfig = String::from_utf8(state.sealer.open(&sealed)?).map_err(|_| Error::Unseal)?;
    Ok(Some(StaticClusterView {
        name,
        server: parse_inline(&kubeconfig).map_or_else(|_| "(unreadable)".into(), |c| c.server),
        node_spec,
        etcd_endpoint,
        updated_at,
    }))
}

pub async fn load(state: &AppState, owner_id: &str) -> Result<Option<StaticCluster>> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT name, kubeconfig_sealed, node_spec, etcd_endpoint, etcd_ca_pem, etcd_cert_pem, \
         etcd_key_sealed FROM static_clusters WHERE owner_id = $1",
    )
    .bind(owner_id)
    .fetch_optional(&state.db)
    .await?;
    let Some((name, sealed, node_spec, etcd_url, ca_pem, cert_pem, key_sealed)) = row else {
        return Ok(None);
    };
    let open_text = |sealed: &str| -> Result<String> {
        String::from_utf8(state.sealer.open(sealed)?).map_err(|_| Error::Unseal)
    };
    let kubeconfig = open_text(&sealed)?;
    let key_pem = key_sealed.as_deref().map(open_text).transpose()?;
    Ok(Some(StaticCluster {
        name,
        kubeconfig,
        node_spec,
        etcd: etcd_url.map(|url| EtcdEndpoint {
            url,
            ca_pem,
            cert_pem,
            key_pem,
        }),
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kubeconfig: String,
    #[serde(default)]
    pub node_spec: String,
    #[serde(default)]
    pub etcd_endpoint: String,
    #[serde(default)]
    pub etcd_ca: String,
    #[serde(default)]
    pub etcd_cert: String,
    #[serde(default)]
    pub etcd_key: String,
}

fn non_empty(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Stores (or replaces) a registration. `trusted` (an admin) may also set how the grader reads
/// the node's files and etcd; a learner may not, since those read files on the server's side.
pub async fn register(
    state: &AppState,
    owner_id: &str,
    form: &RegisterForm,
    trusted: bool,
) -> Result<()> {
    let credentials = validate_kubeconfig(&form.kubeconfig, address_policy(state)).await?;
    let name = non_empty(&form.name).unwrap_or_else(|| "my cluster".into());
    if name.chars().count() > 80 {
        return Err(Error::InvalidInput(
            "the name is longer than 80 characters".into(),
        ));
    }
    let node_spec = non_empty(&form.node_spec);
    let etcd_endpoint = non_empty(&form.etcd_endpoint);
    if !trusted && (node_spec.is_some() || etcd_endpoint.is_some()) {
        return Err(Error::InvalidInput(
            "only an admin can set node access and an etcd endpoint".into(),
        ));
    }
    if let Some(spec) = &node_spec {
        let valid = spec
            .strip_prefix("local:")
            .is_some_and(|dir| dir.starts_with('/'))
            || spec.strip_prefix("docker:").is_some_and(|n| !n.is_empty());
        if !valid {
            return Err(Error::InvalidInput(format!(
                "node access {spec:?} is not local:/ABSOLUTE/DIR or docker:CONTAINER"
            )));
        }
    }
    if let Some(url) = &etcd_endpoint
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(Error::InvalidInput(format!(
            "the etcd endpoint {url:?} is not an http(s) URL"
        )));
    }
    // What is stored is a kubeconfig written from the kept fields, not the text that was pasted.
    let sealed = state
        .sealer
        .seal(credentials.to_kubeconfig_yaml("hardlab").as_bytes())?;
    let key_sealed = non_empty(&form.etcd_key)
        .map(|key| state.sealer.seal(key.as_bytes()))
        .transpose()?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO static_clusters (owner_id, name, kubeconfig_sealed, node_spec, etcd_endpoint, \
         etcd_ca_pem, etcd_cert_pem, etcd_key_sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (owner_id) DO UPDATE SET name = $2, kubeconfig_sealed = $3, node_spec = $4, \
         etcd_endpoint = $5, etcd_ca_pem = $6, etcd_cert_pem = $7, etcd_key_sealed = $8, \
         updated_at = $9",
    )
    .bind(owner_id)
    .bind(&name)
    .bind(&sealed)
    .bind(node_spec)
    .bind(etcd_endpoint)
    .bind(non_empty(&form.etcd_ca))
    .bind(non_empty(&form.etcd_cert))
    .bind(key_sealed)
    .bind(now)
    .execute(&state.db)
    .await?;
    Ok(())
}

async fn remove(state: &AppState, owner_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM static_clusters WHERE owner_id = $1")
        .bind(owner_id)
        .execute(&state.db)
        .await?;
    Ok(())
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage<'a> {
    visitor: &'a Visitor,
    /// Whose cluster: `None` for the signed-in user's own.
    for_user: Option<&'a str>,
    action: String,
    cluster: Option<StaticClusterView>,
    admin_fields: bool,
    error: Option<String>,
    saved: bool,
    /// The user's clusters that hardlab runs (empty on an admin's page for someone else).
    running: Vec<RunningCluster>,
    /// This server starts clusters for learners.
    starts_clusters: bool,
}

/// One of the user's running clusters, as "My clusters" lists it.
pub struct RunningCluster {
    pub id: String,
    pub lab_id: String,
    pub lab_title: String,
    /// The first step of the lab, where its terminal is.
    pub open_href: Option<String>,
    pub state: &'static str,
    pub time_left: String,
}

/// `1 h 05 min`, `12 min`, `under a minute`, `expired`.
fn time_left(expires_at: i64) -> String {
    let minutes = (expires_at - crate::db::now_ms()) / 60_000;
    match minutes {
        m if m < 0 => "expired".into(),
        0 => "under a minute".into(),
        m if m < 60 => format!("{m} min"),
        m => format!("{} h {:02} min", m / 60, m % 60),
    }
}

async fn running_of(state: &AppState, user_id: &str) -> Result<Vec<RunningCluster>> {
    let Some(clusters) = &state.clusters else {
        return Ok(Vec::new());
    };
    let records = clusters.manager.list_live().await?;
    Ok(records
        .into_iter()
        .filter(|record| record.owner_id.as_deref() == Some(user_id))
        .map(|record| {
            let lab = state.labs.get(&record.lab_id);
            RunningCluster {
                lab_title: lab.map_or_else(|| record.lab_id.clone(), |l| l.title.clone()),
                open_href: lab
                    .and_then(|l| l.steps.first())
                    .map(|step| format!("/labs/{}/steps/{}", record.lab_id, step.id)),
                lab_id: record.lab_id,
                state: record.state.as_str(),
                time_left: time_left(record.expires_at),
                id: record.id,
            }
        })
        .collect())
}

/// The signed-in user's own running cluster, else 404 (another's is not revealed).
async fn own_running(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<crate::clusters::ClusterRecord, WebError> {
    let clusters = state.clusters.as_ref().ok_or(WebError::NotFound)?;
    let record = clusters
        .manager
        .get(id)
        .await
        .map_err(|e| WebError::Internal(e.into()))?
        .filter(|r| r.owner_id.as_deref() == Some(session.user.id.as_str()) && r.state.is_live())
        .ok_or(WebError::NotFound)?;
    Ok(record)
}

async fn extend_running(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    own_running(&state, &session, &id).await?;
    if let Some(clusters) = &state.clusters {
        match clusters.manager.extend(&id).await {
            Ok(_) => {}
            Err(crate::clusters::Error::ExtendCeiling(_)) => {
                return Err(WebError::BadRequest(
                    "This cluster cannot be extended any further; it has reached its longest life."
                        .into(),
                ));
            }
            Err(error) => return Err(WebError::Internal(error.into())),
        }
    }
    Ok(Redirect::to("/cluster").into_response())
}

async fn remove_running(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    own_running(&state, &session, &id).await?;
    if let Some(clusters) = &state.clusters {
        clusters.terminals.close_cluster(&id).await;
        clusters
            .manager
            .delete(&id)
            .await
            .map_err(|e| WebError::Internal(e.into()))?;
    }
    Ok(Redirect::to("/cluster").into_response())
}

fn render(page: &ClusterPage<'_>, status: axum::http::StatusCode) -> Result<Response, WebError> {
    Ok((status, Html(page.render()?)).into_response())
}

async fn own_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<SavedQuery>,
) -> Result<Response, WebError> {
    let page = ClusterPage {
        visitor: &visitor,
        for_user: None,
        action: "/cluster".into(),
        cluster: view(&state, &session.user.id).await?,
        admin_fields: session.user.role == Role::Admin,
        error: None,
        saved: query.saved.is_some(),
        running: running_of(&state, &session.user.id).await?,
        starts_clusters: state.clusters.is_some(),
    };
    render(&page, axum::http::StatusCode::OK)
}

#[derive(Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

async fn register_own(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Form(form): Form<RegisterForm>,
) -> Result<Response, WebError> {
    let trusted = session.user.role == Role::Admin;
    match register(&state, &session.user.id, &form, trusted).await {
        Ok(()) => {
            tracing::info!(user = %session.user.username, "static cluster registered");
            Ok(Redirect::to("/cluster?saved=1").into_response())
        }
        Err(Error::InvalidInput(message)) => {
            let page = ClusterPage {
                visitor: &visitor,
                for_user: None,
                action: "/cluster".into(),
                cluster: view(&state, &session.user.id).await?,
                admin_fields: trusted,
                error: Some(message),
                saved: false,
                running: running_of(&state, &session.user.id).await?,
                starts_clusters: state.clusters.is_some(),
            };
            render(&page, axum::http::StatusCode::BAD_REQUEST)
        }
        Err(other) => Err(other.into()),
    }
}

async fn remove_own(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    remove(&state, &session.user.id).await?;
    Ok(Redirect::to("/cluster").into_response())
}

/// The user's name when the id exists; admins only (404 for everyone else).
async fn target_user(
    state: &AppState,
    session: &Session,
    user_id: &str,
) -> Result<String, WebError> {
    session.require(Role::Admin)?;
    let row: Option<(String,)> = sqlx::query_as("SELECT username FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&state.db)
        .await?;
    row.map(|(name,)| name).ok_or(WebError::NotFound)
}

async fn admin_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(user_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SavedQuery>,
) -> Result<Response, WebError> {
    let username = target_user(&state, &session, &user_id).await?;
    let page = ClusterPage {
        visitor: &visitor,
        for_user: Some(&username),
        action: format!("/admin/users/{user_id}/cluster"),
        cluster: view(&state, &user_id).await?,
        admin_fields: true,
        error: None,
        saved: query.saved.is_some(),
        running: Vec::new(),
        starts_clusters: false,
    };
    render(&page, axum::http::StatusCode::OK)
}

async fn register_for_user(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(user_id): Path<String>,
    Form(form): Form<RegisterForm>,
) -> Result<Response, WebError> {
    let username = target_user(&state, &session, &user_id).await?;
    match register(&state, &user_id, &form, true).await {
        Ok(()) => {
            tracing::info!(admin = %session.user.username, user = %username, "static cluster registered for a user");
            Ok(Redirect::to(&format!("/admin/users/{user_id}/cluster?saved=1")).into_response())
        }
        Err(Error::InvalidInput(message)) => {
            let page = ClusterPage {
                visitor: &visitor,
                for_user: Some(&username),
                action: format!("/admin/users/{user_id}/cluster"),
                cluster: view(&state, &user_id).await?,
                admin_fields: true,
                error: Some(message),
                saved: false,
                running: Vec::new(),
                starts_clusters: false,
            };
            render(&page, axum::http::StatusCode::BAD_REQUEST)
        }
        Err(other) => Err(other.into()),
    }
}

async fn remove_for_user(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
) -> Result<Response, WebError> {
    target_user(&state, &session, &user_id).await?;
    remove(&state, &user_id).await?;
    Ok(Redirect::to(&format!("/admin/users/{user_id}/cluster")).into_response())
}
