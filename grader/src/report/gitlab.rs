//! GitLab Code Quality: the JSON array a job publishes as `artifacts:reports:codequality`, which
//! GitLab shows in the merge request and beside the diff. Each entry has the fields GitLab's
//! documentation requires (`description`, `check_name`, `fingerprint`, `severity`,
//! `location.path`, `location.lines.begin`). Only findings that count are listed: the widget shows
//! what a change makes worse, and suppressed or baselined findings are accepted. Checks that
//! could not run have no file to point at, so they are left to the exit code and the other formats.

use serde_json::{Value, json};

use super::Report;
use crate::model::{Severity, Status};

pub fn render(report: &Report) -> String {
    let entries: Vec<Value> = report
        .findings
        .iter()
        .filter(|finding| finding.disposition.counts() && finding.status != Status::Error)
        .filter_map(|finding| {
            let result = report.results.get(finding.result)?;
            let path = if finding.file.is_empty() {
                // Live objects have no file; the object's ID is the closest thing to a place.
                finding
                    .object
                    .clone()
                    .unwrap_or_else(|| report.target.clone())
            } else {
                finding
                    .file
                    .strip_prefix("./")
                    .unwrap_or(&finding.file)
                    .to_owned()
            };
            let description = match &finding.object {
                Some(object) => format!("{}: {object}: {}", result.title, finding.message),
                None => format!("{}: {}", result.title, finding.message),
            };
            Some(json!({
                "type": "issue",
                "engine_name": super::TOOL,
                "check_name": result.check,
                "description": description,
                "content": { "body": body(&result.remediation, &result.references) },
                "categories": ["Security"],
                "fingerprint": finding.fingerprint,
                "severity": severity(result.severity, finding.status),
                "location": {
                    "path": path,
                    "lines": { "begin": finding.field_line.max(1) },
                },
            }))
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&Value::Array(entries)).unwrap_or_default();
    text.push('\n');
    text
}

/// The remediation, and the CIS and NSA/CISA items the check covers.
fn body(remediation: &str, references: &[String]) -> String {
    let mut items: Vec<String> = super::Framework::Cis
        .controls(references)
        .into_iter()
        .map(|item| format!("CIS Kubernetes Benchmark {item}"))
        .collect();
    items.extend(
        super::Framework::Nsa
            .controls(references)
            .into_iter()
            .map(|item| format!("NSA/CISA Kubernetes Hardening Guide: {item}")),
    );
    if items.is_empty() {
        remediation.to_owned()
    } else {
        format!("{remediation}\n\nControls: {}", items.join("; "))
    }
}

/// GitLab's scale is info, minor, major, critical, blocker; a warning is at most minor.
fn severity(severity: Severity, status: Status) -> &'static str {
    if status == Status::Warn {
        return match severity {
            Severity::Low => "info",
            _ => "minor",
        };
    }
    match severity {
        Severity::Critical => "critical",
        Severity::High => "major",
        Severity::Medium => "minor",
        Severity::Low => "info",
    }
}
