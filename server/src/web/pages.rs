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
        .route("/labs/{lab}/steps/{step}/auto-check", post(auto_check))
        .route(
            "/labs/{lab}/catch-up",
            get(catch_up_progress).post(catch_up),
        )
        .route("/labs/{lab}/reset", post(reset_lab))
        .route("/attempts/{id}", get(attempt_page))
}

/// A step in the navigation list with the viewer's state of it.
pub struct StepNav<'a> {
    pub step: &'a Step,
    pub number: usize,
    /// `not-started`, `passed`, `warned`, `failed`, `unjudged` or `reading` (nothing to check).
    pub state: &'static str,
    pub label: &'static str,
    /// Attempts that failed (each revealed a hint); attempts that could not judge are not counted.
    pub failed_attempts: i64,
}

/// The sidebar's words for a stored step state, in the verdicts' own words.
pub fn step_state_label(state: Option<&str>) -> (&'static str, &'static str) {
    match state {
        Some("passed") => ("passed", "passed"),
        Some("warned") => ("warned", "passed with warnings"),
        Some("failed") => ("failed", "not yet"),
        Some("unjudged") => ("unjudged", "not judged yet"),
        Some(_) => ("unjudged", "not judged yet"),
        None => ("not-started", "not started"),
    }
}

pub fn step_nav<'a>(lab: &'a Lab, progress: &HashMap<String, StepProgress>) -> Vec<StepNav<'a>> {
    lab.steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let mine = progress.get(&step.id);
            let (state, label) = if step.checks.is_empty() {
                ("reading", "reading")
            } else {
                step_state_label(mine.map(|p| p.state.as_str()))
            };
            StepNav {
                step,
                number: index + 1,
                state,
                label,
                failed_attempts: mine.map_or(0, |p| p.failed_attempts),
            }
        })
        .collect()
}

/// How many of a lab's checked steps are passed, passed with warnings, and not yet passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    pub checked: usize,
    pub passed: usize,
    pub warned: usize,
}

impl StepCounts {
    /// Counts a lab's checked steps from `(step_id, state)` rows of one learner.
    pub fn of<'s>(lab: &Lab, states: impl Iterator<Item = (&'s str, &'s str)>) -> Self {
        let states: HashMap<&str, &str> = states.collect();
        let mut counts = StepCounts::default();
        for step in lab.steps.iter().filter(|s| !s.checks.is_empty()) {
            counts.checked += 1;
            match states.get(step.id.as_str()).copied() {
                Some("passed") => counts.passed += 1,
                Some("warned") => counts.warned += 1,
                _ => {}
            }
        }
        counts
    }

    pub fn done(&self) -> usize {
        self.passed + self.warned
    }
}

fn find_lab(state: &AppState, id: &str) -> Result<Arc<Lab>, WebError> {
    state.labs.get(id).cloned().ok_or(WebError::NotFound)
}

struct LabSummary<'a> {
    lab: &'a Lab,
    counts: StepCounts,
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
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT lab_id, step_id, state FROM step_progress WHERE user_id = $1")
            .bind(&session.user.id)
            .fetch_all(&state.db)
            .await?;
    let labs = state
        .labs
        .all()
        .iter()
        .map(|lab| LabSummary {
            lab,
            counts: StepCounts::of(
                lab,
                rows.iter()
                    .filter(|(l, _, _)| *l == lab.id)
                    .map(|(_, step, st)| (step.as_str(), st.as_str())),
            ),
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
    /// The status in words (`passed`, `warning`, `failed`, `not run`, `error`).
    pub status_label: &'static str,
    pub message: String,
    pub evidence: Option<String>,
    /// The check's remediation, markdown rendered and sanitized.
    pub remediation_html: String,
    /// For a check that could not run: what the learner can do instead of "how to fix".
    pub unjudged_advice: Option<&'static str>,
    pub references: Vec<String>,
}

fn status_label(status: &str) -> &'static str {
    match status {
        "pass" => "passed",
        "warn" => "warning",
        "fail" => "failed",
        "skip" => "not run",
        "error" => "error",
        "not-applicable" => "does not apply",
        _ => "not judged",
    }
}

/// What a learner can do about a check that could not run, by its status.
fn unjudged_advice(status: &str) -> Option<&'static str> {
    match status {
        "pass" | "warn" | "fail" | "not-applicable" => None,
        "skip" => Some(
            "This check needs something that is not there yet (the message above says what). \
             Nothing in your work is wrong because of it: put that in place or wait for it, then \
             press Check again. It does not count as a failed attempt.",
        ),
        _ => Some(
            "The grader could not finish this check (the message above says why). Press Check \
             again in a moment; if it keeps happening, tell the person running hardlab. It does \
             not count as a failed attempt.",
        ),
    }
}

pub fn result_views(record: &AttemptRecord) -> Vec<ResultView> {
    record
        .results
        .iter()
        .map(|r| {
            let status = r.status.as_str();
            ResultView {
                check: r.check.clone(),
                title: r.title.clone(),
                status,
                status_label: status_label(status),
                message: r.message.clone(),
                evidence: r.evidence.clone(),
                remediation_html: crate::labs::markdown::render(&r.remediation),
                unjudged_advice: unjudged_advice(status),
                references: r.references.clone(),
            }
        })
        .collect()
}

/// A stored attempt's verdict as the page words it.
pub struct VerdictView {
    /// `pass`, `warn`, `fail`, `unjudged` or `running`: the attempt's CSS class.
    pub class: &'static str,
    pub label: &'static str,
    pub explanation: String,
}

pub fn verdict_view(attempt: &Attempt) -> VerdictView {
    let Some(verdict) = hardlab_grader::Verdict::parse(&attempt.status) else {
        return VerdictView {
            class: "running",
            label: "Still running",
            explanation: "(or interrupted); press Check again.".into(),
        };
    };
    let count = |status: &str| {
        attempt
            .record
            .results
            .iter()
            .filter(|r| r.status.as_str() == status)
            .count()
    };
    let explanation = match verdict {
        hardlab_grader::Verdict::PassWithWarnings => format!(
            "No check failed, but {} warning(s) below are worth a look.",
            count("warn")
        ),
        hardlab_grader::Verdict::NotYet => format!(
            "{} of {} checks failed; the evidence shows what the grader saw.",
            count("fail"),
            attempt.record.results.len()
        ),
        hardlab_grader::Verdict::CouldNotJudge => "This is not a failed attempt and uses no \
            hint; the reason and what you can do are below."
            .to_owned(),
        hardlab_grader::Verdict::Pass => verdict.explanation().to_owned(),
    };
    VerdictView {
        class: verdict.as_str(),
        label: verdict.label(),
        explanation,
    }
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
    /// The latest attempt of this step, if any, and its verdict.
    attempt: Option<Attempt>,
    verdict: Option<VerdictView>,
    results: Vec<ResultView>,
    hints_shown: Vec<&'a String>,
    hints_hidden: usize,
    has_cluster: bool,
    /// Learners get their own cluster with Start on this page (else they register one).
    starts_clusters: bool,
    /// The step's solution script, revealed on request.
    solution: Option<SolutionView<'a>>,
    /// How often the page checks in the background while the cluster is ready.
    auto_check_seconds: u64,
    /// The learner's live cluster for this lab, so a second tab attaches to it.
    cluster_id: Option<String>,
    /// The learner registered a cluster of their own (always ready as far as the page knows).
    registered: bool,
    /// The lab's catch-up, running or last finished.
    catch_up: Option<super::learner_actions::CatchUpProgress>,
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
    // One more hint per failed attempt, from vague to specific; a step without checks cannot
    // fail, so its hints are all there.
    let shown = if step.checks.is_empty() {
        step.hints.len()
    } else {
        usize::try_from(mine.map_or(0, |p| p.failed_attempts))
            .unwrap_or(0)
            .min(step.hints.len())
    };
    let live = live_cluster(&state, &session.user.id, &lab.id).await;
    let registered = super::cluster::is_registered(&state, &session.user.id).await?;
    let has_cluster = registered
        || live
            .as_ref()
            .is_some_and(|r| r.state == crate::clusters::lifecycle::ClusterState::Ready);
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
        verdict: attempt.as_ref().map(verdict_view),
        attempt,
        results,
        hints_shown: step.hints.iter().take(shown).collect(),
        hints_hidden: step.hints.len() - shown,
        has_cluster,
        starts_clusters: state.clusters.is_some(),
        solution,
        auto_check_seconds: state.config.auto_check_interval.as_secs().max(1),
        cluster_id: live.map(|r| r.id),
        registered,
        catch_up: state.catch_ups.get(&session.user.id, &lab.id),
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

/// The learner's own live cluster for this lab; a database hiccup reads as none (the page then
/// offers Start, which finds the running one).
pub async fn live_cluster(
    state: &AppState,
    user_id: &str,
    lab_id: &str,
) -> Option<crate::clusters::ClusterRecord> {
    let clusters = state.clusters.as_ref()?;
    clusters
        .manager
        .find_for(user_id, lab_id)
        .await
        .ok()
        .flatten()
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

/// What a background check answers the step page.
#[derive(Debug, serde::Serialize)]
pub struct AutoCheckAnswer {
    /// Whether the checks ran.
    pub ran: bool,
    /// Why they did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The verdict's name (`pass`, `warn`, `fail`, `unjudged`) and words, when they ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'static str>,
    /// Whether the step now counts as passed (the page then shows the stored attempt).
    pub passed: bool,
}

impl AutoCheckAnswer {
    fn did_not_run(reason: &'static str) -> Self {
        AutoCheckAnswer {
            ran: false,
            reason: Some(reason),
            verdict: None,
            label: None,
            passed: false,
        }
    }
}

/// The step page's background check: runs only for a step that allows it, only while the
/// learner's cluster is ready, never beside another grading of the same step; only a pass is
/// stored (and is an attempt).
async fn auto_check(
    State(state): State<AppState>,
    session: Session,
    Path((lab_id, step_id)): Path<(String, String)>,
) -> Result<axum::Json<AutoCheckAnswer>, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    let step = lab.step(&step_id).ok_or(WebError::NotFound)?;
    if step.checks.is_empty() || !step.auto_check {
        return Ok(axum::Json(AutoCheckAnswer::did_not_run(
            "this step is checked only when you press Check",
        )));
    }
    let progress = check::progress_of(&state, &session.user.id, &lab.id).await?;
    if progress
        .get(&step.id)
        .is_some_and(|p| matches!(p.state.as_str(), "passed" | "warned"))
    {
        return Ok(axum::Json(AutoCheckAnswer::did_not_run(
            "this step has passed already",
        )));
    }
    let ready = super::cluster::is_registered(&state, &session.user.id).await?
        || live_cluster(&state, &session.user.id, &lab.id)
            .await
            .is_some_and(|r| r.state == crate::clusters::lifecycle::ClusterState::Ready);
    if !ready {
        return Ok(axum::Json(AutoCheckAnswer::did_not_run(
            "your cluster is not ready",
        )));
    }
    let graded = check::grade_step(
        &state,
        &session.user.id,
        &lab,
        &step_id,
        check::Trigger::Auto,
    )
    .await?;
    Ok(axum::Json(match graded {
        None => AutoCheckAnswer::did_not_run("a check of this step is running"),
        Some(graded) => AutoCheckAnswer {
            ran: true,
            reason: None,
            verdict: Some(graded.verdict.as_str()),
            label: Some(graded.verdict.label()),
            passed: graded.verdict.passed(),
        },
    }))
}

#[derive(serde::Deserialize)]
struct StepForm {
    step: String,
}

/// "Start this lab at step N": the catch-up runs on its own task; the step page shows its
/// progress.
async fn catch_up(
    State(state): State<AppState>,
    session: Session,
    Path(lab_id): Path<String>,
    axum::Form(form): axum::Form<StepForm>,
) -> Result<Response, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    super::learner_actions::start_catch_up(&state, &session.user.id, &lab, &form.step)
        .await
        .map_err(action_error)?;
    Ok(Redirect::to(&format!("/labs/{lab_id}/steps/{}#catch-up", form.step)).into_response())
}

async fn catch_up_progress(
    State(state): State<AppState>,
    session: Session,
    Path(lab_id): Path<String>,
) -> Result<Response, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    match state.catch_ups.get(&session.user.id, &lab.id) {
        Some(progress) => Ok(axum::Json(progress).into_response()),
        None => Err(WebError::NotFound),
    }
}

/// "Reset the lab": a fresh cluster in place of the learner's; back to the step they were on.
async fn reset_lab(
    State(state): State<AppState>,
    session: Session,
    Path(lab_id): Path<String>,
    axum::Form(form): axum::Form<StepForm>,
) -> Result<Response, WebError> {
    let lab = find_lab(&state, &lab_id)?;
    let step = lab
        .step(&form.step)
        .or(lab.steps.first())
        .ok_or(WebError::NotFound)?;
    super::learner_actions::reset(&state, &session.user.id, &lab)
        .await
        .map_err(action_error)?;
    Ok(Redirect::to(&format!("/labs/{lab_id}/steps/{}", step.id)).into_response())
}

/// A learner action that cannot be done is the learner's to read; a server fault is logged.
fn action_error(error: super::learner_actions::ActionError) -> WebError {
    use super::learner_actions::ActionError;
    match error {
        ActionError::Cluster(_) | ActionError::Server(_) => {
            tracing::error!(%error, "a learner action failed");
            WebError::BadRequest(format!("That did not work: {error}"))
        }
        other => WebError::BadRequest(other.to_string()),
    }
}

#[derive(Template)]
#[template(path = "attempt.html")]
struct AttemptPage<'a> {
    visitor: &'a Visitor,
    attempt: &'a Attempt,
    owner: String,
    lab_title: String,
    step_title: String,
    verdict: VerdictView,
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
        verdict: verdict_view(&attempt),
        attempt: &attempt,
    };
    Ok(Html(page.render()?))
}
