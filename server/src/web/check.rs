//! Check: grade one step of a lab against the learner's cluster with the grader library, in this
//! process, and keep every attempt.
//!
//! The grader runs here, outside the learner's environment; what it sees is decided by the
//! registration (kubeconfig, node and etcd access), never by anything in the learner's shell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hardlab_grader::{CheckResult, Context, Verdict};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::cluster;
use crate::clusters::lifecycle::ClusterState;
use crate::db::{now_ms, random_id};
use crate::labs::{Lab, Step};
use crate::{Error, Result};

/// A whole step's grading may take this long (etcd reads, live probes) before it is cut off.
const GRADING_TIMEOUT: Duration = Duration::from_secs(120);

/// What one press of Check produced, as stored in `check_attempts.results_json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Why grading could not start (no cluster registered, unreachable API server, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(default)]
    pub results: Vec<CheckResult>,
}

impl AttemptRecord {
    /// What these results amount to; grading that could not start could not judge anything.
    pub fn verdict(&self) -> Verdict {
        if self.problem.is_some() {
            Verdict::CouldNotJudge
        } else {
            Verdict::of(self.results.iter().map(|r| r.status))
        }
    }

    /// The step is done: every check passed or warned (or did not apply), at least one passed.
    pub fn passed(&self) -> bool {
        self.verdict().passed()
    }

    fn problem(message: impl Into<String>) -> Self {
        AttemptRecord {
            problem: Some(message.into()),
            results: Vec::new(),
        }
    }
}

/// What started a grading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The learner pressed Check: every outcome is an attempt.
    Check,
    /// The step page checks in the background: only a pass is stored (and is an attempt).
    Auto,
    /// Catch-up confirms the earlier steps after running their solutions.
    CatchUp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Check => "check",
            Trigger::Auto => "auto",
            Trigger::CatchUp => "catch-up",
        }
    }
}

/// One grading at a time per learner and step, whoever asks (Check, the background check,
/// catch-up, an instructor): a second Check waits for the first; a background check that finds
/// one running does not run at all.
#[derive(Default)]
pub struct GradingLocks {
    held: std::sync::Mutex<HashMap<GradingKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Learner, lab and step.
type GradingKey = (String, String, String);

impl GradingLocks {
    fn slot(&self, user_id: &str, lab_id: &str, step_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Slots nobody holds or waits for are dropped, so the map stays as small as the gradings
        // under way.
        held.retain(|_, slot| Arc::strong_count(slot) > 1);
        Arc::clone(
            held.entry((user_id.to_owned(), lab_id.to_owned(), step_id.to_owned()))
                .or_default(),
        )
    }
}

/// How a grading ended.
#[derive(Debug, Clone)]
pub struct Graded {
    /// The stored attempt; `None` for a background check that did not pass (not an attempt).
    pub attempt_id: Option<String>,
    pub verdict: Verdict,
    pub record: AttemptRecord,
}

/// Why a step could not be graded. Each message is written for the learner: it names what they
/// can act on (their registration, their cluster's address) and never a socket error.
#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("{0}")]
    Cluster(#[from] crate::clusters::Error),
    #[error("{0}")]
    Registration(#[from] cluster::ConnectError),
    #[error(
        "the API server at {address} did not answer as a Kubernetes API server \
         (is it restarting, or did its manifest break it?)"
    )]
    NoAnswer { address: String },
    #[error("the API server at {address} refused the kubeconfig's credentials ({code})")]
    CredentialsRefused { address: String, code: u16 },
    #[error("{0}")]
    Target(#[from] super::targets::TargetError),
    #[error("this step judges the access proxy, which is not running on this server")]
    ProxyNotRunning,
    #[error("the access proxy's state: {0}")]
    ProxyState(#[from] crate::proxy::ProxyError),
    /// The server's own trouble (its database, its key): logged, and shown as such.
    #[error("{0}")]
    Server(#[from] Box<crate::Error>),
}

impl From<crate::Error> for GradingError {
    fn from(error: crate::Error) -> Self {
        GradingError::Server(Box::new(error))
    }
}

/// The stored verdict of one step for one learner.
#[derive(Debug, Clone)]
pub struct StepProgress {
    pub state: String,
    pub failed_attempts: i64,
    pub last_attempt_id: String,
}

pub async fn progress_of(
    state: &AppState,
    user_id: &str,
    lab_id: &str,
) -> Result<HashMap<String, StepProgress>> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT step_id, state, failed_attempts, last_attempt_id FROM step_progress \
         WHERE user_id = $1 AND lab_id = $2",
    )
    .bind(user_id)
    .bind(lab_id)
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(step, state, failed_attempts, last_attempt_id)| {
            (
                step,
                StepProgress {
                    state,
                    failed_attempts,
                    last_attempt_id,
                },
            )
        })
        .collect())
}

/// A stored attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub user_id: String,
    pub lab_id: String,
    pub step_id: String,
    pub status: String,
    pub record: AttemptRecord,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn attempt(state: &AppState, id: &str) -> Result<Option<Attempt>> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        i64,
        Option<i64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, user_id, lab_id, step_id, status, results_json, started_at, finished_at \
         FROM check_attempts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(
        |(id, user_id, lab_id, step_id, status, json, started_at, finished_at)| Attempt {
            id,
            user_id,
            lab_id,
            step_id,
            status,
            record: json
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            started_at,
            finished_at,
        },
    ))
}

/// Runs the step's checks and stores the attempt and the step's new state; returns the attempt ID.
/// Runs to completion on its own task, so a browser that gives up does not leave it half-stored.
pub async fn run_step(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    step_id: &str,
) -> Result<String> {
    let graded = grade_step(state, user_id, lab, step_id, Trigger::Check).await?;
    graded
        .and_then(|graded| graded.attempt_id)
        .ok_or_else(|| Error::InvalidInput("the grading was not stored".into()))
}

/// Grades one step for `trigger`, one grading at a time per learner and step. `Ok(None)`: a
/// background check found another grading of this step under way and did not run.
pub async fn grade_step(
    state: &AppState,
    user_id: &str,
    lab: &Arc<Lab>,
    step_id: &str,
    trigger: Trigger,
) -> Result<Option<Graded>> {
    if lab.step(step_id).is_none() {
        return Err(Error::InvalidInput(format!("no step {step_id:?}")));
    }
    let slot = state.gradings.slot(user_id, &lab.id, step_id);
    let guard = if trigger == Trigger::Auto {
        match slot.try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => return Ok(None),
        }
    } else {
        slot.lock_owned().await
    };
    // A background check does not leave a row unless it passes; the others are visible as
    // "running" while they run (and as interrupted if the server dies meanwhile).
    let attempt_id = random_id();
    if trigger != Trigger::Auto {
        sqlx::query(
            "INSERT INTO check_attempts (id, user_id, lab_id, step_id, status, started_at, origin) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6)",
        )
        .bind(&attempt_id)
        .bind(user_id)
        .bind(&lab.id)
        .bind(step_id)
        .bind(now_ms())
        .bind(trigger.as_str())
        .execute(&state.db)
        .await?;
    }
    let task_state = state.clone();
    let task_lab = Arc::clone(lab);
    let task_user = user_id.to_owned();
    let task_step = step_id.to_owned();
    tokio::spawn(async move {
        let graded = grade_and_store(
            &task_state,
            &task_user,
            &task_lab,
            &task_step,
            &attempt_id,
            trigger,
        )
        .await;
        drop(guard);
        graded
    })
    .await?
    .map(Some)
}

async fn grade_and_store(
    state: &AppState,
    user_id: &str,
    lab: &Lab,
    step_id: &str,
    attempt_id: &str,
    trigger: Trigger,
) -> Result<Graded> {
    let Some(step) = lab.step(step_id) else {
        return Err(Error::InvalidInput(format!("no step {step_id:?}")));
    };
    let started = Instant::now();
    let started_at = now_ms();
    let record = grade(state, user_id, lab, step).await;
    state.metrics.record_check_run(
        &lab.id,
        step_id,
        record.verdict().as_str(),
        started.elapsed(),
    );
    tracing::info!(lab = %lab.id, step = %step_id, result = record.verdict().as_str(), trigger = trigger.as_str(), elapsed_ms = started.elapsed().as_millis() as u64, "step checked");
    let row = if trigger == Trigger::Auto {
        AttemptRow::New { started_at }
    } else {
        AttemptRow::Running(attempt_id)
    };
    store(state, user_id, &lab.id, step_id, row, trigger, record).await
}

/// Where a grading's attempt goes.
pub enum AttemptRow<'a> {
    /// The `running` row inserted when the grading began.
    Running(&'a str),
    /// A new row (a background check stores only a pass, so it has none until then).
    New { started_at: i64 },
}

/// Stores a grading's outcome: the attempt (unless it is a background check that did not pass)
/// and the step's new state, in one transaction. The one place verdicts become progress: hints
/// count only "not yet", and "could not be judged" leaves an earlier verdict standing.
pub async fn store(
    state: &AppState,
    user_id: &str,
    lab_id: &str,
    step_id: &str,
    row: AttemptRow<'_>,
    trigger: Trigger,
    record: AttemptRecord,
) -> Result<Graded> {
    let verdict = record.verdict();
    let status = verdict.as_str();
    if trigger == Trigger::Auto && !verdict.passed() {
        return Ok(Graded {
            attempt_id: None,
            verdict,
            record,
        });
    }
    let json = serde_json::to_string(&record)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let attempt_id = match row {
        AttemptRow::New { started_at } => {
            let id = random_id();
            sqlx::query(
                "INSERT INTO check_attempts (id, user_id, lab_id, step_id, status, results_json, \
                 started_at, finished_at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(user_id)
            .bind(lab_id)
            .bind(step_id)
            .bind(status)
            .bind(&json)
            .bind(started_at)
            .bind(now)
            .bind(trigger.as_str())
            .execute(&mut *tx)
            .await?;
            id
        }
        AttemptRow::Running(id) => {
            sqlx::query(
                "UPDATE check_attempts SET status = $1, results_json = $2, finished_at = $3 \
                 WHERE id = $4",
            )
            .bind(status)
            .bind(&json)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            id.to_owned()
        }
    };
    match step_state(verdict) {
        Some(new_state) => {
            // A failure that the learner can act on reveals one more hint; nothing else does.
            let counted_failure = i64::from(verdict == Verdict::NotYet);
            sqlx::query(
                "INSERT INTO step_progress (user_id, lab_id, step_id, state, failed_attempts, \
                 last_attempt_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (user_id, lab_id, step_id) DO UPDATE SET state = $4, \
                 failed_attempts = step_progress.failed_attempts + $5, last_attempt_id = $6, \
                 updated_at = $7",
            )
            .bind(user_id)
            .bind(lab_id)
            .bind(step_id)
            .bind(new_state)
            .bind(counted_failure)
            .bind(&attempt_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            // Could not be judged: an earlier verdict of the step stands; the page shows this
            // attempt and why.
            sqlx::query(
                "INSERT INTO step_progress (user_id, lab_id, step_id, state, failed_attempts, \
                 last_attempt_id, updated_at) VALUES ($1, $2, $3, 'unjudged', 0, $4, $5) \
                 ON CONFLICT (user_id, lab_id, step_id) DO UPDATE SET last_attempt_id = $4, \
                 updated_at = $5",
            )
            .bind(user_id)
            .bind(lab_id)
            .bind(step_id)
            .bind(&attempt_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    // Workshop boards showing this learner redraw (no receiver: nobody is watching).
    let _ = state.progress_events.send(user_id.to_owned());
    Ok(Graded {
        attempt_id: Some(attempt_id),
        verdict,
        record,
    })
}

/// The stored state of a step after a verdict; `None` when the verdict changes nothing.
fn step_state(verdict: Verdict) -> Option<&'static str> {
    match verdict {
        Verdict::Pass => Some("passed"),
        Verdict::PassWithWarnings => Some("warned"),
        Verdict::NotYet => Some("failed"),
        Verdict::CouldNotJudge => None,
    }
}

async fn grade(state: &AppState, user_id: &str, lab: &Lab, step: &Step) -> AttemptRecord {
    let checks: Vec<_> = hardlab_grader::catalog::all()
        .into_iter()
        .filter(|check| step.checks.iter().any(|id| id == check.meta.id))
        .collect();
    if checks.is_empty() {
        return AttemptRecord::problem("This step has nothing to check.");
    }
    let ctx = match context_for(state, user_id, lab, step).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) => {
            return AttemptRecord::problem(
                "You have no cluster yet: press Start in the terminal pane, or register one under \"My clusters\" (or ask an admin).",
            );
        }
        Err(error) => {
            tracing::warn!(lab = %lab.id, error = %error, "cannot reach the learner's cluster");
            return AttemptRecord::problem(format!("Cannot reach your cluster: {error}"));
        }
    };
    match tokio::time::timeout(GRADING_TIMEOUT, hardlab_grader::run_checks(&ctx, &checks)).await {
        Ok(mut results) => {
            // In the order the lab lists them, not the catalog's.
            results.sort_by_key(|r| step.checks.iter().position(|id| *id == r.check));
            AttemptRecord {
                problem: None,
                results,
            }
        }
        Err(_) => AttemptRecord::problem(format!(
            "The checks did not finish within {} seconds.",
            GRADING_TIMEOUT.as_secs()
        )),
    }
}

/// The grader's view of the learner's cluster, with the lab's parameters: a registered (static)
/// cluster first, else the learner's own Docker cluster for this lab when it is ready.
///
/// The one place a cluster becomes a grader `Context` for a step: every input the step's checks
/// need is put in here, lab 6's access-proxy state included.
async fn context_for(
    state: &AppState,
    user_id: &str,
    lab: &Lab,
    step: &Step,
) -> Result<Option<Context>, GradingError> {
    if let Some(registered) = cluster::load(state, user_id).await? {
        let client_and_endpoint =
            cluster::connect(&registered.kubeconfig, cluster::address_policy(state)).await?;
        let params = step_params(state, user_id, lab, step, &registered.kubeconfig).await?;
        let mut ctx = live_context(state, client_and_endpoint, params).await?;
        if let Some(node) = super::targets::node_access(registered.node_spec.as_deref())? {
            ctx = ctx.with_node(node);
        }
        if let Some(etcd) = super::targets::etcd_access(registered.etcd.as_ref())? {
            ctx = ctx.with_etcd(etcd);
        }
        return Ok(Some(ctx));
    }
    let Some(clusters) = &state.clusters else {
        return Ok(None);
    };
    let record = clusters.manager.find_for(user_id, &lab.id).await?;
    let Some(record) = record.filter(|r| r.state == ClusterState::Ready) else {
        return Ok(None);
    };
    // Built from the certificates captured when the cluster was made and Docker's view of where
    // it listens; nothing the learner changed in the node since configures these clients.
    let access = clusters.manager.grading_access(&record.id).await?;
    let params = if needs_proxy_state(step) {
        let kubeconfig = clusters.manager.kubeconfig(&record.id).await?;
        step_params(state, user_id, lab, step, &kubeconfig).await?
    } else {
        lab.params.clone()
    };
    let ctx = live_context(state, (access.client, access.endpoint), params).await?;
    let ctx = ctx.with_node(access.node);
    Ok(Some(match access.etcd {
        Some(etcd) => ctx.with_etcd(Arc::new(etcd)),
        None => ctx,
    }))
}

/// Whether the step judges the access proxy (lab 6), whose state the server holds, not the cluster.
fn needs_proxy_state(step: &Step) -> bool {
    step.checks.iter().any(|id| id.starts_with("proxy."))
}

/// The lab's parameters, plus the access proxy's state for the learner's cluster when the step
/// judges the proxy: the cluster is put behind the proxy (through `kubeconfig`, the server's own
/// credentials for it) and what the proxy knows of it goes to the checks.
async fn step_params(
    state: &AppState,
    user_id: &str,
    lab: &Lab,
    step: &Step,
    kubeconfig: &str,
) -> Result<hardlab_grader::context::Params, GradingError> {
    let mut params = lab.params.clone();
    if needs_proxy_state(step) {
        let Some(proxy) = &state.proxy else {
            return Err(GradingError::ProxyNotRunning);
        };
        proxy
            .add_lab_state(user_id, kubeconfig, &mut params)
            .await?;
    }
    Ok(params)
}

async fn live_context(
    state: &AppState,
    (client, endpoint): (kube::Client, hardlab_grader::context::ApiEndpoint),
    params: hardlab_grader::context::Params,
) -> Result<Context, GradingError> {
    // Prove the API server answers first, so an unreachable cluster reads as "could not check"
    // instead of a page of per-check errors that would count as a failed attempt. These labs
    // restart the API server on purpose, so a refused connection is retried for a while.
    //
    // What the learner reads names only the address they registered and whether a Kubernetes API
    // server answered there: never the socket or TLS error, which would tell open ports from
    // closed ones and so turn Check into a scanner of the server's network. The detail is logged
    // at debug level for whoever runs the server.
    let patience = state.config.check_patience;
    let deadline = tokio::time::Instant::now() + patience;
    let address = host_and_port(&endpoint.url);
    let no_answer = || GradingError::NoAnswer {
        address: address.clone(),
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
            // A silent address is retried like a refusing one, so how long Check takes does not
            // tell a filtered port from a closed one either.
            Err(_) if tokio::time::Instant::now() >= deadline => {
                tracing::debug!(%address, "the API server did not answer within 10 seconds");
                return Err(no_answer());
            }
            Err(_) => {}
            Ok(Err(kube::Error::Api(status))) if matches!(status.code, 401 | 403) => {
                return Err(GradingError::CredentialsRefused {
                    address,
                    code: status.code,
                });
            }
            Ok(Err(error)) if tokio::time::Instant::now() >= deadline => {
                tracing::debug!(%address, %error, patience_s = patience.as_secs(), "the API server did not answer");
                return Err(no_answer());
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(Ok(_)) => break,
        }
    }
    Ok(Context::live(Some(client))
        .with_endpoint(endpoint)
        .with_params(params))
}

/// `HOST:PORT` of an API server URL, for messages (the URL itself when it does not parse).
fn host_and_port(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match uri.authority() {
            Some(authority) => format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(443)
            ),
            None => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}
