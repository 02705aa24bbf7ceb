//! The JSON report: the contract other tools parse (see the CLI contract in issue 2).

use serde::Serialize;

use super::{Report, TOOL, VERSION};
use crate::inputs::documents::SkippedInput;
use crate::model::{CheckResult, Location, Severity, Status, Summary};

#[derive(Serialize)]
struct JsonReport<'a> {
    tool: &'static str,
    version: &'static str,
    target: &'a str,
    mode: &'a str,
    results: Vec<JsonResult<'a>>,
    summary: Summary,
    /// Files and documents not graded, with why; always present, empty when none.
    skipped: &'a [SkippedInput],
}

/// Spelled out rather than serializing [`CheckResult`] directly so the contract's fields are always
/// present (`evidence` is `null` when there is none) whatever the model's serde attributes become.
#[derive(Serialize)]
struct JsonResult<'a> {
    check: &'a str,
    title: &'a str,
    lab: &'a str,
    step: &'a str,
    status: Status,
    severity: Severity,
    message: &'a str,
    evidence: Option<&'a str>,
    remediation: &'a str,
    references: &'a [String],
    locations: &'a [Location],
    duration_ms: u64,
}

impl<'a> From<&'a CheckResult> for JsonResult<'a> {
    fn from(result: &'a CheckResult) -> Self {
        Self {
            check: &result.check,
            title: &result.title,
            lab: &result.lab,
            step: &result.step,
            status: result.status,
            severity: result.severity,
            message: &result.message,
            evidence: result.evidence.as_deref(),
            remediation: &result.remediation,
            references: &result.references,
            locations: &result.locations,
            duration_ms: result.duration_ms,
        }
    }
}

/// The report as pretty-printed JSON with a trailing newline.
pub fn render(report: &Report) -> String {
    let json = JsonReport {
        tool: TOOL,
        version: VERSION,
        target: &report.target,
        mode: &report.mode,
        results: report.results.iter().map(JsonResult::from).collect(),
        summary: report.summary(),
        skipped: &report.skipped,
    };
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_else(|error| {
        // Only plain strings and numbers go in, so this cannot fail; say so rather than panic.
        format!("{{\"tool\":\"{TOOL}\",\"error\":\"serializing the report: {error}\"}}")
    });
    text.push('\n');
    text
}
