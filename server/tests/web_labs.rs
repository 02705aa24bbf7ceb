//! Labs from files through the web app: rendering, hostile markup, broken lab folders, progress.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{TestApp, each_database};

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const GOOD_LAB: &str = "id: good
title: Good
summary: s
minutes: 5
steps:
  - id: one
    title: One
    file: one.md
    checks: []
";

#[tokio::test]
async fn a_step_renders_its_markdown_with_runnable_shell_blocks_callouts_and_tables() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let page = alice.get("/labs/demo-etcd/steps/encrypt").await;
        assert_eq!(page.status, 200);
        let body = &page.body;
        assert!(
            body.contains("<h1>Turn on encryption at rest</h1>"),
            "{body}"
        );
        assert!(body.contains("class=\"language-yaml\""), "{body}");
        assert!(body.contains("callout callout-warning"), "{body}");
        assert!(body.contains("callout callout-hint"), "{body}");
        assert!(body.contains("<table>"), "{body}");
        assert!(body.contains(">Check</button>"), "{body}");
        let look = alice.get("/labs/demo-etcd/steps/look").await;
        assert!(look.body.contains("<pre data-run"), "{}", look.body);
        assert!(look.body.contains("kubectl get secrets -A"));
        assert!(look.body.contains("nothing is graded"));
    })
    .await;
}

#[tokio::test]
async fn a_script_tag_in_lab_markdown_renders_inert() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let page = alice.get("/labs/reading/steps/read").await;
        assert_eq!(page.status, 200);
        let body = &page.body;
        assert!(body.contains("Harmless text."));
        assert!(!body.contains("window.pwned"), "{body}");
        assert!(!body.contains("onerror"), "{body}");
        assert!(!body.contains("javascript:"), "{body}");
        // The page's own scripts are the only ones: every script element loads one of ours.
        let scripts = body.matches("<script").count();
        assert!(scripts >= 2, "{body}");
        assert_eq!(
            body.matches("<script src=\"/static/").count(),
            scripts,
            "{body}"
        );
    })
    .await;
}

#[test]
fn a_malformed_lab_yaml_stops_the_load_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "01-good/lab.yaml", GOOD_LAB);
    write(dir.path(), "01-good/one.md", "# One");
    write(
        dir.path(),
        "02-bad/lab.yaml",
        "id: bad\ntitle: Bad\nsummary: s\nminutes: five\nsteps: []\n",
    );
    let error = hardlab_server::labs::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("02-bad/lab.yaml:4"), "{error}");
    assert!(error.contains("minutes"), "{error}");
}

#[test]
fn unknown_checks_missing_files_and_duplicate_ids_are_all_reported_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "01-broken/lab.yaml",
        "id: broken
title: Broken
summary: s
minutes: 5
steps:
  - id: one
    title: One
    file: steps/missing.md
    checks: [etcd.no-such-check]
  - id: one
    title: Again
    file: two.md
    checks: []
",
    );
    write(dir.path(), "01-broken/two.md", "# Two");
    write(
        dir.path(),
        "02-dup/lab.yaml",
        &GOOD_LAB.replace("id: good", "id: broken"),
    );
    write(dir.path(), "02-dup/one.md", "# One");
    let error = hardlab_server::labs::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "01-broken/lab.yaml:9: steps[0].checks[0]: unknown check ID \"etcd.no-such-check\""
        ),
        "{error}"
    );
    assert!(
        error.contains("01-broken/lab.yaml:8: steps[0].file:") && error.contains("file not found"),
        "{error}"
    );
    assert!(
        error.contains("01-broken/lab.yaml:10: steps[1].id: duplicate step id \"one\""),
        "{error}"
    );
    // The duplicate lab is reported only when the first one loads; here the first is broken.
    let dir2 = tempfile::tempdir().unwrap();
    write(dir2.path(), "01-a/lab.yaml", GOOD_LAB);
    write(dir2.path(), "01-a/one.md", "# One");
    write(dir2.path(), "02-b/lab.yaml", GOOD_LAB);
    write(dir2.path(), "02-b/one.md", "# One");
    let error = hardlab_server::labs::load(dir2.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("02-b/lab.yaml:1: id: lab id \"good\" is already used"),
        "{error}"
    );
}

#[test]
fn a_lab_file_outside_its_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "01-escape/lab.yaml",
        &GOOD_LAB.replace("file: one.md", "file: ../../etc/passwd"),
    );
    let error = hardlab_server::labs::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("must be a path inside the lab folder"),
        "{error}"
    );
}

#[test]
fn serve_refuses_to_start_on_a_broken_lab_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "labs/01-bad/lab.yaml",
        "id: bad\ntitle: [unclosed\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["serve", "--listen", "127.0.0.1:0", "--labs"])
        .arg(dir.path().join("labs"))
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("db.sqlite").display()
        ))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("01-bad/lab.yaml:"), "{stderr}");
    // The same check for authors and CI.
    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["labs", "validate"])
        .arg(dir.path().join("labs"))
        .output()
        .unwrap();
    assert!(!validate.status.success());
    assert!(String::from_utf8_lossy(&validate.stderr).contains("01-bad/lab.yaml:"));
}

#[test]
fn the_fixture_labs_validate() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["labs", "validate"])
        .arg(common::fixture_labs())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 lab(s) valid"));
}

#[tokio::test]
async fn progress_and_attempts_survive_a_restart() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        alice
            .post_form("/cluster", &[("kubeconfig", kubeconfig)])
            .await;
        let checked = alice
            .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
            .await;
        assert_eq!(
            checked.location(),
            Some("/labs/demo-etcd/steps/encrypt#result")
        );
        let page = alice.get("/labs/demo-etcd/steps/encrypt").await;
        assert!(page.body.contains("Cannot reach your cluster"), "{}", page.body);
        let cookie = alice.cookie_header();
        let restarted = app.another_instance().await;
        drop(app);
        let again = restarted.agent();
        let page = reqwest::Client::new()
            .get(format!("{}/labs/demo-etcd/steps/encrypt", restarted.base_url))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Cannot reach your cluster"), "{page}");
        drop(again);
        let metrics = restarted.agent().get("/metrics").await.body;
        assert!(metrics.contains("hardlab_http_requests_total"), "{metrics}");
    })
    .await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_check_runs() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        alice.get("/labs/demo-etcd/steps/look").await;
        alice.post_form("/labs/demo-etcd/steps/encrypt/check", &[]).await;
        let metrics = app.agent().get("/metrics").await.body;
        assert!(
            metrics.contains(
                "hardlab_http_requests_total{method=\"GET\",route=\"/labs/{lab}/steps/{step}\",status=\"200\"} 1"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "hardlab_check_runs_total{lab=\"demo-etcd\",step=\"encrypt\",result=\"unjudged\"} 1"
            ),
            "{metrics}"
        );
        assert!(metrics.contains("hardlab_check_run_duration_seconds_count 1"), "{metrics}");
    })
    .await;
}

#[tokio::test]
async fn error_pages_keep_the_layout_and_my_clusters_lists_the_registered_one() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let missing = alice.get("/labs/no-such-lab").await;
        assert_eq!(missing.status, 404);
        assert!(missing.body.contains("<h1>Not found</h1>"), "{}", missing.body);
        assert!(missing.body.contains("href=\"/cluster\">My clusters</a>"), "{}", missing.body);
        assert!(missing.body.contains("alice"), "the signed-in user: {}", missing.body);
        // Signed out, the error page still has the bar (with sign-in).
        let anonymous = app.agent().get("/no/such/page").await;
        assert_eq!(anonymous.status, 404);
        assert!(anonymous.body.contains("href=\"/signin\""), "{}", anonymous.body);

        let mine = alice.get("/cluster").await.body;
        assert!(mine.contains("<h1>My clusters</h1>"), "{mine}");
        assert!(mine.contains("No cluster registered by kubeconfig."), "{mine}");
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        alice
            .post_form("/cluster", &[("name", "home lab"), ("kubeconfig", kubeconfig)])
            .await;
        let mine = alice.get("/cluster").await.body;
        assert!(mine.contains("home lab"), "{mine}");
        assert!(mine.contains("https://127.0.0.1:1"), "{mine}");
        // Another learner's running cluster cannot be extended or removed by ID guessing.
        let refused = alice.post_form("/cluster/running/someone-else/extend", &[]).await;
        assert_eq!(refused.status, 404);
    })
    .await;
}
