//! The proxy's web side: the login endpoint `hardlab login` calls, TOTP enrolment, the admin's
//! roles editor, the audit log with filters and JSON-lines export, and session replay.
//!
//! State-changing browser calls are JSON `fetch` requests carrying the session's CSRF token in
//! `X-CSRF-Token` (the web app's session layer checks it). The login endpoint takes no cookie.

use std::sync::Arc;

use askama::Template;
use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ProxyError;
use super::audit::{self, AuditFilter};
use super::client::LoginRequest;
use super::recording;
use super::roles::{ProxyConfig, Role};
use super::service::ProxyService;
use super::{store, totp};
use crate::web::session::{Session, Visitor};

/// Who is looking, as the web app's session knows them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub admin: bool,
    /// The session's CSRF token, sent back by the page's scripts as `X-CSRF-Token`.
    pub csrf: String,
}

/// What the proxy needs from hardlab's accounts; the web app implements it.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Checks a password (and counts failures against the sign-in rate limit).
    async fn verify_password(&self, user: &str, password: &str) -> bool;
    /// The signed-in user of a browser request, if any.
    async fn viewer(&self, parts: &Parts) -> Option<Viewer>;
}

/// The proxy's part of the web app's state.
#[derive(Clone)]
pub struct ProxyWeb {
    pub service: Arc<ProxyService>,
    pub accounts: Arc<dyn Accounts>,
}

impl std::fmt::Debug for ProxyWeb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyWeb").finish_non_exhaustive()
    }
}

/// The routes, for any app state that holds an `Arc<ProxyWeb>`.
pub fn router<S>() -> Router<S>
where
    Arc<ProxyWeb>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/proxy/login", post(login))
        .route("/api/proxy/totp/enroll", post(totp_enroll))
        .route("/api/proxy/totp/confirm", post(totp_confirm))
        .route("/api/proxy/totp/remove", post(totp_remove))
        .route("/api/proxy/second-factor/reset", post(second_factor_reset))
        .route("/api/proxy/certificates/revoke", post(revoke))
        .route("/api/proxy/config", post(apply_config))
        .route("/api/proxy/sessions/{id}", get(session_json))
        .route("/access", get(access_page))
        .route("/access/audit", get(audit_page))
        .route("/access/audit.jsonl", get(audit_export))
        .route("/access/sessions", get(sessions_page))
        .route("/access/sessions/{id}", get(session_page))
}

/// The signed-in viewer; a browser without a session is sent to sign in.
pub struct SignedIn(pub Viewer);

impl<S> FromRequestParts<S> for SignedIn
where
    Arc<ProxyWeb>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let web = Arc::<ProxyWeb>::from_ref(state);
        match web.accounts.viewer(parts).await {
            Some(viewer) => Ok(SignedIn(viewer)),
            None => Err((StatusCode::UNAUTHORIZED, "sign in first").into_response()),
        }
    }
}

struct ApiError(ProxyError);

impl From<ProxyError> for ApiError {
    fn from(error: ProxyError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ProxyError::Unauthorized(_) | ProxyError::Revoked(_) => StatusCode::UNAUTHORIZED,
            ProxyError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BadRequest(_) | ProxyError::Config(_) | ProxyError::Certificate(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "proxy web request failed");
            "internal error".to_owned()
        } else {
            self.0.to_string()
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

fn forbidden() -> ApiError {
    ApiError(ProxyError::Unauthorized("admins only".into()))
}

async fn login(
    State(web): State<Arc<ProxyWeb>>,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let password_ok = web
        .accounts
        .verify_password(&request.user, &request.password)
        .await;
    let answer = web.service.login(&request, password_ok).await?;
    tracing::info!(user = %request.user, "proxy certificate issued");
    Ok(Json(answer).into_response())
}

#[derive(Deserialize, Default)]
struct EnrollBody {
    /// The current code of the authenticator being replaced, when there is one.
    #[serde(default)]
    code: Option<String>,
}

async fn totp_enroll(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<EnrollBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let secret = store::enroll_totp(
        &service.pool,
        &service.sealer,
        &viewer.name,
        body.code.as_deref(),
    )
    .await?;
    let uri = totp::otpauth_uri(&viewer.name, &secret);
    let qr_svg = totp::qr_svg(&uri)?;
    Ok(Json(serde_json::json!({
        "secret": secret,
        "uri": uri,
        "qr_svg": qr_svg,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

async fn totp_confirm(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<CodeBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    store::check_totp(
        &service.pool,
        &service.sealer,
        &viewer.name,
        &body.code,
        true,
    )
    .await?;
    Ok(Json(serde_json::json!({ "confirmed": true })).into_response())
}

/// Removes the viewer's authenticator; its current code proves the viewer still holds it.
async fn totp_remove(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<CodeBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    store::remove_totp(&service.pool, &service.sealer, &viewer.name, &body.code).await?;
    tracing::info!(user = %viewer.name, "second factor removed by its owner");
    Ok(Json(serde_json::json!({ "removed": true })).into_response())
}

#[derive(Deserialize)]
struct UserBody {
    user: String,
}

/// An admin removes a user's second factor (a lost phone). Audited: the event names the admin.
async fn second_factor_reset(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<UserBody>,
) -> Result<Response, ApiError> {
    if !viewer.admin {
        return Err(forbidden());
    }
    let user = body.user.trim().to_ascii_lowercase();
    web.service
        .kube
        .audit()
        .record(audit::AuditEvent::admin_action(
            "auth.second_factor_reset",
            &viewer.name,
            &user,
        ))
        .await?;
    store::reset_second_factor(&web.service.pool, &user).await?;
    tracing::info!(admin = %viewer.name, %user, "second factor reset by an admin");
    Ok(Json(serde_json::json!({ "reset": true })).into_response())
}

#[derive(Deserialize)]
struct RevokeBody {
    /// One certificate, by serial.
    #[serde(default)]
    serial: Option<String>,
    /// Every certificate of this user.
    #[serde(default)]
    user: Option<String>,
}

/// Revokes a certificate or all of a user's: an admin for anyone, a user for their own.
async fn revoke(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<RevokeBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    match (body.serial.as_deref(), body.user.as_deref()) {
        (Some(serial), None) => {
            let owner = store::certificate_owner(&service.pool, serial).await?;
            if !viewer.admin && owner.as_deref() != Some(viewer.name.as_str()) {
                return Err(ApiError(ProxyError::NotFound(format!(
                    "certificate with serial {serial}"
                ))));
            }
            let user = service.revoke_certificate(serial).await?;
            service
                .kube
                .audit()
                .record(audit::AuditEvent::admin_action(
                    "cert.revoke",
                    &viewer.name,
                    &user,
                ))
                .await?;
        }
        (None, Some(user)) => {
            let user = user.trim().to_ascii_lowercase();
            if !viewer.admin && user != viewer.name {
                return Err(forbidden());
            }
            service.revoke_user(&user).await?;
            service
                .kube
                .audit()
                .record(audit::AuditEvent::admin_action(
                    "cert.revoke_all",
                    &viewer.name,
                    &user,
                ))
                .await?;
        }
        _ => {
            return Err(ApiError(ProxyError::BadRequest(
                "give either serial (one certificate) or user (all of theirs)".into(),
            )));
        }
    }
    Ok(Json(serde_json::json!({ "revoked": true })).into_response())
}

#[derive(Deserialize)]
struct ConfigBody {
    yaml: String,
}

/// Applies roles and user assignments in the config file's format (clusters stay with the file
/// or the lab, since they carry credentials).
async fn apply_config(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<ConfigBody>,
) -> Result<Response, ApiError> {
    if !viewer.admin {
        return Err(forbidden());
    }
    let config = ProxyConfig::parse("roles", &body.yaml)?;
    if !config.clusters.is_empty() {
        return Err(ApiError(ProxyError::Config(
            "clusters cannot be added here: they carry credentials; use the config file".into(),
        )));
    }
    for role in &config.roles {
        store::put_role(&web.service.pool, role).await?;
    }
    for user in &config.users {
        store::set_user_roles(&web.service.pool, &user.name, &user.roles).await?;
    }
    web.service.reload().await;
    tracing::info!(admin = %viewer.name, roles = config.roles.len(), users = config.users.len(), "proxy roles applied");
    Ok(Json(serde_json::json!({ "applied": true })).into_response())
}

async fn session_json(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let recording = recording::load(&web.service.pool, &id)
        .await?
        .filter(|r| viewer.admin || r.user == viewer.name)
        .ok_or_else(|| ApiError(ProxyError::NotFound(format!("session {id}"))))?;
    Ok(Json(recording).into_response())
}

/// A page of the proxy in the web app's layout. The page handlers take a `Session` first so an
/// anonymous browser is sent to sign in (the JSON routes answer 401 instead).
fn render(page: &impl Template) -> Result<Html<String>, ApiError> {
    page.render()
        .map(Html)
        .map_err(|error| ApiError(ProxyError::Internal(format!("rendering a page: {error}"))))
}

/// One row of the clusters table on the access page.
struct ClusterRow {
    name: String,
    labels: String,
    groups: String,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage<'a> {
    visitor: &'a Visitor,
    section: &'static str,
    enrolled: bool,
    my_roles: Vec<String>,
    server_hint: String,
    viewer_name: &'a str,
    clusters: Vec<ClusterRow>,
    /// Admins only: every role and who holds it, as editable YAML.
    roles_yaml: Option<String>,
}

async fn access_page(
    State(web): State<Arc<ProxyWeb>>,
    _session: Session,
    visitor: Visitor,
    SignedIn(viewer): SignedIn,
    headers: HeaderMap,
) -> Result<Html<String>, ApiError> {
    let pool = &web.service.pool;
    let enrolled = store::totp_enrolled(pool, &viewer.name).await?;
    let my_roles = store::user_roles(pool, &viewer.name).await?;
    let roles = store::list_roles(pool).await?;
    let held: Vec<&Role> = roles
        .iter()
        .filter(|r| my_roles.contains(&r.name))
        .collect();
    let own_lab = lab_cluster_name(&viewer.name);
    let clusters = store::list_clusters(pool, &web.service.sealer)
        .await?
        .into_iter()
        // A learner sees the clusters their roles reach and their own lab cluster; other
        // learners' lab clusters (and their names) are none of their business.
        .filter(|cluster| {
            viewer.admin
                || cluster.spec.name == own_lab
                || held.iter().any(|role| role.reaches(&cluster.spec.labels))
        })
        .map(|cluster| {
            let labels: Vec<String> = cluster
                .spec
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let groups = match super::roles::principals(&viewer.name, &held, &cluster.spec.labels) {
                Ok(p) => p.groups.join(", "),
                Err(denial) => format!("refused ({denial})"),
            };
            ClusterRow {
                name: cluster.spec.name,
                labels: labels.join(", "),
                groups,
            }
        })
        .collect();
    let roles_yaml = if viewer.admin {
        let users = store::all_user_roles(pool).await?;
        let config = ProxyConfig {
            roles,
            clusters: Vec::new(),
            users: users
                .into_iter()
                .map(|(name, roles)| super::roles::UserRoles { name, roles })
                .collect(),
        };
        Some(
            serde_yaml::to_string(&config)
                .map_err(|error| ApiError(ProxyError::Internal(error.to_string())))?,
        )
    } else {
        None
    };
    render(&AccessPage {
        visitor: &visitor,
        section: "access",
        enrolled,
        my_roles,
        server_hint: server_url(&web.service, &headers),
        viewer_name: &viewer.name,
        clusters,
        roles_yaml,
    })
}

/// The server's URL for `hardlab login --server`: the configured public URL, else the address
/// this browser used (a learner's terminal reaches the server where their browser does).
pub fn server_url(service: &ProxyService, headers: &HeaderMap) -> String {
    if let Some(url) = &service.server_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}")
}

/// Non-admins see only their own events.
fn scoped(viewer: &Viewer, mut filter: AuditFilter) -> AuditFilter {
    if !viewer.admin {
        filter.user = viewer.name.clone();
    }
    filter
}

#[derive(Template)]
#[template(path = "access_audit.html")]
struct AuditPage<'a> {
    visitor: &'a Visitor,
    section: &'static str,
    /// The filter form's fields: name and current value.
    fields: Vec<(&'static str, String)>,
    /// The same filter for the export link, already URL-encoded.
    export_query: String,
    events: Vec<audit::AuditEvent>,
}

async fn audit_page(
    State(web): State<Arc<ProxyWeb>>,
    _session: Session,
    visitor: Visitor,
    SignedIn(viewer): SignedIn,
    Query(filter): Query<AuditFilter>,
) -> Result<Html<String>, ApiError> {
    let filter = scoped(&viewer, filter);
    let events = audit::list(&web.service.pool, &filter).await?;
    let fields = vec![
        ("user", filter.user.clone()),
        ("cluster", filter.cluster.clone()),
        ("verb", filter.verb.clone()),
        ("resource", filter.resource.clone()),
        ("decision", filter.decision.clone()),
        (
            "code",
            filter.code.map(|c| c.to_string()).unwrap_or_default(),
        ),
    ];
    render(&AuditPage {
        visitor: &visitor,
        section: "audit",
        fields,
        export_query: export_query(&filter),
        events,
    })
}

fn export_query(filter: &AuditFilter) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("user", &filter.user),
        ("cluster", &filter.cluster),
        ("verb", &filter.verb),
        ("resource", &filter.resource),
        ("decision", &filter.decision),
    ] {
        if !value.is_empty() {
            query.append_pair(key, value);
        }
    }
    if let Some(code) = filter.code {
        query.append_pair("code", &code.to_string());
    }
    query.finish()
}

async fn audit_export(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let mut filter = scoped(&viewer, filter);
    filter.limit = Some(filter.limit.unwrap_or(100_000));
    let lines = audit::export_json_lines(&web.service.pool, &filter).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"hardlab-audit.jsonl\""),
    );
    Ok((headers, lines).into_response())
}

struct SessionRow {
    id: String,
    started: String,
    user: String,
    cluster: String,
    request_path: String,
}

#[derive(Template)]
#[template(path = "access_sessions.html")]
struct SessionsPage<'a> {
    visitor: &'a Visitor,
    section: &'static str,
    sessions: Vec<SessionRow>,
}

async fn sessions_page(
    State(web): State<Arc<ProxyWeb>>,
    _session: Session,
    visitor: Visitor,
    SignedIn(viewer): SignedIn,
) -> Result<Html<String>, ApiError> {
    let sessions = recording::list_sessions(&web.service.pool)
        .await?
        .into_iter()
        .filter(|s| viewer.admin || s.user == viewer.name)
        .map(|session| SessionRow {
            started: time::OffsetDateTime::from_unix_timestamp(session.started_at / 1000)
                .map(audit::format_time)
                .unwrap_or_default(),
            id: session.id,
            user: session.user,
            cluster: session.cluster,
            request_path: session.request_path,
        })
        .collect();
    render(&SessionsPage {
        visitor: &visitor,
        section: "sessions",
        sessions,
    })
}

#[derive(Template)]
#[template(path = "access_session.html")]
struct SessionPage<'a> {
    visitor: &'a Visitor,
    section: &'static str,
    id: String,
}

/// The replay page; the recording itself comes from `/api/proxy/sessions/{id}`, which checks who
/// may see it.
async fn session_page(
    _session: Session,
    visitor: Visitor,
    SignedIn(_viewer): SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    render(&SessionPage {
        visitor: &visitor,
        section: "sessions",
        id,
    })
}

/// hardlab's own accounts and sessions, as the proxy's routes use them.
pub struct AppAccounts {
    pub db: sqlx::AnyPool,
}

#[async_trait]
impl Accounts for AppAccounts {
    async fn verify_password(&self, user: &str, password: &str) -> bool {
        match crate::web::accounts::check_password(&self.db, user, password).await {
            Ok(valid) => valid,
            Err(error) => {
                tracing::warn!(%error, "proxy login: password check failed");
                false
            }
        }
    }

    async fn viewer(&self, parts: &Parts) -> Option<Viewer> {
        let visitor = parts.extensions.get::<crate::web::session::Visitor>()?;
        let user = visitor.user()?;
        Some(Viewer {
            name: user.username.clone(),
            admin: user.role >= crate::web::accounts::Role::Admin,
            csrf: visitor.csrf.clone(),
        })
    }
}

/// Starts the proxy with hardlab's accounts, for `serve`.
pub async fn start(
    db: sqlx::AnyPool,
    sealer: Arc<crate::db::seal::Sealer>,
    settings: super::service::ProxySettings,
) -> Result<Arc<ProxyWeb>, ProxyError> {
    let service = super::service::ProxyService::start(db.clone(), sealer, settings).await?;
    Ok(Arc::new(ProxyWeb {
        service,
        accounts: Arc::new(AppAccounts { db }),
    }))
}

impl ProxyWeb {
    /// For grading lab 6: puts the learner's cluster behind the proxy as `lab-<user name>` with
    /// the label `env: dev` (upstream through the kubeconfig hardlab already holds for it) and
    /// passes the proxy's state for that cluster to the checks as `Params.extra["proxy_state"]`.
    pub async fn add_lab_state(
        &self,
        user_id: &str,
        kubeconfig: &str,
        params: &mut hardlab_grader::context::Params,
    ) -> Result<(), ProxyError> {
        let pool = &self.service.pool;
        let (username,): (String,) = sqlx::query_as("SELECT username FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
        let cluster = lab_cluster_name(&username);
        let sealer = &self.service.sealer;
        let known = store::list_clusters(pool, sealer)
            .await?
            .into_iter()
            .any(|c| c.spec.name == cluster && c.kubeconfig_yaml == kubeconfig);
        if !known {
            let labels = std::collections::BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
            store::put_cluster(pool, sealer, &cluster, &labels, kubeconfig).await?;
            self.service.reload().await;
        }
        let state = self.service.grading_state(&cluster).await?;
        params
            .extra
            .insert("proxy_state".to_owned(), state.to_string());
        params
            .extra
            .entry("user".to_owned())
            .or_insert_with(|| "bob".to_owned());
        Ok(())
    }
}

/// The proxy's name for a learner's lab cluster: `lab-` and the user name, made DNS-safe.
pub fn lab_cluster_name(username: &str) -> String {
    let safe: String = username
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("lab-{}", safe.trim_matches('-'))
}
