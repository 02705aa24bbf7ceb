//! A workshop in real headless Chromium: the instructor creates it on /workshops, three learners
//! join with its code in browsers of their own (separate profiles), a learner's Check shows on
//! the instructor's open board without a reload (the delay is printed), a learner with three
//! "not yet" verdicts in a row is flagged stuck, the instructor resets a learner's Docker cluster
//! and extends the workshop from the board, the CSV export has the rows, and ending the workshop
//! removes every cluster of its learners. Screenshots of the board (1280 px) go to
//! target/test-artifacts/.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{TestApp, TestDb};
use hardlab_grader::{CheckResult, Severity, Status};
use hardlab_server::clusters::lifecycle::ClusterState;
use hardlab_server::web::accounts::Role;
use hardlab_server::web::check::{AttemptRecord, AttemptRow, Trigger};
use hardlab_testkit::{Component, require};

const PASSWORD: &str = "correct-horse-battery";

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
}

/// Polls the page (no reload) until `css`'s text contains `wanted`.
async fn wait_for_text(browser: &Browser, css: &str, wanted: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if browser.try_find(css).await.is_some() {
            let text = browser.text(css).await;
            if text.contains(wanted) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {wanted:?}; it shows:\n{text}"
            );
        } else {
            assert!(Instant::now() < deadline, "no {css}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_ready(app: &TestApp, id: &str) {
    let manager = &app.state.clusters.as_ref().unwrap().manager;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let record = manager.get(id).await.unwrap().unwrap();
        match record.state {
            ClusterState::Ready => return,
            ClusterState::Failed => panic!("{:?}", record.failure_reason),
            _ => assert!(Instant::now() < deadline, "cluster {id} not ready"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_instructor_runs_a_workshop_of_three_learners_in_chromium() {
    if !require(Component::Chromium) {
        return;
    }
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    let app = TestApp::start(TestDb::sqlite().await).await;
    let base = app.base_url.clone();
    std::fs::create_dir_all(artifacts()).unwrap();

    // The instructor signs in and creates the workshop on the page.
    hardlab_server::web::accounts::create_user(&app.db.pool, "teacher", PASSWORD, Role::Instructor)
        .await
        .unwrap();
    let teacher = Browser::start().await;
    teacher.goto(&format!("{base}/signin")).await;
    teacher.type_into("#username", "teacher").await;
    teacher.type_into("#password", PASSWORD).await;
    teacher
        .click("form[action='/signin'] button[type=submit]")
        .await;
    teacher
        .wait_for("a[href='/workshops']", Duration::from_secs(10))
        .await;
    teacher.click("a[href='/workshops']").await;
    teacher.type_into("#title", "Etcd morning").await;
    teacher.click("input[name=labs][value='demo-etcd']").await;
    teacher
        .script("document.getElementById('capacity').value = '5'; return null;")
        .await;
    teacher
        .click("form[action='/workshops'] button[type=submit]")
        .await;
    let code = teacher.text(".join-code").await;
    assert_eq!(code.len(), 12, "{code}");
    let board_url = teacher.url().await;
    let workshop_id = board_url.rsplit('/').next().unwrap().to_owned();
    assert!(
        teacher
            .text("#workshop-board")
            .await
            .contains("Nobody has joined yet")
    );

    // Three learners, each in a browser of their own, join with the code and a name.
    let mut learners = Vec::new();
    for name in ["ann", "ben", "cid"] {
        let browser = Browser::start().await;
        browser.goto(&format!("{base}/join/{code}")).await;
        assert!(browser.text("h1").await.contains("Etcd morning"));
        assert!(browser.text(".workshop-when").await.contains("UTC"));
        browser.type_into("#name", name).await;
        browser
            .click(&format!("form[action='/join/{code}'] button[type=submit]"))
            .await;
        wait_for_text(
            &browser,
            ".notice",
            "You are in this workshop",
            Duration::from_secs(10),
        )
        .await;
        learners.push(browser);
    }
    wait_for_text(
        &teacher,
        ".board-summary",
        "3 learner(s)",
        Duration::from_secs(15),
    )
    .await;

    // ann presses Check on the step page (no cluster yet: could not be judged, still an
    // attempt); the instructor's open board shows it without a reload.
    let ann = &learners[0];
    ann.goto(&format!("{base}/labs/demo-etcd/steps/encrypt"))
        .await;
    let pressed = Instant::now();
    ann.click("form[data-check-form] button[type=submit]").await;
    wait_for_text(
        &teacher,
        "tr[data-learner='ann']",
        "0 passed / 1 attempted",
        Duration::from_secs(20),
    )
    .await;
    let delay = pressed.elapsed();
    eprintln!(
        "the board showed ann's Check {} ms after she pressed it",
        delay.as_millis()
    );

    // ben's three failed Checks. Stored through `check::store`, the one place a Check's verdict
    // is written, with the result a failing etcd check gives (a real failing Check in Chromium
    // is web_browser.rs's; this test is about the board).
    let ben_id = app.user_id("ben").await;
    for _ in 0..3 {
        let record = AttemptRecord {
            problem: None,
            results: vec![CheckResult {
                check: "etcd.encryption-configured".to_owned(),
                title: "Secrets are encrypted at rest".to_owned(),
                lab: "demo-etcd".to_owned(),
                step: "encrypt".to_owned(),
                status: Status::Fail,
                severity: Severity::High,
                message: "the API server has no --encryption-provider-config".to_owned(),
                evidence: None,
                remediation: String::new(),
                references: Vec::new(),
                locations: Vec::new(),
                location_problems: Vec::new(),
                duration_ms: 5,
            }],
        };
        hardlab_server::web::check::store(
            &app.state,
            &ben_id,
            "demo-etcd",
            "encrypt",
            AttemptRow::New {
                started_at: hardlab_server::db::now_ms(),
            },
            Trigger::Check,
            record,
        )
        .await
        .unwrap();
    }
    let row = wait_for_text(
        &teacher,
        "tr[data-learner='ben']",
        "3 failed checks in a row",
        Duration::from_secs(20),
    )
    .await;
    assert!(
        row.contains("stuck") && row.contains("0 passed / 3 attempted"),
        "{row}"
    );
    assert!(
        teacher
            .text(".failure-groups")
            .await
            .contains("fail etcd.encryption-configured on step “Turn on encryption at rest”")
    );

    // cid has a cluster; the instructor replaces it with a fresh one from the board.
    let manager = app.state.clusters.as_ref().unwrap().manager.clone();
    let cid_id = app.user_id("cid").await;
    let lab = app.state.labs.get("demo-etcd").unwrap();
    let request = hardlab_server::clusters::setup::lab_request(lab);
    let first = manager.start(&cid_id, None, &request).await.unwrap();
    wait_ready(&app, &first.id).await;
    wait_for_text(
        &teacher,
        "tr[data-learner='cid']",
        "ready",
        Duration::from_secs(20),
    )
    .await;
    teacher.resize(1280, 900).await;
    teacher
        .full_page_screenshot(&artifacts().join("workshop-board-1280.png"), 1280)
        .await;
    teacher
        .click("tr[data-learner='cid'] form[action$='/reset'] button")
        .await;
    wait_for_text(
        &teacher,
        ".notice",
        "being replaced",
        Duration::from_secs(20),
    )
    .await;
    let second = manager
        .find_for(&cid_id, "demo-etcd")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.id, first.id, "reset gave the same cluster");
    assert!(
        !manager
            .get(&first.id)
            .await
            .unwrap()
            .unwrap()
            .state
            .is_live()
    );
    wait_ready(&app, &second.id).await;

    // Extend from the board.
    let before = hardlab_server::workshops::get(&app.db.pool, &workshop_id)
        .await
        .unwrap()
        .unwrap()
        .ends_at;
    teacher.click("form[action$='/extend'] button").await;
    wait_for_text(&teacher, ".notice", "extended", Duration::from_secs(10)).await;
    let after = hardlab_server::workshops::get(&app.db.pool, &workshop_id)
        .await
        .unwrap()
        .unwrap()
        .ends_at;
    assert_eq!(after, before + 30 * 60_000);

    // The CSV export has a row per learner and checked step.
    let labs = common::fixture_labs();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args([
            "workshop",
            "export",
            &code,
            "--format",
            "csv",
            "--database-url",
            &app.db.url,
            "--labs",
            labs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let csv = String::from_utf8_lossy(&output.stdout).into_owned();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(
        rows[0].starts_with("learner,lab,step,passed,attempts"),
        "{csv}"
    );
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows.iter()
            .any(|row| row.starts_with("ben,demo-etcd,encrypt,false,3,")),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|row| row.starts_with("ann,demo-etcd,encrypt,false,1,")),
        "{csv}"
    );

    // End: every cluster of the workshop's learners goes.
    teacher.click("form[action$='/end'] button").await;
    wait_for_text(&teacher, ".notice", "has ended", Duration::from_secs(60)).await;
    assert!(teacher.text(".eyebrow").await.contains("ended"));
    let left = hardlab_server::workshops::live_clusters(
        &app.db.pool,
        &manager,
        &hardlab_server::workshops::get(&app.db.pool, &workshop_id)
            .await
            .unwrap()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    support::assert_nothing_left(&docker, &[first.id.as_str(), second.id.as_str()]).await;
    teacher
        .full_page_screenshot(&artifacts().join("workshop-board-ended-1280.png"), 1280)
        .await;
    let violations = teacher.csp_violations().await;
    assert!(violations.is_empty(), "{violations:?}");
}
