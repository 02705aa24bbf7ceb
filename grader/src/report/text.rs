//! The human-readable report: results grouped by lab, evidence indented under each, a summary line.

use std::fmt::Write;

use super::{Report, TOOL, VERSION};
use crate::model::{CheckResult, Status};

/// ANSI styling, or none (for `NO_COLOR`, files and pipes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Always,
    Never,
}

impl Color {
    fn paint(self, code: &str, text: &str) -> String {
        match self {
            Color::Always => format!("\x1b[{code}m{text}\x1b[0m"),
            Color::Never => text.to_owned(),
        }
    }
}

fn status_code(status: Status) -> &'static str {
    match status {
        Status::Pass => "32",
        Status::Skip => "2",
        Status::Warn => "33",
        Status::Fail => "1;31",
        Status::Error => "1;35",
    }
}

pub fn render(report: &Report, color: Color) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {TOOL} {VERSION}: {} ({})",
        color.paint("1", "hardlab"),
        report.target,
        report.mode
    );
    let mut current_lab: Option<&str> = None;
    for result in &report.results {
        if current_lab != Some(result.lab.as_str()) {
            current_lab = Some(&result.lab);
            let _ = writeln!(out, "\n{}", color.paint("1;4", &result.lab));
        }
        write_result(&mut out, result, color);
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            color.paint("1;4", &format!("not graded ({})", report.skipped.len()))
        );
        for skipped in &report.skipped {
            let _ = writeln!(out, "  {}", sanitize(&skipped.to_string()));
        }
    }
    let summary = report.summary();
    let _ = writeln!(
        out,
        "\n{} passed, {} warnings, {} failed, {} skipped, {} errors",
        color.paint(status_code(Status::Pass), &summary.pass.to_string()),
        color.paint(status_code(Status::Warn), &summary.warn.to_string()),
        color.paint(status_code(Status::Fail), &summary.fail.to_string()),
        summary.skip,
        color.paint(status_code(Status::Error), &summary.error.to_string()),
    );
    out
}

fn write_result(out: &mut String, result: &CheckResult, color: Color) {
    let label = format!("{:<5}", result.status.as_str().to_uppercase());
    let _ = writeln!(
        out,
        "  {} {}  {}",
        color.paint(status_code(result.status), &label),
        color.paint("1", &result.check),
        result.title
    );
    let indent = "        ";
    for line in result.message.lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
    for location in &result.locations {
        let at = match (&location.object, location.file.is_empty()) {
            (Some(object), true) => object.clone(),
            (Some(object), false) => format!("{}:{} ({object})", location.file, location.line),
            (None, _) => format!("{}:{}", location.file, location.line),
        };
        let _ = writeln!(out, "{indent}at {at}");
    }
    if let Some(evidence) = &result.evidence {
        let _ = writeln!(out, "{indent}{}", color.paint("2", "evidence:"));
        for line in evidence.lines() {
            let _ = writeln!(out, "{indent}  {}", sanitize(line));
        }
    }
    if matches!(result.status, Status::Fail | Status::Warn | Status::Error) {
        let _ = writeln!(
            out,
            "{indent}{} {}",
            color.paint("36", "fix:"),
            result.remediation
        );
    }
}

/// Evidence may quote raw bytes; keep terminal control sequences out of the output.
fn sanitize(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() && c != '\t' { '.' } else { c })
        .collect()
}
