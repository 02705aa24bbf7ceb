//! The test app is `hardlab serve`'s app: both come from `hardlab_server::app::build`, so what the
//! builder wires (the access proxy, learners' clusters, every layer) is what tests exercise,
//! without test code of its own. And lab 6's Check, through that app, hands the access proxy's
//! state to the grader (it used to skip: "hardlab's proxy state was not given").
#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{TestApp, TestDb};
use hardlab_grader::Status;
use hardlab_server::clusters::lifecycle::ClusterState;
use hardlab_server::web::accounts::Role;
use hardlab_server::web::check::AttemptRecord;

fn repo_labs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../labs")
}

#[tokio::test]
async fn the_test_app_has_what_serve_builds_without_test_code_of_its_own() {
    let app = TestApp::start(TestDb::sqlite().await).await;
    // The access proxy is started by the builder: its routes answer (sign in first) and its
    // kubectl listener is up.
    let api = app.agent().get("/access").await;
    assert_ne!(api.status, 404, "the proxy's pages are missing");
    let proxy = app
        .state
        .proxy
        .as_ref()
        .expect("the builder starts the proxy");
    let listen = proxy.service.listen;
    assert!(tokio::net::TcpStream::connect(listen).await.is_ok());
    // Learners' clusters and their routes come with it too.
    assert!(app.state.clusters.is_some(), "the builder starts clusters");
    let learner = app.learner("ada").await;
    let start = learner.get("/api/clusters/no-such-cluster").await;
    assert_eq!(start.status, 404, "{}", start.body);
    assert!(start.body.contains("no cluster"), "{}", start.body);
    // A layer of the builder: every response carries its security headers.
    assert!(
        start
            .headers
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().unwrap().contains("frame-ancestors"))
    );
}

/// Presses Check on a lab 6 step and returns what was stored.
async fn check(app: &TestApp, agent: &common::Agent, step: &str) -> AttemptRecord {
    agent.get(&format!("/labs/access-proxy/steps/{step}")).await;
    let page = agent
        .post_form(&format!("/labs/access-proxy/steps/{step}/check"), &[])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (json,): (Option<String>,) =
        sqlx::query_as("SELECT results_json FROM check_attempts ORDER BY started_at DESC LIMIT 1")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    serde_json::from_str(&json.unwrap()).unwrap()
}

#[tokio::test]
async fn lab_6_check_through_the_app_judges_the_access_proxys_state() {
    let Some(_provider) = support::docker_or_skip().await else {
        return;
    };
    let app = TestApp::builder(TestDb::sqlite().await)
        .labs(repo_labs())
        .configure(|config| config.check_patience = Duration::from_secs(20))
        .start()
        .await;
    let learner = app.learner("ada").await;
    learner.get("/").await;
    let manager = &app.state.clusters.as_ref().unwrap().manager;
    let ada = app.user_id("ada").await;
    let lab = app.state.labs.get("access-proxy").unwrap();
    let request = hardlab_server::clusters::setup::lab_request(lab);
    let started = manager.start(&ada, None, &request).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let record = manager.get(&started.id).await.unwrap().unwrap();
        match record.state {
            ClusterState::Ready => break,
            ClusterState::Failed => panic!("{:?}", record.failure_reason),
            _ => assert!(Instant::now() < deadline, "not ready"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Before bob has a role: judged, and not yet.
    let before = check(&app, &learner, "developer-role").await;
    assert!(before.problem.is_none(), "{before:?}");
    let mapped = &before.results[0];
    assert_eq!(mapped.check, "proxy.developer-role-mapped");
    assert_eq!(mapped.status, Status::Fail, "{mapped:?}");
    assert!(
        mapped.message.contains("bob holds no hardlab role"),
        "{}",
        mapped.message
    );

    // The step's change, made the way an admin does it today (the roles API).
    let admin = app.user_with_role("root", Role::Admin).await;
    admin.get("/access").await;
    let applied = reqwest::Client::new()
        .post(format!("{}/api/proxy/config", app.base_url))
        .header(reqwest::header::COOKIE, admin.cookie_header())
        .header("X-CSRF-Token", admin.csrf().unwrap_or_default())
        .json(&serde_json::json!({ "yaml": "roles:\n  - name: developer-read\n    kubernetes_labels: {env: dev}\n    kubernetes_groups: [developer-read]\nusers:\n  - name: bob\n    roles: [developer-read]\n" }))
        .send()
        .await
        .unwrap();
    assert!(
        applied.status().is_success(),
        "{}",
        applied.text().await.unwrap()
    );

    let after = check(&app, &learner, "developer-role").await;
    assert_eq!(after.results[0].status, Status::Pass, "{after:?}");
    manager.delete(&started.id).await.unwrap();
}
