//! `hardlab labs verify` on the offline test node (real Docker engine, `hardlab/testnode:latest`):
//! every step the node can host is verified (checks fail before the solution and pass after it),
//! and the steps it cannot host are reported as needing a full cluster, never as passed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use hardlab_server::harness::{LabPlan, LabReport, Options, Verdict, render, verify_lab};

/// One lab at a time: each runs a whole control plane, and the machine has two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lab_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../labs")
        .join(name)
}

fn offline_options() -> Options {
    Options {
        step: None,
        // Lab 6 runs this build's `hardlab` in the node: `.ci/run` builds the test image with it;
        // elsewhere name an image built with it (docker/testnode/build.sh under another tag).
        image: std::env::var("HARDLAB_TEST_NODE_IMAGE")
            .unwrap_or_else(|_| support::TEST_IMAGE.to_owned()),
        unprivileged: true,
        cluster: None,
        capabilities: Vec::new(),
    }
}

/// Verifies the lab on a fresh test node and checks nothing of the cluster is left afterwards.
async fn verify(name: &str) -> Option<LabReport> {
    let provider = support::docker_or_skip().await?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let plan = LabPlan::load(&lab_dir(name)).unwrap();
    let report = verify_lab(&provider, &plan, &offline_options())
        .await
        .unwrap();
    println!("{}", render(std::slice::from_ref(&report)));
    support::assert_nothing_left(&provider, &[report.cluster.as_str()]).await;
    Some(report)
}

fn verdict<'a>(report: &'a LabReport, step: &str) -> &'a Verdict {
    &report
        .steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("no step {step} in the report"))
        .verdict
}

fn assert_verified(report: &LabReport, steps: &[&str]) {
    for step in steps {
        assert_eq!(
            verdict(report, step),
            &Verdict::Verified,
            "step {step} of {}",
            report.lab
        );
    }
}

fn assert_needs_full_cluster(report: &LabReport, step: &str, capability: &str) {
    match verdict(report, step) {
        Verdict::NeedsFullCluster(missing) => assert!(
            missing.iter().any(|m| m == capability),
            "step {step} should need {capability}, needs {missing:?}"
        ),
        other => panic!("step {step} should need a full cluster, got {other:?}"),
    }
}

#[tokio::test]
async fn lab_1_every_step_but_kms_v2_fails_before_and_passes_after_its_solution() {
    let Some(report) = verify("01-etcd-secrets").await else {
        return;
    };
    assert!(
        !report.has_violation(),
        "{}",
        render(std::slice::from_ref(&report))
    );
    assert_eq!(verdict(&report, "plaintext"), &Verdict::ReadingStepRan);
    assert_verified(
        &report,
        &["encrypt-aescbc", "rewrite-secrets", "lock-down-etcd"],
    );
    assert_needs_full_cluster(&report, "kms-v2", "kms-v2");
}

#[tokio::test]
async fn lab_2_policy_steps_are_verified_and_live_connectivity_needs_a_full_cluster() {
    let Some(report) = verify("02-network-policies").await else {
        return;
    };
    assert!(
        !report.has_violation(),
        "{}",
        render(std::slice::from_ref(&report))
    );
    assert_verified(&report, &["default-deny", "allow-app-traffic"]);
    assert_needs_full_cluster(&report, "open-by-default", "pods");
    assert_needs_full_cluster(&report, "see-the-matrix", "pods");
    let allow = report
        .steps
        .iter()
        .find(|s| s.id == "allow-app-traffic")
        .unwrap();
    assert!(
        allow
            .unverified_here
            .iter()
            .any(|note| note.starts_with("netpol.live-probe")),
        "the live probe cannot run here and must say so: {:?}",
        allow.unverified_here
    );
}

#[tokio::test]
async fn lab_3_needs_a_full_cluster_for_every_step_and_claims_none_as_passed() {
    let Some(report) = verify("03-pod-mtls").await else {
        return;
    };
    assert!(
        !report.has_violation(),
        "{}",
        render(std::slice::from_ref(&report))
    );
    for step in &report.steps {
        assert!(
            matches!(step.verdict, Verdict::NeedsFullCluster(_)),
            "step {} should need a full cluster, got {:?}",
            step.id,
            step.verdict
        );
    }
}

#[tokio::test]
async fn lab_4_every_step_fails_before_and_passes_after_its_solution() {
    let Some(report) = verify("04-secure-access").await else {
        return;
    };
    assert!(
        !report.has_violation(),
        "{}",
        render(std::slice::from_ref(&report))
    );
    assert_verified(
        &report,
        &[
            "authorization",
            "anonymous-auth",
            "insecure-port",
            "rbac-least-privilege",
            "developer-grant",
        ],
    );
}

#[tokio::test]
async fn lab_5_static_steps_and_the_manifest_scan_are_verified_and_admission_rejection_needs_a_full_cluster()
 {
    let Some(report) = verify("05-pod-security").await else {
        return;
    };
    assert!(
        !report.has_violation(),
        "{}",
        render(std::slice::from_ref(&report))
    );
    assert_verified(
        &report,
        &[
            "security-context",
            "host-isolation",
            "hygiene",
            "admission",
            "scan-manifests",
        ],
    );
    assert_needs_full_cluster(&report, "rejected", "psa");
}

#[tokio::test]
async fn lab_6_every_step_is_verified_against_the_harnesss_own_hardlab_server() {
    let Some(report) = verify("06-access-proxy").await else {
        return;
    };
    assert!(report.capabilities.contains("hardlab-proxy"));
    assert_verified(
        &report,
        &[
            "no-role",
            "admin-role",
            "developer-rbac",
            "developer-role",
            "bob-reads",
            "labels",
        ],
    );
    assert_eq!(verdict(&report, "audit"), &Verdict::ReadingStepRan);
    assert!(!report.has_violation());
}
