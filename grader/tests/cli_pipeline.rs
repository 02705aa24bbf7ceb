//! `hardlab-grade` as a pipeline runs it: the built binary on real manifest files in a temporary
//! repository, with suppressions (flag, annotation, configuration file), configuration discovery
//! and precedence, baselines, and the CI formats parsed back and checked against their documented
//! shapes (GitHub's workflow-command syntax, GitLab's Code Quality fields, the SARIF 2.1.0 schema).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn pod(name: &str, annotation: Option<&str>) -> String {
    let annotations = match annotation {
        Some(text) => format!("  annotations:\n    hardlab/skip: |\n      {text}\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: app
{annotations}spec:
  containers:
  - name: shell
    image: busybox:1.36
    securityContext:
      privileged: true
"
    )
}

/// Runs the grader in `dir`, reading no configuration file unless the test writes one there.
fn grade_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|error| panic!("{error}: {}\nstderr: {}", stdout(output), stderr(output)))
}

/// The findings of a JSON report as (object, state).
fn states(report: &Value) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["object"].as_str().unwrap_or_default().to_owned(),
                finding["disposition"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    states.sort();
    states
}

const PRIVILEGED: &str = "podsec.no-privileged";

#[test]
fn skip_check_suppresses_every_finding_of_the_check_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pods.yaml", &pod("root-shell", None));

    let failing = grade_in(dir.path(), &["static", "--check", PRIVILEGED, "pods.yaml"]);
    assert_eq!(failing.status.code(), Some(1), "{}", stdout(&failing));

    let args = [
        "static",
        "--check",
        PRIVILEGED,
        "--skip-check",
        PRIVILEGED,
        "pods.yaml",
    ];
    let skipped = grade_in(dir.path(), &args);
    assert_eq!(skipped.status.code(), Some(0), "{}", stdout(&skipped));
    let text = stdout(&skipped);
    assert!(text.contains("PASS  podsec.no-privileged"), "{text}");
    assert!(text.contains("(1 suppressed)"), "{text}");
    assert!(
        text.contains("suppressed: skipped on the command line (--skip-check)"),
        "{text}"
    );

    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let report = json(&grade_in(dir.path(), &json_args));
    assert_eq!(report["results"][0]["status"], "pass", "{report}");
    assert_eq!(report["results"][0]["check_status"], "fail", "{report}");
    let finding = &report["findings"][0];
    assert_eq!(finding["disposition"]["state"], "suppressed");
    assert_eq!(finding["disposition"]["source"]["kind"], "flag");
    assert_eq!(report["finding_summary"]["suppressed"], 1);
}

#[test]
fn an_annotation_suppresses_its_own_object_only_and_shows_the_reason_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let reason = "the node agent needs the host devices";
    let accepted = pod("node-agent", Some(&format!("{PRIVILEGED}: {reason}")));
    write(
        dir.path(),
        "pods.yaml",
        &format!("{accepted}---\n{}", pod("root-shell", None)),
    );
    let base = ["static", "--check", PRIVILEGED, "pods.yaml"];

    let text = grade_in(dir.path(), &base);
    assert_eq!(text.status.code(), Some(1), "the other pod still fails");
    let text = stdout(&text);
    assert!(
        text.contains(&format!(
            "suppressed: {reason} (hardlab/skip on Pod/app/node-agent)"
        )),
        "{text}"
    );

    let report = json(&grade_in(
        dir.path(),
        &[&base[..], &["--format", "json"]].concat(),
    ));
    assert_eq!(
        states(&report),
        vec![
            ("Pod/app/node-agent".into(), "suppressed".into()),
            ("Pod/app/root-shell".into(), "open".into()),
        ]
    );
    let suppressed = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["object"] == "Pod/app/node-agent")
        .unwrap();
    assert_eq!(suppressed["disposition"]["reason"], reason);
    assert_eq!(suppressed["disposition"]["source"]["kind"], "annotation");

    let sarif = json(&grade_in(
        dir.path(),
        &[&base[..], &["--format", "sarif"]].concat(),
    ));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one result per check and object");
    let in_source = results
        .iter()
        .find(|result| result["suppressions"].is_array())
        .unwrap();
    assert_eq!(in_source["suppressions"][0]["kind"], "inSource");
    assert_eq!(in_source["suppressions"][0]["status"], "accepted");
    assert!(
        in_source["suppressions"][0]["justification"]
            .as_str()
            .unwrap()
            .contains(reason)
    );

    let junit = stdout(&grade_in(
        dir.path(),
        &[&base[..], &["--format", "junit"]].concat(),
    ));
    assert!(junit.contains(reason), "{junit}");
    let github = stdout(&grade_in(
        dir.path(),
        &[&base[..], &["--format", "github"]].concat(),
    ));
    assert_eq!(
        github
            .lines()
            .filter(|line| line.starts_with("::error"))
            .count(),
        1,
        "only the open finding is annotated: {github}"
    );
    assert!(github.contains("1 suppressed"), "{github}");

    // Both accepted: the run passes.
    let other = pod(
        "root-shell",
        Some(&format!(
            "{PRIVILEGED}: a break-glass shell, removed after the incident"
        )),
    );
    write(dir.path(), "pods.yaml", &format!("{accepted}---\n{other}"));
    let passed = grade_in(dir.path(), &base);
    assert_eq!(passed.status.code(), Some(0), "{}", stdout(&passed));
}

#[test]
fn configuration_suppressions_hold_until_their_expiry_date() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "deploy/pods.yaml", &pod("root-shell", None));
    let config = |expires: &str| {
        format!(
            "paths: [deploy]\nchecks: [{PRIVILEGED}]\nsuppressions:\n  - check: {PRIVILEGED}\n    object: Pod/app/*\n    reason: vendor chart, tracked in OPS-12\n    expires: {expires}\n"
        )
    };

    write(dir.path(), ".hardlab-grade.yaml", &config("2999-12-31"));
    let holding = grade_in(dir.path(), &["static"]);
    assert_eq!(
        holding.status.code(),
        Some(0),
        "{}{}",
        stdout(&holding),
        stderr(&holding)
    );
    assert!(
        stdout(&holding).contains(
            "suppressed: vendor chart, tracked in OPS-12 (.hardlab-grade.yaml, until 2999-12-31)"
        ),
        "{}",
        stdout(&holding)
    );

    write(dir.path(), ".hardlab-grade.yaml", &config("2020-01-31"));
    let expired = grade_in(dir.path(), &["static"]);
    assert_eq!(expired.status.code(), Some(1), "{}", stdout(&expired));
    assert!(
        stdout(&expired).contains("suppression expired, counts again: vendor chart"),
        "{}",
        stdout(&expired)
    );
    let github = stdout(&grade_in(dir.path(), &["static", "--format", "github"]));
    let error = github
        .lines()
        .find(|line| line.starts_with("::error"))
        .unwrap();
    assert!(
        error.contains("The suppression expired on 2020-01-31"),
        "{error}"
    );
    let sarif = json(&grade_in(dir.path(), &["static", "--format", "sarif"]));
    let suppression = &sarif["runs"][0]["results"][0]["suppressions"][0];
    assert_eq!(suppression["status"], "rejected", "{sarif}");
    assert_eq!(suppression["kind"], "external");

    // A suppression that matches nothing is pointed out, so it does not outlive its finding.
    write(
        dir.path(),
        ".hardlab-grade.yaml",
        &config("2999-12-31").replace("Pod/app/*", "Pod/other/*"),
    );
    let unmatched = grade_in(dir.path(), &["static"]);
    assert_eq!(unmatched.status.code(), Some(1));
    assert!(
        stderr(&unmatched).contains("note: .hardlab-grade.yaml: the suppression of podsec.no-privileged on Pod/other/* matched no finding"),
        "{}",
        stderr(&unmatched)
    );

    write(dir.path(), ".hardlab-grade.yaml", &config("31.01.2020"));
    let bad_date = grade_in(dir.path(), &["static"]);
    assert_eq!(bad_date.status.code(), Some(2));
    assert!(
        stderr(&bad_date).contains("expires"),
        "{}",
        stderr(&bad_date)
    );
}

#[test]
fn a_suppression_naming_an_unknown_check_exits_2_saying_where() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pods.yaml", &pod("root-shell", None));

    let flag = grade_in(
        dir.path(),
        &["static", "--skip-check", "podsec.no-privilegd", "pods.yaml"],
    );
    assert_eq!(flag.status.code(), Some(2));
    assert!(
        stderr(&flag)
            .contains("--skip-check: suppression of unknown check \"podsec.no-privilegd\""),
        "{}",
        stderr(&flag)
    );

    write(
        dir.path(),
        ".hardlab-grade.yaml",
        "suppressions:\n  - check: podsec.nope\n    reason: typo\n",
    );
    let config = grade_in(dir.path(), &["static", "pods.yaml"]);
    assert_eq!(config.status.code(), Some(2));
    assert!(
        stderr(&config)
            .contains(".hardlab-grade.yaml: suppression of unknown check \"podsec.nope\""),
        "{}",
        stderr(&config)
    );

    write(
        dir.path(),
        ".hardlab-grade.yaml",
        "suppressions:\n  - check: podsec.no-privileged\n    reason: \"\"\n",
    );
    let no_reason = grade_in(dir.path(), &["static", "pods.yaml"]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(
        stderr(&no_reason).contains("has no reason"),
        "{}",
        stderr(&no_reason)
    );

    std::fs::remove_file(dir.path().join(".hardlab-grade.yaml")).unwrap();
    write(
        dir.path(),
        "pods.yaml",
        &pod("root-shell", Some("podsec.no-such-check: because")),
    );
    let annotation = grade_in(dir.path(), &["static", "pods.yaml"]);
    assert_eq!(annotation.status.code(), Some(2));
    assert!(stderr(&annotation).contains("hardlab/skip on Pod/app/root-shell: suppression of unknown check \"podsec.no-such-check\""), "{}", stderr(&annotation));

    write(
        dir.path(),
        "pods.yaml",
        &pod("root-shell", Some("no colon here")),
    );
    let malformed = grade_in(dir.path(), &["static", "pods.yaml"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(
        stderr(&malformed).contains("pods.yaml:1 (Pod/app/root-shell): annotation hardlab/skip"),
        "{}",
        stderr(&malformed)
    );
}

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

#[test]
fn the_configuration_file_is_found_from_the_working_directory_up_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    // The hardened pod only warns (writable root filesystem): fail-on decides the exit code.
    write(dir.path(), "deploy/web.yaml", HARDENED_POD);
    write(
        dir.path(),
        ".hardlab-grade.yaml",
        "paths: [deploy]\nchecks: [podsec.read-only-root-fs]\nfail-on: warn\nformat: json\n",
    );
    let nested = dir.path().join("deploy/nested");
    std::fs::create_dir_all(&nested).unwrap();

    let from_below = grade_in(&nested, &["static"]);
    assert_eq!(
        from_below.status.code(),
        Some(1),
        "fail-on: warn from the file: {}",
        stderr(&from_below)
    );
    let report = json(&from_below);
    assert_eq!(
        report["target"], "../../deploy",
        "paths are relative to the file"
    );
    assert_eq!(
        report["results"].as_array().unwrap().len(),
        1,
        "checks: from the file"
    );

    let overridden = grade_in(
        &nested,
        &["static", "--fail-on", "fail", "--format", "text"],
    );
    assert_eq!(overridden.status.code(), Some(0), "{}", stdout(&overridden));
    assert!(
        stdout(&overridden).starts_with("hardlab "),
        "{}",
        stdout(&overridden)
    );

    // Paths on the command line replace the file's; --check replaces its checks.
    write(dir.path(), "other/pod.yaml", &pod("root-shell", None));
    let explicit = grade_in(dir.path(), &["static", "--check", PRIVILEGED, "other"]);
    assert_eq!(explicit.status.code(), Some(1));
    let report = json(&explicit);
    assert_eq!(report["results"][0]["check"], PRIVILEGED);

    let no_config = grade_in(&nested, &["--no-config", "static"]);
    assert_eq!(no_config.status.code(), Some(2));
    assert!(
        stderr(&no_config).contains("static needs a PATH"),
        "{}",
        stderr(&no_config)
    );

    write(
        dir.path(),
        "ci/strict.yaml",
        "paths: [../deploy]\nfail-on: fail\nchecks: [podsec.read-only-root-fs]\n",
    );
    let given = grade_in(&nested, &["static", "--config", "../../ci/strict.yaml"]);
    assert_eq!(
        given.status.code(),
        Some(0),
        "--config instead of discovery: {}",
        stderr(&given)
    );
    assert!(
        stdout(&given).starts_with("hardlab "),
        "text: --config replaces the discovered file"
    );

    write(dir.path(), ".hardlab-grade.yaml", "fail-on: sometimes\n");
    let bad_value = grade_in(dir.path(), &["static", "deploy"]);
    assert_eq!(bad_value.status.code(), Some(2));
    assert!(
        stderr(&bad_value)
            .contains(".hardlab-grade.yaml: fail-on: \"sometimes\" is not one of warn, fail"),
        "{}",
        stderr(&bad_value)
    );

    write(dir.path(), ".hardlab-grade.yaml", "supressions: []\n");
    let typo = grade_in(dir.path(), &["static", "deploy"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr(&typo).contains(".hardlab-grade.yaml:1")
            && stderr(&typo).contains("unknown field `supressions`"),
        "{}",
        stderr(&typo)
    );
}

fn fingerprints(sarif: &Value) -> HashSet<String> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| {
            result["partialFingerprints"]["hardlabFinding/v1"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_baseline_fails_only_on_new_findings_survives_moves_and_reformatting_and_reports_fixed_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deploy/pods.yaml",
        &format!("{}---\n{}", pod("one", None), pod("two", None)),
    );
    let run = |extra: &[&str]| {
        grade_in(
            dir.path(),
            &[&["static", "--check", PRIVILEGED, "deploy"], extra].concat(),
        )
    };

    let before = json(&run(&["--format", "sarif"]));
    let created = run(&["--create-baseline", "baseline.json"]);
    assert_eq!(
        created.status.code(),
        Some(0),
        "the findings it records do not fail this run"
    );
    let baseline: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("baseline.json")).unwrap())
            .unwrap();
    assert_eq!(
        baseline["findings"].as_array().unwrap().len(),
        2,
        "{baseline}"
    );
    assert_eq!(baseline["findings"][0]["object"], "Pod/app/one");

    assert_eq!(run(&["--baseline", "baseline.json"]).status.code(), Some(0));

    // Reordered, reindented, one moved to another file, an unrelated label added.
    let two = pod("two", None).replace("\n  ", "\n    ").replace(
        "namespace: app\n",
        "namespace: app\n    labels: {team: payments}\n",
    );
    write(
        dir.path(),
        "deploy/pods.yaml",
        &format!("# reordered\n{two}"),
    );
    write(dir.path(), "deploy/moved/one.yaml", &pod("one", None));
    let moved = run(&["--baseline", "baseline.json", "--format", "sarif"]);
    assert_eq!(moved.status.code(), Some(0), "{}", stdout(&moved));
    let moved = json(&moved);
    assert_eq!(
        fingerprints(&moved),
        fingerprints(&before),
        "fingerprints survive moves and edits"
    );
    for result in moved["runs"][0]["results"].as_array().unwrap() {
        assert_eq!(result["baselineState"], "unchanged");
    }

    // A new finding fails, alone.
    write(dir.path(), "deploy/new.yaml", &pod("three", None));
    let new = run(&["--baseline", "baseline.json", "--format", "json"]);
    assert_eq!(new.status.code(), Some(1));
    let report = json(&new);
    assert_eq!(
        states(&report),
        vec![
            ("Pod/app/one".into(), "baselined".into()),
            ("Pod/app/three".into(), "open".into()),
            ("Pod/app/two".into(), "baselined".into()),
        ]
    );
    let sarif = json(&run(&["--baseline", "baseline.json", "--format", "sarif"]));
    let new_states: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["baselineState"] == "new")
        .map(|result| {
            result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(new_states, vec!["Pod/app/three"]);

    // One fixed: reported so the baseline can shrink.
    std::fs::remove_file(dir.path().join("deploy/new.yaml")).unwrap();
    write(
        dir.path(),
        "deploy/moved/one.yaml",
        HARDENED_POD.replace("name: web\n", "name: one\n").as_str(),
    );
    let fixed = run(&["--baseline", "baseline.json"]);
    assert_eq!(fixed.status.code(), Some(0));
    assert!(
        stdout(&fixed)
            .contains("fixed (remove from the baseline): podsec.no-privileged Pod/app/one"),
        "{}",
        stdout(&fixed)
    );
    let report = json(&run(&["--baseline", "baseline.json", "--format", "json"]));
    assert_eq!(report["fixed"][0]["object"], "Pod/app/one");
    assert_eq!(report["finding_summary"]["fixed"], 1);

    std::fs::write(dir.path().join("broken.json"), "{\"findings\": 3}").unwrap();
    let broken = run(&["--baseline", "broken.json"]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        stderr(&broken).contains("broken.json:1: not a hardlab-grade baseline"),
        "{}",
        stderr(&broken)
    );
}

/// `::error file=F,line=L,title=T::MESSAGE`, as GitHub documents workflow commands.
fn assert_workflow_command(line: &str) {
    let rest = line.strip_prefix("::").unwrap();
    let (command, rest) = rest.split_once(' ').unwrap();
    assert!(["error", "warning", "notice"].contains(&command), "{line}");
    let (properties, message) = rest.split_once("::").unwrap();
    for property in properties.split(',') {
        let (key, value) = property.split_once('=').unwrap();
        assert!(
            ["file", "line", "title", "col", "endLine", "endColumn"].contains(&key),
            "{line}"
        );
        assert!(
            !value.contains([':', ',', '\r', '\n']),
            "unescaped property: {line}"
        );
        if key == "line" {
            assert!(value.parse::<usize>().unwrap() >= 1);
        }
    }
    assert!(!message.is_empty());
}

#[test]
fn github_annotations_follow_the_workflow_command_syntax_with_its_escaping() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "odd, name: 100%.yaml", &pod("root-shell", None));
    write(dir.path(), "web.yaml", HARDENED_POD);
    let output = grade_in(
        dir.path(),
        &["static", "--lab", "pod-security", "--format", "github", "."],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let commands: Vec<&str> = text.lines().filter(|line| line.starts_with("::")).collect();
    assert!(!commands.is_empty(), "{text}");
    for line in &commands {
        assert_workflow_command(line);
    }
    let privileged = commands
        .iter()
        .find(|line| line.contains("title=podsec.no-privileged%3A"))
        .unwrap();
    assert!(
        privileged.starts_with("::error file=odd%2C name%3A 100%25.yaml,line=11,title=podsec.no-privileged%3A No privileged containers (CIS 5.2.2)::Pod/app/root-shell: container \"shell\": spec.containers[0].securityContext.privileged is true%0AFix: "),
        "{privileged}"
    );
    // Warnings that do not fail the run are warnings; with --fail-on warn they are errors.
    assert!(
        commands
            .iter()
            .any(|line| line.starts_with("::warning file=web.yaml,")),
        "{text}"
    );
    let strict = stdout(&grade_in(
        dir.path(),
        &[
            "static",
            "--lab",
            "pod-security",
            "--format",
            "github",
            "--fail-on",
            "warn",
            ".",
        ],
    ));
    assert!(
        !strict.lines().any(|line| line.starts_with("::warning")),
        "{strict}"
    );
}

#[test]
fn gitlab_code_quality_entries_have_the_fields_gitlab_requires() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deploy/pods.yaml",
        &format!(
            "{}---\n{}",
            pod("one", None),
            pod("two", Some(&format!("{PRIVILEGED}: accepted")))
        ),
    );
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--lab",
            "pod-security",
            "--format",
            "gitlab",
            "deploy",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    let entries = report.as_array().unwrap();
    assert!(!entries.is_empty());
    let mut fingerprints = HashSet::new();
    for entry in entries {
        assert!(entry["description"].is_string(), "{entry}");
        assert!(entry["check_name"].is_string(), "{entry}");
        assert!(
            fingerprints.insert(entry["fingerprint"].as_str().unwrap().to_owned()),
            "fingerprints are unique: {entry}"
        );
        assert!(
            ["info", "minor", "major", "critical", "blocker"]
                .contains(&entry["severity"].as_str().unwrap()),
            "{entry}"
        );
        assert_eq!(entry["location"]["path"], "deploy/pods.yaml", "{entry}");
        assert!(
            entry["location"]["lines"]["begin"].as_u64().unwrap() >= 1,
            "{entry}"
        );
    }
    let privileged: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["check_name"] == PRIVILEGED)
        .collect();
    assert_eq!(
        privileged.len(),
        1,
        "the suppressed one is not a degradation"
    );
    assert_eq!(privileged[0]["severity"], "critical");
    assert!(
        privileged[0]["content"]["body"]
            .as_str()
            .unwrap()
            .ends_with("Controls: CIS Kubernetes Benchmark 5.2.2; NSA/CISA Kubernetes Hardening Guide: Kubernetes Pod security"),
        "{}",
        privileged[0]
    );
    assert_eq!(privileged[0]["location"]["lines"]["begin"], 11);
}

#[test]
fn sarif_has_one_result_per_check_and_object_and_validates_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deploy/pods.yaml",
        &format!("{}---\n{}", pod("one", None), pod("two", None)),
    );
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--lab",
            "pod-security",
            "--format",
            "sarif",
            "deploy",
        ],
    );
    let sarif = json(&output);
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let mut seen = HashSet::new();
    for result in results {
        let locations = result["locations"].as_array().unwrap();
        assert_eq!(locations.len(), 1, "{result}");
        let object = locations[0]["logicalLocations"][0]["fullyQualifiedName"]
            .as_str()
            .unwrap();
        assert!(
            seen.insert((
                result["ruleId"].as_str().unwrap().to_owned(),
                object.to_owned()
            )),
            "{result}"
        );
        assert!(result["partialFingerprints"]["hardlabFinding/v1"].is_string());
    }
    assert!(seen.contains(&(PRIVILEGED.to_owned(), "Pod/app/one".to_owned())));
    assert!(seen.contains(&(PRIVILEGED.to_owned(), "Pod/app/two".to_owned())));
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    let privileged = rules.iter().find(|rule| rule["id"] == PRIVILEGED).unwrap();
    assert!(
        privileged["properties"]["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("CIS 5.2.2"))
    );

    // The schema comes from an npm package (see .ci/sarif-schema); jsonschema is Python's.
    let schema = std::env::var("HARDLAB_SARIF_SCHEMA").unwrap_or_default();
    if !hardlab_testkit::require_that(
        !schema.is_empty() && Path::new(&schema).is_file(),
        "HARDLAB_SARIF_SCHEMA names no SARIF 2.1.0 schema file (run .ci/sarif-schema)",
    ) {
        return;
    }
    let sarif_file = dir.path().join("report.sarif");
    std::fs::write(&sarif_file, stdout(&output)).unwrap();
    // Baseline states and suppressions are in the validated file too.
    let suppressed_file = dir.path().join("suppressed.sarif");
    let created = grade_in(
        dir.path(),
        &[
            "static",
            "--lab",
            "pod-security",
            "--skip-check",
            PRIVILEGED,
            "--create-baseline",
            "b.json",
            "--output",
            &format!("sarif={}", suppressed_file.display()),
            "deploy",
        ],
    );
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    for file in [&sarif_file, &suppressed_file] {
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
            "{} does not validate: {}",
            file.display(),
            stderr(&validation)
        );
    }
}

#[test]
fn one_run_writes_several_formats() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pods.yaml", &pod("root-shell", None));
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--output",
            "sarif=out/r.sarif",
            "--output",
            "gitlab=gl.json",
            "--output",
            "junit=junit.xml",
            "--output",
            "github=annotations.txt",
            "pods.yaml",
        ],
    );
    // out/ does not exist: the error names the file.
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("out/r.sarif"),
        "{}",
        stderr(&output)
    );

    std::fs::create_dir(dir.path().join("out")).unwrap();
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--output",
            "sarif=out/r.sarif",
            "--output",
            "gitlab=gl.json",
            "--output",
            "junit=junit.xml",
            "--output",
            "github=annotations.txt",
            "pods.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).starts_with("hardlab "),
        "the text report still goes to stdout"
    );
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/r.sarif")).unwrap())
            .unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let gitlab: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("gl.json")).unwrap())
            .unwrap();
    assert_eq!(gitlab[0]["check_name"], PRIVILEGED);
    assert!(
        std::fs::read_to_string(dir.path().join("junit.xml"))
            .unwrap()
            .contains("<testsuites")
    );
    assert!(
        std::fs::read_to_string(dir.path().join("annotations.txt"))
            .unwrap()
            .starts_with("::error file=pods.yaml,line=11,")
    );

    // A plain FILE still replaces standard output.
    let plain = grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--format",
            "json",
            "--output",
            "report.json",
            "pods.yaml",
        ],
    );
    assert!(stdout(&plain).is_empty());
    assert!(
        std::fs::read_to_string(dir.path().join("report.json"))
            .unwrap()
            .contains("\"findings\"")
    );
}

#[test]
fn text_reports_group_by_file_and_name_each_object_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &pod("one", None));
    write(dir.path(), "b.yaml", HARDENED_POD);
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--lab",
            "pod-security",
            "--group-by",
            "file",
            "a.yaml",
            "b.yaml",
        ],
    );
    let text = stdout(&output);
    assert_eq!(
        text.matches("\nPod/app/one").count() + text.matches("  Pod/app/one").count(),
        1,
        "{text}"
    );
    let a = text.find("\na.yaml\n").unwrap();
    let b = text.find("\nb.yaml\n").unwrap();
    assert!(a < b, "{text}");
    assert!(
        text[a..b].contains(
            "   11 FAIL  podsec.no-privileged No privileged containers: container \"shell\""
        ),
        "{text}"
    );
    assert!(text.contains("\nfixes\n"), "{text}");

    // By check (the default), the object appears once per check, at the offending field's line.
    let by_check = stdout(&grade_in(
        dir.path(),
        &["static", "--check", PRIVILEGED, "a.yaml"],
    ));
    assert_eq!(
        by_check.matches("Pod/app/one").count(),
        1,
        "once per check: {by_check}"
    );
    assert!(
        by_check.contains("        1 of 1 workloads in the inputs do not pass"),
        "{by_check}"
    );
    assert!(
        by_check.contains("at a.yaml:11 (Pod/app/one): container \"shell\""),
        "{by_check}"
    );
    for line in by_check.lines() {
        assert!(line.chars().count() < 400, "{line}");
    }
}

#[test]
fn framework_cis_runs_the_checks_that_cover_benchmark_items_and_summarizes_by_item() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pods.yaml", &pod("root-shell", None));
    let output = grade_in(
        dir.path(),
        &[
            "static",
            "--framework",
            "cis",
            "--format",
            "json",
            "pods.yaml",
        ],
    );
    let report = json(&output);
    let checks: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&PRIVILEGED));
    assert!(
        !checks.contains(&"podsec.read-only-root-fs"),
        "no CIS item: not run"
    );
    let controls = report["framework"]["controls"].as_array().unwrap();
    let item = controls
        .iter()
        .find(|control| control["control"] == "5.2.2")
        .unwrap();
    assert_eq!(item["status"], "fail");
    assert_eq!(item["checks"][0]["check"], PRIVILEGED);
    let text = stdout(&grade_in(
        dir.path(),
        &["static", "--framework", "cis", "pods.yaml"],
    ));
    assert!(text.contains("\nCIS Kubernetes Benchmark\n"), "{text}");
    assert!(
        text.contains("FAIL  5.2.2  podsec.no-privileged fail"),
        "{text}"
    );
}

#[test]
fn items_of_a_list_point_at_their_own_offending_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "list.yaml",
        "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: fine
    namespace: app
  spec:
    containers:
    - name: a
      image: a:1
- apiVersion: v1
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
",
    );
    let github = stdout(&grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--format",
            "github",
            "list.yaml",
        ],
    ));
    assert!(
        github.starts_with("::error file=list.yaml,line=23,"),
        "{github}"
    );
}

#[test]
fn a_kustomize_overlay_is_rendered_and_findings_point_at_the_source_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base/pod.yaml", &pod("shell", None));
    write(
        dir.path(),
        "base/kustomization.yaml",
        "resources: [pod.yaml]\n",
    );
    write(
        dir.path(),
        "prod/kustomization.yaml",
        "resources: [../base]\nnamePrefix: prod-\nbuildMetadata: [originAnnotations]\n",
    );

    // Without kubectl: a clear error, exit 2.
    let missing = Command::new(env!("CARGO_BIN_EXE_hardlab-grade"))
        .args(["static", "--kustomize", "prod"])
        .current_dir(dir.path())
        .env("HARDLAB_KUBECTL", "/nonexistent/kubectl")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--kustomize prod: cannot run /nonexistent/kubectl")
            && stderr(&missing).contains("kustomize build prod | hardlab-grade static -"),
        "{}",
        stderr(&missing)
    );

    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    if !hardlab_testkit::require_that(
        kubectl.is_ok_and(|output| output.status.success()),
        "kubectl is not installed (it renders --kustomize overlays)",
    ) {
        return;
    }
    let github = grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--format",
            "github",
            "--kustomize",
            "prod",
        ],
    );
    assert_eq!(github.status.code(), Some(1), "{}", stderr(&github));
    assert!(
        stdout(&github).starts_with("::error file=base/pod.yaml,line=11,"),
        "the origin annotation leads to the source file and its field: {}",
        stdout(&github)
    );
    assert!(
        stdout(&github).contains("Pod/app/prod-shell"),
        "{}",
        stdout(&github)
    );

    // Without origin annotations, findings point into the rendered stream.
    let base = grade_in(
        dir.path(),
        &["static", "--check", PRIVILEGED, "--kustomize", "base"],
    );
    assert!(
        stdout(&base).contains("at kustomize:base:"),
        "{}",
        stdout(&base)
    );
}

#[test]
fn every_object_gets_its_own_field_line_beyond_the_evidence_a_check_spells_out() {
    let dir = tempfile::tempdir().unwrap();
    // More offenders than a check lists in its evidence (50).
    let pods: Vec<String> = (0..60)
        .map(|index| pod(&format!("p{index:02}"), None))
        .collect();
    write(dir.path(), "many.yaml", &pods.join("---\n"));
    let report = json(&grade_in(
        dir.path(),
        &[
            "static",
            "--check",
            PRIVILEGED,
            "--format",
            "json",
            "many.yaml",
        ],
    ));
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 60);
    let last = findings
        .iter()
        .find(|f| f["object"] == "Pod/app/p59")
        .unwrap();
    // Each pod is 11 lines plus the separator; p59's `privileged: true` is its 11th line.
    assert_eq!(last["field_line"], 59 * 12 + 11, "{last}");
    assert_eq!(
        last["message"],
        "container \"shell\": spec.containers[0].securityContext.privileged is true"
    );
}
