//! The live board of a workshop: one row per learner from their standing ([`super::progress`]),
//! their cluster, who is stuck, and the group's failures by check and reason.

use std::collections::{BTreeMap, HashMap};

use hardlab_grader::Status;
use sqlx::AnyPool;

use super::progress::{self, LearnerStanding};
use super::{Workshop, learners};
use crate::Result;
use crate::clusters::lifecycle::ClusterState;
use crate::labs::Labs;
use crate::web::check::AttemptRecord;

/// This many "not yet" verdicts in a row on the current step flag a learner.
pub const STUCK_FAILURES_IN_A_ROW: u32 = 3;
/// Time on the current step above this many times the group's median flags a learner...
pub const STUCK_MEDIAN_FACTOR: i64 = 3;
/// ...when it is also above this (a group that has just begun is not stuck).
pub const STUCK_MIN_MS: i64 = 5 * 60_000;
/// The median needs this many learners on a step to mean anything.
const STUCK_MIN_GROUP: usize = 3;

#[derive(Debug, Clone)]
pub struct BoardRow {
    pub user_id: String,
    pub username: String,
    /// `None`: every step passed.
    pub lab_title: Option<String>,
    pub step_title: Option<String>,
    pub passed_steps: usize,
    pub total_steps: usize,
    /// Checks that passed, of `checks_attempted`.
    pub checks_passed: u32,
    pub checks_attempted: u32,
    pub failed_in_a_row: u32,
    pub time_on_step_ms: Option<i64>,
    /// `ready · 42 min left`, `creating`, or `none`.
    pub cluster: String,
    pub last_activity_ms: i64,
    /// Why the learner looks stuck.
    pub stuck: Option<String>,
}

/// Learners whose last attempt on their current step failed the same check for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub check: String,
    pub step_title: String,
    pub message: String,
    pub learners: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Board {
    pub rows: Vec<BoardRow>,
    pub failures: Vec<FailureGroup>,
    /// The group's median time on their current step.
    pub median_ms: Option<i64>,
}

impl Board {
    pub fn stuck_count(&self) -> usize {
        self.rows.iter().filter(|row| row.stuck.is_some()).count()
    }
}

/// Live clusters of the workshop's learners, by (owner, lab): state and expiry.
async fn clusters_of(
    db: &AnyPool,
    workshop: &Workshop,
) -> Result<HashMap<(String, String), (ClusterState, i64)>> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT c.owner_id, c.lab_id, c.state, c.expires_at FROM clusters c \
         JOIN workshop_learners l ON l.user_id = c.owner_id AND l.workshop_id = $1 \
         WHERE c.state <> 'deleted'",
    )
    .bind(&workshop.id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(owner, lab, state, expires)| ((owner, lab), (ClusterState::parse(&state), expires)))
        .filter(|(_, (state, _))| state.is_live())
        .collect())
}

pub async fn board(db: &AnyPool, labs: &Labs, workshop: &Workshop, now: i64) -> Result<Board> {
    let now = now.min(workshop.closes_at());
    let attempts = progress::attempts(db, workshop).await?;
    let clusters = clusters_of(db, workshop).await?;
    let standings: Vec<LearnerStanding> = learners(db, &workshop.id)
        .await?
        .iter()
        .map(|member| progress::standing(workshop, labs, member, &attempts))
        .collect();
    let mut times: Vec<i64> = standings
        .iter()
        .filter_map(|standing| standing.time_on_current_ms(now))
        .collect();
    times.sort_unstable();
    let median_ms = (times.len() >= STUCK_MIN_GROUP).then(|| times[times.len() / 2]);
    let mut failures: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let by_id: HashMap<&str, &progress::AttemptFact> =
        attempts.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut rows = Vec::new();
    for standing in &standings {
        let current = standing.current_step();
        let time_on_step_ms = standing.time_on_current_ms(now);
        let failed_in_a_row = current.map_or(0, |step| step.failed_in_a_row);
        let stuck = if failed_in_a_row >= STUCK_FAILURES_IN_A_ROW {
            Some(format!("{failed_in_a_row} failed checks in a row"))
        } else {
            match (median_ms, time_on_step_ms) {
                (Some(median), Some(time))
                    if time > STUCK_MIN_MS && time > median * STUCK_MEDIAN_FACTOR =>
                {
                    Some(format!(
                        "{} min on this step, the group's median is {} min",
                        time / 60_000,
                        median / 60_000
                    ))
                }
                _ => None,
            }
        };
        if let Some(step) = current
            && step.failed_in_a_row > 0
            && let Some(last) = step.last_attempt_id.as_deref().and_then(|id| by_id.get(id))
        {
            let record: AttemptRecord = last
                .results_json
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default();
            for result in record.results.iter().filter(|r| r.status == Status::Fail) {
                *failures
                    .entry((
                        result.check.clone(),
                        step.step_title.clone(),
                        result.message.clone(),
                    ))
                    .or_default() += 1;
            }
        }
        let lab_id = current.map_or_else(
            || workshop.labs.last().cloned().unwrap_or_default(),
            |step| step.lab_id.clone(),
        );
        let cluster = match clusters.get(&(standing.member.user_id.clone(), lab_id.clone())) {
            Some((ClusterState::Ready, expires)) => {
                format!("ready · {} min left", ((expires - now).max(0)) / 60_000)
            }
            Some((state, _)) => state.as_str().to_owned(),
            None => "none".to_owned(),
        };
        rows.push(BoardRow {
            user_id: standing.member.user_id.clone(),
            username: standing.member.username.clone(),
            lab_title: current.and_then(|step| labs.get(&step.lab_id).map(|l| l.title.clone())),
            step_title: current.map(|step| step.step_title.clone()),
            passed_steps: standing.passed_steps(),
            total_steps: standing.steps.len(),
            checks_passed: standing.checks().0,
            checks_attempted: standing.checks().1,
            failed_in_a_row,
            time_on_step_ms,
            cluster,
            last_activity_ms: standing.last_activity,
            stuck,
        });
    }
    // Stuck learners first, then the ones furthest behind.
    rows.sort_by(|a, b| {
        b.stuck
            .is_some()
            .cmp(&a.stuck.is_some())
            .then(a.passed_steps.cmp(&b.passed_steps))
            .then(a.username.cmp(&b.username))
    });
    let mut failures: Vec<FailureGroup> = failures
        .into_iter()
        .map(|((check, step_title, message), learners)| FailureGroup {
            check,
            step_title,
            message,
            learners,
        })
        .collect();
    failures.sort_by(|a, b| b.learners.cmp(&a.learners).then(a.check.cmp(&b.check)));
    Ok(Board {
        rows,
        failures,
        median_ms,
    })
}
