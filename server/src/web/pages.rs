//! The learner's pages: the lab list, a lab, a step with its Check, a stored attempt.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::check::{self, Attempt, AttemptRecord, StepProgress};
use super::session::{Session, Visitor};
use super::{AppState, WebError};
use crate::labs::{Lab, Step};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(lab_list))
        .route("/labs/{lab}", get(lab_page))
        .route("/labs/{lab}/steps/{step}", get(step_page))
        .route("/labs/{lab}/steps/{step}/check", post(run_check))
        .route("/attempts/{id}", get(attempt_page))
}

/// A step in the navigation list with the viewer's state of it.
pub struct StepNav<'a> {
    pub step: &'a Step,
    pub number: usize,
    /// `not-started`, `passed`, `failed` or `reading` (nothing to check).
    pub state: &'static str,
    pub label: &'static str,
}

pub fn step_nav<'a>(lab: &'a Lab, progress: &HashMap<String, StepProgress>) -> Vec<StepNav<'a>> {
    lab.steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let (state, label) = match progress.get(&step.id).map(|p| p.state.as_str()) {
                _ if step.checks.is_empty() => ("reading", "reading"),
                Some("passed") => ("passed", "passed"),
                Some(_) => ("failed", "failed"),
                None => ("not-started", "not started"),
            };
            StepNav {
                step,
                number: index + 1,
                state,
                label,
            }
        })
        .collect()
}

fn find_lab(state: &AppState, id: &str) -> Result<Arc<Lab>, WebError> {
    state.labs.get(id).cloned().ok_or(WebError::NotFound)
}

struct LabSummary<'a> {
    lab: &'a Lab,
    checked_steps: usize,
    passed: usize,
}

#[derive(Template)]
#[template(path = "labs.html")]
struct LabListPage<'a> {
    visitor: &'a Visitor,
    labs: Vec<LabSummary<'a>>,
}

async fn lab_list(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
) -> Result<Html<String>, WebError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT lab_id, step_id FROM step_progress WHERE user_id = $1 AND state = 'passed'",
    )
    .bind(&session.user.id)
    .fetch_all(&state.db)
    .await?;
    let labs = state
        .labs
        .all()
        .iter()
        .map(|lab| LabSummary {
            lab,
            checked_steps: lab.steps.iter().filter(|s| !s.checks.is_empty()).count(),
            passed: lab
                .steps
                .iter()
                .filter(|s| {
                    !s.checks.is_empty() && rows.iter().any(|(l, st)| *l == lab.id && *st == s.id)
                })
                .count(),
        })
        .collect();
    let page = LabListPage {
        visitor: &visitor,
        labs,
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabPage<'a> {
    visitor: &'a Visitor,
    lab: &'a Lab,
    steps: Vec<StepNav<'a>>,
}

async fn lab_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(lab_id): Path<String>,
) -> Result<Html<String>, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    let progress = check::progress_of(&state, &session.user.id, &lab.id).await?;
    let page = LabPage {
        visitor: &visitor,
        lab: &lab,
        steps: step_nav(&lab, &progress),
    };
    Ok(Html(page.render()?))
}

/// One check's result as the page shows it.
pub struct ResultView {
    pub check: String,
    pub title: String,
    pub status: &'static str,
    pub message: String,
    pub evidence: Option<String>,
    pub remediation: String,
    pub references: Vec<String>,
}

pub fn result_views(record: &AttemptRecord) -> Vec<ResultView> {
    record
        .results
        .iter()
        .map(|r| ResultView {
            check: r.check.clone(),
            title: r.title.clone(),
            status: r.status.as_str(),
            message: r.message.clone(),
            evidence: r.evidence.clone(),
            remediation: r.remediation.clone(),
            references: r.references.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "step.html")]
struct StepPage<'a> {
    visitor: &'a Visitor,
    lab: &'a Lab,
    step: &'a Step,
    number: usize,
    steps: Vec<StepNav<'a>>,
    previous: Option<&'a Step>,
    next: Option<&'a Step>,
    /// The latest attempt of this step, if any.
    attempt: Option<Attempt>,
    results: Vec<ResultView>,
    hints_shown: Vec<&'a String>,
    hints_hidden: usize,
    has_cluster: bool,
    /// Learners get their own cluster with Start on this page (else they register one).
    starts_clusters: bool,
    /// The step's solution script, revealed on request.
    solution: Option<SolutionView<'a>>,
    /// For the terminal's style elements (see `web::headers::RuntimeStyles`).
    style_nonce: String,
}

async fn step_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path((lab_id, step_id)): Path<(String, String)>,
    nonce: Option<axum::Extension<super::headers::StyleNonce>>,
) -> Result<(axum::Extension<super::headers::RuntimeStyles>, Html<String>), WebError> {
    let lab = find_lab(&state, &lab_id)?;
    let index = lab
        .steps
        .iter()
        .position(|s| s.id == step_id)
        .ok_or(WebError::NotFound)?;
    let step = &lab.steps[index];
    let progress = check::progress_of(&state, &session.user.id, &lab.id).await?;
    let mine = progress.get(&step.id);
    let attempt = match mine {
        Some(p) => check::attempt(&state, &p.last_attempt_id).await?,
        None => None,
    };
    let results = attempt
        .as_ref()
        .map(|a| result_views(&a.record))
        .unwrap_or_default();
    // One more hint per failed attempt, from vague to specific.
    let shown = usize::try_from(mine.map_or(0, |p| p.failed_attempts))
        .unwrap_or(0)
        .min(step.hints.len());
    let has_cluster = super::cluster::is_registered(&state, &session.user.id).await?
        || learner_cluster_ready(&state, &session.user.id, &lab.id).await;
    let solution = step
        .solution
        .as_ref()
        .zip(step.solution_script.as_ref())
        .map(|(path, script)| SolutionView {
            name: path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default(),
            script: script.as_str(),
        });
    let page = StepPage {
        visitor: &visitor,
        lab: &lab,
        step,
        number: index + 1,
        steps: step_nav(&lab, &progress),
        previous: index.checked_sub(1).and_then(|i| lab.steps.get(i)),
        next: lab.steps.get(index + 1),
        attempt,
        results,
        hints_shown: step.hints.iter().take(shown).collect(),
        hints_hidden: step.hints.len() - shown,
        has_cluster,
        starts_clusters: state.clusters.is_some(),
        solution,
        style_nonce: nonce.map(|n| n.0.0).unwrap_or_default(),
    };
    // The step page hosts the terminal, whose renderer creates style elements.
    Ok((
        axum::Extension(super::headers::RuntimeStyles),
        Html(page.render()?),
    ))
}

/// A step's solution as the page shows it; `name` is what `hardlab-solution` in the node runs.
struct SolutionView<'a> {
    name: String,
    script: &'a str,
}

/// Whether the learner's own cluster for this lab is up; a database hiccup reads as "not yet"
/// (the notice only suggests starting it).
async fn learner_cluster_ready(state: &AppState, user_id: &str, lab_id: &str) -> bool {
    let Some(clusters) = &state.clusters else {
        return false;
    };
    clusters
        .manager
        .find_for(user_id, lab_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|record| record.state == crate::clusters::lifecycle::ClusterState::Ready)
}

async fn run_check(
    State(state): State<AppState>,
    session: Session,
    Path((lab_id, step_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    let step = lab.step(&step_id).ok_or(WebError::NotFound)?;
    if step.checks.is_empty() {
        return Err(WebError::BadRequest(
            "This step is for reading; it has nothing to check.".into(),
        ));
    }
    check::run_step(&state, &session.user.id, &lab, &step_id).await?;
    Ok(Redirect::to(&format!("/labs/{lab_id}/steps/{step_id}#result")).into_response())
}

#[derive(Template)]
#[template(path = "attempt.html")]
struct AttemptPage<'a> {
    visitor: &'a Visitor,
    attempt: &'a Attempt,
    owner: String,
    lab_title: String,
    step_title: String,
    results: Vec<ResultView>,
}

/// One stored attempt: its owner and staff only; anyone else gets 404 as if it did not exist.
async fn attempt_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let attempt = check::attempt(&state, &id)
        .await?
        .ok_or(WebError::NotFound)?;
    if attempt.user_id != session.user.id && !session.is_staff() {
        return Err(WebError::NotFound);
    }
    let owner: Option<(String,)> = sqlx::query_as("SELECT username FROM users WHERE id = $1")
        .bind(&attempt.user_id)
        .fetch_optional(&state.db)
        .await?;
    let lab = state.labs.get(&attempt.lab_id);
    let page = AttemptPage {
        visitor: &visitor,
        owner: owner.map(|(n,)| n).unwrap_or_default(),
        lab_title: lab.map_or_else(|| attempt.lab_id.clone(), |l| l.title.clone()),
        step_title: lab
            .and_then(|l| l.step(&attempt.step_id))
            .map_or_else(|| attempt.step_id.clone(), |s| s.title.clone()),
        results: result_views(&attempt.record),
        attempt: &attempt,
    };
    Ok(Html(page.render()?))
}
