//! A scan judges what it is given: without `--lab` only the hardening checks run, a check
//! whose subject is not among the inputs is `skip` with the reason, and one good file of each
//! kind exits 0. The built binary on real files, as CI runs it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn single(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/single")
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

fn json_report(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["static", "--format", "json"];
    all.extend(args);
    let output = grade(&all);
    let text = String::from_utf8(output.stdout).unwrap();
    let report = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "{error}: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn result<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["check"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const GOOD_FILES: &[&str] = &[
    "encryption-config.yaml",
    "kube-apiserver.yaml",
    "deployment.yaml",
    "networkpolicy.yaml",
    "peerauthentication.yaml",
    "rbac.yaml",
    "namespace.yaml",
];

#[test]
fn one_good_file_of_each_kind_exits_0() {
    for name in GOOD_FILES {
        let (code, report) = json_report(&[&single(name)]);
        let failing: Vec<&Value> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "fail" || r["status"] == "error")
            .collect();
        assert_eq!(code, Some(0), "{name}: {failing:#?}");
    }
}

#[test]
fn without_a_lab_no_exercise_check_runs_and_with_one_they_do() {
    let exercise = [
        "netpol.intended-matrix",
        "etcd.encryption-kms-v2",
        "access.developer-read-grant",
        "podsec.incoming-manifests-clean",
        "proxy.no-role-refused",
    ];
    let (_, report) = json_report(&[&single("deployment.yaml")]);
    for result in report["results"].as_array().unwrap() {
        let id = result["check"].as_str().unwrap();
        assert!(!exercise.contains(&id), "{id} ran without --lab");
    }
    assert!(
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "podsec.no-privileged")
    );

    let (code, report) = json_report(&["--lab", "network-policies", &single("deployment.yaml")]);
    assert_eq!(result(&report, "netpol.intended-matrix")["status"], "fail");
    assert_eq!(code, Some(1));
    let (_, report) = json_report(&[
        "--check",
        "etcd.encryption-kms-v2",
        &single("encryption-config.yaml"),
    ]);
    assert_eq!(result(&report, "etcd.encryption-kms-v2")["status"], "fail");
}

#[test]
fn the_catalog_says_which_checks_are_lab_exercises() {
    let output = grade(&["checks", "--format", "json"]);
    let catalog: Value = serde_json::from_slice(&output.stdout).unwrap();
    let kind = |id: &str| {
        catalog["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["id"] == id)
            .unwrap()["kind"]
            .clone()
    };
    assert_eq!(kind("netpol.intended-matrix"), "exercise");
    assert_eq!(kind("netpol.default-deny-ingress"), "hardening");
}

#[test]
fn an_encryption_configuration_alone_skips_the_network_and_mesh_checks_with_reasons() {
    let (code, report) = json_report(&[&single("encryption-config.yaml")]);
    assert_eq!(code, Some(0));
    for id in [
        "netpol.default-deny-ingress",
        "netpol.default-deny-egress",
        "mtls.strict-mode",
        "mtls.workloads-meshed",
    ] {
        let result = result(&report, id);
        assert_eq!(result["status"], "skip", "{result}");
        assert!(
            result["message"]
                .as_str()
                .unwrap()
                .contains("among the inputs"),
            "{result}"
        );
    }
    assert_eq!(
        result(&report, "etcd.encryption-configured")["status"],
        "pass"
    );
}

#[test]
fn pods_without_any_policy_skip_but_a_namespace_left_open_beside_policies_fails() {
    let (_, report) = json_report(&[&single("deployment.yaml")]);
    let ingress = result(&report, "netpol.default-deny-ingress");
    assert_eq!(ingress["status"], "skip", "{ingress}");
    assert!(
        ingress["message"]
            .as_str()
            .unwrap()
            .contains("no NetworkPolicy among the inputs"),
        "{ingress}"
    );

    // The policy covers shop; a second namespace's pod is open: the scan judges both.
    let dir = tempfile::tempdir().unwrap();
    let other = std::fs::read_to_string(single("deployment.yaml"))
        .unwrap()
        .replace("namespace: shop", "namespace: billing");
    let other = write(dir.path(), "billing.yaml", &other);
    let (code, report) = json_report(&[
        &single("deployment.yaml"),
        &single("networkpolicy.yaml"),
        &other,
    ]);
    assert_eq!(code, Some(1));
    let ingress = result(&report, "netpol.default-deny-ingress");
    assert_eq!(ingress["status"], "fail", "{ingress}");
    let message = ingress["message"].as_str().unwrap();
    assert!(message.contains("billing/api"), "{message}");
    assert!(!message.contains("shop/api"), "{message}");

    let (code, report) = json_report(&[&single("deployment.yaml"), &single("networkpolicy.yaml")]);
    assert_eq!(code, Some(0));
    assert_eq!(
        result(&report, "netpol.default-deny-ingress")["status"],
        "pass"
    );
}

#[test]
fn a_mesh_among_the_inputs_is_judged_and_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let permissive = std::fs::read_to_string(single("peerauthentication.yaml"))
        .unwrap()
        .replace("STRICT", "PERMISSIVE");
    let permissive = write(dir.path(), "permissive.yaml", &permissive);
    let (code, report) = json_report(&[&permissive, &single("deployment.yaml")]);
    assert_eq!(code, Some(1));
    assert_eq!(result(&report, "mtls.strict-mode")["status"], "fail");
    assert_eq!(result(&report, "mtls.workloads-meshed")["status"], "fail");
}

#[test]
fn a_bad_file_of_a_kind_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let privileged = std::fs::read_to_string(single("deployment.yaml"))
        .unwrap()
        .replace("allowPrivilegeEscalation: false", "privileged: true");
    let privileged = write(dir.path(), "privileged.yaml", &privileged);
    let (code, report) = json_report(&[&privileged]);
    assert_eq!(code, Some(1));
    assert_eq!(result(&report, "podsec.no-privileged")["status"], "fail");

    let identity = write(
        dir.path(),
        "identity.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n",
    );
    let (code, report) = json_report(&[&identity]);
    assert_eq!(code, Some(1));
    assert_eq!(
        result(&report, "etcd.encryption-configured")["status"],
        "fail"
    );
}
