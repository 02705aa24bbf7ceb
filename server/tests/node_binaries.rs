//! The node image carries `hardlab` and `hardlab-grade`, so the labs' own commands work in a
//! learner's node: lab 5's scan of the incoming folder with `hardlab-grade static`, and lab 1's
//! `hardlab kms-plugin`. Real Docker engine, a fresh test node (`hardlab/testnode:latest` built
//! with `HARDLAB_BIN_DIR`, as CI builds it), lab 5's own setup and solution scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use hardlab_server::harness::{LabPlan, Target};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
const SCAN: &str = "hardlab-grade static --lab pod-security /root/pod-security/incoming";

/// What each command printed and how it ended, gathered before any assertion so that the
/// cluster is removed even when one fails.
struct Runs {
    binaries_present: bool,
    scan_after_setup: (i64, String),
    solution: (i64, String),
    scan_after_solution: (i64, String),
    kms_plugin_help: (i64, String),
}

async fn run(target: &Target, script: &str) -> (i64, String) {
    let run = target.run_script(script, SCRIPT_TIMEOUT).await.unwrap();
    (run.exit_code, run.output)
}

async fn exercise(target: &Target, plan: &LabPlan) -> Runs {
    let (found, _) = run(target, "command -v hardlab && command -v hardlab-grade").await;
    if found != 0 {
        return Runs {
            binaries_present: false,
            scan_after_setup: (-1, String::new()),
            solution: (-1, String::new()),
            scan_after_solution: (-1, String::new()),
            kms_plugin_help: (-1, String::new()),
        };
    }
    let setup = run(target, plan.setup.as_deref().unwrap()).await;
    assert_eq!(setup.0, 0, "lab 5's setup failed:\n{}", setup.1);
    let scan_after_setup = run(target, SCAN).await;
    let solution_script = plan
        .steps
        .iter()
        .find(|step| step.id == "scan-manifests")
        .and_then(|step| step.solution.clone())
        .unwrap();
    let solution = run(target, &solution_script).await;
    let scan_after_solution = run(target, SCAN).await;
    let kms_plugin_help = run(target, "hardlab kms-plugin --help").await;
    Runs {
        binaries_present: true,
        scan_after_setup,
        solution,
        scan_after_solution,
        kms_plugin_help,
    }
}

#[tokio::test]
async fn the_node_scans_lab_5s_incoming_chart_and_runs_the_kms_plugin() {
    let Some(provider) = support::docker_or_skip().await else {
        return;
    };
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../labs/05-pod-security");
    let plan = LabPlan::load(&lab).unwrap();
    let target = Target::create(provider.clone(), support::TEST_IMAGE, true, &plan)
        .await
        .unwrap();
    let cluster = target.name().to_owned();
    // In a task of its own, so that a panic is caught and the cluster still removed.
    let runs = tokio::spawn({
        let provider = provider.clone();
        let cluster = cluster.clone();
        async move {
            let target = Target::existing(provider, &cluster).await.unwrap();
            exercise(&target, &plan).await
        }
    })
    .await;
    target.remove().await.unwrap();
    support::assert_nothing_left(&provider, &[cluster.as_str()]).await;
    let runs = runs.expect("the commands ran without panicking");

    if !runs.binaries_present {
        let why = format!(
            "{} has no hardlab or hardlab-grade (build it with \
             HARDLAB_BIN_DIR=target/debug docker/testnode/build.sh)",
            support::TEST_IMAGE
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {why}"
        );
        eprintln!("skipping: {why}");
        return;
    }
    let (code, output) = &runs.scan_after_setup;
    assert_eq!(*code, 1, "the planted chart must fail the scan:\n{output}");
    assert!(
        output.contains("FAIL  podsec.no-privileged")
            && output.contains("/root/pod-security/incoming/report-viewer.yaml:2"),
        "the scan names the check and the file:line:\n{output}"
    );
    let (code, output) = &runs.solution;
    assert_eq!(*code, 0, "the solution failed:\n{output}");
    let (code, output) = &runs.scan_after_solution;
    assert_eq!(*code, 0, "the hardened chart must scan clean:\n{output}");
    assert!(output.contains(" 0 failed"), "{output}");
    let (code, output) = &runs.kms_plugin_help;
    assert_eq!(*code, 0, "hardlab kms-plugin --help failed:\n{output}");
    assert!(output.contains("--socket"), "{output}");
}
