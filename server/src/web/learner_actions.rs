//! What can be done to a learner's lab besides Check: catch up (start the lab at step N: the
//! earlier steps' solutions run in the learner's cluster and the grader confirms them) and reset
//! (a fresh cluster in place of the current one). The learner's own buttons call these, and so do
//! an instructor's actions for a learner; both show the same progress.
//!
//! Solutions run with the lab harness's runner (`clusters::run_script_in`), grading goes
//! through `check::grade_step`, so catch-up's passes are attempts like any other (origin
//! `catch-up`), never two gradings of one step at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use super::AppState;
use super::check::{self, Trigger};
use crate::clusters::lifecycle::ClusterState;
use crate::clusters::{ClusterRecord, setup};
use crate::labs::Lab;

/// How long one step's solution may run during catch-up (the harness allows the same).
const SOLUTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no step {0:?} in this lab")]
    NoSuchStep(String),
    #[error(
        "catch-up needs a cluster hardlab started for this lab, and it must be ready (start it on a step page first)"
    )]
    NoReadyCluster,
    #[error("this server runs no clusters of its own")]
    NoClusters,
    #[error("a catch-up of this lab is already running")]
    AlreadyRunning,
    #[error("step {step}: {message}")]
    Step { step: String, message: String },
    #[error(transparent)]
    Cluster(#[from] crate::clusters::Error),
    #[error(transparent)]
    Server(#[from] crate::Error),
}

/// Where one step of a catch-up is.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUpStep {
    pub id: String,
    pub title: String,
    /// `waiting`, `running` (its solution), `grading`, `passed`, `warned` (passed with warnings),
    /// `ran` (a step without checks whose solution succeeded), `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A catch-up's progress, as the page polls it.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUpProgress {
    pub lab: String,
    /// The step the learner starts at.
    pub target: String,
    pub steps: Vec<CatchUpStep>,
    pub finished: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CatchUpProgress {
    /// Every earlier step is done (passed, passed with warnings, or ran).
    pub fn succeeded(&self) -> bool {
        self.finished
            && self.error.is_none()
            && self
                .steps
                .iter()
                .all(|s| matches!(s.state, "passed" | "warned" | "ran"))
    }
}

/// The catch-ups under way or last finished, per learner and lab (in memory: a restart forgets
/// them, and what they achieved is in the attempts).
#[derive(Default)]
pub struct CatchUps {
    jobs: Mutex<HashMap<(String, String), CatchUpProgress>>,
}

impl CatchUps {
    pub fn get(&self, user_id: &str, lab_id: &str) -> Option<CatchUpProgress> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(user_id.to_owned(), lab_id.to_owned()))
            .cloned()
    }

    fn update(&self, user_id: &str, lab_id: &str, change: impl FnOnce(&mut CatchUpProgress)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(progress) = jobs.get_mut(&(user_id.to_owned(), lab_id.to_owned())) {
            change(progress);
        }
    }

    /// Registers a new catch-up unless one of this lab is running for the learner.
    fn begin(&self, user_id: &str, progress: CatchUpProgress) -> Result<(), ActionError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (user_id.to_owned(), progress.lab.clone());
        if jobs.get(&key).is_some_and(|job| !job.finished) {
            return Err(ActionError::AlreadyRunning);
        }
        jobs.insert(key, progress);
        Ok(())
    }

    fn forget(&self, user_id: &str, lab_id: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(user_id.to_owned(), lab_id.to_owned()));
    }
}

/// The learner's ready cluster for the lab.
async fn ready_cluster(
    state: &AppState,
    user_id: &str,
    lab_id: &str,
) -> Result<ClusterRecord, ActionError> {
    let clusters = state.clusters.as_ref().ok_or(ActionError::NoClusters)?;
    clusters
        .manager
        .find_for(user_id, lab_id)
        .await?
        .filter(|record| record.state == ClusterState::Ready)
        .ok_or(ActionError::NoReadyCluster)
}

/// Checks what a catch-up to `step_id` needs and registers its progress, so a page can show it
/// at once; then [`catch_up`] (or [`start_catch_up`]) does the work.
fn prepare(state: &AppState, user_id: &str, lab: &Lab, step_id: &str) -> Result<(), ActionError> {
    let index = lab
        .steps
        .iter()
        .position(|step| step.id == step_id)
        .ok_or_else(|| ActionError::NoSuchStep(step_id.to_owned()))?;
    state.catch_ups.begin(
        user_id,
        CatchUpProgress {
            lab: lab.id.clone(),
            target: step_id.to_owned(),
            steps: lab.steps[..index]
                .iter()
                .map(|step| CatchUpStep {
                    id: step.id.clone(),
                    title: step.title.clone(),
                    state: "waiting",
                    detail: None,
                })
                .collect(),
            finished: false,
            error: None,
        },
    )
}

/// Starts the lab at `step_id` for the learner: runs every earlier step's solution in their
/// ready cluster, in order, and has the grader confirm each step that has checks (a pass, or a
/// pass with warnings). Stops at the first step that does not get there, and says which and why.
/// Returns the finished progress; [`CatchUps::get`] shows it while it runs.
pub async fn catch_up(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    step_id: &str,
) -> Result<CatchUpProgress, ActionError> {
    let cluster = ready_cluster(state, user_id, &lab.id).await?;
    prepare(state, user_id, lab, step_id)?;
    Ok(run_catch_up(state, user_id, lab, &cluster).await)
}

/// [`catch_up`] on its own task, for a page that polls [`CatchUps::get`]: the checks that can
/// be made at once (the step, the cluster, no catch-up running) are made before it returns.
pub async fn start_catch_up(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    step_id: &str,
) -> Result<(), ActionError> {
    let cluster = ready_cluster(state, user_id, &lab.id).await?;
    prepare(state, user_id, lab, step_id)?;
    let state = state.clone();
    let user_id = user_id.to_owned();
    let lab = Arc::clone(lab);
    tokio::spawn(async move {
        run_catch_up(&state, &user_id, &lab, &cluster).await;
    });
    Ok(())
}

async fn run_catch_up(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    cluster: &ClusterRecord,
) -> CatchUpProgress {
    let outcome = run_steps(state, user_id, lab, cluster).await;
    state.catch_ups.update(user_id, &lab.id, |progress| {
        progress.finished = true;
        if let Err(error) = &outcome {
            progress.error = Some(error.to_string());
        }
    });
    if let Err(error) = &outcome {
        tracing::info!(lab = %lab.id, %error, "catch-up stopped");
    }
    state
        .catch_ups
        .get(user_id, &lab.id)
        .unwrap_or_else(|| CatchUpProgress {
            lab: lab.id.clone(),
            target: String::new(),
            steps: Vec::new(),
            finished: true,
            error: Some("the catch-up's progress was removed while it ran".into()),
        })
}

async fn run_steps(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    cluster: &ClusterRecord,
) -> Result<(), ActionError> {
    let clusters = state.clusters.as_ref().ok_or(ActionError::NoClusters)?;
    let provider = Arc::clone(clusters.manager.provider());
    let Some(progress) = state.catch_ups.get(user_id, &lab.id) else {
        return Ok(());
    };
    for (index, planned) in progress.steps.iter().enumerate() {
        let Some(step) = lab.step(&planned.id) else {
            continue;
        };
        let set = |new_state: &'static str, detail: Option<String>| {
            state.catch_ups.update(user_id, &lab.id, |progress| {
                if let Some(entry) = progress.steps.get_mut(index) {
                    entry.state = new_state;
                    entry.detail = detail;
                }
            });
        };
        let fail = |message: String| {
            set("failed", Some(message.clone()));
            ActionError::Step {
                step: step.title.clone(),
                message,
            }
        };
        if let Some(script) = &step.solution_script {
            set("running", None);
            let run = crate::clusters::run_script_in(
                provider.as_ref(),
                &cluster.id,
                script,
                &[],
                SOLUTION_TIMEOUT,
            )
            .await
            .map_err(|error| fail(format!("its solution could not run: {error}")))?;
            if run.exit_code != 0 {
                let tail: Vec<&str> = run.output.lines().rev().take(3).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(fail(format!(
                    "its solution exited with {}: {}",
                    run.exit_code,
                    tail.join(" / ")
                )));
            }
        }
        if step.checks.is_empty() {
            set("ran", None);
            continue;
        }
        set("grading", None);
        let graded = check::grade_step(state, user_id, lab, &step.id, Trigger::CatchUp)
            .await?
            .ok_or_else(|| fail("another grading of this step did not let it run".into()))?;
        match graded.verdict {
            hardlab_grader::Verdict::Pass => set("passed", None),
            hardlab_grader::Verdict::PassWithWarnings => set("warned", None),
            other => {
                let reason = graded.record.problem.clone().unwrap_or_else(|| {
                    graded
                        .record
                        .results
                        .iter()
                        .filter(|r| !matches!(r.status.as_str(), "pass" | "warn"))
                        .map(|r| format!("{}: {}", r.check, r.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                return Err(fail(format!(
                    "after its solution the grader says {}: {reason}",
                    other.label().to_lowercase()
                )));
            }
        }
    }
    Ok(())
}

/// Swaps the learner's cluster for this lab for a fresh one (from the warm pool when there is
/// one): the terminal closes, the old cluster is removed, a new one starts. Progress already
/// recorded stays (it is the learner's history); a catch-up of the lab is forgotten.
pub async fn reset(
    state: &AppState,
    user_id: &str,
    lab: &Lab,
) -> Result<ClusterRecord, ActionError> {
    let clusters = state.clusters.as_ref().ok_or(ActionError::NoClusters)?;
    if state
        .catch_ups
        .get(user_id, &lab.id)
        .is_some_and(|job| !job.finished)
    {
        return Err(ActionError::AlreadyRunning);
    }
    if let Some(old) = clusters.manager.find_for(user_id, &lab.id).await? {
        clusters.terminals.close_cluster(&old.id).await;
        clusters.manager.delete(&old.id).await?;
    }
    state.catch_ups.forget(user_id, &lab.id);
    Ok(clusters
        .manager
        .start(user_id, None, &setup::lab_request(lab))
        .await?)
}
