//! A workshop's exports: CSV with one row per learner and step, and JSON Lines with one line
//! per attempt in the report format of `hardlab-grade --format json` (the grader's own
//! renderer), plus an `attempt` object saying whose attempt it was.

use std::fmt::Write as _;

use hardlab_grader::report::{FailOn, Report};
use sqlx::AnyPool;

use super::progress::{self, AttemptFact};
use super::{Workshop, format_time, learners};
use crate::Result;
use crate::labs::Labs;
use crate::web::check::AttemptRecord;

/// The CSV header; outside tools read these names.
pub const CSV_HEADER: [&str; 7] = [
    "learner",
    "lab",
    "step",
    "passed",
    "attempts",
    "first_passed_at",
    "time_spent_seconds",
];

pub async fn csv(db: &AnyPool, labs: &Labs, workshop: &Workshop) -> Result<String> {
    let attempts = progress::attempts(db, workshop).await?;
    let mut out = String::new();
    push_row(&mut out, CSV_HEADER.iter().map(|name| (*name).to_owned()));
    for member in learners(db, &workshop.id).await? {
        let standing = progress::standing(workshop, labs, &member, &attempts);
        for step in &standing.steps {
            push_row(
                &mut out,
                [
                    member.username.clone(),
                    step.lab_id.clone(),
                    step.step_id.clone(),
                    step.passed.to_string(),
                    step.attempts.to_string(),
                    step.first_passed_at.map(format_time).unwrap_or_default(),
                    step.time_spent_ms
                        .map(|ms| (ms / 1000).to_string())
                        .unwrap_or_default(),
                ],
            );
        }
    }
    Ok(out)
}

/// One CSV line (RFC 4180 quoting). A cell that a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`) gets a leading `'`: usernames and lab IDs are chosen by others.
fn push_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    let mut first = true;
    for cell in cells {
        if !first {
            out.push(',');
        }
        first = false;
        let cell = if cell.starts_with(['=', '+', '-', '@']) {
            format!("'{cell}")
        } else {
            cell
        };
        if cell.contains([',', '"', '\n', '\r']) {
            let _ = write!(out, "\"{}\"", cell.replace('"', "\"\""));
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

pub async fn jsonl(db: &AnyPool, workshop: &Workshop) -> Result<String> {
    let attempts = progress::attempts(db, workshop).await?;
    let names: std::collections::HashMap<String, String> = learners(db, &workshop.id)
        .await?
        .into_iter()
        .map(|member| (member.user_id, member.username))
        .collect();
    let mut out = String::new();
    for attempt in &attempts {
        let learner = names.get(&attempt.user_id).map_or("", String::as_str);
        out.push_str(&serde_json::to_string(&attempt_line(
            workshop, learner, attempt,
        )?)?);
        out.push('\n');
    }
    Ok(out)
}

/// The grader's JSON report of the attempt's results, with `attempt` added. An attempt still
/// running has no results yet (an empty report whose `attempt.verdict` says `running`); one that
/// could not start grading carries why in `attempt.problem`.
fn attempt_line(
    workshop: &Workshop,
    learner: &str,
    attempt: &AttemptFact,
) -> Result<serde_json::Value> {
    let record: AttemptRecord = attempt
        .results_json
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let report = Report::new(
        format!("hardlab workshop {} learner {learner}", workshop.join_code),
        "live".to_owned(),
        record.results,
        FailOn::default(),
    );
    let mut line: serde_json::Value =
        serde_json::from_str(&hardlab_grader::report::json::render(&report))?;
    if let Some(object) = line.as_object_mut() {
        object.insert(
            "attempt".to_owned(),
            serde_json::json!({
                "id": attempt.id,
                "workshop": workshop.id,
                "learner": learner,
                "lab": attempt.lab_id,
                "step": attempt.step_id,
                "verdict": attempt.status,
                "origin": attempt.origin,
                "problem": record.problem,
                "started_at": format_time(attempt.started_at),
                "finished_at": attempt.finished_at.map(format_time),
            }),
        );
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        push_row(
            &mut out,
            [
                "a,b".to_owned(),
                "say \"hi\"".to_owned(),
                "=HYPERLINK(1)".to_owned(),
                "plain".to_owned(),
            ],
        );
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",'=HYPERLINK(1),plain\r\n");
    }
}
