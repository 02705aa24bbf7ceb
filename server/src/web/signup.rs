//! Who may create their own account: the `signup` setting and invitation links.
//!
//! - `closed`: nobody; admins create accounts (`hardlab admin create-user`).
//! - `invite` (the default): whoever holds a link an admin or instructor made on /admin/invites or
//!   with `hardlab admin invite`; each link has a number of uses and an expiry.
//! - `code`: whoever types the join code (`signup_code`); invitation links work too.
//! - `open`: anyone who reaches the server.
//!
//! Every sign-up goes through [`signup_allowed`], so a later kind of proof (a workshop's own join
//! code) is one more branch there.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use super::session::{Session, Visitor};
use super::users::Role;
use super::{AppState, WebError};
use crate::config::Config;
pub use crate::config::{JoinCode, SignupMode};
use crate::db::{now_ms, random_id};
use crate::{Error, Result};

/// What a visitor brought to the sign-up form.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignupProof<'a> {
    pub invite: Option<&'a str>,
    pub code: Option<&'a str>,
    /// The visitor came through the join page of a workshop that takes learners now (the
    /// workshop's own join code, checked by the join page).
    pub workshop_code: bool,
}

/// Whether [`signup_allowed`] only looks (to show the form) or takes one use of an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Peek,
    Take,
}

/// Why a sign-up may go ahead; a taken invitation use is given back with [`SignupGrant::give_back`]
/// when the account then cannot be created (a taken name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupGrant {
    Open,
    JoinCode,
    /// A workshop's join code (`signup: code`), for an account with a display name only.
    WorkshopCode,
    Invite {
        invite_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupRefusal {
    Closed,
    InviteRequired,
    InviteUnknown,
    InviteExpired,
    InviteUsedUp,
    CodeRequired,
    CodeWrong,
}

impl SignupRefusal {
    pub fn message(self) -> &'static str {
        match self {
            SignupRefusal::Closed => SignupMode::Closed.explanation(),
            SignupRefusal::InviteRequired => SignupMode::Invite.explanation(),
            SignupRefusal::InviteUnknown => {
                "This invitation link is not valid. Check that you copied all of it, or ask your \
                 instructor for a new one."
            }
            SignupRefusal::InviteExpired => {
                "This invitation link has expired. Ask your instructor for a new one."
            }
            SignupRefusal::InviteUsedUp => {
                "This invitation link has been used up: every account it allowed has been \
                 created. Ask your instructor for a new one."
            }
            SignupRefusal::CodeRequired => "Join code: enter the code your instructor gave you.",
            SignupRefusal::CodeWrong => {
                "Join code: that is not the code of this server. Check it with your instructor."
            }
        }
    }

    /// An invitation that cannot be used is gone for good; the rest is a refusal.
    pub fn status(self) -> StatusCode {
        match self {
            SignupRefusal::InviteExpired | SignupRefusal::InviteUsedUp => StatusCode::GONE,
            SignupRefusal::InviteUnknown => StatusCode::NOT_FOUND,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// The one place that decides whether a visitor may create an account now.
pub async fn signup_allowed(
    db: &AnyPool,
    config: &Config,
    proof: SignupProof<'_>,
    claim: Claim,
) -> Result<Result<SignupGrant, SignupRefusal>> {
    let invite = proof.invite.map(str::trim).filter(|t| !t.is_empty());
    match config.signup {
        SignupMode::Closed => Ok(Err(SignupRefusal::Closed)),
        SignupMode::Open => Ok(Ok(SignupGrant::Open)),
        SignupMode::Invite => match invite {
            Some(token) => use_invite(db, token, claim).await,
            None => Ok(Err(SignupRefusal::InviteRequired)),
        },
        SignupMode::Code => {
            if let Some(token) = invite {
                return use_invite(db, token, claim).await;
            }
            if proof.workshop_code {
                return Ok(Ok(SignupGrant::WorkshopCode));
            }
            let typed = proof.code.map(str::trim).filter(|c| !c.is_empty());
            match (typed, &config.signup_code) {
                (None, _) => Ok(Err(SignupRefusal::CodeRequired)),
                (Some(typed), Some(code)) if code.matches(typed) => Ok(Ok(SignupGrant::JoinCode)),
                (Some(_), _) => Ok(Err(SignupRefusal::CodeWrong)),
            }
        }
    }
}

impl SignupGrant {
    pub async fn give_back(&self, db: &AnyPool) -> Result<()> {
        if let SignupGrant::Invite { invite_id } = self {
            sqlx::query("UPDATE signup_invites SET uses = uses - 1 WHERE id = $1 AND uses > 0")
                .bind(invite_id)
                .execute(db)
                .await?;
        }
        Ok(())
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn use_invite(
    db: &AnyPool,
    token: &str,
    claim: Claim,
) -> Result<Result<SignupGrant, SignupRefusal>> {
    let now = now_ms();
    let hash = token_hash(token);
    if claim == Claim::Take {
        // The guarded update is the claim: of two sign-ups racing for the last use, one wins.
        let taken = sqlx::query(
            "UPDATE signup_invites SET uses = uses + 1 \
             WHERE token_hash = $1 AND uses < max_uses AND expires_at > $2",
        )
        .bind(&hash)
        .bind(now)
        .execute(db)
        .await?
        .rows_affected()
            == 1;
        if taken {
            let (invite_id,): (String,) =
                sqlx::query_as("SELECT id FROM signup_invites WHERE token_hash = $1")
                    .bind(&hash)
                    .fetch_one(db)
                    .await?;
            return Ok(Ok(SignupGrant::Invite { invite_id }));
        }
    }
    let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, expires_at, max_uses, uses FROM signup_invites WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => Err(SignupRefusal::InviteUnknown),
        Some((_, expires_at, _, _)) if expires_at <= now => Err(SignupRefusal::InviteExpired),
        Some((_, _, max_uses, uses)) if uses >= max_uses => Err(SignupRefusal::InviteUsedUp),
        Some((invite_id, ..)) if claim == Claim::Peek => Ok(SignupGrant::Invite { invite_id }),
        // Used up or expired between the update and this read.
        Some(_) => Err(SignupRefusal::InviteUsedUp),
    })
}

/// The most uses and hours one invitation can have.
pub const MAX_INVITE_USES: i64 = 1000;
pub const MAX_INVITE_HOURS: i64 = 24 * 365;
/// A link for one learner that works for three days, unless the form says otherwise.
pub const DEFAULT_INVITE_USES: i64 = 1;
pub const DEFAULT_INVITE_HOURS: i64 = 72;

/// Stores a new invitation and returns its token (shown once; only the hash is kept).
pub async fn create_invite(
    db: &AnyPool,
    created_by: Option<&str>,
    uses: i64,
    hours: i64,
) -> Result<String> {
    if !(1..=MAX_INVITE_USES).contains(&uses) {
        return Err(Error::InvalidInput(format!(
            "uses: an invitation allows 1 to {MAX_INVITE_USES} accounts"
        )));
    }
    if !(1..=MAX_INVITE_HOURS).contains(&hours) {
        return Err(Error::InvalidInput(format!(
            "hours: an invitation lasts 1 to {MAX_INVITE_HOURS} hours"
        )));
    }
    let token = random_id() + &random_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO signup_invites (id, token_hash, created_by, created_at, expires_at, max_uses, uses) \
         VALUES ($1, $2, $3, $4, $5, $6, 0)",
    )
    .bind(random_id())
    .bind(token_hash(&token))
    .bind(created_by)
    .bind(now)
    .bind(now + hours * 3_600_000)
    .bind(uses)
    .execute(db)
    .await?;
    Ok(token)
}

pub fn invite_link(base: &str, token: &str) -> String {
    format!("{}/signup?invite={token}", base.trim_end_matches('/'))
}

/// `hardlab admin invite [--uses N] [--hours H]`: prints a link built on `public_url`.
pub async fn invite_command(config: &Config, uses: i64, hours: i64) -> Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    let token = create_invite(&db, None, uses, hours).await?;
    if config.signup != SignupMode::Invite && config.signup != SignupMode::Code {
        eprintln!(
            "note: signup is {}: invitation links work only with signup invite or code",
            config.signup
        );
    }
    if config.public_url.is_none() {
        eprintln!("note: no public_url is set; the link uses the listen address");
    }
    println!(
        "{} (up to {uses} account(s), for {hours} hour(s))",
        invite_link(&config.link_base(), &token)
    );
    Ok(())
}

// ---- the staff page ----

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/invites", get(invites_page).post(create_invite_form))
        .route("/admin/invites/{invite_id}/revoke", post(revoke_invite))
}

pub struct InviteRow {
    pub id: String,
    pub created_by: String,
    pub created: String,
    pub expires: String,
    pub uses: i64,
    pub max_uses: i64,
    pub state: &'static str,
    pub revocable: bool,
}

#[derive(Template)]
#[template(path = "invites.html")]
struct InvitesPage<'a> {
    visitor: &'a Visitor,
    mode: SignupMode,
    invites: Vec<InviteRow>,
    new_link: Option<String>,
    uses: String,
    hours: String,
    error: Option<String>,
}

/// id, created_by, the creator's username, created_at, expires_at, max_uses, uses.
type InviteRecord = (String, Option<String>, Option<String>, i64, i64, i64, i64);

async fn invite_rows(state: &AppState, session: &Session) -> Result<Vec<InviteRow>, WebError> {
    let rows: Vec<InviteRecord> = sqlx::query_as(
        "SELECT i.id, i.created_by, u.username, i.created_at, i.expires_at, i.max_uses, i.uses \
         FROM signup_invites i LEFT JOIN users u ON u.id = i.created_by \
         ORDER BY i.created_at DESC LIMIT 100",
    )
    .fetch_all(&state.db)
    .await?;
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(
            |(id, created_by, creator, created_at, expires_at, max_uses, uses)| {
                let state = if expires_at <= now {
                    "expired"
                } else if uses >= max_uses {
                    "used up"
                } else {
                    "active"
                };
                let revocable = state == "active"
                    && (session.user.role == Role::Admin
                        || created_by.as_deref() == Some(session.user.id.as_str()));
                InviteRow {
                    id,
                    created_by: match (created_by, creator) {
                        (_, Some(name)) => name,
                        (None, None) => "command line".to_owned(),
                        (Some(_), None) => "removed account".to_owned(),
                    },
                    created: super::utc_minute(created_at),
                    expires: super::utc_minute(expires_at),
                    uses,
                    max_uses,
                    state,
                    revocable,
                }
            },
        )
        .collect())
}

async fn render_invites(
    state: &AppState,
    visitor: &Visitor,
    session: &Session,
    new_link: Option<String>,
    form: (String, String),
    error: Option<String>,
) -> Result<Html<String>, WebError> {
    let page = InvitesPage {
        visitor,
        mode: state.config.signup,
        invites: invite_rows(state, session).await?,
        new_link,
        uses: form.0,
        hours: form.1,
        error,
    };
    Ok(Html(page.render()?))
}

async fn invites_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
) -> Result<Html<String>, WebError> {
    session.require(Role::Instructor)?;
    let defaults = (
        DEFAULT_INVITE_USES.to_string(),
        DEFAULT_INVITE_HOURS.to_string(),
    );
    render_invites(&state, &visitor, &session, None, defaults, None).await
}

#[derive(Deserialize)]
struct InviteForm {
    uses: String,
    hours: String,
}

/// The link is shown on the answer to the form, once: only its hash is stored.
async fn create_invite_form(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Result<Response, WebError> {
    session.require(Role::Instructor)?;
    let entered = (form.uses.trim().to_owned(), form.hours.trim().to_owned());
    let parsed = entered
        .0
        .parse::<i64>()
        .map_err(|_| Error::InvalidInput("uses: enter a whole number of accounts".into()))
        .and_then(|uses| {
            entered
                .1
                .parse::<i64>()
                .map(|hours| (uses, hours))
                .map_err(|_| Error::InvalidInput("hours: enter a whole number of hours".into()))
        });
    let created = match parsed {
        Ok((uses, hours)) => create_invite(&state.db, Some(&session.user.id), uses, hours)
            .await
            .map(|token| (token, uses, hours)),
        Err(error) => Err(error),
    };
    match created {
        Ok((token, uses, hours)) => {
            tracing::info!(user = %session.user.username, uses, hours, "invitation created");
            let link = invite_link(&link_base(&state.config, &headers), &token);
            let page =
                render_invites(&state, &visitor, &session, Some(link), entered, None).await?;
            Ok(([(header::CACHE_CONTROL, "no-store")], page).into_response())
        }
        Err(Error::InvalidInput(message)) => {
            let page =
                render_invites(&state, &visitor, &session, None, entered, Some(message)).await?;
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// The public URL when set; otherwise the host this staff member reached the server by.
fn link_base(config: &Config, headers: &HeaderMap) -> String {
    if config.public_url.is_some() {
        return config.link_base();
    }
    let scheme = if config.cookies_secure() {
        "https"
    } else {
        "http"
    };
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map_or_else(|| config.link_base(), |host| format!("{scheme}://{host}"))
}

/// Instructors revoke their own links; admins any. Others get 404, as for anything not theirs.
async fn revoke_invite(
    State(state): State<AppState>,
    session: Session,
    Path(invite_id): Path<String>,
) -> Result<Response, WebError> {
    session.require(Role::Instructor)?;
    let owner: Option<(Option<String>,)> =
        sqlx::query_as("SELECT created_by FROM signup_invites WHERE id = $1")
            .bind(&invite_id)
            .fetch_optional(&state.db)
            .await?;
    let Some((created_by,)) = owner else {
        return Err(WebError::NotFound);
    };
    if session.user.role != Role::Admin && created_by.as_deref() != Some(session.user.id.as_str()) {
        return Err(WebError::NotFound);
    }
    sqlx::query("UPDATE signup_invites SET expires_at = $1 WHERE id = $2 AND expires_at > $1")
        .bind(now_ms())
        .bind(&invite_id)
        .execute(&state.db)
        .await?;
    tracing::info!(user = %session.user.username, invite = %invite_id, "invitation revoked");
    Ok(Redirect::to("/admin/invites").into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_join_code_is_long_enough_compared_exactly_and_never_printed() {
        assert!(JoinCode::new("short").is_err());
        let code = JoinCode::new(" k8s-hardening-42 ").unwrap();
        assert!(code.matches("k8s-hardening-42"));
        assert!(code.matches("  k8s-hardening-42\n"));
        assert!(!code.matches("k8s-hardening-43"));
        assert!(!code.matches("K8S-HARDENING-42"));
        assert!(!format!("{code:?}").contains("hardening"));
        let config = Config {
            signup_code: Some(code),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hardening"));
    }
}
