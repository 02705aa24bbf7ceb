//! The report renderers on results with every status, hostile text and locations, parsed back with
//! real parsers (serde_json for JSON and SARIF, quick-xml for JUnit).
#![allow(clippy::unwrap_used)]

use hardlab_grader::model::{CheckResult, Location, Severity, Status};
use hardlab_grader::report::{FailOn, Report, json, junit, sarif, text};
use quick_xml::events::Event;
use serde_json::Value;

const HOSTILE: &str = "a <b> & \"c\" 'd' ]]> \u{0}\u{1b}[31m\u{7}\ttab\nline two";

fn result(check: &str, lab: &str, status: Status, severity: Severity) -> CheckResult {
    CheckResult {
        check: check.into(),
        title: format!("title of {check}"),
        lab: lab.into(),
        step: "1".into(),
        status,
        severity,
        message: format!("{status} message {HOSTILE}"),
        evidence: Some(format!("evidence {HOSTILE}")),
        remediation: "do the thing".into(),
        references: vec!["CIS 1.2.3".into()],
        locations: Vec::new(),
        location_problems: Vec::new(),
        duration_ms: 12,
    }
}

fn report(fail_on: FailOn) -> Report {
    let mut failing = result(
        "podsec.no-privileged",
        "pod-security",
        Status::Fail,
        Severity::Critical,
    );
    failing.locations = vec![Location {
        file: "deploy/my app.yaml".into(),
        line: 7,
        object: Some("Pod/app/web".into()),
    }];
    let mut live = result(
        "access.rbac",
        "secure-access",
        Status::Fail,
        Severity::Medium,
    );
    live.locations = vec![Location {
        file: String::new(),
        line: 0,
        object: Some("ClusterRoleBinding/everyone-admin".into()),
    }];
    Report::new(
        format!("target {HOSTILE}"),
        "static".into(),
        vec![
            result(
                "etcd.encryption",
                "etcd-secrets",
                Status::Pass,
                Severity::High,
            ),
            result(
                "etcd.plaintext",
                "etcd-secrets",
                Status::Warn,
                Severity::Medium,
            ),
            failing,
            result("podsec.limits", "pod-security", Status::Skip, Severity::Low),
            result(
                "access.anonymous",
                "secure-access",
                Status::Error,
                Severity::High,
            ),
            live,
        ],
        fail_on,
    )
}

#[derive(Debug, Default)]
struct Case {
    suite: String,
    name: String,
    outcome: Option<String>,
    message: String,
}

fn junit_cases(xml: &str) -> (Vec<String>, Vec<Case>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element) => {
                let attribute = |key: &str| {
                    element.try_get_attribute(key).unwrap().map(|a| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .into_owned()
                    })
                };
                match element.name().into_inner() {
                    "testsuite" => suites.push(attribute("name").unwrap()),
                    "testcase" => cases.push(Case {
                        suite: suites.last().cloned().unwrap(),
                        name: attribute("name").unwrap(),
                        ..Case::default()
                    }),
                    outcome @ ("failure" | "error" | "skipped") => {
                        let case = cases.last_mut().unwrap();
                        case.outcome = Some(outcome.to_owned());
                        case.message = attribute("message").unwrap_or_default();
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (suites, cases)
}

#[test]
fn junit_is_well_formed_with_one_suite_per_lab_and_one_case_per_check() {
    let xml = junit::render(&report(FailOn::Fail));
    let (suites, cases) = junit_cases(&xml);
    assert_eq!(suites, ["etcd-secrets", "pod-security", "secure-access"]);
    assert_eq!(cases.len(), 6);
    let outcomes: Vec<(&str, Option<&str>)> = cases
        .iter()
        .map(|case| {
            (
                case.name.split(':').next().unwrap(),
                case.outcome.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("etcd.encryption", None),
            ("etcd.plaintext", None),
            ("podsec.no-privileged", Some("failure")),
            ("podsec.limits", Some("skipped")),
            ("access.anonymous", Some("error")),
            ("access.rbac", Some("failure")),
        ]
    );
    assert_eq!(cases[2].suite, "pod-security");
    // Markup survives as text; characters XML cannot carry are replaced, never emitted raw.
    assert!(
        cases[2].message.contains("a <b> & \"c\" 'd' ]]>"),
        "{:?}",
        cases[2].message
    );
    assert!(cases[2].message.contains("\ttab\nline two"));
    assert!(!xml.contains('\u{0}') && !xml.contains('\u{1b}') && !xml.contains('\u{7}'));
}

#[test]
fn junit_counts_warnings_as_failures_only_with_fail_on_warn() {
    let lenient = junit::render(&report(FailOn::Fail));
    assert!(lenient.contains("<testsuites name=\"hardlab-grade\" tests=\"6\" failures=\"2\" errors=\"1\" skipped=\"1\""), "{lenient}");
    let strict = junit::render(&report(FailOn::Warn));
    let (_, cases) = junit_cases(&strict);
    assert_eq!(cases[1].outcome.as_deref(), Some("failure"));
    assert!(strict.contains("failures=\"3\""));
}

#[test]
fn json_has_the_contract_fields_and_a_summary_that_adds_up() {
    let report: Value = serde_json::from_str(&json::render(&report(FailOn::Fail))).unwrap();
    assert_eq!(report["tool"], "hardlab-grade");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("target a <b>")
    );
    assert_eq!(
        report["summary"],
        serde_json::json!({"pass": 1, "warn": 1, "fail": 2, "skip": 1, "error": 1, "not_applicable": 0})
    );
    let first = &report["results"][0];
    assert_eq!(first["check"], "etcd.encryption");
    assert_eq!(first["lab"], "etcd-secrets");
    assert_eq!(first["status"], "pass");
    assert_eq!(first["severity"], "high");
    assert_eq!(first["references"], serde_json::json!(["CIS 1.2.3"]));
    assert_eq!(report["results"][2]["locations"][0]["line"], 7);
}

#[test]
fn sarif_has_stable_rules_levels_and_locations() {
    let sarif: Value = serde_json::from_str(&sarif::render(&report(FailOn::Fail))).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    assert_eq!(rules[2]["id"], "podsec.no-privileged");
    assert_eq!(rules[2]["name"], "PodsecNoPrivileged");
    assert!(
        rules[2]["help"]["text"]
            .as_str()
            .unwrap()
            .contains("do the thing")
    );
    assert_eq!(rules[2]["properties"]["security-severity"], "9.5");

    let results = run["results"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["ruleId"].as_str().unwrap(), r["level"].as_str().unwrap()))
        .collect();
    // Passes and skips are not findings; the error is a notification, not an alert.
    assert_eq!(
        summary,
        [
            ("etcd.plaintext", "warning"),
            ("podsec.no-privileged", "error"),
            ("access.rbac", "warning"),
        ]
    );
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
    let physical = &results[1]["locations"][0]["physicalLocation"];
    assert_eq!(physical["artifactLocation"]["uri"], "deploy/my%20app.yaml");
    assert_eq!(physical["region"]["startLine"], 7);
    assert_eq!(
        results[1]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "Pod/app/web"
    );
    // A live finding has no file, only the object.
    let live = &results[2]["locations"][0];
    assert!(live.get("physicalLocation").is_none());
    assert_eq!(
        live["logicalLocations"][0]["fullyQualifiedName"],
        "ClusterRoleBinding/everyone-admin"
    );

    let notifications = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0]["associatedRule"]["id"], "access.anonymous");
}

#[test]
fn text_keeps_terminal_escapes_out_of_evidence_and_colors_only_when_asked() {
    let plain = text::render(&report(FailOn::Fail), text::Color::Never);
    let evidence_lines: Vec<&str> = plain
        .lines()
        .filter(|l| l.contains("evidence a <b>"))
        .collect();
    assert!(!evidence_lines.is_empty());
    for line in evidence_lines {
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{0}'),
            "{line:?}"
        );
    }
    assert!(
        plain.contains("1 passed, 1 warnings, 2 failed, 1 skipped, 1 errors"),
        "{plain}"
    );
    assert!(plain.contains("at deploy/my app.yaml:7 (Pod/app/web)"));
    // The web app's words for the same outcome: a failure is "not yet".
    assert!(
        plain.contains("verdict: Not yet. Some checks failed"),
        "{plain}"
    );
    let colored = text::render(&report(FailOn::Fail), text::Color::Always);
    assert!(colored.contains("\u{1b}[1;31mFAIL"));
}
