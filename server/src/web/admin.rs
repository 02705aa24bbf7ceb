//! Staff pages: accounts and roles (admins), learners' progress (instructors and admins).
//! Everyone else gets 404 here, as for anything that is not theirs.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::accounts::Role;
use super::check::{self};
use super::pages::{StepCounts, StepNav, step_nav};
use super::session::{Session, Visitor};
use super::{AppState, WebError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users_page))
        .route("/admin/users/{user_id}/role", post(set_role))
        .route("/progress", get(progress_board))
        .route("/progress/{user_id}", get(learner_progress))
}

pub struct UserRow {
    pub id: String,
    pub username: String,
    pub role: String,
    pub has_cluster: bool,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage<'a> {
    visitor: &'a Visitor,
    users: Vec<UserRow>,
    me: &'a str,
}

async fn users_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
) -> Result<Html<String>, WebError> {
    session.require(Role::Admin)?;
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT u.id, u.username, u.role, c.owner_id FROM users u \
         LEFT JOIN static_clusters c ON c.owner_id = u.id ORDER BY u.username",
    )
    .fetch_all(&state.db)
    .await?;
    let page = UsersPage {
        visitor: &visitor,
        users: rows
            .into_iter()
            .map(|(id, username, role, cluster)| UserRow {
                id,
                username,
                role,
                has_cluster: cluster.is_some(),
            })
            .collect(),
        me: &session.user.id,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn set_role(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, WebError> {
    session.require(Role::Admin)?;
    let role = match form.role.as_str() {
        "learner" => Role::Learner,
        "instructor" => Role::Instructor,
        "admin" => Role::Admin,
        other => return Err(WebError::BadRequest(format!("unknown role {other:?}"))),
    };
    if user_id == session.user.id && role != Role::Admin {
        return Err(WebError::BadRequest(
            "You cannot take the admin role from yourself; ask another admin.".into(),
        ));
    }
    let changed = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(role.as_str())
        .bind(&user_id)
        .execute(&state.db)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(WebError::NotFound);
    }
    tracing::info!(admin = %session.user.username, user_id = %user_id, role = role.as_str(), "role changed");
    Ok(Redirect::to("/admin/users").into_response())
}

pub struct BoardRow {
    pub id: String,
    pub username: String,
    /// Per lab, in lab order: checked steps passed, passed with warnings (counted apart), and
    /// attempts that said "not yet".
    pub labs: Vec<(StepCounts, i64)>,
}

#[derive(Template)]
#[template(path = "progress.html")]
struct BoardPage<'a> {
    visitor: &'a Visitor,
    labs: Vec<(&'a str, usize)>,
    rows: Vec<BoardRow>,
}

async fn progress_board(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
) -> Result<Html<String>, WebError> {
    session.require(Role::Instructor)?;
    let users: Vec<(String, String)> =
        sqlx::query_as("SELECT id, username FROM users WHERE role = 'learner' ORDER BY username")
            .fetch_all(&state.db)
            .await?;
    let progress: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT user_id, lab_id, step_id, state, failed_attempts FROM step_progress",
    )
    .fetch_all(&state.db)
    .await?;
    let labs = state.labs.all();
    let rows = users
        .into_iter()
        .map(|(id, username)| BoardRow {
            labs: labs
                .iter()
                .map(|lab| {
                    let mine = progress
                        .iter()
                        .filter(|(u, l, _, _, _)| *u == id && *l == lab.id);
                    let failed = mine.clone().map(|(_, _, _, _, n)| *n).sum();
                    let counts = StepCounts::of(
                        lab,
                        mine.map(|(_, _, step, st, _)| (step.as_str(), st.as_str())),
                    );
                    (counts, failed)
                })
                .collect(),
            id,
            username,
        })
        .collect();
    let page = BoardPage {
        visitor: &visitor,
        labs: labs
            .iter()
            .map(|lab| {
                (
                    lab.title.as_str(),
                    lab.steps.iter().filter(|s| !s.checks.is_empty()).count(),
                )
            })
            .collect(),
        rows,
    };
    Ok(Html(page.render()?))
}

pub struct AttemptRow {
    pub id: String,
    pub lab_id: String,
    pub step_id: String,
    pub status: String,
    pub started_at: i64,
}

impl AttemptRow {
    /// The attempt's verdict in words (`running` while it runs).
    pub fn label(&self) -> &'static str {
        hardlab_grader::Verdict::parse(&self.status).map_or("running", |v| v.label())
    }

    /// `2026-11-26 19:40 UTC`.
    pub fn when(&self) -> String {
        super::utc_minute(self.started_at)
    }
}

#[derive(Template)]
#[template(path = "progress_user.html")]
struct LearnerPage<'a> {
    visitor: &'a Visitor,
    username: String,
    labs: Vec<(&'a str, Vec<StepNav<'a>>)>,
    attempts: Vec<AttemptRow>,
}

/// A learner's steps and recent attempts: staff only, 404 for everyone else (learners included,
/// so an ID cannot be probed).
async fn learner_progress(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(user_id): Path<String>,
) -> Result<Html<String>, WebError> {
    session.require(Role::Instructor)?;
    let user: Option<(String,)> = sqlx::query_as("SELECT username FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_optional(&state.db)
        .await?;
    let (username,) = user.ok_or(WebError::NotFound)?;
    let mut labs = Vec::new();
    for lab in state.labs.all() {
        let progress = check::progress_of(&state, &user_id, &lab.id).await?;
        labs.push((lab.title.as_str(), step_nav(lab, &progress)));
    }
    let attempts: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, lab_id, step_id, status, started_at FROM check_attempts WHERE user_id = $1 \
         ORDER BY started_at DESC LIMIT 50",
    )
    .bind(&user_id)
    .fetch_all(&state.db)
    .await?;
    let page = LearnerPage {
        visitor: &visitor,
        username,
        labs,
        attempts: attempts
            .into_iter()
            .map(|(id, lab_id, step_id, status, started_at)| AttemptRow {
                id,
                lab_id,
                step_id,
                status,
                started_at,
            })
            .collect(),
    };
    Ok(Html(page.render()?))
}
