//! Sessions and CSRF.
//!
//! The session cookie holds a random token; the database keeps only its SHA-256. Every request
//! that changes something (POST, PUT, PATCH, DELETE) must carry the CSRF token, either as the form
//! field `csrf` or as the `X-CSRF-Token` header (scripts read it from
//! `<meta name="csrf-token">`). Signed-in visitors use their session's token; anonymous forms
//! (sign-in, sign-up, setup) use a random token in the `hardlab_csrf` cookie (double submit).
//! A request with no hardlab cookie and a JSON body is exempt: a browser cannot send one
//! cross-site without a CORS preflight, which this server never grants, and command-line clients
//! (`hardlab login`) authenticate without cookies.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::users::{Role, User};
use super::{AppState, WebError};
use crate::db::{now_ms, random_id};

pub const SESSION_COOKIE: &str = "hardlab_session";
pub const CSRF_COOKIE: &str = "hardlab_csrf";
const SESSION_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;
/// Forms larger than this are refused before the CSRF field is looked for.
const MAX_FORM_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    token_hash: String,
}

/// Who is asking: put into every request's extensions by [`session_layer`].
#[derive(Debug, Clone)]
pub struct Visitor {
    pub session: Option<Arc<Session>>,
    /// The CSRF token to put into forms on the page being rendered.
    pub csrf: String,
}

impl Visitor {
    pub fn user(&self) -> Option<&User> {
        self.session.as_deref().map(|s| &s.user)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| WebError::Internal(crate::Error::Config("session layer missing".into())))
    }
}

/// A signed-in visitor; anonymous visitors are sent to the sign-in page.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        match visitor.session {
            Some(session) => Ok((*session).clone()),
            None => Err(WebError::SignInRequired {
                next: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            }),
        }
    }
}

impl Session {
    /// The SHA-256 of the session's token, as the database keeps it: what binds a security key
    /// ceremony to this browser's session.
    pub fn token_hash(&self) -> &str {
        &self.token_hash
    }

    pub fn is_staff(&self) -> bool {
        self.user.role >= Role::Instructor
    }

    /// Staff pages answer 404 to everyone else, like another learner's data.
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(WebError::NotFound)
        }
    }
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The value of cookie `name` in these request headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The signed-in session of these request headers, if any (also used by other subsystems'
/// routes, e.g. the terminal's WebSocket).
pub async fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, WebError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = hash_token(token);
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.role, s.csrf_token FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(&token_hash)
    .bind(now_ms())
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(|(id, username, role, csrf)| Session {
        user: User {
            id,
            username,
            role: Role::parse(&role),
        },
        csrf,
        token_hash,
    }))
}

/// Starts a session for a user who just proved who they are; returns the `Set-Cookie` value.
pub async fn start(state: &AppState, user_id: &str) -> Result<HeaderValue, WebError> {
    let token = random_id() + &random_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_token(&token))
    .bind(user_id)
    .bind(random_id())
    .bind(now)
    .bind(now + SESSION_LIFETIME_MS)
    .execute(&state.db)
    .await?;
    set_cookie(
        state,
        SESSION_COOKIE,
        &token,
        Some(SESSION_LIFETIME_MS / 1000),
    )
}

pub async fn end(state: &AppState, session: &Session) -> Result<HeaderValue, WebError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(&session.token_hash)
        .execute(&state.db)
        .await?;
    set_cookie(state, SESSION_COOKIE, "", Some(0))
}

/// The cookie that carries a sign-in between its password and its security key: random, HttpOnly,
/// sent only to `/signin` paths, only by this site, and only for as long as the challenge lives.
pub const SIGNIN_COOKIE: &str = "hardlab_signin";

pub fn signin_cookie(
    state: &AppState,
    token: &str,
    max_age_secs: i64,
) -> Result<HeaderValue, WebError> {
    let mut cookie = format!(
        "{SIGNIN_COOKIE}={token}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    if state.config.cookies_secure() {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie)
        .map_err(|_| WebError::Internal(crate::Error::InvalidInput("cookie value".into())))
}

fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    max_age_secs: Option<i64>,
) -> Result<HeaderValue, WebError> {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_secs {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if state.config.cookies_secure() {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie)
        .map_err(|_| WebError::Internal(crate::Error::InvalidInput("cookie value".into())))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Finds the visitor's session, enforces CSRF on changing requests, and hands an anonymous
/// visitor a CSRF cookie for the forms on the page.
pub async fn session_layer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match handle(state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, Response> {
    let path = request.uri().path();
    if path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Ok(next.run(request).await);
    }
    let session = lookup(&state, request.headers())
        .await
        .map_err(IntoResponse::into_response)?
        .map(Arc::new);
    let anonymous_token = cookie(request.headers(), CSRF_COOKIE)
        .filter(|t| {
            t.len() >= 16
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned);
    let expected = match (&session, &anonymous_token) {
        (Some(session), _) => Some(session.csrf.clone()),
        (None, Some(token)) => Some(token.clone()),
        (None, None) => None,
    };
    let changing = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let request = if changing {
        verify_csrf(request, expected.as_deref()).await?
    } else {
        request
    };
    let mut fresh_cookie = None;
    let csrf = match (&session, anonymous_token) {
        (Some(session), _) => session.csrf.clone(),
        (None, Some(token)) => token,
        (None, None) => {
            let token = random_id();
            fresh_cookie = Some(token.clone());
            token
        }
    };
    let mut request = request;
    request.extensions_mut().insert(Visitor { session, csrf });
    let mut response = next.run(request).await;
    if let Some(token) = fresh_cookie
        && let Ok(value) = set_cookie(&state, CSRF_COOKIE, &token, None)
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn verify_csrf(request: Request, expected: Option<&str>) -> Result<Request, Response> {
    let has_our_cookie = cookie(request.headers(), SESSION_COOKIE).is_some()
        || cookie(request.headers(), CSRF_COOKIE).is_some();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !has_our_cookie && content_type.starts_with("application/json") {
        return Ok(request);
    }
    let refuse = || WebError::Csrf.into_response();
    let expected = expected.ok_or_else(refuse)?;
    if let Some(sent) = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if constant_time_eq(sent, expected) {
            Ok(request)
        } else {
            Err(refuse())
        };
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(refuse());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        // Past this limit or the app's (`max_request_body_bytes`, which may be lower).
        .map_err(|_| super::payload_too_large(None))?;
    let sent = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned());
    match sent {
        Some(sent) if constant_time_eq(&sent, expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refuse()),
    }
}
