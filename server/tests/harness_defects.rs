//! The harness catches broken labs: a solution that does nothing, and a check that passes before
//! the step is solved (a grader that cannot fail). Real Docker engine and test node; the broken
//! labs are copies of lab 4 in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use hardlab_server::harness::{LabPlan, Options, Verdict, render, verify_lab};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of lab 4 that `break_it` may change.
fn broken_lab_4(break_it: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("04-secure-access");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../labs/04-secure-access"),
        &lab,
    );
    break_it(&lab);
    (dir, lab)
}

async fn verify_developer_grant(lab: &Path) -> Option<Verdict> {
    let provider = support::docker_or_skip().await?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let plan = LabPlan::load(lab).unwrap();
    let options = Options {
        step: Some("developer-grant".to_owned()),
        image: support::TEST_IMAGE.to_owned(),
        unprivileged: true,
        cluster: None,
        capabilities: Vec::new(),
    };
    let report = verify_lab(&provider, &plan, &options).await.unwrap();
    println!("{}", render(std::slice::from_ref(&report)));
    support::assert_nothing_left(&provider, &[report.cluster.as_str()]).await;
    assert!(report.has_violation());
    let step = report
        .steps
        .iter()
        .find(|s| s.id == "developer-grant")
        .unwrap();
    Some(step.verdict.clone())
}

#[tokio::test]
async fn an_emptied_solution_leaves_the_check_failing_and_is_reported() {
    let (_keep, lab) = broken_lab_4(|lab| {
        std::fs::write(lab.join("solutions/05-developer-grant.sh"), "").unwrap();
    });
    let Some(verdict) = verify_developer_grant(&lab).await else {
        return;
    };
    let Verdict::Violation(reasons) = verdict else {
        panic!("expected a violation, got {verdict:?}");
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("access.developer-read-grant is fail after the solution")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_check_that_already_passes_before_the_solution_is_reported() {
    // A weakened step: its check list replaced by one that the earlier steps already satisfy.
    let (_keep, lab) = broken_lab_4(|lab| {
        let path = lab.join("lab.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let weakened = text.replace(
            "checks: [access.developer-read-grant]",
            "checks: [access.authorization-rbac]",
        );
        assert_ne!(
            text, weakened,
            "lab 4's developer-grant step changed; update this test"
        );
        std::fs::write(&path, weakened).unwrap();
    });
    let Some(verdict) = verify_developer_grant(&lab).await else {
        return;
    };
    let Verdict::Violation(reasons) = verdict else {
        panic!("expected a violation, got {verdict:?}");
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("check did not fail before the solution")),
        "{reasons:?}"
    );
}
