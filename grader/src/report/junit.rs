//! JUnit XML as CI systems read it (Jenkins, GitLab, GitHub test reporters): one `<testsuite>`
//! per lab, one `<testcase>` per check. `fail` becomes `<failure>`, `error` becomes `<error>`,
//! `skip` becomes `<skipped>`. A warning is a passing test case whose `<system-out>` says so,
//! unless `--fail-on warn` made warnings fail the run, in which case it is a `<failure>` too.

use std::fmt::Write;

use super::{FailOn, Report, TOOL, xml_escape};
use crate::model::{CheckResult, Status};
use crate::pipeline::Disposition;

pub fn render(report: &Report) -> String {
    let results: Vec<CheckResult> = report
        .results
        .iter()
        .enumerate()
        .map(|(index, result)| accepted(report, index, result))
        .collect();
    let mut labs: Vec<&str> = Vec::new();
    for result in &results {
        if !labs.contains(&result.lab.as_str()) {
            labs.push(&result.lab);
        }
    }
    let totals = Counts::of(results.iter(), report.fail_on);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
        xml_escape(TOOL),
        totals.tests + report.skipped.len(),
        totals.failures,
        totals.errors,
        totals.skipped + report.skipped.len(),
        seconds(totals.millis),
    );
    for lab in labs {
        let lab_results: Vec<&CheckResult> =
            results.iter().filter(|result| result.lab == lab).collect();
        let counts = Counts::of(lab_results.iter().copied(), report.fail_on);
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            xml_escape(lab),
            counts.tests,
            counts.failures,
            counts.errors,
            counts.skipped,
            seconds(counts.millis),
        );
        let _ = writeln!(
            xml,
            "    <properties><property name=\"target\" value=\"{}\"/></properties>",
            xml_escape(&report.target)
        );
        for result in lab_results {
            write_case(&mut xml, result, report.fail_on);
        }
        xml.push_str("  </testsuite>\n");
    }
    if !report.skipped.is_empty() {
        // Inputs left out are skipped test cases of their own suite, so CI shows each with why.
        let _ = writeln!(
            xml,
            "  <testsuite name=\"inputs\" tests=\"{0}\" failures=\"0\" errors=\"0\" skipped=\"{0}\" time=\"0.000\">",
            report.skipped.len()
        );
        for skipped in &report.skipped {
            let _ = writeln!(
                xml,
                "    <testcase classname=\"{}.inputs\" name=\"{}\" time=\"0.000\"><skipped message=\"{}\"/></testcase>",
                xml_escape(TOOL),
                xml_escape(&match skipped.line {
                    Some(line) => format!("{}:{line}", skipped.file),
                    None => skipped.file.clone(),
                }),
                xml_escape(&format!("{}: {}", skipped.cause.as_str(), skipped.reason)),
            );
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn write_case(xml: &mut String, result: &CheckResult, fail_on: FailOn) {
    let _ = write!(
        xml,
        "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{}\"",
        xml_escape(TOOL),
        xml_escape(&result.lab),
        xml_escape(&format!("{}: {}", result.check, result.title)),
        seconds(result.duration_ms),
    );
    let details = details(result);
    let element = match result.status {
        Status::Fail => Some(("failure", "fail")),
        Status::Warn if fail_on == FailOn::Warn => Some(("failure", "warn")),
        Status::Error => Some(("error", "error")),
        _ => None,
    };
    match (element, result.status) {
        (Some((element, kind)), _) => {
            let _ = writeln!(
                xml,
                ">\n      <{element} type=\"{kind}\" message=\"{}\">{}</{element}>\n    </testcase>",
                xml_escape(&result.message),
                xml_escape(&details),
            );
        }
        (None, Status::Skip) => {
            let _ = writeln!(
                xml,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml_escape(&result.message)
            );
        }
        // JUnit has no "does not apply"; a skipped case that says so is what CI tools show.
        (None, Status::NotApplicable) => {
            let _ = writeln!(
                xml,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml_escape(&format!("not applicable: {}", result.message))
            );
        }
        (None, _) => {
            let _ = writeln!(
                xml,
                ">\n      <system-out>{}</system-out>\n    </testcase>",
                xml_escape(&details)
            );
        }
    }
}

/// The result as the run counts it: a check whose findings are all suppressed or in the baseline
/// is a passing case, and every accepted finding is named with its reason.
fn accepted(report: &Report, index: usize, result: &CheckResult) -> CheckResult {
    let mut result = result.clone();
    result.status = report.status_of(index);
    for finding in report.findings_of(index) {
        let note = match &finding.disposition {
            Disposition::Open => continue,
            Disposition::Suppressed(suppression) => {
                format!(
                    "suppressed: {}: {}",
                    finding.place(),
                    suppression.describe()
                )
            }
            Disposition::Expired(suppression) => format!(
                "suppression expired, counts again: {}: {}",
                finding.place(),
                suppression.describe()
            ),
            Disposition::Baselined => format!("in the baseline: {}", finding.place()),
        };
        result.message.push('\n');
        result.message.push_str(&note);
    }
    result
}

/// The body of a failure or the output of a passing case: status, message, evidence, remedy.
fn details(result: &CheckResult) -> String {
    let mut text = format!(
        "{} ({} severity): {}\n",
        result.status.as_str().to_uppercase(),
        result.severity.as_str(),
        result.message
    );
    for location in &result.locations {
        match (&location.object, location.line) {
            (Some(object), 0) => text.push_str(&format!("at {object}\n")),
            (object, line) => text.push_str(&format!(
                "at {}:{line}{}\n",
                location.file,
                object
                    .as_ref()
                    .map(|object| format!(" ({object})"))
                    .unwrap_or_default()
            )),
        }
    }
    if let Some(evidence) = &result.evidence {
        text.push_str("evidence:\n");
        text.push_str(evidence);
        text.push('\n');
    }
    if matches!(result.status, Status::Fail | Status::Warn | Status::Error) {
        text.push_str("remediation: ");
        text.push_str(&result.remediation);
        text.push('\n');
    }
    if !result.references.is_empty() {
        text.push_str("references: ");
        text.push_str(&result.references.join(", "));
        text.push('\n');
    }
    text
}

struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    millis: u64,
}

impl Counts {
    fn of<'a>(results: impl Iterator<Item = &'a CheckResult>, fail_on: FailOn) -> Self {
        let mut counts = Counts {
            tests: 0,
            failures: 0,
            errors: 0,
            skipped: 0,
            millis: 0,
        };
        for result in results {
            counts.tests += 1;
            counts.millis += result.duration_ms;
            match result.status {
                Status::Fail => counts.failures += 1,
                Status::Warn if fail_on == FailOn::Warn => counts.failures += 1,
                Status::Error => counts.errors += 1,
                Status::Skip | Status::NotApplicable => counts.skipped += 1,
                Status::Pass | Status::Warn => {}
            }
        }
        counts
    }
}

fn seconds(millis: u64) -> String {
    format!("{}.{:03}", millis / 1000, millis % 1000)
}
