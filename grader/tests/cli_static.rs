//! `hardlab-grade static` end to end: the built binary on real manifest files, exit codes,
//! error messages and every output format parsed back.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PRIVILEGED_POD: &str = "\
# Source: app/templates/pod.yaml
apiVersion: v1
kind: Pod
metadata:
  name: root-shell
  namespace: app
spec:
  containers:
  - name: shell
    image: busybox:1.36
    securityContext:
      privileged: true
";

const HARDENED_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: app
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: web
    image: nginx:1.27
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
";

fn grade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn grade_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn a_failing_check_exits_1_and_a_passing_one_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yaml", PRIVILEGED_POD);
    let good = write(dir.path(), "good.yaml", HARDENED_POD);

    let failed = grade(&["static", "--check", "podsec.no-privileged", &bad]);
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert!(stdout(&failed).contains("FAIL"), "{}", stdout(&failed));
    assert!(
        // The offending field's line, `privileged: true`.
        stdout(&failed).contains("bad.yaml:12"),
        "{}",
        stdout(&failed)
    );

    let passed = grade(&["static", "--check", "podsec.no-privileged", &good]);
    assert_eq!(passed.status.code(), Some(0), "{}", stdout(&passed));
    assert!(stdout(&passed).contains("PASS"), "{}", stdout(&passed));
}

#[test]
fn warnings_pass_unless_fail_on_warn_is_given() {
    let dir = tempfile::tempdir().unwrap();
    // The hardened pod has a writable root filesystem: a warning, not a failure.
    let good = write(dir.path(), "good.yaml", HARDENED_POD);
    let args = [
        "static",
        "--check",
        "podsec.read-only-root-fs",
        "--format",
        "json",
        &good,
    ];

    let lenient = grade(&args);
    let report: Value = serde_json::from_str(&stdout(&lenient)).unwrap();
    assert_eq!(report["results"][0]["status"], "warn", "{report}");
    assert_eq!(lenient.status.code(), Some(0));

    let mut strict_args = args.to_vec();
    strict_args.extend(["--fail-on", "warn"]);
    let strict = grade(&strict_args);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
}

#[test]
fn bad_yaml_exits_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{HARDENED_POD}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n   labels: x\n"
    );
    let file = write(dir.path(), "broken.yaml", &text);
    let output = grade(&["static", &file]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{file}:24")),
        "expected {file}:24 (the indented `labels`) in {message:?}"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn an_unknown_check_or_lab_exits_2_before_reading_anything() {
    let output = grade(&[
        "static",
        "--check",
        "podsec.no-such-thing",
        "/nonexistent.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown check \"podsec.no-such-thing\""),
        "{}",
        stderr(&output)
    );

    let output = grade(&["static", "--lab", "etcd", "/nonexistent.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown lab \"etcd\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let output = grade(&["static", "/nonexistent/pod.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/pod.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn manifests_are_read_from_stdin() {
    let output = grade_stdin(
        &[
            "static",
            "--check",
            "podsec.no-privileged",
            "--format",
            "json",
            "-",
        ],
        PRIVILEGED_POD,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let location = &report["results"][0]["locations"][0];
    assert_eq!(location["file"], "<stdin>");
    assert_eq!(location["line"], 2);
}

#[test]
fn directories_are_read_recursively_and_non_kubernetes_files_are_skipped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "deploy/pod.yaml", PRIVILEGED_POD);
    write(
        dir.path(),
        "deploy/nested/values.yaml",
        "replicas: 3\nimage: nginx\n",
    );
    write(
        dir.path(),
        "chart/templates/pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}\n",
    );
    write(dir.path(), "README.md", "# not yaml: [\n");
    let root = dir.path().display().to_string();
    let output = grade(&[
        "static",
        "--check",
        "podsec.no-privileged",
        "--format",
        "json",
        &root,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let skipped: Vec<String> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {} {}", s["file"], s["cause"], s["reason"]))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:#?}");
    assert!(
        skipped[0].contains("templates/pod.yaml") && skipped[0].contains("unrendered template"),
        "{skipped:#?}"
    );
    assert!(
        skipped[1].contains("values.yaml") && skipped[1].contains("no-kind"),
        "{skipped:#?}"
    );
    let file = report["results"][0]["locations"][0]["file"]
        .as_str()
        .unwrap();
    assert!(file.ends_with("deploy/pod.yaml"), "{file}");
}

#[test]
fn an_explicitly_named_file_without_objects_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "empty.yaml", "# nothing here\n---\n");
    let output = grade(&["static", &file]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no Kubernetes objects found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn json_lists_and_helm_output_are_graded_with_each_object_located() {
    let dir = tempfile::tempdir().unwrap();
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [serde_yaml::from_str::<Value>(PRIVILEGED_POD).unwrap()],
    });
    let json_file = write(
        dir.path(),
        "list.json",
        &serde_json::to_string_pretty(&list).unwrap(),
    );
    let helm = format!(
        "---\n# Source: app/templates/web.yaml\n{HARDENED_POD}---\n# Source: app/templates/shell.yaml\n{PRIVILEGED_POD}"
    );
    let helm_file = write(dir.path(), "rendered.yaml", &helm);
    let output = grade(&[
        "static",
        "--check",
        "podsec.no-privileged",
        "--format",
        "json",
        &json_file,
        &helm_file,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let locations = report["results"][0]["locations"].as_array().unwrap();
    let mut found: Vec<(String, u64)> = locations
        .iter()
        .map(|l| {
            (
                l["file"].as_str().unwrap().to_owned(),
                l["line"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    // The helm file: header (2 lines) + hardened pod (18 lines) + marker and comment, then the pod.
    assert_eq!(found, vec![(json_file, 1), (helm_file, 24)], "{report}");
}

#[test]
fn every_format_parses_with_a_real_parser() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "pods.yaml",
        &format!("{PRIVILEGED_POD}---\n{HARDENED_POD}"),
    );

    let json = grade(&["static", "--format", "json", &file]);
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["tool"], "hardlab-grade");
    assert_eq!(report["target"], file.as_str());
    let results = report["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        for field in [
            "check",
            "lab",
            "step",
            "status",
            "severity",
            "message",
            "remediation",
            "references",
        ] {
            assert!(result.get(field).is_some(), "{field} missing in {result}");
        }
        assert!(
            result.get("evidence").is_some(),
            "evidence (maybe null) missing in {result}"
        );
    }
    let summary = &report["summary"];
    let total: u64 = ["pass", "warn", "fail", "skip", "error"]
        .iter()
        .map(|key| summary[key].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, results.len());

    let sarif = grade(&["static", "--format", "sarif", &file]);
    let sarif: Value = serde_json::from_str(&stdout(&sarif)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rule_ids: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["id"].as_str().unwrap())
        .collect();
    let privileged = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["ruleId"] == "podsec.no-privileged")
        .unwrap();
    let index = privileged["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rule_ids[index], "podsec.no-privileged");
    let physical = &privileged["locations"][0]["physicalLocation"];
    assert!(
        physical["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("pods.yaml")
    );
    // The offending field's line (`privileged: true`), not the object's first line.
    assert_eq!(physical["region"]["startLine"], 12);

    let junit = grade(&["static", "--format", "junit", &file]);
    let xml = stdout(&junit);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut testcases = 0;
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(element) | quick_xml::events::Event::Empty(element)
                if element.name().into_inner() == "testcase" =>
            {
                testcases += 1;
            }
            _ => {}
        }
    }
    assert_eq!(testcases, results.len());

    let text = grade(&["static", &file]);
    assert!(
        !stdout(&text).contains('\u{1b}'),
        "NO_COLOR must turn color off"
    );
    assert!(stdout(&text).contains("podsec.no-privileged"));
}

#[test]
fn output_writes_the_report_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "pod.yaml", PRIVILEGED_POD);
    let report_path = dir.path().join("report.json").display().to_string();
    let output = grade(&[
        "static",
        "--format",
        "json",
        "--output",
        &report_path,
        &file,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["tool"], "hardlab-grade");
}
