//! The human-readable report, grouped by check (the default) or by file and object. Each finding is
//! one line naming the file, the offending field's line and the object, once; long lines are capped
//! (the JSON report has everything); a summary closes it.

use std::fmt::Write;

use super::{Framework, Report, TOOL, VERSION, cap, framework};
use crate::model::{CheckResult, Status};
use crate::pipeline::{Disposition, Finding};

/// The longest line the report prints before capping it.
pub const WIDTH: usize = 240;
const INDENT: &str = "        ";

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

/// How findings are arranged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// Each check with the objects it found (what a reviewer of one rule wants).
    #[default]
    Check,
    /// Each file and object with the checks it fails (what the owner of a manifest wants).
    File,
}

fn status_code(status: Status) -> &'static str {
    match status {
        Status::Pass => "32",
        Status::NotApplicable | Status::Skip => "2",
        Status::Warn => "33",
        Status::Fail => "1;31",
        Status::Error => "1;35",
    }
}

/// A status as the text report's first column shows it, five characters wide.
fn status_label(status: Status) -> String {
    match status {
        Status::NotApplicable => "N/A  ".to_owned(),
        other => format!("{:<5}", other.as_str().to_uppercase()),
    }
}

/// The report grouped by check.
pub fn render(report: &Report, color: Color) -> String {
    render_grouped(report, color, GroupBy::Check)
}

pub fn render_grouped(report: &Report, color: Color, group_by: GroupBy) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {TOOL} {VERSION}: {} ({})",
        color.paint("1", "hardlab"),
        sanitize(&report.target),
        report.mode
    );
    match group_by {
        GroupBy::Check => by_check(&mut out, report, color),
        GroupBy::File => by_file(&mut out, report, color),
    }
    if let Some(framework) = report.framework {
        write_framework(&mut out, report, framework, color);
    }
    write_summary(&mut out, report, color);
    out
}

fn by_check(out: &mut String, report: &Report, color: Color) {
    let mut current_lab: Option<&str> = None;
    for (index, result) in report.results.iter().enumerate() {
        if current_lab != Some(result.lab.as_str()) {
            current_lab = Some(&result.lab);
            let _ = writeln!(out, "\n{}", color.paint("1;4", &result.lab));
        }
        write_result(out, report, index, result, color);
    }
}

fn write_result(
    out: &mut String,
    report: &Report,
    index: usize,
    result: &CheckResult,
    color: Color,
) {
    let status = report.status_of(index);
    let findings: Vec<&Finding> = report.findings_of(index).collect();
    let label = status_label(status);
    let accepted = accepted_note(&findings);
    let _ = writeln!(
        out,
        "  {} {}  {}{}",
        color.paint(status_code(status), &label),
        color.paint("1", &result.check),
        result.title,
        accepted
    );
    for line in headline(result, &findings).lines() {
        let _ = writeln!(out, "{INDENT}{}", cap(&sanitize(line), WIDTH));
    }
    let has_objects = findings
        .iter()
        .any(|finding| finding.object.is_some() || !finding.file.is_empty());
    if has_objects {
        for finding in &findings {
            let mut line = format!("at {}", finding.place());
            if finding.message != result.message {
                line.push_str(": ");
                line.push_str(&finding.message);
            }
            let _ = writeln!(out, "{INDENT}{}", cap(&sanitize(&line), WIDTH));
            write_disposition(out, &finding.disposition, color);
        }
    } else {
        for finding in &findings {
            write_disposition(out, &finding.disposition, color);
        }
    }
    // Evidence that only repeats the per-object lines above is left out.
    let evidence_repeats = findings
        .iter()
        .any(|finding| finding.message != result.message);
    if let Some(evidence) = result.evidence.as_ref().filter(|_| !evidence_repeats) {
        let _ = writeln!(out, "{INDENT}{}", color.paint("2", "evidence:"));
        for line in evidence.lines() {
            let _ = writeln!(out, "{INDENT}  {}", cap(&sanitize(line), WIDTH));
        }
    }
    if matches!(status, Status::Fail | Status::Warn | Status::Error) {
        let _ = writeln!(
            out,
            "{INDENT}{} {}",
            color.paint("36", "fix:"),
            result.remediation
        );
        let controls = controls(result);
        if !controls.is_empty() {
            let _ = writeln!(out, "{INDENT}{} {controls}", color.paint("2", "controls:"));
        }
    }
}

/// The check's message without the objects it names when each finding has its own line below,
/// so that every object appears once per check: `3 of 40 workloads do not pass (a, b, c); first:
/// ...` becomes `3 of 40 workloads do not pass`.
fn headline<'a>(result: &'a CheckResult, findings: &[&Finding]) -> &'a str {
    let message = result.message.as_str();
    if !findings
        .iter()
        .any(|finding| finding.message != result.message)
    {
        return message;
    }
    let first_object = findings
        .iter()
        .filter_map(|finding| finding.object.as_deref())
        .filter_map(|object| message.find(object))
        .min();
    match first_object {
        Some(at) if at > 0 => message[..at].trim_end_matches([' ', '(', ':', ';', ',']),
        _ => message,
    }
}

/// ` (2 suppressed, 1 in the baseline)` after a check's title, when some findings are accepted.
fn accepted_note(findings: &[&Finding]) -> String {
    let suppressed = findings
        .iter()
        .filter(|f| matches!(f.disposition, Disposition::Suppressed(_)))
        .count();
    let baselined = findings
        .iter()
        .filter(|f| f.disposition == Disposition::Baselined)
        .count();
    let mut parts = Vec::new();
    if suppressed > 0 {
        parts.push(format!("{suppressed} suppressed"));
    }
    if baselined > 0 {
        parts.push(format!("{baselined} in the baseline"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn write_disposition(out: &mut String, disposition: &Disposition, color: Color) {
    let line = match disposition {
        Disposition::Open => return,
        Disposition::Suppressed(suppression) => {
            format!(
                "{} {}",
                color.paint("2", "suppressed:"),
                suppression.describe()
            )
        }
        Disposition::Expired(suppression) => format!(
            "{} {}",
            color.paint(
                status_code(Status::Fail),
                "suppression expired, counts again:"
            ),
            suppression.describe()
        ),
        Disposition::Baselined => color.paint("2", "in the baseline"),
    };
    let _ = writeln!(out, "{INDENT}  {}", cap(&sanitize(&line), WIDTH));
}

fn controls(result: &CheckResult) -> String {
    let mut items: Vec<String> = Framework::Cis
        .controls(&result.references)
        .into_iter()
        .map(|item| format!("CIS {item}"))
        .collect();
    items.extend(
        Framework::Nsa
            .controls(&result.references)
            .into_iter()
            .map(|item| format!("NSA/CISA {item}")),
    );
    items.join("; ")
}

fn by_file(out: &mut String, report: &Report, color: Color) {
    // Files in the order their first finding appears, then objects in line order.
    let mut files: Vec<&str> = Vec::new();
    for finding in &report.findings {
        if !files.contains(&finding.file.as_str()) {
            files.push(&finding.file);
        }
    }
    files.sort_by_key(|file| file.is_empty());
    for file in files {
        let heading = if file.is_empty() {
            "(no file: the cluster, or the run)"
        } else {
            file
        };
        let _ = writeln!(out, "\n{}", color.paint("1;4", &sanitize(heading)));
        let mut findings: Vec<&Finding> =
            report.findings.iter().filter(|f| f.file == file).collect();
        findings.sort_by_key(|finding| (finding.line, finding.object.clone(), finding.field_line));
        let mut current: Option<(usize, Option<&str>)> = None;
        for finding in findings {
            let key = (finding.line, finding.object.as_deref());
            if current != Some(key) {
                current = Some(key);
                let object = finding.object.as_deref().unwrap_or("(no object)");
                let at = if finding.line > 0 {
                    format!(" (line {})", finding.line)
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  {}{at}", color.paint("1", &sanitize(object)));
            }
            let Some(result) = report.results.get(finding.result) else {
                continue;
            };
            let status = if finding.disposition.counts() {
                finding.status
            } else {
                Status::Pass
            };
            let label = status_label(status);
            let line = if finding.field_line > 0 {
                format!("{:>5}", finding.field_line)
            } else {
                "     ".to_owned()
            };
            let text = format!("{} {}: {}", result.check, result.title, finding.message);
            let _ = writeln!(
                out,
                "  {line} {} {}",
                color.paint(status_code(status), &label),
                cap(&sanitize(&text), WIDTH)
            );
            write_disposition(out, &finding.disposition, color);
        }
    }
    let mut fixes: Vec<(&str, &str)> = Vec::new();
    for finding in report.findings.iter().filter(|f| f.disposition.counts()) {
        if let Some(result) = report.results.get(finding.result)
            && !fixes.iter().any(|(check, _)| *check == result.check)
        {
            fixes.push((&result.check, &result.remediation));
        }
    }
    if !fixes.is_empty() {
        let _ = writeln!(out, "\n{}", color.paint("1;4", "fixes"));
        for (check, remediation) in fixes {
            let _ = writeln!(out, "  {}  {remediation}", color.paint("1", check));
        }
    }
    let quiet: Vec<String> = report
        .results
        .iter()
        .enumerate()
        .filter(|(index, _)| report.findings_of(*index).next().is_none())
        .map(|(_, result)| format!("{} {}", result.check, result.status))
        .collect();
    if !quiet.is_empty() {
        let _ = writeln!(out, "\n{}", color.paint("1;4", "checks without findings"));
        for line in quiet {
            let _ = writeln!(out, "  {line}");
        }
    }
}

fn write_framework(out: &mut String, report: &Report, framework: Framework, color: Color) {
    let _ = writeln!(out, "\n{}", color.paint("1;4", framework.title()));
    for control in framework::summarize(report, framework) {
        let label = format!("{:<5}", control.status.as_str().to_uppercase());
        let checks: Vec<String> = control
            .checks
            .iter()
            .map(|check| format!("{} {}", check.check, check.status))
            .collect();
        let line = format!("{}  {}", control.control, checks.join(", "));
        let _ = writeln!(
            out,
            "  {} {}",
            color.paint(status_code(control.status), &label),
            cap(&line, WIDTH)
        );
    }
}

fn write_summary(out: &mut String, report: &Report, color: Color) {
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
        "\n{} passed, {} warnings, {} failed, {} skipped, {} errors{}",
        color.paint(status_code(Status::Pass), &summary.pass.to_string()),
        color.paint(status_code(Status::Warn), &summary.warn.to_string()),
        color.paint(status_code(Status::Fail), &summary.fail.to_string()),
        summary.skip,
        color.paint(status_code(Status::Error), &summary.error.to_string()),
        if summary.not_applicable > 0 {
            format!(", {} not applicable", summary.not_applicable)
        } else {
            String::new()
        },
    );
    // The same words the web app shows for a step.
    let verdict = crate::Verdict::of((0..report.results.len()).map(|i| report.status_of(i)));
    let _ = writeln!(out, "verdict: {verdict}");
    let counts = report.finding_counts();
    if counts.suppressed + counts.expired + counts.baselined + counts.fixed > 0 || report.baseline {
        let _ = writeln!(
            out,
            "findings: {} count, {} suppressed, {} expired suppressions, {} in the baseline, {} fixed since the baseline",
            counts.open, counts.suppressed, counts.expired, counts.baselined, counts.fixed
        );
    }
    for entry in &report.fixed {
        let _ = writeln!(
            out,
            "  fixed (remove from the baseline): {} {}",
            entry.check,
            sanitize(entry.object.as_deref().unwrap_or(&entry.file))
        );
    }
}

/// Evidence may quote raw bytes; keep terminal control sequences out of the output.
fn sanitize(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() && c != '\t' { '.' } else { c })
        .collect()
}
