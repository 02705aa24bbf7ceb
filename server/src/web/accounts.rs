//! Accounts: sign-up (in the mode `signup` sets, see [`super::signup`]), sign-in with argon2id
//! and throttling, sign-out, the first admin.
//!
//! Wrong passwords are counted twice: per (account, client address), tightly, so one attacker's
//! address is slowed down after a few guesses; and per account, more loosely, so guesses spread
//! over many addresses still end. A classroom behind one NAT shares one address but not
//! accounts, so one learner's typos never block another.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use super::client_address::{ClientAddress, throttle_identity};
use super::error::safe_next;
use super::session::{self, Session, Visitor};
use super::signup::{self, Claim, SignupMode, SignupProof, SignupRefusal};
use super::{AppState, WebError};
use crate::config::Config;
use crate::db::{now_ms, random_id};
use crate::{Error, Result};

pub use super::users::{Role, User};

/// Wrong passwords for one account from one client address before that pair is blocked.
pub const FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS: i64 = 5;
/// Wrong passwords for one account from all addresses together before the account is blocked.
pub const FREE_FAILURES_PER_ACCOUNT: i64 = 20;
/// Wrong join codes from one client address before it is blocked.
pub const FREE_FAILURES_JOIN_CODE: i64 = 5;
/// After the free failures: 30 s, doubling per further failure, at most 15 min.
const FIRST_BLOCK_MS: i64 = 30_000;
const MAX_BLOCK_MS: i64 = 15 * 60_000;
/// Failures older than this are forgotten.
const FAILURE_WINDOW_MS: i64 = 15 * 60_000;

/// The counters one sign-in attempt is judged by.
struct ThrottleKeys {
    account: String,
    account_and_address: String,
}

impl ThrottleKeys {
    /// `from` is the client address's throttling identity, or the name of another way in.
    fn new(username: &str, from: &str) -> Self {
        ThrottleKeys {
            account: format!("account:{username}"),
            account_and_address: format!("account-address:{username} {from}"),
        }
    }

    async fn wait_ms(&self, db: &AnyPool, now: i64) -> Result<i64> {
        Ok(blocked_for(db, &self.account, now)
            .await?
            .max(blocked_for(db, &self.account_and_address, now).await?))
    }

    async fn failed(&self, db: &AnyPool, now: i64) -> Result<()> {
        record_failure(db, &self.account, FREE_FAILURES_PER_ACCOUNT, now).await?;
        record_failure(
            db,
            &self.account_and_address,
            FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS,
            now,
        )
        .await
    }

    async fn succeeded(&self, db: &AnyPool) -> Result<()> {
        clear_failures(db, &self.account).await?;
        clear_failures(db, &self.account_and_address).await
    }
}

/// Warnings `serve` prints at start about the sign-up settings: `open` sign-up with privileged
/// nodes hands root on the Docker host to whoever finds the server.
pub fn startup_warnings(config: &Config, privileged_nodes: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.signup == SignupMode::Open && privileged_nodes {
        warnings.push(
            "signup is open and learners' nodes are privileged containers: anyone who can reach              this server can create an account, start a cluster and be root on the Docker host.              Use signup invite or code (HARDLAB_SIGNUP), or unprivileged nodes."
                .to_owned(),
        );
    }
    warnings
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signin/key", post(signin_with_key))
        .route("/signup", get(signup_page).post(signup))
        .route("/signout", post(signout))
        .route("/setup", get(setup_page).post(setup))
        .merge(signup::routes())
}

pub(super) fn normalize_username(name: &str) -> Result<String> {
    let name = name.trim().to_ascii_lowercase();
    let valid = (3..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if valid {
        Ok(name)
    } else {
        Err(Error::InvalidInput(
            "a username has 3 to 40 characters: letters, digits, '.', '_' or '-'".into(),
        ))
    }
}

fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < 10 {
        return Err(Error::InvalidInput(
            "a password needs at least 10 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::InvalidInput("that password is too long".into()));
    }
    Ok(())
}

/// argon2id with the crate's default (OWASP) parameters, off the async threads.
pub async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| Error::PasswordHash(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::PasswordHash(e.to_string()))
    })
    .await
    .map_err(|e| Error::PasswordHash(e.to_string()))?
}

/// Checks a password against a stored hash; without one (no such account) it checks against a
/// hash of a random password, so an unknown name takes as long as a wrong password.
/// Whether `password` matches the stored argon2 hash; `None` (no such user) costs the same time.
pub async fn password_matches(password: &str, stored: Option<&str>) -> bool {
    verify_password(password, stored).await
}

async fn verify_password(password: &str, stored: Option<&str>) -> bool {
    let password = password.to_owned();
    let stored = stored.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let stored = stored.as_deref().unwrap_or_else(|| DUMMY_HASH.as_str());
        let matches = PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        matches && stored != DUMMY_HASH.as_str()
    })
    .await
    .unwrap_or(false)
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>());
    salt.ok()
        .and_then(|salt| {
            Argon2::default()
                .hash_password(random_id().as_bytes(), &salt)
                .ok()
                .map(|hash| hash.to_string())
        })
        .unwrap_or_default()
});

pub async fn create_user(db: &AnyPool, username: &str, password: &str, role: Role) -> Result<User> {
    let username = normalize_username(username)?;
    check_password_strength(password)?;
    let hash = hash_password(password).await?;
    let id = random_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&username)
    .bind(&hash)
    .bind(role.as_str())
    .bind(now_ms())
    .execute(db)
    .await;
    match inserted {
        Ok(_) => Ok(User { id, username, role }),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::InvalidInput(
            format!("the username {username:?} is taken"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn admin_exists(db: &AnyPool) -> Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM users WHERE role = 'admin' LIMIT 1")
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

/// `hardlab admin create-user NAME [--admin|--instructor]`.
pub async fn create_user_command(
    config: &Config,
    username: &str,
    admin: bool,
    instructor: bool,
) -> Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    let password = read_password()?;
    let role = if admin {
        Role::Admin
    } else if instructor {
        Role::Instructor
    } else {
        Role::Learner
    };
    let user = create_user(&db, username, &password, role).await?;
    println!("created {} ({})", user.username, role.as_str());
    Ok(())
}

/// One line from standard input; on a terminal, prompted twice with echo off.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("<stdin>", e))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let prompt = |label: &str| -> Result<String> {
        eprint!("{label}: ");
        let _ = std::io::stderr().flush();
        let echo_off = std::process::Command::new("stty").arg("-echo").status();
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        if echo_off.is_ok() {
            let _ = std::process::Command::new("stty").arg("echo").status();
        }
        eprintln!();
        read.map_err(|e| Error::io("<stdin>", e))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let first = prompt("Password")?;
    let second = prompt("Repeat the password")?;
    if first != second {
        return Err(Error::InvalidInput("the passwords differ".into()));
    }
    Ok(first)
}

/// When there is no admin yet, stores a fresh one-time token and returns it (printed once on the
/// console by `serve`; only its hash is kept).
pub async fn issue_setup_token(db: &AnyPool) -> Result<Option<String>> {
    if admin_exists(db).await? {
        sqlx::query("DELETE FROM setup_tokens").execute(db).await?;
        return Ok(None);
    }
    let token = random_id();
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM setup_tokens")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
        .bind(sha256_hex(&token))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(token))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Checks a username and password for another way in (`hardlab login` through the access proxy),
/// under the same per-account throttling as the sign-in form; that way in counts as one client
/// address of its own.
pub async fn check_password(db: &AnyPool, username: &str, password: &str) -> Result<bool> {
    let now = now_ms();
    let username = username.trim().to_ascii_lowercase();
    let keys = ThrottleKeys::new(&username, "access-proxy");
    if keys.wait_ms(db, now).await? > 0 {
        return Ok(false);
    }
    let row: Option<(String,)> =
        sqlx::query_as("SELECT password_hash FROM users WHERE username = $1")
            .bind(&username)
            .fetch_optional(db)
            .await?;
    let valid = verify_password(password, row.as_ref().map(|(hash,)| hash.as_str())).await;
    if valid {
        keys.succeeded(db).await?;
    } else {
        keys.failed(db, now).await?;
    }
    Ok(valid)
}

// ---- throttling ----

/// Milliseconds until this key may try again (0: now).
async fn blocked_for(db: &AnyPool, key: &str, now: i64) -> Result<i64> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT blocked_until FROM sign_in_failures WHERE throttle_key = $1")
            .bind(key)
            .fetch_optional(db)
            .await?;
    Ok(row.map_or(0, |(until,)| (until - now).max(0)))
}

async fn record_failure(db: &AnyPool, key: &str, free_failures: i64, now: i64) -> Result<()> {
    // Forget failures from long ago, this key's and every other one's: names and addresses that
    // fail once are never looked up again, and made-up names would otherwise grow the table
    // without end. Then count this one atomically (several instances may count the same
    // account at once).
    sqlx::query("DELETE FROM sign_in_failures WHERE last_failure_at < $1 AND blocked_until < $2")
        .bind(now - FAILURE_WINDOW_MS)
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at, blocked_until) \
         VALUES ($1, 1, $2, 0) ON CONFLICT (throttle_key) DO UPDATE \
         SET failures = sign_in_failures.failures + 1, last_failure_at = $2",
    )
    .bind(key)
    .bind(now)
    .execute(db)
    .await?;
    let (failures,): (i64,) =
        sqlx::query_as("SELECT failures FROM sign_in_failures WHERE throttle_key = $1")
            .bind(key)
            .fetch_one(db)
            .await?;
    if failures >= free_failures {
        let doublings = u32::try_from((failures - free_failures).min(10)).unwrap_or(10);
        let block = (FIRST_BLOCK_MS << doublings).min(MAX_BLOCK_MS);
        sqlx::query("UPDATE sign_in_failures SET blocked_until = $1 WHERE throttle_key = $2")
            .bind(now + block)
            .bind(key)
            .execute(db)
            .await?;
    }
    Ok(())
}

async fn clear_failures(db: &AnyPool, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM sign_in_failures WHERE throttle_key = $1")
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}

// ---- pages ----

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage<'a> {
    visitor: &'a Visitor,
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    signup: SignupMode,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    visitor: &'a Visitor,
    username: &'a str,
    error: Option<&'a str>,
    mode: SignupMode,
    /// The form is shown (else only the explanation or the refusal).
    show_form: bool,
    invite: &'a str,
    /// The join code field is shown (mode `code` without an invitation).
    ask_code: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    visitor: &'a Visitor,
    token: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    /// The link was used already (or never was one): say so instead of showing the form.
    used: bool,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn signin_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref().unwrap_or("/"));
    if visitor.session.is_some() {
        return Ok(Redirect::to(next).into_response());
    }
    let page = SigninPage {
        visitor: &visitor,
        next,
        username: "",
        error: None,
        signup: state.config.signup,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
struct SigninForm {
    username: String,
    password: String,
    /// The authenticator code, required once the account has a second factor.
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

async fn signin(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    Form(form): Form<SigninForm>,
) -> Result<Response, WebError> {
    let now = now_ms();
    let username = form.username.trim().to_ascii_lowercase();
    let keys = ThrottleKeys::new(&username, &throttle_identity(address));
    let wait_ms = keys.wait_ms(&state.db, now).await?;
    if wait_ms > 0 {
        tracing::warn!(user = %username, "sign-in refused: too many wrong passwords");
        return Err(WebError::TooManyRequests {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
        });
    }
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE username = $1")
            .bind(&username)
            .fetch_optional(&state.db)
            .await?;
    let stored = row.as_ref().map(|(_, hash)| hash.as_str());
    let valid = verify_password(&form.password, stored).await;
    let next = safe_next(&form.next);
    match row {
        Some((user_id, _)) if valid => {
            // An account with a security key and no code typed: the key is the second step.
            if form.code.trim().is_empty()
                && let Some(proxy) = &state.proxy
                && proxy.service.security_keys.available()
                && crate::proxy::webauthn::has_keys(&state.db, &username)
                    .await
                    .map_err(|error| WebError::Internal(crate::Error::Proxy(error)))?
            {
                keys.succeeded(&state.db).await?;
                return key_step(&state, &visitor, proxy, &username, next).await;
            }
            // A password alone is not enough for an account with a second factor.
            match crate::proxy::store::check_sign_in_second_factor(
                &state.db,
                &state.sealer,
                &username,
                &form.code,
            )
            .await
            {
                Ok(used_factor) => {
                    if used_factor && let Some(proxy) = &state.proxy {
                        proxy
                            .record_sign_in(&username, "authenticator code")
                            .await
                            .map_err(|error| WebError::Internal(crate::Error::Proxy(error)))?;
                    }
                }
                Err(crate::proxy::ProxyError::Throttled { retry_after_secs }) => {
                    return Err(WebError::TooManyRequests { retry_after_secs });
                }
                Err(crate::proxy::ProxyError::Unauthorized(message)) => {
                    tracing::info!(user = %username, "sign-in refused: second factor missing or wrong");
                    let page = SigninPage {
                        visitor: &visitor,
                        next,
                        username: &username,
                        error: Some(&message),
                        signup: state.config.signup,
                    };
                    return Ok((axum::http::StatusCode::UNAUTHORIZED, Html(page.render()?))
                        .into_response());
                }
                Err(error) => return Err(WebError::Internal(crate::Error::Proxy(error))),
            }
            keys.succeeded(&state.db).await?;
            let cookie = session::start(&state, &user_id).await?;
            tracing::info!(user = %username, "signed in");
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response())
        }
        _ => {
            keys.failed(&state.db, now).await?;
            tracing::info!(user = %username, "sign-in failed: wrong name or password");
            let page = SigninPage {
                visitor: &visitor,
                next,
                username: &username,
                error: Some("Wrong username or password."),
                signup: state.config.signup,
            };
            Ok((axum::http::StatusCode::UNAUTHORIZED, Html(page.render()?)).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "signin_key.html")]
struct SigninKeyPage<'a> {
    visitor: &'a Visitor,
    next: &'a str,
    username: &'a str,
    /// The challenge for the browser (webauthn-rs's JSON), put into a data attribute.
    options_json: &'a str,
}

/// The password was right and the account has a security key: a challenge for its keys, kept
/// server-side under a random cookie that only this browser holds, and the page that asks the
/// key to answer it.
async fn key_step(
    state: &AppState,
    visitor: &Visitor,
    proxy: &crate::proxy::web::ProxyWeb,
    username: &str,
    next: &str,
) -> Result<Response, WebError> {
    let token = random_id() + &random_id();
    let binding = crate::proxy::webauthn::binding_of(&token);
    let options = crate::proxy::webauthn::start_authentication(
        &state.db,
        &proxy.service.security_keys,
        username,
        &binding,
        crate::proxy::webauthn::Purpose::SignIn,
    )
    .await
    .map_err(|error| WebError::Internal(crate::Error::Proxy(error)))?;
    let options_json = serde_json::to_string(&options)
        .map_err(|error| WebError::Internal(crate::Error::Config(format!("options: {error}"))))?;
    let page = SigninKeyPage {
        visitor,
        next,
        username,
        options_json: &options_json,
    };
    let cookie = session::signin_cookie(
        state,
        &token,
        crate::proxy::webauthn::CEREMONY_LIFETIME_MS / 1000,
    )?;
    tracing::info!(user = %username, "password right; waiting for the security key");
    Ok(([(header::SET_COOKIE, cookie)], Html(page.render()?)).into_response())
}

#[derive(Deserialize)]
struct SigninKeyBody {
    credential: Box<webauthn_rs::prelude::PublicKeyCredential>,
    #[serde(default)]
    next: String,
}

/// The security key's answer to the sign-in challenge of this browser (its `hardlab_signin`
/// cookie): the session starts if it verifies. The challenge is used up either way.
async fn signin_with_key(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<SigninKeyBody>,
) -> Result<Response, WebError> {
    let refuse = |status: StatusCode, message: &str| {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    };
    let Some(proxy) = &state.proxy else {
        return Ok(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "security keys are not available on this server now",
        ));
    };
    let Some(token) = session::cookie(&headers, session::SIGNIN_COOKIE) else {
        return Ok(refuse(
            StatusCode::UNAUTHORIZED,
            "sign in with your password first (the security key step lasts 5 minutes)",
        ));
    };
    let binding = crate::proxy::webauthn::binding_of(token);
    let finished = crate::proxy::webauthn::finish_authentication(
        &state.db,
        &proxy.service.security_keys,
        &binding,
        crate::proxy::webauthn::Purpose::SignIn,
        None,
        &body.credential,
    )
    .await;
    let (username, key) = match finished {
        Ok(done) => done,
        Err(crate::proxy::ProxyError::Throttled { retry_after_secs }) => {
            return Err(WebError::TooManyRequests { retry_after_secs });
        }
        Err(crate::proxy::ProxyError::Unauthorized(message)) => {
            tracing::info!("sign-in refused: security key step failed");
            return Ok(refuse(StatusCode::UNAUTHORIZED, &message));
        }
        Err(error) => return Err(WebError::Internal(crate::Error::Proxy(error))),
    };
    let (user_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&state.db)
        .await?;
    proxy
        .record_sign_in(&username, &format!("security key {key}"))
        .await
        .map_err(|error| WebError::Internal(crate::Error::Proxy(error)))?;
    let cookie = session::start(&state, &user_id).await?;
    let clear = session::signin_cookie(&state, "", 0)?;
    tracing::info!(user = %username, "signed in with a security key");
    let mut response =
        axum::Json(serde_json::json!({ "next": safe_next(&body.next) })).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response.headers_mut().append(header::SET_COOKIE, clear);
    Ok(response)
}

#[derive(Deserialize)]
struct SignupQuery {
    invite: Option<String>,
}

async fn signup_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<SignupQuery>,
) -> Result<Response, WebError> {
    if visitor.session.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    let invite = query.invite.as_deref().unwrap_or_default().trim();
    let proof = SignupProof {
        invite: Some(invite),
        code: None,
        workshop_code: false,
    };
    let mode = state.config.signup;
    let allowed = signup::signup_allowed(&state.db, &state.config, proof, Claim::Peek).await?;
    let (status, show_form, error) = match allowed {
        Ok(_) => (StatusCode::OK, true, None),
        // The code is asked for on the form itself.
        Err(SignupRefusal::CodeRequired) => (StatusCode::OK, true, None),
        // The page explains the mode; that is not an error.
        Err(SignupRefusal::Closed | SignupRefusal::InviteRequired) => (StatusCode::OK, false, None),
        Err(refusal) => (refusal.status(), false, Some(refusal.message())),
    };
    let page = SignupPage {
        visitor: &visitor,
        username: "",
        error,
        mode,
        show_form,
        invite,
        ask_code: mode == SignupMode::Code && invite.is_empty(),
    };
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Deserialize)]
struct SignupForm {
    username: String,
    password: String,
    confirm: String,
    #[serde(default)]
    invite: String,
    #[serde(default)]
    code: String,
}

async fn signup(
    State(state): State<AppState>,
    visitor: Visitor,
    ClientAddress(address): ClientAddress,
    Form(form): Form<SignupForm>,
) -> Result<Response, WebError> {
    let mode = state.config.signup;
    let invite = form.invite.trim();
    let ask_code = mode == SignupMode::Code && invite.is_empty();
    let answer =
        |status: StatusCode, show_form: bool, message: &str| -> Result<Response, WebError> {
            let page = SignupPage {
                visitor: &visitor,
                username: form.username.trim(),
                error: Some(message),
                mode,
                show_form,
                invite,
                ask_code,
            };
            Ok((status, Html(page.render()?)).into_response())
        };
    let refused = |refusal: SignupRefusal| {
        // A wrong code may be retyped; a closed server or a dead link has no form to retry.
        let retry = matches!(
            refusal,
            SignupRefusal::CodeRequired | SignupRefusal::CodeWrong
        );
        tracing::info!(mode = mode.as_str(), ?refusal, "sign-up refused");
        answer(refusal.status(), retry, refusal.message())
    };
    let proof = SignupProof {
        invite: Some(invite),
        code: Some(&form.code),
        workshop_code: false,
    };
    // Join codes are short enough to guess: wrong ones are throttled per client address.
    let code_key = format!("signup-code:{}", throttle_identity(address));
    if ask_code {
        let wait_ms = blocked_for(&state.db, &code_key, now_ms()).await?;
        if wait_ms > 0 {
            let seconds = (wait_ms + 999) / 1000;
            let mut response = answer(
                StatusCode::TOO_MANY_REQUESTS,
                true,
                &format!("Join code: too many wrong codes. Wait {seconds} seconds and try again."),
            )?;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
    }
    // Refusals by mode come first, before anything about the account is judged.
    match signup::signup_allowed(&state.db, &state.config, proof, Claim::Peek).await? {
        Ok(_) => {}
        Err(refusal) => {
            if refusal == SignupRefusal::CodeWrong {
                record_failure(&state.db, &code_key, FREE_FAILURES_JOIN_CODE, now_ms()).await?;
            }
            return refused(refusal);
        }
    }
    if form.password != form.confirm {
        return answer(StatusCode::BAD_REQUEST, true, "The two passwords differ.");
    }
    // Judged before an invitation use is taken, so a typo does not spend one.
    if let Err(Error::InvalidInput(message)) =
        normalize_username(&form.username).and_then(|_| check_password_strength(&form.password))
    {
        return answer(StatusCode::BAD_REQUEST, true, &message);
    }
    let grant = match signup::signup_allowed(&state.db, &state.config, proof, Claim::Take).await? {
        Ok(grant) => grant,
        Err(refusal) => return refused(refusal),
    };
    match create_user(&state.db, &form.username, &form.password, Role::Learner).await {
        Ok(user) => {
            tracing::info!(user = %user.username, mode = mode.as_str(), "signed up");
            let cookie = session::start(&state, &user.id).await?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        Err(Error::InvalidInput(message)) => {
            grant.give_back(&state.db).await?;
            answer(StatusCode::BAD_REQUEST, true, &message)
        }
        Err(other) => {
            // The account's error is the one to report; a use not given back only shortens
            // the invitation.
            if let Err(error) = grant.give_back(&state.db).await {
                tracing::warn!(%error, "an invitation use could not be given back");
            }
            Err(other.into())
        }
    }
}

async fn signout(State(state): State<AppState>, session: Session) -> Result<Response, WebError> {
    let cookie = session::end(&state, &session).await?;
    tracing::info!(user = %session.user.username, "signed out");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response())
}

#[derive(Deserialize)]
struct SetupQuery {
    token: Option<String>,
}

async fn setup_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<SetupQuery>,
) -> Result<Response, WebError> {
    let token = query.token.as_deref().unwrap_or_default();
    let known: Option<(String,)> =
        sqlx::query_as("SELECT token_hash FROM setup_tokens WHERE token_hash = $1")
            .bind(sha256_hex(token))
            .fetch_optional(&state.db)
            .await?;
    let used = known.is_none() || admin_exists(&state.db).await?;
    setup_used_or_form(&visitor, token, used)
}

/// The setup form, or (410) the page that says the link has done its work.
fn setup_used_or_form(visitor: &Visitor, token: &str, used: bool) -> Result<Response, WebError> {
    let page = SetupPage {
        visitor,
        token,
        username: "",
        error: None,
        used,
    };
    let status = if used {
        axum::http::StatusCode::GONE
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    username: String,
    password: String,
}

async fn setup(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SetupForm>,
) -> Result<Response, WebError> {
    // Deleting the token is the claim: of two concurrent submissions only one deletes the row.
    let claimed = sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1")
        .bind(sha256_hex(&form.token))
        .execute(&state.db)
        .await?
        .rows_affected()
        == 1;
    if !claimed || admin_exists(&state.db).await? {
        return setup_used_or_form(&visitor, "", true);
    }
    match create_user(&state.db, &form.username, &form.password, Role::Admin).await {
        Ok(user) => {
            tracing::info!(user = %user.username, "first admin created with the setup token");
            let cookie = session::start(&state, &user.id).await?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        Err(Error::InvalidInput(message)) => {
            // The token was spent on a rejected form: put it back so the admin can retry.
            sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
                .bind(sha256_hex(&form.token))
                .bind(now_ms())
                .execute(&state.db)
                .await?;
            let page = SetupPage {
                visitor: &visitor,
                token: &form.token,
                username: form.username.trim(),
                error: Some(&message),
                used: false,
            };
            Ok((axum::http::StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}
