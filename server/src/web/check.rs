//! Check: grade one step of a lab against the learner's cluster with the grader library, in this
//! process, and keep every attempt.
//!
//! The grader runs here, outside the learner's environment; what it sees is decided by the
//! registration (kubeconfig, node and etcd access), never by anything in the learner's shell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hardlab_grader::{CheckResult, Context, Status};
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
    /// Every check passed (a warning is advice, not a failure); a skip means the grader could not
    /// judge, so it does not pass.
    pub fn passed(&self) -> bool {
        self.problem.is_none()
            && !self.results.is_empty()
            && self
                .results
                .iter()
                .all(|r| matches!(r.status, Status::Pass | Status::Warn))
    }

    fn problem(message: impl Into<String>) -> Self {
        AttemptRecord {
            problem: Some(message.into()),
            results: Vec::new(),
        }
    }
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
    #[error("node access {spec:?}: {source}")]
    NodeAccess {
        spec: String,
        #[source]
        source: hardlab_grader::Error,
    },
    #[error("node access {0:?} is not local:/DIR or docker:CONTAINER")]
    NodeSpec(String),
    #[error("etcd at {url}: {source}")]
    Etcd {
        url: String,
        #[source]
        source: hardlab_grader::Error,
    },
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
    let attempt_id = random_id();
    let started_at = now_ms();
    sqlx::query(
        "INSERT INTO check_attempts (id, user_id, lab_id, step_id, status, started_at) \
         VALUES ($1, $2, $3, $4, 'running', $5)",
    )
    .bind(&attempt_id)
    .bind(user_id)
    .bind(&lab.id)
    .bind(step_id)
    .bind(started_at)
    .execute(&state.db)
    .await?;
    let task_state = state.clone();
    let task_lab = Arc::clone(lab);
    let task_user = user_id.to_owned();
    let task_step = step_id.to_owned();
    let task_attempt = attempt_id.clone();
    tokio::spawn(async move {
        grade_and_store(
            &task_state,
            &task_user,
            &task_lab,
            &task_step,
            &task_attempt,
        )
        .await
    })
    .await??;
    Ok(attempt_id)
}

async fn grade_and_store(
    state: &AppState,
    user_id: &str,
    lab: &Lab,
    step_id: &str,
    attempt_id: &str,
) -> Result<()> {
    let Some(step) = lab.step(step_id) else {
        return Err(Error::InvalidInput(format!("no step {step_id:?}")));
    };
    let started = Instant::now();
    let record = grade(state, user_id, lab, step).await;
    let passed = record.passed();
    let status = if passed {
        "pass"
    } else if record.problem.is_some() {
        "error"
    } else {
        "fail"
    };
    let json = serde_json::to_string(&record)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE check_attempts SET status = $1, results_json = $2, finished_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(&json)
    .bind(now)
    .bind(attempt_id)
    .execute(&mut *tx)
    .await?;
    // A failure that the learner can act on reveals one more hint; "could not grade" does not.
    let counted_failure: i64 = i64::from(status == "fail");
    sqlx::query(
        "INSERT INTO step_progress (user_id, lab_id, step_id, state, failed_attempts, \
         last_attempt_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id, lab_id, step_id) DO UPDATE SET state = $4, \
         failed_attempts = step_progress.failed_attempts + $5, last_attempt_id = $6, updated_at = $7",
    )
    .bind(user_id)
    .bind(&lab.id)
    .bind(step_id)
    .bind(if passed { "passed" } else { "failed" })
    .bind(counted_failure)
    .bind(attempt_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state
        .metrics
        .record_check_run(&lab.id, step_id, status, started.elapsed());
    tracing::info!(lab = %lab.id, step = %step_id, result = status, elapsed_ms = started.elapsed().as_millis() as u64, "step checked");
    Ok(())
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
                "You have no cluster yet: register one under \"My cluster\" (or ask an admin).",
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
