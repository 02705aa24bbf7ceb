//! A learner's standing in a workshop, from their attempts: the one place the export and the live
//! board get "passed", "attempts", "time spent" and "current step" from.
//!
//! Only attempts made while the learner was in the workshop count (from their joining until the
//! workshop closed), so a learner who did a lab last week starts the workshop at step 1.
//! Time on a step runs from the moment the step before it (in the workshop's order) was first
//! passed, or from joining (or the start, if later) for the first step, until the step's own
//! first pass; hardlab does not see which page a learner has open, so this is the time between
//! finished steps, said so in docs/architecture.md.

use hardlab_grader::Verdict;
use sqlx::AnyPool;

use super::{Member, Workshop};
use crate::Result;
use crate::labs::Labs;

/// One stored attempt of a workshop's learner on one of its labs.
#[derive(Debug, Clone)]
pub struct AttemptFact {
    pub id: String,
    pub user_id: String,
    pub lab_id: String,
    pub step_id: String,
    /// `running` or a verdict (`pass`, `warn`, `fail`, `unjudged`).
    pub status: String,
    /// `check`, `auto` or `catch-up`.
    pub origin: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub results_json: Option<String>,
}

impl AttemptFact {
    pub fn verdict(&self) -> Option<Verdict> {
        Verdict::parse(&self.status)
    }

    fn at(&self) -> i64 {
        self.finished_at.unwrap_or(self.started_at)
    }
}

/// Every attempt of the workshop's learners on its labs while they were in it, oldest first.
pub async fn attempts(db: &AnyPool, workshop: &Workshop) -> Result<Vec<AttemptFact>> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.user_id, a.lab_id, a.step_id, a.status, a.origin, a.started_at, \
         a.finished_at, a.results_json FROM check_attempts a \
         JOIN workshop_learners l ON l.user_id = a.user_id AND l.workshop_id = $1 \
         WHERE a.started_at >= l.joined_at AND a.started_at <= $2 \
         ORDER BY a.started_at, a.id",
    )
    .bind(&workshop.id)
    .bind(workshop.closes_at())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|row| workshop.labs.contains(&row.2))
        .map(
            |(
                id,
                user_id,
                lab_id,
                step_id,
                status,
                origin,
                started_at,
                finished_at,
                results_json,
            )| AttemptFact {
                id,
                user_id,
                lab_id,
                step_id,
                status,
                origin,
                started_at,
                finished_at,
                results_json,
            },
        )
        .collect())
}

/// One step of the workshop for one learner.
#[derive(Debug, Clone)]
pub struct StepStanding {
    pub lab_id: String,
    pub step_id: String,
    pub step_title: String,
    /// Finished attempts (a running one is not counted yet).
    pub attempts: u32,
    /// Of those, the ones that passed (with or without warnings).
    pub passed_attempts: u32,
    pub passed: bool,
    pub first_passed_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    /// When the learner could start on it: the step before it was passed, or they joined.
    pub began_at: i64,
    /// "Not yet" verdicts since the last pass, ignoring ones that could not be judged.
    pub failed_in_a_row: u32,
    /// From `began_at` to the first pass, or to the last attempt when not passed (none without
    /// attempts).
    pub time_spent_ms: Option<i64>,
    /// The last finished attempt's ID, for its results.
    pub last_attempt_id: Option<String>,
}

/// A learner's whole standing in a workshop.
#[derive(Debug, Clone)]
pub struct LearnerStanding {
    pub member: Member,
    /// Every checked step of every lab of the workshop, in its order.
    pub steps: Vec<StepStanding>,
    /// The first step not passed yet (`None`: all done).
    pub current: Option<usize>,
    /// The learner's last attempt, else their joining.
    pub last_activity: i64,
}

impl LearnerStanding {
    pub fn passed_steps(&self) -> usize {
        self.steps.iter().filter(|step| step.passed).count()
    }

    /// Checks pressed in the workshop (finished attempts) and how many of them passed.
    pub fn checks(&self) -> (u32, u32) {
        self.steps.iter().fold((0, 0), |(passed, all), step| {
            (passed + step.passed_attempts, all + step.attempts)
        })
    }

    pub fn current_step(&self) -> Option<&StepStanding> {
        self.current.and_then(|index| self.steps.get(index))
    }

    /// How long the learner has been on their current step at `now` (up to the workshop's close).
    pub fn time_on_current_ms(&self, now: i64) -> Option<i64> {
        self.current_step().map(|step| (now - step.began_at).max(0))
    }
}

/// The standing of `member` from the workshop's `attempts` (all learners' ones; this picks theirs).
pub fn standing(
    workshop: &Workshop,
    labs: &Labs,
    member: &Member,
    attempts: &[AttemptFact],
) -> LearnerStanding {
    let mine: Vec<&AttemptFact> = attempts
        .iter()
        .filter(|attempt| attempt.user_id == member.user_id)
        .collect();
    let mut begin = member.joined_at.max(workshop.starts_at);
    let mut steps = Vec::new();
    for lab in workshop.labs.iter().filter_map(|id| labs.get(id)) {
        // A step without checks (reading, looking around) has no verdict to wait for.
        for step in lab.steps.iter().filter(|step| !step.checks.is_empty()) {
            let of_step = mine
                .iter()
                .filter(|a| a.lab_id == lab.id && a.step_id == step.id && a.verdict().is_some());
            let mut standing = StepStanding {
                lab_id: lab.id.clone(),
                step_id: step.id.clone(),
                step_title: step.title.clone(),
                attempts: 0,
                passed_attempts: 0,
                passed: false,
                first_passed_at: None,
                last_attempt_at: None,
                began_at: begin,
                failed_in_a_row: 0,
                time_spent_ms: None,
                last_attempt_id: None,
            };
            for attempt in of_step {
                standing.attempts += 1;
                standing.last_attempt_at = Some(attempt.at());
                standing.last_attempt_id = Some(attempt.id.clone());
                match attempt.verdict() {
                    Some(verdict) if verdict.passed() => {
                        standing.passed = true;
                        standing.passed_attempts += 1;
                        standing.failed_in_a_row = 0;
                        standing.first_passed_at.get_or_insert(attempt.at());
                    }
                    Some(Verdict::NotYet) => standing.failed_in_a_row += 1,
                    _ => {}
                }
            }
            let until = standing.first_passed_at.or(standing.last_attempt_at);
            standing.time_spent_ms = until.map(|until| (until - begin).max(0));
            if let Some(passed_at) = standing.first_passed_at {
                begin = begin.max(passed_at);
            }
            steps.push(standing);
        }
    }
    let current = steps.iter().position(|step| !step.passed);
    let last_activity = mine
        .iter()
        .map(|attempt| attempt.at())
        .max()
        .unwrap_or(member.joined_at);
    LearnerStanding {
        member: member.clone(),
        steps,
        current,
        last_activity,
    }
}
