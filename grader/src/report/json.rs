//! The JSON report: the contract other tools parse (see the CLI contract in issue 2).

use serde::Serialize;

use super::framework::{self, ControlSummary, Framework};
use super::{FindingCounts, Report, TOOL, VERSION};
use crate::inputs::documents::SkippedInput;
use crate::model::{CheckResult, Location, Severity, Status, Summary};
use crate::pipeline::Finding;
use crate::pipeline::baseline::Entry;

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
    /// One entry per check and object, with whether it counts (open, suppressed with its reason
    /// and source, expired, baselined) and its fingerprint.
    findings: &'a [Finding],
    finding_summary: FindingCounts,
    /// Baseline entries whose finding is gone.
    fixed: &'a [Entry],
    #[serde(skip_serializing_if = "Option::is_none")]
    framework: Option<JsonFramework>,
}

#[derive(Serialize)]
struct JsonFramework {
    name: Framework,
    title: &'static str,
    controls: Vec<ControlSummary>,
}

/// Spelled out rather than serializing [`CheckResult`] directly so the contract's fields are always
/// present (`evidence` is `null` when there is none) whatever the model's serde attributes become.
#[derive(Serialize)]
struct JsonResult<'a> {
    check: &'a str,
    title: &'a str,
    lab: &'a str,
    step: &'a str,
    /// The status after suppressions and the baseline: what the exit code follows.
    status: Status,
    /// The status the check reported before suppressions and the baseline.
    check_status: Status,
    severity: Severity,
    message: &'a str,
    evidence: Option<&'a str>,
    remediation: &'a str,
    references: &'a [String],
    locations: &'a [Location],
    duration_ms: u64,
}

impl<'a> JsonResult<'a> {
    fn new(result: &'a CheckResult, status: Status) -> Self {
        Self {
            check: &result.check,
            title: &result.title,
            lab: &result.lab,
            step: &result.step,
            status,
            check_status: result.status,
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
    let mut bytes = Vec::new();
    if let Err(error) = write(report, &mut bytes) {
        // Only plain strings and numbers go in, and a Vec takes every write; say so rather than panic.
        return format!("{{\"tool\":\"{TOOL}\",\"error\":\"serializing the report: {error}\"}}\n");
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Writes the report as [`render`] does, straight into `out`: a large scan's report (tens of
/// megabytes) is never held whole in memory.
pub fn write(report: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let json = JsonReport {
        tool: TOOL,
        version: VERSION,
        target: &report.target,
        mode: &report.mode,
        results: report
            .results
            .iter()
            .enumerate()
            .map(|(index, result)| JsonResult::new(result, report.status_of(index)))
            .collect(),
        summary: report.summary(),
        skipped: &report.skipped,
        findings: &report.findings,
        finding_summary: report.finding_counts(),
        fixed: &report.fixed,
        framework: report.framework.map(|framework| JsonFramework {
            name: framework,
            title: framework.title(),
            controls: framework::summarize(report, framework),
        }),
    };
    serde_json::to_writer_pretty(&mut *out, &json).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
