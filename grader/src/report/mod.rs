//! Output formats: text, JSON, JUnit and SARIF for results; text, JSON and Markdown for the catalog.

pub mod catalog;
pub mod json;
pub mod junit;
pub mod sarif;
pub mod text;

use crate::inputs::documents::SkippedInput;
use crate::model::{CheckResult, Status, Summary};

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
            Status::Pass | Status::Skip => false,
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
}

impl Report {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.results)
    }

    /// Whether any result fails the run under `fail_on`.
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|result| self.fail_on.fails(result.status))
    }
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
