//! SARIF 2.1.0 for code-scanning tools (GitHub, GitLab, IDEs). Rule IDs are the check IDs, so they
//! are stable across versions. Each finding (`fail`, and `warn`) becomes one result per check and
//! object, with one location (code scanning shows only a result's first) and a
//! `partialFingerprints` entry that depends only on the check and the object, so an alert stays
//! one alert across runs, moves and reformatting. Suppressed findings carry `suppressions` with the
//! reason (`inSource` for the annotation, `external` otherwise; an expired one is `rejected`), and
//! with a baseline every result has a `baselineState`. A check that could not run (`error`)
//! becomes a tool execution notification, which is what SARIF has for "the tool could not
//! decide", instead of an alert about the user's code.

use serde_json::{Value, json};

use super::{FailOn, Framework, Report, TOOL, VERSION};
use crate::model::{CheckResult, Severity, Status};
use crate::pipeline::{Disposition, Finding, SuppressionSource};

/// The key of the fingerprint in `partialFingerprints`; versioned as SARIF recommends.
pub const FINGERPRINT_KEY: &str = "hardlabFinding/v1";

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://example.invalid/hardlab/docs/checks.md";

pub fn render(report: &Report) -> String {
    let rules: Vec<Value> = report.results.iter().map(rule).collect();
    let mut results: Vec<Value> = report
        .findings
        .iter()
        .filter(|finding| matches!(finding.status, Status::Fail | Status::Warn))
        .filter_map(|finding| {
            let result = report.results.get(finding.result)?;
            Some(finding_result(report, finding, result))
        })
        .collect();
    // SARIF's own word for a rule that was not evaluated because it does not apply here.
    results.extend(
        report
            .results
            .iter()
            .enumerate()
            .filter(|(_, result)| result.status == Status::NotApplicable)
            .map(|(index, result)| {
                json!({
                    "ruleId": result.check,
                    "ruleIndex": index,
                    "kind": "notApplicable",
                    "level": "none",
                    "message": { "text": format!("not applicable: {}", result.message) },
                    "properties": { "status": result.status.as_str() },
                })
            }),
    );
    let notifications: Vec<Value> = report
        .results
        .iter()
        .enumerate()
        .filter(|(_, result)| result.status == Status::Error)
        .map(|(index, result)| {
            json!({
                "level": "error",
                "message": { "text": format!("{}: could not be checked: {}", result.check, result.message) },
                "associatedRule": { "id": result.check, "index": index },
            })
        })
        .collect();
    let mut notifications = notifications;
    // Inputs left out: a warning each, at the file (and line), so a code-scanning UI lists them.
    notifications.extend(report.skipped.iter().map(|skipped| {
        let mut physical = json!({ "artifactLocation": { "uri": skipped.file } });
        if let Some(line) = skipped.line {
            physical["region"] = json!({ "startLine": line });
        }
        json!({
            "level": "warning",
            "message": { "text": format!("not graded ({}): {}", skipped.cause.as_str(), skipped.reason) },
            "locations": [{ "physicalLocation": physical }],
        })
    }));
    let sarif = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": TOOL,
                    "version": VERSION,
                    "semanticVersion": VERSION,
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "properties": { "target": report.target, "mode": report.mode },
            "results": results,
        }]
    });
    let mut text = serde_json::to_string_pretty(&sarif).unwrap_or_default();
    text.push('\n');
    text
}

fn rule(result: &CheckResult) -> Value {
    let mut help = result.remediation.clone();
    let mut markdown = result.remediation.clone();
    if !result.references.is_empty() {
        help.push_str("\nReferences: ");
        help.push_str(&result.references.join(", "));
        markdown.push_str("\n\nReferences:\n");
        for reference in &result.references {
            markdown.push_str(&format!("- {reference}\n"));
        }
    }
    json!({
        "id": result.check,
        "name": rule_name(&result.check),
        "shortDescription": { "text": result.title },
        "fullDescription": { "text": format!("{} (lab {}, step {})", result.title, result.lab, result.step) },
        "help": { "text": help, "markdown": markdown },
        "defaultConfiguration": { "level": severity_level(result.severity) },
        "properties": {
            "lab": result.lab,
            "step": result.step,
            "severity": result.severity.as_str(),
            "tags": tags(result),
            // GitHub code scanning ranks alerts by this number (0.1-10, as CVSS).
            "security-severity": security_severity(result.severity),
        },
    })
}

fn tags(result: &CheckResult) -> Vec<String> {
    let mut tags = vec![
        "security".to_owned(),
        "kubernetes".to_owned(),
        result.lab.clone(),
    ];
    tags.extend(
        Framework::Cis
            .controls(&result.references)
            .into_iter()
            .map(|item| format!("CIS {item}")),
    );
    tags.extend(
        Framework::Nsa
            .controls(&result.references)
            .into_iter()
            .map(|item| format!("NSA/CISA {item}")),
    );
    tags
}

fn finding_result(report: &Report, finding: &Finding, result: &CheckResult) -> Value {
    let level = match finding.status {
        Status::Warn if report.fail_on == FailOn::Warn => "error",
        Status::Warn => "warning",
        _ => severity_level(result.severity),
    };
    let text = match &finding.object {
        Some(object) => format!("{object}: {}", finding.message),
        None => finding.message.clone(),
    };
    let mut value = json!({
        "ruleId": result.check,
        "ruleIndex": finding.result,
        "kind": "fail",
        "level": level,
        "message": { "text": text },
        "partialFingerprints": { FINGERPRINT_KEY: finding.fingerprint },
        "properties": {
            "status": finding.status.as_str(),
            "disposition": finding.disposition.as_str(),
        },
    });
    let Some(map) = value.as_object_mut() else {
        return value;
    };
    if let Some(location) = location(finding) {
        map.insert("locations".into(), json!([location]));
    }
    if let Some(suppression) = suppression(&finding.disposition) {
        map.insert("suppressions".into(), json!([suppression]));
    }
    if report.baseline {
        let state = if finding.disposition == Disposition::Baselined {
            "unchanged"
        } else {
            "new"
        };
        map.insert("baselineState".into(), json!(state));
    }
    value
}

fn suppression(disposition: &Disposition) -> Option<Value> {
    let (suppression, status) = match disposition {
        Disposition::Suppressed(suppression) => (suppression, "accepted"),
        Disposition::Expired(suppression) => (suppression, "rejected"),
        Disposition::Open | Disposition::Baselined => return None,
    };
    let kind = match suppression.source {
        SuppressionSource::Annotation { .. } => "inSource",
        SuppressionSource::Flag | SuppressionSource::Config { .. } => "external",
    };
    let justification = match (&suppression.expires, status) {
        (Some(expires), "rejected") => format!("expired on {expires}: {}", suppression.describe()),
        _ => suppression.describe(),
    };
    Some(json!({ "kind": kind, "status": status, "justification": justification }))
}

fn location(finding: &Finding) -> Option<Value> {
    let logical = finding
        .object
        .as_ref()
        .map(|object| json!([{ "fullyQualifiedName": object, "kind": "resource" }]));
    match (finding.file.is_empty(), logical) {
        (false, logical) => {
            let mut value = json!({
                "physicalLocation": {
                    "artifactLocation": { "uri": file_uri(&finding.file) },
                    "region": { "startLine": finding.field_line.max(1) },
                }
            });
            if let (Some(logical), Some(map)) = (logical, value.as_object_mut()) {
                map.insert("logicalLocations".into(), logical);
            }
            Some(value)
        }
        (true, Some(logical)) => Some(json!({ "logicalLocations": logical })),
        (true, None) => None,
    }
}

/// A URI reference for a path: relative paths stay relative (SARIF viewers resolve them against
/// the checkout), absolute ones become `file://` URIs; anything outside the unreserved set is
/// percent-encoded.
fn file_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path).to_owned();
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                encoded.push(char::from(byte));
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    if path.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

/// `etcd.encryption-provider` → `EtcdEncryptionProvider`: SARIF's `name` is an identifier.
fn rule_name(check: &str) -> String {
    check
        .split(['.', '-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn severity_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}
