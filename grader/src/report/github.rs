//! GitHub Actions workflow commands: one `::error` or `::warning` annotation per finding that
//! counts, which GitHub shows on the pull request's changed lines and in the run's summary.
//!
//! Syntax and escaping as GitHub documents them ("Workflow commands for GitHub Actions", and the
//! toolkit's `command.ts`): `::error file=F,line=L,title=T::MESSAGE`; in the message `%`, CR and LF
//! are escaped as `%25`, `%0D` and `%0A`; in property values `:` and `,` (`%3A`, `%2C`) too.
//! Suppressed and baselined findings get no annotation (nothing to act on); the closing plain lines
//! count them, and list baseline entries that are fixed.

use std::fmt::Write;

use super::{FailOn, Report};
use crate::model::Status;
use crate::pipeline::Disposition;

/// Annotations are read in a pull request's margin; the JSON and SARIF reports have everything.
const MESSAGE_WIDTH: usize = 2000;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for finding in &report.findings {
        if !finding.disposition.counts() {
            continue;
        }
        let Some(result) = report.results.get(finding.result) else {
            continue;
        };
        let command = if report.fails(finding) {
            "error"
        } else if finding.status == Status::Warn && report.fail_on != FailOn::Warn {
            "warning"
        } else {
            "notice"
        };
        let mut properties = Vec::new();
        if !finding.file.is_empty() {
            let file = finding.file.strip_prefix("./").unwrap_or(&finding.file);
            properties.push(format!("file={}", escape_property(file)));
            properties.push(format!("line={}", finding.field_line.max(1)));
        }
        let controls = controls(&result.references);
        let title = match (finding.status, controls.is_empty()) {
            (Status::Error, _) => format!("{} could not be checked", result.check),
            (_, true) => format!("{}: {}", result.check, result.title),
            (_, false) => format!("{}: {} ({controls})", result.check, result.title),
        };
        properties.push(format!("title={}", escape_property(&title)));
        let mut message = match &finding.object {
            Some(object) => format!("{object}: {}", finding.message),
            None => finding.message.clone(),
        };
        if let Disposition::Expired(suppression) = &finding.disposition {
            let _ = write!(
                message,
                "\nThe suppression expired on {}: {}",
                suppression.expires.as_deref().unwrap_or_default(),
                suppression.describe()
            );
        }
        if finding.status != Status::Error {
            let _ = write!(message, "\nFix: {}", result.remediation);
        }
        let _ = writeln!(
            out,
            "::{command} {}::{}",
            properties.join(","),
            escape_data(&super::cap(&message, MESSAGE_WIDTH))
        );
    }
    let counts = report.finding_counts();
    let summary = report.summary();
    let _ = writeln!(
        out,
        "hardlab-grade: {} checks passed, {} warned, {} failed, {} errors; {} findings count, {} suppressed, {} in the baseline, {} baseline entries fixed",
        summary.pass,
        summary.warn,
        summary.fail,
        summary.error,
        counts.open + counts.expired,
        counts.suppressed,
        counts.baselined,
        counts.fixed,
    );
    for entry in &report.fixed {
        let _ = writeln!(
            out,
            "hardlab-grade: fixed, remove from the baseline: {} {}",
            entry.check,
            entry.object.as_deref().unwrap_or(&entry.file)
        );
    }
    out
}

/// CIS and NSA/CISA items, short, for the annotation's title.
fn controls(references: &[String]) -> String {
    let cis = super::Framework::Cis.controls(references);
    cis.iter()
        .map(|item| format!("CIS {item}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A message: `%`, CR and LF.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value: as a message, and `:` and `,`, which separate properties.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_what_the_toolkit_does() {
        assert_eq!(escape_data("100% a\r\nb: c, d"), "100%25 a%0D%0Ab: c, d");
        assert_eq!(
            escape_property("100% a\r\nb: c, d"),
            "100%25 a%0D%0Ab%3A c%2C d"
        );
    }
}
