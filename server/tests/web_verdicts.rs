//! Honest verdicts: pass, pass with warnings, not yet, could not be judged here. Each outcome's
//! words on the step page, the sidebar, the lab list, the attempt page and the instructors'
//! boards, and how it counts (attempts, hints, progress); the background check's rules (not run
//! without a ready cluster, never beside another grading, a non-pass is not an attempt).
//!
//! The outcomes are fed to the one function that stores gradings (`check::store`) as results the
//! grader returns (its own tests prove when it returns which); grading through the real route is
//! here for "could not be judged" (an unreachable cluster) and in web_browser.rs for fail and pass
//! against a real API server.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Agent, TestApp, each_database};
use hardlab_grader::{CheckResult, Severity, Status};
use hardlab_server::web::accounts::Role;
use hardlab_server::web::check::{self, AttemptRecord, AttemptRow, Trigger};

fn result(check: &str, status: Status, message: &str) -> CheckResult {
    CheckResult {
        check: check.into(),
        title: format!("title of {check}"),
        lab: "etcd".into(),
        step: "encrypt".into(),
        status,
        severity: Severity::High,
        message: message.into(),
        evidence: None,
        remediation: "Set `--encryption-provider-config` on the API server.".into(),
        references: Vec::new(),
        locations: Vec::new(),
        location_problems: Vec::new(),
        duration_ms: 1,
    }
}

fn record(second: Status, message: &str) -> AttemptRecord {
    AttemptRecord {
        problem: None,
        results: vec![
            result("etcd.encryption-configured", Status::Pass, "configured"),
            result("etcd.secrets-encrypted", second, message),
        ],
    }
}

async fn store(app: &TestApp, user: &str, record: AttemptRecord, trigger: Trigger) -> bool {
    let started_at = hardlab_server::db::now_ms();
    let graded = check::store(
        &app.state,
        user,
        "demo-etcd",
        "encrypt",
        AttemptRow::New { started_at },
        trigger,
        record,
    )
    .await
    .unwrap();
    graded.attempt_id.is_some()
}

async fn attempts(app: &TestApp, user: &str) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM check_attempts WHERE user_id = $1")
        .bind(user)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    count
}

async fn failed_attempts(app: &TestApp, user: &str) -> i64 {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT failed_attempts FROM step_progress WHERE user_id = $1 AND step_id = 'encrypt'",
    )
    .bind(user)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    count
}

/// The step's badge in the sidebar.
fn badge(body: &str) -> String {
    let at = body
        .find("aria-current=\"step\"")
        .expect("the current step in the sidebar");
    let rest = &body[at..];
    let start = rest.find("class=\"badge").unwrap();
    let rest = &rest[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</span>").unwrap();
    rest[open..close].to_owned()
}

async fn board_row(teacher: &Agent, name: &str) -> String {
    let board = teacher.get("/progress").await.body;
    let at = board.find(&format!(">{name}</a>")).unwrap();
    let end = board[at..].find("</tr>").unwrap();
    board[at..at + end].to_owned()
}

#[tokio::test]
async fn each_outcome_is_worded_and_counted_as_what_it_is() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let teacher = app.user_with_role("teacher", Role::Instructor).await;
        let user = app.user_id("alice").await;
        let step = "/labs/demo-etcd/steps/encrypt";

        // Could not be judged: not a failure, no hint, nothing on the boards.
        assert!(
            store(
                &app,
                &user,
                record(Status::Skip, "not run: pods are not running"),
                Trigger::Check
            )
            .await
        );
        let page = alice.get(step).await.body;
        assert!(
            page.contains("<strong>Could not be judged here.</strong>"),
            "{page}"
        );
        assert!(page.contains("not a failed attempt and uses no"), "{page}");
        assert!(page.contains("What you can do:"), "{page}");
        assert!(page.contains("not run: pods are not running"), "{page}");
        assert!(!page.contains("Not yet"), "{page}");
        assert_eq!(badge(&page), "not judged yet");
        assert!(!page.contains("hint-list"), "a hint opened: {page}");
        assert_eq!(failed_attempts(&app, &user).await, 0);
        assert!(
            alice
                .get("/")
                .await
                .body
                .contains("0 of 1 checked steps passed")
        );
        assert!(
            board_row(&teacher, "alice")
                .await
                .contains("board-passed\" title=\"passed\">0<")
        );

        // Not yet: one failed attempt, one hint, the remediation as markdown.
        assert!(
            store(
                &app,
                &user,
                record(Status::Fail, "Secrets are stored in plain text"),
                Trigger::Check
            )
            .await
        );
        let page = alice.get(step).await.body;
        assert!(
            page.contains("<strong>Not yet.</strong> 1 of 2 checks failed"),
            "{page}"
        );
        assert_eq!(badge(&page), "not yet");
        assert!(page.contains("How to fix:"), "{page}");
        assert!(
            page.contains("<code>--encryption-provider-config</code>"),
            "{page}"
        );
        assert!(
            !page.contains("`--encryption-provider-config`"),
            "raw markdown: {page}"
        );
        assert!(page.contains("hint-list"), "{page}");
        assert!(
            page.contains("encryption settings"),
            "the first hint: {page}"
        );
        assert!(
            !page.contains("aescbc before identity"),
            "the second hint: {page}"
        );
        assert_eq!(failed_attempts(&app, &user).await, 1);
        assert!(board_row(&teacher, "alice").await.contains("1 not yet"));

        // Could not be judged after a failure: the failure stands, nothing more is counted.
        assert!(
            store(
                &app,
                &user,
                record(Status::Error, "etcd did not answer"),
                Trigger::Check
            )
            .await
        );
        let page = alice.get(step).await.body;
        assert!(
            page.contains("<strong>Could not be judged here.</strong>"),
            "{page}"
        );
        assert_eq!(badge(&page), "not yet");
        assert_eq!(failed_attempts(&app, &user).await, 1);
        assert!(!page.contains("aescbc before identity"), "{page}");

        // A background check that does not pass is not an attempt at all.
        assert!(
            !store(
                &app,
                &user,
                record(Status::Fail, "still plain"),
                Trigger::Auto
            )
            .await
        );
        assert_eq!(attempts(&app, &user).await, 3);
        assert_eq!(failed_attempts(&app, &user).await, 1);

        // Passed with warnings: a pass, said so, counted apart.
        assert!(
            store(
                &app,
                &user,
                record(Status::Warn, "2 of 2 workloads do not pass"),
                Trigger::Check
            )
            .await
        );
        let page = alice.get(step).await.body;
        assert!(
            page.contains(
                "<strong>Passed with warnings.</strong> No check failed, but 1 warning(s)"
            ),
            "{page}"
        );
        assert!(!page.contains("Every check passed"), "{page}");
        assert_eq!(badge(&page), "passed with warnings");
        let list = alice.get("/").await.body;
        assert!(list.contains("1 of 1 checked steps passed"), "{list}");
        assert!(list.contains("(1 with warnings)"), "{list}");
        let row = board_row(&teacher, "alice").await;
        assert!(row.contains("title=\"passed\">0<"), "{row}");
        assert!(row.contains("+1 with warnings"), "{row}");

        // Passed.
        assert!(
            store(
                &app,
                &user,
                record(Status::Pass, "encrypted"),
                Trigger::Check
            )
            .await
        );
        let page = alice.get(step).await.body;
        assert!(
            page.contains("<strong>Passed.</strong> Every check passed."),
            "{page}"
        );
        assert_eq!(badge(&page), "passed");
        let row = board_row(&teacher, "alice").await;
        assert!(row.contains("title=\"passed\">1<"), "{row}");
        assert!(!row.contains("with warnings"), "{row}");
        assert!(row.contains("1 not yet"), "{row}");
        assert_eq!(attempts(&app, &user).await, 5);

        // The learner's page for instructors: each attempt in the same words, the failures counted.
        let learner_page = teacher.get(&format!("/progress/{user}")).await.body;
        for words in [
            "Passed",
            "Passed with warnings",
            "Could not be judged here",
            "Not yet",
        ] {
            assert!(
                learner_page.contains(&format!(">{words}</span>")),
                "{words}: {learner_page}"
            );
        }
        assert!(
            learner_page.contains("(1 attempt(s) not yet)"),
            "{learner_page}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_cluster_could_not_be_judged_and_opens_no_hint() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let user = app.user_id("alice").await;
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        alice.post_form("/cluster", &[("kubeconfig", kubeconfig)]).await;
        alice.post_form("/labs/demo-etcd/steps/encrypt/check", &[]).await;
        let page = alice.get("/labs/demo-etcd/steps/encrypt").await.body;
        assert!(page.contains("<strong>Could not be judged here.</strong>"), "{page}");
        assert!(page.contains("Cannot reach your cluster"), "{page}");
        assert_eq!(badge(&page), "not judged yet");
        assert!(!page.contains("hint-list"), "{page}");
        assert_eq!(failed_attempts(&app, &user).await, 0);
        assert_eq!(attempts(&app, &user).await, 1);
    })
    .await;
}

async fn auto_check(agent: &Agent, step: &str) -> serde_json::Value {
    let page = agent
        .post_form(&format!("/labs/demo-etcd/steps/{step}/auto-check"), &[])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    serde_json::from_str(&page.body).unwrap()
}

#[tokio::test]
async fn the_background_check_does_not_run_without_a_ready_cluster_nor_beside_another() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let user = app.user_id("alice").await;
        alice.get("/labs/demo-etcd/steps/encrypt").await;

        // No cluster: it does not run (no attempt, no grading in the metrics).
        let answer = auto_check(&alice, "encrypt").await;
        assert_eq!(answer["ran"], false, "{answer}");
        assert_eq!(answer["reason"], "your cluster is not ready", "{answer}");
        let answer = auto_check(&alice, "look").await;
        assert_eq!(answer["reason"], "this step is checked only when you press Check");
        assert_eq!(attempts(&app, &user).await, 0);
        let metrics = app.agent().get("/metrics").await.body;
        assert!(!metrics.contains("hardlab_check_runs_total{"), "{metrics}");

        // Without the page's CSRF token it is refused.
        let refused = alice
            .post_form_raw("/labs/demo-etcd/steps/encrypt/auto-check", &[])
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);

        // A registered cluster that refuses connections: a Check takes the check patience (1 s
        // here); a background check asked meanwhile does not run beside it.
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        alice.post_form("/cluster", &[("kubeconfig", kubeconfig)]).await;
        let lab = Arc::clone(app.state.labs.get("demo-etcd").unwrap());
        let state = app.state.clone();
        let checking_user = user.clone();
        let manual = tokio::spawn(async move {
            check::run_step(&state, &checking_user, &lab, "encrypt").await.unwrap()
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = auto_check(&alice, "encrypt").await;
        assert_eq!(answer["ran"], false, "{answer}");
        assert_eq!(answer["reason"], "a check of this step is running", "{answer}");
        manual.await.unwrap();

        // Alone, it runs; could not be judged, so nothing is stored.
        let answer = auto_check(&alice, "encrypt").await;
        assert_eq!(answer["ran"], true, "{answer}");
        assert_eq!(answer["verdict"], "unjudged", "{answer}");
        assert_eq!(answer["passed"], false, "{answer}");
        assert_eq!(attempts(&app, &user).await, 1, "only the Check is an attempt");
    })
    .await;
}
