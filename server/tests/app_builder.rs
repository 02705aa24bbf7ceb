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

/// Removes a cluster's node, network and volume when dropped, so a failed assertion leaves
/// nothing running.
struct RemovedOnDrop(String);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        use hardlab_server::clusters::{network_name, node_container_name, volume_name};
        let docker = |args: &[&str]| {
            let _ = std::process::Command::new("docker").args(args).output();
        };
        docker(&["rm", "-f", &node_container_name(&self.0)]);
        docker(&["network", "rm", &network_name(&self.0)]);
        docker(&["volume", "rm", &volume_name(&self.0)]);
    }
}

/// The code of the learner's authenticator app, `offset` time steps from now.
fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    hardlab_server::proxy::totp::code_for_step(
        secret,
        hardlab_server::proxy::totp::step_at(now) + offset,
    )
    .unwrap()
}

async fn post_json(
    app: &TestApp,
    agent: &common::Agent,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    agent.get("/access").await;
    let response = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .header(reqwest::header::COOKIE, agent.cookie_header())
        .header("X-CSRF-Token", agent.csrf().unwrap_or_default())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}");
    response.json().await.unwrap()
}

/// Lab 6 as a learner does it, through the app as `serve` builds it: Start puts their cluster
/// behind the proxy in a tenant of their own and configures the node's `hardlab`; each step's
/// solution runs in the node's shell (the terminal's bash, as root) with `hardlab` and kubectl
/// reaching the server and the proxy at their public addresses; Check fails before and passes
/// after every step. The node image's `hardlab` is the CLI under test: `.ci/run` builds
/// `hardlab/testnode:latest` with this build's binaries; elsewhere build one under another tag and
/// name it in `HARDLAB_TEST_NODE_IMAGE` (docker/testnode/build.sh).
#[tokio::test]
async fn lab_6_every_step_fails_before_and_passes_after_its_solution_run_in_the_node() {
    let Some(_provider) = support::docker_or_skip().await else {
        return;
    };
    let app = TestApp::builder(TestDb::sqlite().await)
        .labs(repo_labs())
        .reachable_from_nodes()
        .configure(|config| config.check_patience = Duration::from_secs(20))
        .start()
        .await;
    let learner = app.learner("ada").await;
    learner.get("/").await;
    let enrolled = post_json(
        &app,
        &learner,
        "/api/proxy/totp/enroll",
        serde_json::json!({}),
    )
    .await;
    let secret = enrolled["secret"].as_str().unwrap().to_owned();
    post_json(
        &app,
        &learner,
        "/api/proxy/totp/confirm",
        serde_json::json!({ "code": code(&secret, -1) }),
    )
    .await;

    let manager = &app.state.clusters.as_ref().unwrap().manager;
    let ada = app.user_id("ada").await;
    let lab = app.state.labs.get("access-proxy").unwrap();
    let request = hardlab_server::clusters::setup::lab_request(lab);
    let started = manager.start(&ada, None, &request).await.unwrap();
    let _removed_on_every_path = RemovedOnDrop(started.id.clone());
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
    let access = learner.get("/access").await.body;
    assert!(
        access.contains("<td>lab-ada</td>"),
        "Start put the cluster behind the proxy: {access}"
    );

    let run_solution = |script: &'static str, password_and_code: bool| {
        let mut argv: Vec<String> = vec!["env".into(), "HOME=/root".into()];
        if password_and_code {
            argv.push("HARDLAB_PASSWORD=correct-horse-battery".into());
            argv.push(format!("HARDLAB_OTP={}", code(&secret, 0)));
        }
        argv.extend(hardlab_server::clusters::lab_script_command(&format!(
            "/root/hardlab/solutions/{script}"
        )));
        let provider = std::sync::Arc::clone(manager.provider());
        let id = started.id.clone();
        async move {
            let ran = provider.exec(&id, &argv, None).await.unwrap();
            let output = format!(
                "{}{}",
                ran.stdout_text(),
                String::from_utf8_lossy(&ran.stderr)
            );
            assert_eq!(ran.exit_code, 0, "{script}: {output}");
            output
        }
    };
    let statuses = |record: &AttemptRecord| -> Vec<(String, Status, String)> {
        record
            .results
            .iter()
            .map(|r| (r.check.clone(), r.status, r.message.clone()))
            .collect()
    };
    for (step, script, login) in [
        ("no-role", "01-no-role.sh", true),
        ("admin-role", "02-admin-role.sh", false),
        ("developer-rbac", "03-developer-rbac.sh", false),
        ("developer-role", "04-developer-role.sh", false),
        ("bob-reads", "05-bob-reads.sh", false),
        ("labels", "06-labels.sh", false),
    ] {
        let before = check(&app, &learner, step).await;
        assert!(before.problem.is_none(), "{step}: {before:?}");
        assert!(
            before.results.iter().any(|r| r.status == Status::Fail),
            "{step} before its solution: {:?}",
            statuses(&before)
        );
        run_solution(script, login).await;
        let after = check(&app, &learner, step).await;
        assert!(
            after.results.iter().all(|r| r.status == Status::Pass),
            "{step} after its solution: {:?}",
            statuses(&after)
        );
    }
    // The reading step: its solution runs.
    let audit = run_solution("07-audit.sh", false).await;
    assert!(audit.contains("audit chain intact"), "{audit}");
    manager.delete(&started.id).await.unwrap();
}
