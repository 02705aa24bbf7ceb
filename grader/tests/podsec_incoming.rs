//! `podsec.incoming-manifests-clean` reads a folder of manifests through the node access (here the
//! grader's `LocalNode` on a temporary folder), on the very files lab 5's setup plants and its
//! solution writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hardlab_grader::checks::podsec::{INCOMING_DIR_PARAM, failing_rule_ids};
use hardlab_grader::context::Params;
use hardlab_grader::inputs::documents::read_paths;
use hardlab_grader::target::local::LocalNode;
use hardlab_grader::{Context, Outcome, RunOptions, Status, catalog, run_checks};

const CHECK: &str = "podsec.incoming-manifests-clean";

fn lab_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../labs/05-pod-security")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest a lab script writes to `report-viewer.yaml` with a `<<'YAML'` here-document.
fn report_viewer_from(script: &str) -> String {
    let text = lab_file(script);
    let start = text
        .lines()
        .position(|line| line.contains("report-viewer.yaml") && line.contains("<<'YAML'"))
        .unwrap_or_else(|| panic!("{script} writes report-viewer.yaml"));
    let body: Vec<&str> = text
        .lines()
        .skip(start + 1)
        .take_while(|line| *line != "YAML")
        .collect();
    body.join("\n") + "\n"
}

fn planted() -> String {
    report_viewer_from("setup.sh")
}

fn hardened() -> String {
    report_viewer_from("solutions/06-scan-manifests.sh")
}

/// A node whose folder `incoming` holds the given files, and the context that grades it live.
fn node_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, Context) {
    let root = tempfile::tempdir().unwrap();
    let incoming = root.path().join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    for (name, text) in files {
        std::fs::write(incoming.join(name), text).unwrap();
    }
    let ctx = context_for(root.path(), &incoming);
    (root, incoming, ctx)
}

fn context_for(root: &Path, incoming: &Path) -> Context {
    let params = Params {
        namespace: Some("payments".into()),
        extra: HashMap::from([(
            INCOMING_DIR_PARAM.to_owned(),
            incoming.display().to_string(),
        )]),
        ..Params::default()
    };
    Context::live(None)
        .with_node(Arc::new(LocalNode::new(root)))
        .with_params(params)
}

async fn grade(ctx: &Context) -> Outcome {
    let check = catalog::find(CHECK).expect("the check is in the catalog");
    (check.run)(ctx).await.expect("the check runs")
}

fn evidence(outcome: &Outcome) -> &str {
    outcome.evidence.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn the_planted_vendor_chart_fails_naming_file_line_and_rule() {
    let (_root, incoming, ctx) = node_with(&[("report-viewer.yaml", &planted())]);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    // Line 1 is the chart's comment: the Deployment's content starts on line 2.
    let at = format!("{}/report-viewer.yaml:2:", incoming.display());
    for rule in [
        "podsec.no-privileged",
        "podsec.run-as-non-root",
        "podsec.no-host-namespaces",
        "podsec.capabilities-dropped",
        "podsec.seccomp-profile",
    ] {
        assert!(
            evidence(&outcome)
                .lines()
                .any(|line| line.starts_with(&at) && line.contains(&format!("[{rule}]"))),
            "{rule} at {at} in:\n{}",
            evidence(&outcome)
        );
    }
    assert!(
        outcome
            .message
            .contains("Deployment/payments/report-viewer"),
        "{}",
        outcome.message
    );
    assert_eq!(outcome.locations.len(), 1, "{:?}", outcome.locations);
    assert_eq!(outcome.locations[0].line, 2);
}

#[tokio::test]
async fn the_hardened_chart_from_the_solution_passes() {
    let (_root, _incoming, ctx) = node_with(&[("report-viewer.yaml", &hardened())]);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
    assert!(
        outcome.message.contains("1 workloads"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn one_bad_file_among_clean_ones_still_fails_and_only_it_is_named() {
    let (_root, incoming, ctx) = node_with(&[
        ("a-clean.yaml", &hardened()),
        ("b-vendor.yml", &planted()),
        ("notes.txt", "not a manifest, never read"),
    ]);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    let bad = format!("{}/b-vendor.yml:2:", incoming.display());
    assert!(
        evidence(&outcome)
            .lines()
            .all(|line| line.starts_with(&bad)),
        "{}",
        evidence(&outcome)
    );
}

#[tokio::test]
async fn the_check_fails_on_exactly_the_rules_a_static_scan_fails_on() {
    let (_root, incoming, ctx) = node_with(&[("report-viewer.yaml", &planted())]);
    let outcome = grade(&ctx).await;
    let named: BTreeSet<String> = failing_rule_ids()
        .into_iter()
        .filter(|id| evidence(&outcome).contains(&format!("[{id}]")))
        .map(str::to_owned)
        .collect();

    let read = read_paths(&[incoming]).unwrap();
    let static_ctx = Context::from_documents(read.documents);
    let podsec = RunOptions {
        labs: vec!["pod-security".into()],
        checks: Vec::new(),
    }
    .select()
    .unwrap();
    let failing: BTreeSet<String> = run_checks(&static_ctx, &podsec)
        .await
        .into_iter()
        .filter(|result| result.status == Status::Fail)
        .map(|result| result.check)
        .collect();
    assert_eq!(named, failing);
}

#[tokio::test]
async fn an_empty_folder_fails_because_there_is_nothing_to_scan() {
    let (_root, _incoming, ctx) = node_with(&[("README", "no manifests here")]);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    assert!(
        outcome.message.contains("holds no manifest"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_missing_folder_fails_and_names_it() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("never-created");
    let outcome = grade(&context_for(root.path(), &missing)).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    assert!(
        outcome.message.contains(&missing.display().to_string()),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_manifest_that_does_not_parse_fails_naming_its_line() {
    let broken = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n";
    let (_root, incoming, ctx) = node_with(&[("broken.yaml", broken)]);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Fail, "{outcome:?}");
    let file = format!("{}/broken.yaml:", incoming.display());
    assert!(outcome.message.contains(&file), "{}", outcome.message);
}

#[tokio::test]
async fn without_node_access_the_check_says_it_cannot_grade() {
    let ctx = Context::live(None);
    let outcome = grade(&ctx).await;
    assert_eq!(outcome.status, Status::Skip, "{outcome:?}");
    assert!(
        outcome.message.starts_with("cannot grade"),
        "{}",
        outcome.message
    );
}
