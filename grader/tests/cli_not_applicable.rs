//! A check with nothing to judge says "not applicable" in every format, never "pass": the built
//! binary on `access.insecure-port-disabled`, whose flag Kubernetes 1.24 removed, against API
//! server manifests of a release without the flag (not applicable) and of one with it (judged:
//! pass or fail). Exit codes stay 0 / 1 / 2.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CHECK: &str = "access.insecure-port-disabled";

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/access")
        .join(name)
        .display()
        .to_string()
}

fn grade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_report(file: &str) -> (Option<i32>, Value) {
    let output = grade(&[
        "static",
        "--no-config",
        "--check",
        CHECK,
        "--format",
        "json",
        file,
    ]);
    (
        output.status.code(),
        serde_json::from_str(&stdout(&output)).unwrap(),
    )
}

#[test]
fn without_the_flag_in_the_release_the_check_is_not_applicable_in_json_and_exits_0() {
    let (code, report) = json_report(&fixture("kube-apiserver-v1.31.yaml"));
    assert_eq!(code, Some(0), "{report}");
    let result = &report["results"][0];
    assert_eq!(result["check"], CHECK);
    assert_eq!(result["status"], "not-applicable", "{result}");
    assert_eq!(result["check_status"], "not-applicable");
    let message = result["message"].as_str().unwrap();
    assert!(message.contains("v1.31"), "{message}");
    assert!(message.contains("removed the insecure port"), "{message}");
    assert_eq!(report["summary"]["not_applicable"], 1);
    assert_eq!(report["summary"]["pass"], 0, "not applicable is not a pass");
    assert!(report["findings"].as_array().unwrap().is_empty());
}

#[test]
fn with_the_flag_in_the_release_the_check_is_judged_pass_or_fail() {
    let (code, report) = json_report(&fixture("kube-apiserver-hardened.yaml"));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["results"][0]["status"], "pass");
    assert_eq!(report["summary"]["not_applicable"], 0);
    let (code, report) = json_report(&fixture("kube-apiserver-insecure.yaml"));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["results"][0]["status"], "fail");
}

#[test]
fn junit_sarif_and_text_show_not_applicable_as_what_it_is() {
    let file = fixture("kube-apiserver-v1.31.yaml");
    let run = |format: &str| {
        let output = grade(&[
            "static",
            "--no-config",
            "--check",
            CHECK,
            "--format",
            format,
            &file,
        ]);
        assert_eq!(output.status.code(), Some(0), "{format}");
        stdout(&output)
    };

    // JUnit has no such state: a skipped case whose message says "not applicable".
    let xml = run("junit");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut skipped_messages = Vec::new();
    let mut failures = 0;
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(element) | quick_xml::events::Event::Empty(element) => {
                match element.name().into_inner() {
                    "skipped" => {
                        let message = element
                            .try_get_attribute("message")
                            .unwrap()
                            .unwrap()
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .into_owned();
                        skipped_messages.push(message);
                    }
                    "failure" | "error" => failures += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(failures, 0, "{xml}");
    assert_eq!(skipped_messages.len(), 1, "{xml}");
    assert!(
        skipped_messages[0].starts_with("not applicable: "),
        "{skipped_messages:?}"
    );

    // SARIF's own kind for a rule that does not apply, with no level of a finding.
    let sarif_text = run("sarif");
    let sarif: Value = serde_json::from_str(&sarif_text).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{sarif}");
    assert_eq!(results[0]["ruleId"], CHECK);
    assert_eq!(results[0]["kind"], "notApplicable");
    assert_eq!(results[0]["level"], "none");
    validate_sarif(&sarif_text);

    let text = run("text");
    assert!(text.contains(&format!("N/A   {CHECK}")), "{text}");
    assert!(text.contains("1 not applicable"), "{text}");
    assert!(!text.contains("PASS"), "{text}");
}

/// Validates against the SARIF 2.1.0 schema (an npm package, see .ci/sarif-schema), with Python's
/// jsonschema, as the pipeline tests do.
fn validate_sarif(text: &str) {
    let schema = std::env::var("HARDLAB_SARIF_SCHEMA").unwrap_or_default();
    if !hardlab_testkit::require_that(
        !schema.is_empty() && Path::new(&schema).is_file(),
        "HARDLAB_SARIF_SCHEMA names no SARIF 2.1.0 schema file (run .ci/sarif-schema)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.sarif");
    std::fs::write(&file, text).unwrap();
    let validation = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.validators.validator_for(schema)(schema).validate(json.load(open(sys.argv[2])))",
            &schema,
            &file.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        validation.status.success(),
        "the SARIF does not validate: {}",
        String::from_utf8_lossy(&validation.stderr)
    );
}
