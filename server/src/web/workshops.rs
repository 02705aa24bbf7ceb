//! Workshop pages: `/join/<code>` for learners. A signed-in learner joins with one press; a
//! visitor without an account joins with a display name only when the sign-up mode lets the
//! workshop's code be their proof (`open`, or `code`: see [`super::signup::signup_allowed`]).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::session::Visitor;
use super::signup::{Claim, SignupProof, SignupRefusal};
use super::users::Role;
use super::{AppState, WebError};
use crate::db::now_ms;
use crate::workshops::{self, JoinRefusal, Workshop, WorkshopState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/join/{code}", get(join_page).post(join))
}

/// What the join page offers this visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinOffer {
    /// Signed in and in the workshop: links to its labs.
    Joined,
    /// Signed in, not in it yet: a Join button.
    Join,
    /// Not signed in, and the sign-up mode lets them join with a name only.
    JoinWithName,
    /// Not signed in, and only accounts may join.
    SignIn,
    Ended,
    Full,
}

struct LabLine {
    id: String,
    title: String,
    minutes: u32,
}

#[derive(Template)]
#[template(path = "workshop_join.html")]
struct JoinPage<'a> {
    visitor: &'a Visitor,
    title: &'a str,
    code: &'a str,
    labs: Vec<LabLine>,
    starts: String,
    ends: String,
    scheduled: bool,
    places_left: i64,
    offer: JoinOffer,
    name: &'a str,
    error: Option<String>,
}

/// `2026-12-02 17:00 UTC`.
pub fn when(ms: i64) -> String {
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

async fn workshop_of(state: &AppState, code: &str) -> Result<Workshop, WebError> {
    workshops::by_code(&state.db, code)
        .await?
        .ok_or(WebError::NotFound)
}

async fn offer_for(
    state: &AppState,
    visitor: &Visitor,
    workshop: &Workshop,
    joined: i64,
) -> Result<JoinOffer, WebError> {
    if let Some(user) = visitor.user()
        && workshops::is_learner(&state.db, &workshop.id, &user.id).await?
    {
        return Ok(JoinOffer::Joined);
    }
    if workshop.state(now_ms()) == WorkshopState::Ended {
        return Ok(JoinOffer::Ended);
    }
    if joined >= workshop.capacity {
        return Ok(JoinOffer::Full);
    }
    if visitor.user().is_some() {
        return Ok(JoinOffer::Join);
    }
    Ok(if name_only_allowed(state).await? {
        JoinOffer::JoinWithName
    } else {
        JoinOffer::SignIn
    })
}

/// Whether the server's sign-up mode lets a workshop's code stand for an account's proof.
async fn name_only_allowed(state: &AppState) -> Result<bool, WebError> {
    let proof = SignupProof {
        workshop_code: true,
        ..SignupProof::default()
    };
    Ok(
        super::signup::signup_allowed(&state.db, &state.config, proof, Claim::Peek)
            .await?
            .is_ok(),
    )
}

async fn render(
    state: &AppState,
    visitor: &Visitor,
    workshop: &Workshop,
    name: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let joined = i64::try_from(workshops::learners(&state.db, &workshop.id).await?.len())
        .unwrap_or(i64::MAX);
    let offer = offer_for(state, visitor, workshop, joined).await?;
    let labs = workshop
        .labs
        .iter()
        .filter_map(|id| state.labs.get(id))
        .map(|lab| LabLine {
            id: lab.id.clone(),
            title: lab.title.clone(),
            minutes: lab.minutes,
        })
        .collect();
    let page = JoinPage {
        visitor,
        title: &workshop.title,
        code: &workshop.join_code,
        labs,
        starts: when(workshop.starts_at),
        ends: when(workshop.closes_at()),
        scheduled: workshop.state(now_ms()) == WorkshopState::Scheduled,
        places_left: (workshop.capacity - joined).max(0),
        offer,
        name,
        error,
    };
    Ok((status, Html(page.render()?)).into_response())
}

async fn join_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(code): Path<String>,
) -> Result<Response, WebError> {
    let workshop = workshop_of(&state, &code).await?;
    render(&state, &visitor, &workshop, "", None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct JoinForm {
    /// The display name of a visitor joining without an account.
    #[serde(default)]
    name: String,
}

async fn join(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(code): Path<String>,
    Form(form): Form<JoinForm>,
) -> Result<Response, WebError> {
    let workshop = workshop_of(&state, &code).await?;
    let here = format!("/join/{}", workshop.join_code);
    let refused = |refusal: JoinRefusal| {
        let status = match refusal {
            JoinRefusal::Ended => StatusCode::GONE,
            JoinRefusal::Full => StatusCode::CONFLICT,
        };
        (status, Some(refusal.message().to_owned()))
    };
    if let Some(user) = visitor.user() {
        return match workshops::join(&state.db, &workshop, &user.id).await? {
            Ok(()) => {
                tracing::info!(workshop = %workshop.id, user = %user.username, "joined a workshop");
                Ok(Redirect::to(&here).into_response())
            }
            Err(refusal) => {
                let (status, error) = refused(refusal);
                render(&state, &visitor, &workshop, "", error, status).await
            }
        };
    }
    // No account: a display name only, where the sign-up mode allows it.
    let proof = SignupProof {
        workshop_code: true,
        ..SignupProof::default()
    };
    if let Err(refusal) =
        super::signup::signup_allowed(&state.db, &state.config, proof, Claim::Take).await?
    {
        let message = match refusal {
            SignupRefusal::Closed | SignupRefusal::InviteRequired => {
                "Sign in to join: on this server only accounts can join a workshop.".to_owned()
            }
            other => other.message().to_owned(),
        };
        return render(
            &state,
            &visitor,
            &workshop,
            &form.name,
            Some(message),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // Refused before an account is made for nothing.
    let joined = i64::try_from(workshops::learners(&state.db, &workshop.id).await?.len())
        .unwrap_or(i64::MAX);
    let early_refusal = if workshop.state(now_ms()) == WorkshopState::Ended {
        Some(JoinRefusal::Ended)
    } else if joined >= workshop.capacity {
        Some(JoinRefusal::Full)
    } else {
        None
    };
    if let Some(refusal) = early_refusal {
        let (status, error) = refused(refusal);
        return render(&state, &visitor, &workshop, &form.name, error, status).await;
    }
    // The account has no password anyone knows: it lives in this browser's session.
    let password = format!("{}{}", crate::db::random_id(), crate::db::random_id());
    let user =
        match super::accounts::create_user(&state.db, &form.name, &password, Role::Learner).await {
            Ok(user) => user,
            Err(crate::Error::InvalidInput(message)) => {
                let message = format!("Name: {message}");
                return render(
                    &state,
                    &visitor,
                    &workshop,
                    &form.name,
                    Some(message),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
            Err(error) => return Err(error.into()),
        };
    if let Err(refusal) = workshops::join(&state.db, &workshop, &user.id).await? {
        // The last place went to someone else meanwhile: no account is left behind.
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&user.id)
            .execute(&state.db)
            .await?;
        let (status, error) = refused(refusal);
        return render(&state, &visitor, &workshop, &form.name, error, status).await;
    }
    tracing::info!(workshop = %workshop.id, user = %user.username, "joined a workshop with a name only");
    let cookie = super::session::start(&state, &user.id).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&here)).into_response())
}
