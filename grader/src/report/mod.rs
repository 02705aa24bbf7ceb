//! Output formats: text, JSON, JUnit, SARIF, GitHub Actions annotations and GitLab Code Quality
//! for results; text, JSON and Markdown for the catalog.

pub mod catalog;
pub mod framework;
pub mod github;
pub mod gitlab;
pub mod json;
pub mod junit;
pub mod sarif;
pub mod text;

use crate::inputs::documents::SkippedInput;
use crate::model::{CheckResult, Status, Summary};
use crate::pipeline::{self, Finding, baseline};
pub use framework::Framework;

/// The tool name every machine-readable format carries.
pub const TOOL: &str = "hardlab-grade";
/// The grader's version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which statuses make a run fail (exit code 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// `fail` and `error` results fail the run; warnings never do.
    #[default]
    Fail,
    /// Warnings fail the run too.
    Warn,
}

impl FailOn {
    /// Whether a result with this status fails the run. An `error` result (a check that could not
    /// reach its input, e.g. forbidden) counts as a failure: the cluster was not shown to be hardened.
    pub fn fails(self, status: Status) -> bool {
        match status {
            Status::Fail | Status::Error => true,
            Status::Warn => self == FailOn::Warn,
            Status::Pass | Status::NotApplicable | Status::Skip => false,
        }
    }
}

/// One grading run, ready to render.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was graded: the API server URL and context, or the input files.
    pub target: String,
    /// `live` or `static`.
    pub mode: String,
    pub results: Vec<CheckResult>,
    pub fail_on: FailOn,
    /// Input files and documents that were not graded, each with why (static mode).
    pub skipped: Vec<SkippedInput>,
    /// The `fail`, `warn` and `error` results split per check and object, with whether each counts.
    pub findings: Vec<Finding>,
    /// Baseline entries whose finding is gone (only when a baseline was given).
    pub fixed: Vec<baseline::Entry>,
    /// Whether a baseline was compared against (SARIF then says which findings are new).
    pub baseline: bool,
    /// The control framework to summarize by, when one was asked for.
    pub framework: Option<Framework>,
}

/// How many findings are in each disposition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FindingCounts {
    pub open: usize,
    pub suppressed: usize,
    pub expired: usize,
    pub baselined: usize,
    pub fixed: usize,
}

impl Report {
    /// A report whose findings are all open (no suppressions, no baseline), field lines unknown.
    pub fn new(target: String, mode: String, results: Vec<CheckResult>, fail_on: FailOn) -> Self {
        let findings = pipeline::findings(&results, &[], &mut pipeline::Sources::default());
        Self::with_findings(target, mode, results, fail_on, findings)
    }

    /// A report of findings made already (by [`pipeline::findings`], with field lines).
    pub fn with_findings(
        target: String,
        mode: String,
        results: Vec<CheckResult>,
        fail_on: FailOn,
        findings: Vec<Finding>,
    ) -> Self {
        Self {
            target,
            mode,
            results,
            fail_on,
            findings,
            fixed: Vec::new(),
            baseline: false,
            framework: None,
            skipped: Vec::new(),
        }
    }

    /// The counts of results by the status they have after suppressions and the baseline: a
    /// result none of whose findings still count is a pass.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for index in 0..self.results.len() {
            match self.status_of(index) {
                Status::Pass => summary.pass += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
                Status::Skip => summary.skip += 1,
                Status::Error => summary.error += 1,
                Status::NotApplicable => summary.not_applicable += 1,
            }
        }
        summary
    }

    /// The status of result `index` after suppressions and the baseline.
    pub fn status_of(&self, index: usize) -> Status {
        let Some(result) = self.results.get(index) else {
            return Status::Skip;
        };
        let mut findings = self.findings_of(index).peekable();
        if findings.peek().is_none() {
            return result.status;
        }
        if findings.any(|finding| finding.disposition.counts()) {
            result.status
        } else {
            Status::Pass
        }
    }

    /// The findings of result `index`.
    pub fn findings_of(&self, index: usize) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |finding| finding.result == index)
    }

    pub fn finding_counts(&self) -> FindingCounts {
        let mut counts = FindingCounts {
            fixed: self.fixed.len(),
            ..FindingCounts::default()
        };
        for finding in &self.findings {
            match finding.disposition {
                pipeline::Disposition::Open => counts.open += 1,
                pipeline::Disposition::Suppressed(_) => counts.suppressed += 1,
                pipeline::Disposition::Expired(_) => counts.expired += 1,
                pipeline::Disposition::Baselined => counts.baselined += 1,
            }
        }
        counts
    }

    /// Whether any finding that still counts fails the run under `fail_on` (an expired
    /// suppression counts; a suppressed or baselined finding does not).
    pub fn failed(&self) -> bool {
        self.findings
            .iter()
            .any(|finding| finding.disposition.counts() && self.fail_on.fails(finding.status))
    }

    /// Whether a finding fails the run (what annotations mark as errors).
    pub fn fails(&self, finding: &Finding) -> bool {
        finding.disposition.counts() && self.fail_on.fails(finding.status)
    }
}

/// Caps a line for a terminal or a log: long ones end with how much was left out.
pub(crate) fn cap(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width).collect();
    let left = text.chars().count() - width;
    format!("{kept}... ({left} more characters; the JSON report has all)")
}

/// Text for XML 1.0 (JUnit): escapes markup and replaces the control characters XML cannot carry
/// at all (evidence may quote raw bytes) with U+FFFD. Newlines and tabs become character
/// references so they survive in attribute values too.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\n' => escaped.push_str("&#10;"),
            '\r' => escaped.push_str("&#13;"),
            '\t' => escaped.push_str("&#9;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => escaped.push('\u{fffd}'),
            other => escaped.push(other),
        }
    }
    escaped
}
