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
use super::tenant::{self, Tenant};
use super::webauthn::{self, FactorProof};
use super::{store, totp};
use crate::web::session::{Session, Visitor};

/// Who is looking, as the web app's session knows them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub admin: bool,
    /// The session's CSRF token, sent back by the page's scripts as `X-CSRF-Token`.
    pub csrf: String,
    /// What binds a security key ceremony to this session (the SHA-256 of its token).
    pub session_binding: String,
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
        .route("/api/proxy/webauthn/step-up", post(webauthn_step_up))
        .route(
            "/api/proxy/webauthn/register/start",
            post(webauthn_register_start),
        )
        .route(
            "/api/proxy/webauthn/register/finish",
            post(webauthn_register_finish),
        )
        .route("/api/proxy/webauthn/remove", post(webauthn_remove))
        .route("/api/proxy/second-factor/reset", post(second_factor_reset))
        .route("/api/proxy/certificates/revoke", post(revoke))
        .route("/api/proxy/config", post(apply_config))
        .route("/api/proxy/tenant", get(tenant_state))
        .route("/api/proxy/tenant/config", post(tenant_apply))
        .route("/api/proxy/tenant/invite", post(tenant_invite))
        .route("/api/proxy/tenant/audit.jsonl", get(tenant_audit_export))
        .route("/api/proxy/tenant/audit/verify", get(tenant_audit_verify))
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

/// `hardlab login`. Into the site's proxy or a tenant's: the site and a tenant's owner sign in
/// with their hardlab account (its password, its second factor); a user the owner invited signs
/// in with the password and authenticator the invitation made, in that tenant only.
async fn login(
    State(web): State<Arc<ProxyWeb>>,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let pool = &web.service.pool;
    let tenant = Tenant::parse(&request.tenant)?;
    let user = request.user.trim().to_ascii_lowercase();
    let owner = tenant::owner_name(pool, &tenant).await?;
    let (password_ok, factor_tenant) = if tenant.is_site()
        || owner.as_deref() == Some(user.as_str())
    {
        let ok = web
            .accounts
            .verify_password(&request.user, &request.password)
            .await;
        (ok, Tenant::site())
    } else {
        let ok = store::check_tenant_user_password(pool, &tenant, &user, &request.password).await?;
        (ok, tenant.clone())
    };
    let answer = web
        .service
        .login(&request, &tenant, &factor_tenant, password_ok)
        .await?;
    tracing::info!(user = %user, tenant = %tenant, "proxy certificate issued");
    Ok(Json(answer).into_response())
}

/// Who administers a tenant in this request: the owner, signed in on the web (their own lab
/// tenant) or calling from their terminal with the token `hardlab login` gave them
/// (`Authorization: Bearer`). The tenant always comes from the server's records, never from the
/// request.
pub struct TenantAdmin {
    pub tenant: Tenant,
    pub actor: String,
}

impl<S> FromRequestParts<S> for TenantAdmin
where
    Arc<ProxyWeb>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let web = Arc::<ProxyWeb>::from_ref(state);
        let pool = &web.service.pool;
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let (tenant, actor) = match bearer {
            Some(token) => store::token_holder(pool, &token)
                .await
                .map_err(|error| ApiError(error).into_response())?,
            None => match web.accounts.viewer(parts).await {
                Some(viewer) => (Tenant::for_learner(&viewer.name), viewer.name),
                None => return Err((StatusCode::UNAUTHORIZED, "sign in first").into_response()),
            },
        };
        let owner = tenant::owner_name(pool, &tenant)
            .await
            .map_err(|error| ApiError(error).into_response())?;
        if owner.is_none() && !tenant.is_site() {
            return Err(ApiError(ProxyError::NotFound(
                "your lab tenant: press Start on lab 6 first, which puts your lab cluster behind the proxy"
                    .into(),
            ))
            .into_response());
        }
        if !tenant::may_administer(&tenant, &actor, false, owner.as_deref()) {
            return Err(ApiError(ProxyError::Unauthorized(format!(
                "only the admin of {tenant} may do this (you are {actor})"
            )))
            .into_response());
        }
        Ok(TenantAdmin { tenant, actor })
    }
}

/// The tenant's roles, who holds them, its invited users and its clusters' labels.
async fn tenant_state(
    State(web): State<Arc<ProxyWeb>>,
    admin: TenantAdmin,
) -> Result<Response, ApiError> {
    let pool = &web.service.pool;
    let clusters: Vec<serde_json::Value> =
        store::list_clusters(pool, &web.service.sealer, &admin.tenant)
            .await?
            .into_iter()
            .map(|c| serde_json::json!({ "name": c.spec.name, "labels": c.spec.labels }))
            .collect();
    Ok(Json(serde_json::json!({
        "tenant": admin.tenant.as_str(),
        "admin": admin.actor,
        "roles": store::list_roles(pool, &admin.tenant).await?,
        "users": store::all_user_roles(pool, &admin.tenant).await?,
        "invited": store::tenant_users(pool, &admin.tenant).await?,
        "clusters": clusters,
    }))
    .into_response())
}

/// Applies roles, user assignments and cluster labels (the config file's format) to the tenant.
async fn tenant_apply(
    State(web): State<Arc<ProxyWeb>>,
    admin: TenantAdmin,
    Json(body): Json<ConfigBody>,
) -> Result<Response, ApiError> {
    let config = ProxyConfig::parse("the roles file", &body.yaml)?;
    store::apply_to_tenant(&web.service.pool, &admin.tenant, &config).await?;
    web.service
        .kube
        .audit()
        .record(
            audit::AuditEvent::admin_action("proxy.apply", &admin.actor, admin.tenant.as_str())
                .in_tenant(&admin.tenant),
        )
        .await?;
    web.service.reload().await;
    Ok(Json(serde_json::json!({
        "applied": true,
        "roles": config.roles.len(),
        "users": config.users.len(),
        "clusters": config.clusters.len(),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct InviteBody {
    user: String,
}

/// Invites a simulated user into the tenant: their password and authenticator secret go to the
/// admin, who plays that user (lab 6's bob).
async fn tenant_invite(
    State(web): State<Arc<ProxyWeb>>,
    admin: TenantAdmin,
    Json(body): Json<InviteBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let user = body.user.trim().to_ascii_lowercase();
    let (password, secret) =
        store::invite_tenant_user(&service.pool, &service.sealer, &admin.tenant, &user).await?;
    service.kube.revocations_changed();
    service
        .kube
        .audit()
        .record(
            audit::AuditEvent::admin_action("user.invite", &admin.actor, &user)
                .in_tenant(&admin.tenant),
        )
        .await?;
    Ok(Json(serde_json::json!({
        "tenant": admin.tenant.as_str(),
        "user": user,
        "password": password,
        "totp_secret": secret,
        "otpauth_uri": totp::otpauth_uri(&user, &secret),
    }))
    .into_response())
}

/// The tenant's audit events as JSON lines (the CLI's `hardlab audit export`).
async fn tenant_audit_export(
    State(web): State<Arc<ProxyWeb>>,
    admin: TenantAdmin,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let mut filter = filter;
    filter.tenant = admin.tenant;
    filter.limit = Some(filter.limit.unwrap_or(100_000));
    let lines = audit::export_json_lines(&web.service.pool, &filter).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

/// Whether the audit chain verifies, as the server (which holds the chain's key) finds it. Only
/// the verdict and the tenant's own count: other tenants' events are none of the caller's
/// business.
async fn tenant_audit_verify(
    State(web): State<Arc<ProxyWeb>>,
    admin: TenantAdmin,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let verification = audit::verify(&service.pool, &service.audit_keys).await?;
    let own = audit::list(
        &service.pool,
        &AuditFilter {
            tenant: admin.tenant.clone(),
            limit: Some(100_000),
            ..AuditFilter::default()
        },
    )
    .await?
    .len();
    let intact = verification.broken_at.is_none();
    let report = if intact {
        format!(
            "audit chain intact: verified by the server; {own} events in {}",
            admin.tenant
        )
    } else {
        "audit chain BROKEN: the server found an event changed, removed or rewritten; an operator must look".to_owned()
    };
    Ok(Json(serde_json::json!({ "intact": intact, "report": report })).into_response())
}

async fn totp_enroll(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(proof): Json<FactorProof>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let proven = current_factor(&web, &viewer, &proof).await?;
    let secret = store::enroll_totp_proven(&service.pool, &service.sealer, &viewer.name).await?;
    record_account_event(&web, "auth.totp_enrol", &viewer.name, &proven).await?;
    let uri = totp::otpauth_uri(&viewer.name, &secret);
    let qr_svg = totp::qr_svg(&uri)?;
    Ok(Json(serde_json::json!({
        "secret": secret,
        "uri": uri,
        "qr_svg": qr_svg,
    }))
    .into_response())
}

/// Checks that the viewer still holds their second factor, if they have one
/// ([`webauthn::require_current_factor`]); says how, for the audit event.
async fn current_factor(
    web: &ProxyWeb,
    viewer: &Viewer,
    proof: &FactorProof,
) -> Result<String, ApiError> {
    let service = &web.service;
    Ok(webauthn::require_current_factor(
        &service.pool,
        &service.sealer,
        &service.security_keys,
        &viewer.name,
        &viewer.session_binding,
        proof,
    )
    .await?)
}

/// Records a change to an account's second factors (or a sign-in with one) in the site's audit
/// log: `user` did it to themselves, `how` says with what.
async fn record_account_event(
    web: &ProxyWeb,
    event: &str,
    user: &str,
    how: &str,
) -> Result<(), ProxyError> {
    let mut entry = audit::AuditEvent::admin_action(event, user, user);
    entry.reason = how.to_owned();
    web.service.kube.audit().record(entry).await?;
    Ok(())
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
        &Tenant::site(),
        &viewer.name,
        &body.code,
        true,
    )
    .await?;
    Ok(Json(serde_json::json!({ "confirmed": true })).into_response())
}

/// Removes the viewer's authenticator app; its current code (or one of their security keys)
/// proves the viewer still holds their second factor.
async fn totp_remove(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(proof): Json<FactorProof>,
) -> Result<Response, ApiError> {
    let proven = current_factor(&web, &viewer, &proof).await?;
    store::remove_totp(&web.service.pool, &viewer.name).await?;
    record_account_event(&web, "auth.totp_remove", &viewer.name, &proven).await?;
    tracing::info!(user = %viewer.name, "authenticator app removed by its owner");
    Ok(Json(serde_json::json!({ "removed": true })).into_response())
}

/// A challenge for the viewer's security keys, answered to prove they still hold one before
/// adding or removing a second factor.
async fn webauthn_step_up(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let options = webauthn::start_authentication(
        &service.pool,
        &service.security_keys,
        &viewer.name,
        &viewer.session_binding,
        webauthn::Purpose::StepUp,
    )
    .await?;
    Ok(Json(options).into_response())
}

#[derive(Deserialize)]
struct RegisterStartBody {
    name: String,
    #[serde(flatten)]
    proof: FactorProof,
}

/// Starts adding a security key or passkey: the current second factor first, if there is one.
async fn webauthn_register_start(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<RegisterStartBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    // A bad name is refused before a code is spent on it.
    webauthn::key_name(&body.name)?;
    current_factor(&web, &viewer, &body.proof).await?;
    let options = webauthn::start_registration(
        &service.pool,
        &service.security_keys,
        &viewer.name,
        &body.name,
        &viewer.session_binding,
    )
    .await?;
    Ok(Json(options).into_response())
}

#[derive(Deserialize)]
struct RegisterFinishBody {
    credential: Box<webauthn_rs::prelude::RegisterPublicKeyCredential>,
}

async fn webauthn_register_finish(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<RegisterFinishBody>,
) -> Result<Response, ApiError> {
    let service = &web.service;
    let key = webauthn::finish_registration(
        &service.pool,
        &service.security_keys,
        &viewer.name,
        &viewer.session_binding,
        &body.credential,
    )
    .await?;
    record_account_event(
        &web,
        "auth.webauthn_enrol",
        &viewer.name,
        &format!("security key {}", key.name),
    )
    .await?;
    tracing::info!(user = %viewer.name, key = %key.name, "security key registered");
    Ok(Json(key).into_response())
}

#[derive(Deserialize)]
struct RemoveKeyBody {
    credential_id: String,
    #[serde(flatten)]
    proof: FactorProof,
}

async fn webauthn_remove(
    State(web): State<Arc<ProxyWeb>>,
    SignedIn(viewer): SignedIn,
    Json(body): Json<RemoveKeyBody>,
) -> Result<Response, ApiError> {
    let proven = current_factor(&web, &viewer, &body.proof).await?;
    let name = webauthn::remove_key(&web.service.pool, &viewer.name, &body.credential_id).await?;
    record_account_event(
        &web,
        "auth.webauthn_remove",
        &viewer.name,
        &format!("security key {name} (proved with {proven})"),
    )
    .await?;
    Ok(Json(serde_json::json!({ "removed": true, "name": name })).into_response())
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
            // A site admin revokes any certificate of the site; anyone their own; a tenant's
            // owner any certificate of their tenant. Others' are "not found", not "forbidden".
            let owner = store::certificate_owner(&service.pool, serial).await?;
            let own_tenant = Tenant::for_learner(&viewer.name);
            let may = match &owner {
                Some((tenant, user)) if tenant.is_site() => viewer.admin || *user == viewer.name,
                Some((tenant, _)) => {
                    *tenant == own_tenant
                        && tenant::owner_name(&service.pool, tenant).await?.as_deref()
                            == Some(viewer.name.as_str())
                }
                None => false,
            };
            if !may {
                return Err(ApiError(ProxyError::NotFound(format!(
                    "certificate with serial {serial}"
                ))));
            }
            let (tenant, user) = service.revoke_certificate(serial).await?;
            service
                .kube
                .audit()
                .record(
                    audit::AuditEvent::admin_action("cert.revoke", &viewer.name, &user)
                        .in_tenant(&tenant),
                )
                .await?;
        }
        (None, Some(user)) => {
            let user = user.trim().to_ascii_lowercase();
            if !viewer.admin && user != viewer.name {
                return Err(forbidden());
            }
            service.revoke_user(&Tenant::site(), &user).await?;
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
    let site = Tenant::site();
    for role in &config.roles {
        store::put_role(&web.service.pool, &site, role).await?;
    }
    for user in &config.users {
        store::set_user_roles(&web.service.pool, &site, &user.name, &user.roles).await?;
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
    // The site's recordings (admins all, others their own), or any of the viewer's own tenant.
    let own_tenant = Tenant::for_learner(&viewer.name);
    let owns_tenant = tenant::owner_name(&web.service.pool, &own_tenant)
        .await?
        .as_deref()
        == Some(viewer.name.as_str());
    let in_site = recording::load(&web.service.pool, &Tenant::site(), &id)
        .await?
        .filter(|r| viewer.admin || r.user == viewer.name);
    let recording = match in_site {
        Some(recording) => Some(recording),
        None if owns_tenant => recording::load(&web.service.pool, &own_tenant, &id).await?,
        None => None,
    }
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

/// The learner's own lab tenant on the access page: they administer it.
struct TenantView {
    name: String,
    clusters: Vec<ClusterRow>,
    my_roles: Vec<String>,
    invited: Vec<String>,
    /// Roles, users and cluster labels as editable YAML.
    yaml: String,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage<'a> {
    visitor: &'a Visitor,
    section: &'static str,
    enrolled: bool,
    /// The viewer's security keys and passkeys.
    keys: Vec<webauthn::KeySummary>,
    /// Whether this server can use security keys (its public URL names a host).
    keys_available: bool,
    my_roles: Vec<String>,
    server_hint: String,
    viewer_name: &'a str,
    clusters: Vec<ClusterRow>,
    /// Admins only: every role of the site and who holds it, as editable YAML.
    roles_yaml: Option<String>,
    lab: Option<TenantView>,
}

fn cluster_rows(
    viewer: &str,
    held: &[&Role],
    clusters: Vec<super::kube::ClusterSpecWithConfig>,
) -> Vec<ClusterRow> {
    clusters
        .into_iter()
        .map(|cluster| {
            let labels: Vec<String> = cluster
                .spec
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let groups = match super::roles::principals(viewer, held, &cluster.spec.labels) {
                Ok(p) => p.groups.join(", "),
                Err(denial) => format!("refused ({denial})"),
            };
            ClusterRow {
                name: cluster.spec.name,
                labels: labels.join(", "),
                groups,
            }
        })
        .collect()
}

fn to_yaml(config: &ProxyConfig) -> Result<String, ApiError> {
    serde_yaml::to_string(config).map_err(|error| ApiError(ProxyError::Internal(error.to_string())))
}

/// The viewer's lab tenant, when they started lab 6.
async fn tenant_view(web: &ProxyWeb, viewer: &Viewer) -> Result<Option<TenantView>, ApiError> {
    let pool = &web.service.pool;
    let own = Tenant::for_learner(&viewer.name);
    if own.is_site()
        || tenant::owner_name(pool, &own).await?.as_deref() != Some(viewer.name.as_str())
    {
        return Ok(None);
    }
    let roles = store::list_roles(pool, &own).await?;
    let users = store::all_user_roles(pool, &own).await?;
    let my_roles = users.get(&viewer.name).cloned().unwrap_or_default();
    let held: Vec<&Role> = roles
        .iter()
        .filter(|r| my_roles.contains(&r.name))
        .collect();
    let stored = store::list_clusters(pool, &web.service.sealer, &own).await?;
    let config = ProxyConfig {
        roles: roles.clone(),
        clusters: stored
            .iter()
            .map(|c| super::roles::ClusterSpec {
                name: c.spec.name.clone(),
                labels: c.spec.labels.clone(),
                kubeconfig: String::new(),
            })
            .collect(),
        users: users
            .into_iter()
            .map(|(name, roles)| super::roles::UserRoles { name, roles })
            .collect(),
    };
    Ok(Some(TenantView {
        name: own.as_str().to_owned(),
        clusters: cluster_rows(&viewer.name, &held, stored),
        my_roles,
        invited: store::tenant_users(pool, &own).await?,
        yaml: to_yaml(&config)?,
    }))
}

async fn access_page(
    State(web): State<Arc<ProxyWeb>>,
    _session: Session,
    visitor: Visitor,
    SignedIn(viewer): SignedIn,
    headers: HeaderMap,
) -> Result<Html<String>, ApiError> {
    let pool = &web.service.pool;
    let site = Tenant::site();
    let enrolled = store::totp_enrolled(pool, &site, &viewer.name).await?;
    let my_roles = store::user_roles(pool, &site, &viewer.name).await?;
    let roles = store::list_roles(pool, &site).await?;
    let held: Vec<&Role> = roles
        .iter()
        .filter(|r| my_roles.contains(&r.name))
        .collect();
    // A learner sees the site's clusters their roles reach; their own lab cluster is in their
    // tenant, below.
    let reachable: Vec<_> = store::list_clusters(pool, &web.service.sealer, &site)
        .await?
        .into_iter()
        .filter(|cluster| {
            viewer.admin || held.iter().any(|role| role.reaches(&cluster.spec.labels))
        })
        .collect();
    let clusters = cluster_rows(&viewer.name, &held, reachable);
    let roles_yaml = if viewer.admin {
        let users = store::all_user_roles(pool, &site).await?;
        Some(to_yaml(&ProxyConfig {
            roles,
            clusters: Vec::new(),
            users: users
                .into_iter()
                .map(|(name, roles)| super::roles::UserRoles { name, roles })
                .collect(),
        })?)
    } else {
        None
    };
    let lab = tenant_view(&web, &viewer).await?;
    render(&AccessPage {
        visitor: &visitor,
        section: "access",
        enrolled,
        keys: webauthn::list_keys(pool, &viewer.name).await?,
        keys_available: web.service.security_keys.available(),
        my_roles,
        server_hint: server_url(&web.service, &headers),
        viewer_name: &viewer.name,
        clusters,
        roles_yaml,
        lab,
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

/// Which log a page shows: `site` (the site's proxy) or `lab` (the viewer's own lab tenant).
#[derive(Debug, Default, Deserialize)]
struct Scope {
    #[serde(default)]
    scope: String,
}

/// The viewer's events: in their own lab tenant all of it (they administer it); in the site's
/// log everything for an admin, their own events for anyone else. A learner who started lab 6
/// and is not an admin sees their lab's log unless they ask for the site's.
async fn scoped(
    web: &ProxyWeb,
    viewer: &Viewer,
    scope: &Scope,
    mut filter: AuditFilter,
) -> Result<(AuditFilter, &'static str), ApiError> {
    let own = Tenant::for_learner(&viewer.name);
    let owns_lab = !own.is_site()
        && tenant::owner_name(&web.service.pool, &own)
            .await?
            .as_deref()
            == Some(viewer.name.as_str());
    let lab = match scope.scope.as_str() {
        "lab" => owns_lab,
        "site" => false,
        _ => owns_lab && !viewer.admin,
    };
    if lab {
        filter.tenant = own;
        return Ok((filter, "lab"));
    }
    filter.tenant = Tenant::site();
    if !viewer.admin {
        filter.user = viewer.name.clone();
    }
    Ok((filter, "site"))
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
    /// `site` or `lab`: which log this is.
    scope: &'static str,
}

async fn audit_page(
    State(web): State<Arc<ProxyWeb>>,
    _session: Session,
    visitor: Visitor,
    SignedIn(viewer): SignedIn,
    Query(scope): Query<Scope>,
    Query(filter): Query<AuditFilter>,
) -> Result<Html<String>, ApiError> {
    let (filter, scope) = scoped(&web, &viewer, &scope, filter).await?;
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
    let mut export = export_query(&filter);
    export.push_str(if export.is_empty() {
        "scope="
    } else {
        "&scope="
    });
    export.push_str(scope);
    render(&AuditPage {
        visitor: &visitor,
        section: "audit",
        fields,
        export_query: export,
        events,
        scope,
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
    Query(scope): Query<Scope>,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let (mut filter, _) = scoped(&web, &viewer, &scope, filter).await?;
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
    let mut listed: Vec<recording::SessionSummary> =
        recording::list_sessions(&web.service.pool, &Tenant::site())
            .await?
            .into_iter()
            .filter(|s| viewer.admin || s.user == viewer.name)
            .collect();
    let own = Tenant::for_learner(&viewer.name);
    if !own.is_site()
        && tenant::owner_name(&web.service.pool, &own)
            .await?
            .as_deref()
            == Some(viewer.name.as_str())
    {
        listed.extend(recording::list_sessions(&web.service.pool, &own).await?);
    }
    let sessions = listed
        .into_iter()
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
        let session = visitor.session.as_deref()?;
        let user = &session.user;
        Some(Viewer {
            name: user.username.clone(),
            admin: user.role >= crate::web::accounts::Role::Admin,
            csrf: visitor.csrf.clone(),
            session_binding: session.token_hash().to_owned(),
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

/// A learner's lab cluster as the proxy knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabCluster {
    pub tenant: Tenant,
    pub cluster: String,
    pub username: String,
}

impl ProxyWeb {
    /// Records a web sign-in that used a second factor (`how`: which) in the site's audit log.
    pub async fn record_sign_in(&self, user: &str, how: &str) -> Result<(), ProxyError> {
        record_account_event(self, "auth.signin", user, how).await
    }

    /// Puts the learner's lab cluster behind the proxy in their tenant (made if need be) as
    /// `lab-<user name>`, upstream through the kubeconfig hardlab holds for it: with the label
    /// `env: dev` when it is new, keeping the labels the learner set when it is already there.
    /// Idempotent; called at Start and again before grading.
    pub async fn register_lab_cluster(
        &self,
        user_id: &str,
        kubeconfig: &str,
    ) -> Result<LabCluster, ProxyError> {
        let pool = &self.service.pool;
        let (username,): (String,) = sqlx::query_as("SELECT username FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
        let tenant = tenant::ensure_learner_tenant(pool, user_id, &username).await?;
        let cluster = lab_cluster_name(&username);
        let sealer = &self.service.sealer;
        let existing = store::list_clusters(pool, sealer, &tenant)
            .await?
            .into_iter()
            .find(|c| c.spec.name == cluster);
        let labels = match &existing {
            Some(known) if known.kubeconfig_yaml == kubeconfig => None,
            Some(known) => Some(known.spec.labels.clone()),
            None => Some(std::collections::BTreeMap::from([(
                "env".to_owned(),
                "dev".to_owned(),
            )])),
        };
        if let Some(labels) = labels {
            store::put_cluster(pool, sealer, &tenant, &cluster, &labels, kubeconfig).await?;
            self.service.reload().await;
        }
        Ok(LabCluster {
            tenant,
            cluster,
            username: username.trim().to_ascii_lowercase(),
        })
    }

    /// For grading lab 6: the learner's cluster behind the proxy ([`Self::register_lab_cluster`])
    /// and the proxy's state of their tenant for it, passed to the checks as
    /// `Params.extra["proxy_state"]`.
    pub async fn add_lab_state(
        &self,
        user_id: &str,
        kubeconfig: &str,
        params: &mut hardlab_grader::context::Params,
    ) -> Result<(), ProxyError> {
        let lab = self.register_lab_cluster(user_id, kubeconfig).await?;
        let state = self
            .service
            .grading_state(&lab.tenant, &lab.cluster)
            .await?;
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

/// Where the node's `hardlab` client finds its server (see [`node_client_files`]).
pub const NODE_CLIENT_ENV: &str = "/etc/hardlab/client.env";

/// The `hardlab` client's configuration for a learner's node, written by the server from its
/// own settings: the server's public URL, the learner's tenant and name, their cluster's name in
/// the proxy. The server never reads it back; for the client it only names defaults.
pub fn node_client_files(
    server_url: &str,
    lab: &LabCluster,
) -> Vec<crate::clusters::routes::NodeFile> {
    let env = format!(
        "# Written by hardlab when this lab started. hardlab login reads it for its defaults.\n\
         HARDLAB_SERVER={}\nHARDLAB_TENANT={}\nHARDLAB_USER={}\nLAB_CLUSTER={}\n",
        server_url.trim_end_matches('/'),
        lab.tenant.as_str(),
        lab.username,
        lab.cluster
    );
    let profile = format!(
        "# hardlab's client settings for login shells.\nset -a\n. {NODE_CLIENT_ENV}\nset +a\n"
    );
    vec![
        crate::clusters::routes::NodeFile {
            path: NODE_CLIENT_ENV.to_owned(),
            contents: env.into_bytes(),
        },
        crate::clusters::routes::NodeFile {
            path: "/etc/profile.d/hardlab.sh".to_owned(),
            contents: profile.into_bytes(),
        },
    ]
}

/// The proxy's name for a learner's lab cluster: `lab-` and the user name, made DNS-safe.
pub fn lab_cluster_name(username: &str) -> String {
    format!("lab-{}", tenant::dns_safe(username))
}
