//! The proxy's web side: the login endpoint `hardlab login` calls, TOTP enrolment, the admin's
//! roles editor, the audit log with filters and JSON-lines export, and session replay.
//!
//! State-changing browser calls are JSON `fetch` requests carrying the session's CSRF token in
//! `X-CSRF-Token` (the web app's session layer checks it). The login endpoint takes no cookie.

use std::sync::Arc;

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
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
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

async fn totp_enroll(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    _json: Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let secret = store::enroll_totp(&web.service.pool, &viewer.name).await?;
    Ok(Json(serde_json::json!({
        "secret": secret,
        "uri": totp::otpauth_uri(&viewer.name, &secret),
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
    store::check_totp(&web.service.pool, &viewer.name, &body.code, true).await?;
    Ok(Json(serde_json::json!({ "confirmed": true })).into_response())
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

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

fn page(title: &str, csrf: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"csrf-token\" content=\"{csrf}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · hardlab</title><style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">hardlab</a> · <a href=\"/access\">Access</a> · \
         <a href=\"/access/audit\">Audit log</a> · <a href=\"/access/sessions\">Sessions</a></nav>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
        csrf = escape(csrf)
    ))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff}\
nav{padding:.6rem 1rem;background:#1d2a3a}nav a{color:#fff}main{padding:1rem;max-width:72rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #ccc;padding:.3rem;text-align:left}\
textarea{width:100%;min-height:16rem;font-family:monospace}code,pre{background:#f2f2f2;padding:.1rem .3rem}\
.deny{color:#a00}.ok{color:#060}form.filters input{width:8rem}label{margin-right:.5rem}\
@media (max-width:600px){table{font-size:.75rem}form.filters input{width:100%}}";

const SCRIPT: &str = r#"<script>
async function postJson(url, body){const r=await fetch(url,{method:'POST',headers:{'Content-Type':'application/json','X-CSRF-Token':document.querySelector('meta[name=csrf-token]').content},body:JSON.stringify(body)});const j=await r.json().catch(()=>({}));if(!r.ok)throw new Error(j.error||r.status);return j;}
async function enroll(){const j=await postJson('/api/proxy/totp/enroll',{});document.getElementById('secret').textContent=j.secret;document.getElementById('uri').textContent=j.uri;document.getElementById('confirm').hidden=false;}
async function confirmCode(){try{await postJson('/api/proxy/totp/confirm',{code:document.getElementById('code').value});document.getElementById('totp-status').textContent='Confirmed. hardlab login will ask for this code.';}catch(e){document.getElementById('totp-status').textContent='Not accepted: '+e.message;}}
async function applyRoles(){const out=document.getElementById('apply-status');try{await postJson('/api/proxy/config',{yaml:document.getElementById('roles').value});out.textContent='Applied.';}catch(e){out.textContent='Refused: '+e.message;}}
</script>"#;

async fn access_page(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
) -> Result<Html<String>, ApiError> {
    let pool = &web.service.pool;
    let enrolled = store::totp_enrolled(pool, &viewer.name).await?;
    let my_roles = store::user_roles(pool, &viewer.name).await?;
    let roles = store::list_roles(pool).await?;
    let clusters = store::list_clusters(pool).await?;
    let mut body = String::new();
    body.push_str(&format!(
        "<h2>Second factor</h2><p id=\"totp-status\">{}</p>\
         <button onclick=\"enroll()\">{}</button>\
         <p>Secret: <code id=\"secret\"></code><br>URI: <code id=\"uri\"></code></p>\
         <p id=\"confirm\" hidden><label for=\"code\">Code from the app</label>\
         <input id=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\"> \
         <button onclick=\"confirmCode()\">Confirm</button></p>",
        if enrolled {
            "An authenticator app is enrolled."
        } else {
            "No authenticator app yet: enrol one to use hardlab login."
        },
        if enrolled { "Replace it" } else { "Enrol" }
    ));
    body.push_str(&format!(
        "<h2>Your roles</h2><p>{}</p><p>Log in from a terminal: <code>hardlab login --server {} --user {}</code>, then \
         <code>hardlab kube login --cluster NAME</code>.</p>",
        if my_roles.is_empty() {
            "none".to_owned()
        } else {
            escape(&my_roles.join(", "))
        },
        escape(&server_hint()),
        escape(&viewer.name)
    ));
    body.push_str("<h2>Clusters behind the proxy</h2><table><tr><th>Name</th><th>Labels</th><th>Your groups there</th></tr>");
    let held: Vec<&Role> = roles
        .iter()
        .filter(|r| my_roles.contains(&r.name))
        .collect();
    for cluster in &clusters {
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
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&cluster.spec.name),
            escape(&labels.join(", ")),
            escape(&groups)
        ));
    }
    body.push_str("</table>");
    if viewer.admin {
        let users = store::all_user_roles(pool).await?;
        let config = ProxyConfig {
            roles,
            clusters: Vec::new(),
            users: users
                .into_iter()
                .map(|(name, roles)| super::roles::UserRoles { name, roles })
                .collect(),
        };
        let yaml = serde_yaml::to_string(&config)
            .map_err(|error| ApiError(ProxyError::Internal(error.to_string())))?;
        body.push_str(&format!(
            "<h2>Roles and who holds them (admin)</h2>\
             <p>Teleport's field names: <code>kubernetes_labels</code> (which clusters), <code>kubernetes_groups</code>, \
             <code>kubernetes_users</code>, <code>max_session_ttl</code>. Roles listed here replace those of the same name; \
             each listed user gets exactly the roles listed.</p>\
             <label for=\"roles\" hidden>Roles YAML</label><textarea id=\"roles\" spellcheck=\"false\">{}</textarea>\
             <p><button onclick=\"applyRoles()\">Apply</button> <span id=\"apply-status\"></span></p>",
            escape(&yaml)
        ));
    }
    body.push_str(SCRIPT);
    Ok(page("Access", &viewer.csrf, &body))
}

fn server_hint() -> String {
    std::env::var("HARDLAB_PUBLIC_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned())
}

/// Non-admins see only their own events.
fn scoped(viewer: &Viewer, mut filter: AuditFilter) -> AuditFilter {
    if !viewer.admin {
        filter.user = viewer.name.clone();
    }
    filter
}

async fn audit_page(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Query(filter): Query<AuditFilter>,
) -> Result<Html<String>, ApiError> {
    let filter = scoped(&viewer, filter);
    let events = audit::list(&web.service.pool, &filter).await?;
    let field = |name: &str, value: &str| {
        format!(
            "<label>{name} <input name=\"{name}\" value=\"{}\"></label>",
            escape(value)
        )
    };
    let mut body = format!(
        "<form class=\"filters\" method=\"get\">{}{}{}{}{}{}<button>Filter</button></form>",
        field("user", &filter.user),
        field("cluster", &filter.cluster),
        field("verb", &filter.verb),
        field("resource", &filter.resource),
        field("decision", &filter.decision),
        field(
            "code",
            &filter.code.map(|c| c.to_string()).unwrap_or_default()
        ),
    );
    let query = serde_urlencoded_filter(&filter);
    body.push_str(&format!(
        "<p><a href=\"/access/audit.jsonl?{query}\">Export as JSON lines</a> · {} events shown, newest first</p>\
         <table><tr><th>#</th><th>Time</th><th>What happened</th><th>Cluster</th><th>Namespace</th><th>Name</th>\
         <th>Decision</th><th>From</th><th>Session</th></tr>",
        events.len()
    ));
    for event in &events {
        let class = if event.response_code >= 400 {
            "deny"
        } else {
            "ok"
        };
        let session = if event.session_id.is_empty() {
            String::new()
        } else {
            format!(
                "<a href=\"/access/sessions/{0}\">replay</a>",
                escape(&event.session_id)
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{session}</td></tr>",
            event.seq,
            escape(&event.time),
            escape(&event.summary()),
            escape(&event.kubernetes_cluster),
            escape(&event.resource_namespace),
            escape(&event.resource_name),
            escape(event.decision.as_str()),
            escape(&event.addr_remote),
        ));
    }
    body.push_str("</table>");
    Ok(page("Audit log", &viewer.csrf, &body))
}

fn serde_urlencoded_filter(filter: &AuditFilter) -> String {
    let mut pairs = Vec::new();
    for (key, value) in [
        ("user", &filter.user),
        ("cluster", &filter.cluster),
        ("verb", &filter.verb),
        ("resource", &filter.resource),
        ("decision", &filter.decision),
    ] {
        if !value.is_empty() {
            let encoded: String = value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            pairs.push(format!("{key}={encoded}"));
        }
    }
    if let Some(code) = filter.code {
        pairs.push(format!("code={code}"));
    }
    pairs.join("&amp;")
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

async fn sessions_page(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
) -> Result<Html<String>, ApiError> {
    let sessions = recording::list_sessions(&web.service.pool).await?;
    let mut body = String::from(
        "<p>Interactive exec and attach sessions through the proxy, recorded as the bytes each way with timings.</p>\
         <table><tr><th>Started</th><th>User</th><th>Cluster</th><th>Request</th><th></th></tr>",
    );
    for session in sessions
        .iter()
        .filter(|s| viewer.admin || s.user == viewer.name)
    {
        let started = time::OffsetDateTime::from_unix_timestamp(session.started_at / 1000)
            .map(audit::format_time)
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><a href=\"/access/sessions/{}\">replay</a></td></tr>",
            escape(&started),
            escape(&session.user),
            escape(&session.cluster),
            escape(&session.request_path),
            escape(&session.id)
        ));
    }
    body.push_str("</table>");
    Ok(page("Sessions", &viewer.csrf, &body))
}

async fn session_page(SignedIn(viewer): SignedIn, Path(id): Path<String>) -> Html<String> {
    let body = format!(
        "<p><button id=\"play\">Play</button> <span id=\"meta\"></span></p><pre id=\"screen\" aria-live=\"polite\"></pre>\
         <script>\
         const id={id};\
         document.getElementById('play').onclick=async()=>{{\
           const r=await fetch('/api/proxy/sessions/'+encodeURIComponent(id));const s=await r.json();\
           const screen=document.getElementById('screen');screen.textContent='';\
           document.getElementById('meta').textContent=s.user+' on '+s.cluster+' ('+s.protocol+')';\
           let last=0;for(const c of s.chunks){{if(c.direction!=='to_client'||!c.text)continue;\
             await new Promise(res=>setTimeout(res,Math.min(c.offset_ms-last,2000)));last=c.offset_ms;screen.textContent+=c.text;}}\
         }};</script>",
        // JSON string, with `<` escaped so the id cannot close the script element.
        id = serde_json::to_string(&id)
            .unwrap_or_else(|_| "\"\"".into())
            .replace('<', "\\u003c")
    );
    page("Session replay", &viewer.csrf, &body)
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

/// Starts the proxy (settings from `HARDLAB_PROXY_*`) with hardlab's accounts, for `serve`.
pub async fn start(db: sqlx::AnyPool) -> Result<Arc<ProxyWeb>, ProxyError> {
    let service =
        super::service::ProxyService::start(db.clone(), super::service::ProxySettings::from_env()?)
            .await?;
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
        let known = store::list_clusters(pool)
            .await?
            .into_iter()
            .any(|c| c.spec.name == cluster && c.kubeconfig_yaml == kubeconfig);
        if !known {
            let labels = std::collections::BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
            store::put_cluster(pool, &cluster, &labels, kubeconfig).await?;
            self.service.reload().await;
        }
        let state = super::service::grading_state(pool, &cluster).await?;
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
