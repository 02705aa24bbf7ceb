//! Two `hardlab serve` instances on one PostgreSQL database and one Docker engine, as behind a
//! load balancer: a learner starts a cluster through A, opens the terminal and presses Check
//! through B; neither server's start-up or background work marks the other's clusters failed;
//! A stops, and B takes over A's cluster (its lease) and the reaping within a lease period.
//! Both apps are built by the app builder `serve` uses, with the real test node image.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Agent, TestApp, TestDb};
use futures::StreamExt;
use hardlab_server::clusters::{ClusterManager, ClusterState};
use hardlab_server::config::ClusterSettings;
use hardlab_testkit::{Component, require};
use sqlx::Row;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LEASE_SECONDS: u64 = 3;

fn manager(app: &TestApp) -> &ClusterManager {
    &app.state.clusters.as_ref().unwrap().manager
}

async fn server(
    db: &TestDb,
    key_from: Option<&TestApp>,
    settings: &ClusterSettings,
    id: &str,
) -> TestApp {
    let settings = ClusterSettings {
        server_id: Some(id.to_owned()),
        cluster_lease_seconds: LEASE_SECONDS,
        ..settings.clone()
    };
    let mut builder = TestApp::builder(db.clone()).clusters(settings);
    if let Some(first) = key_from {
        let key = first.state.config.secret_key_file.clone();
        builder = builder.configure(move |config| config.secret_key_file = key);
    }
    builder.start().await
}

async fn api(
    app: &TestApp,
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base_url))
        .header(reqwest::header::COOKIE, agent.cookie_header())
        .header("X-CSRF-Token", agent.csrf().unwrap_or_default())
        .header("origin", &app.base_url)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn terminal(app: &TestApp, cluster: &str, agent: &Agent) -> Socket {
    let mut request = format!("ws://{}/api/clusters/{cluster}/terminal", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", agent.cookie_header().parse().unwrap());
    request
        .headers_mut()
        .insert("origin", app.base_url.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn type_and_wait(socket: &mut Socket, keys: &str, wanted: &str) {
    use futures::SinkExt;
    socket
        .send(Message::Binary(keys.as_bytes().to_vec().into()))
        .await
        .unwrap();
    let mut seen = String::new();
    let until = Instant::now() + Duration::from_secs(30);
    // `wanted` is what the command prints, never what was typed (that echoes back too).
    while !seen.contains(wanted) {
        match tokio::time::timeout(
            until.saturating_duration_since(Instant::now()),
            socket.next(),
        )
        .await
        {
            Ok(Some(Ok(Message::Binary(bytes)))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(_))) => {}
            other => panic!("the terminal ended: {other:?}; saw {seen:?}"),
        }
    }
}

async fn lease_of(db: &TestDb, id: &str) -> (String, String) {
    let row = sqlx::query("SELECT state, lease_holder FROM clusters WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    (
        row.try_get("state").unwrap(),
        row.try_get::<Option<String>, _>("lease_holder")
            .unwrap()
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_starts_on_one_server_works_through_the_other_and_the_other_takes_over_when_the_first_stops()
 {
    if !require(Component::Docker) || !require(Component::Postgres) {
        return;
    }
    let Some((db, cleanup)) = TestDb::postgres().await else {
        return;
    };
    // Shells in a tmux session in the node: a terminal through B is the shell opened through A.
    let settings = ClusterSettings {
        terminal_persistent_shells: true,
        node_image: std::env::var("HARDLAB_TEST_NODE_IMAGE")
            .unwrap_or_else(|_| "hardlab/testnode:latest".to_owned()),
        ..common::test_cluster_settings()
    };
    let a = server(&db, None, &settings, "server-a").await;
    let learner_on_a = a.learner("alice").await;
    learner_on_a.get("/").await;

    let (status, view) = api(
        &a,
        &learner_on_a,
        reqwest::Method::POST,
        "/api/labs/demo-etcd/cluster",
    )
    .await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();

    // B starts while A is still creating the cluster: its start-up must leave A's row alone.
    let b = server(&db, Some(&a), &settings, "server-b").await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let record = manager(&a).get(&id).await.unwrap().unwrap();
        match record.state {
            ClusterState::Ready => break,
            ClusterState::Failed => panic!("the cluster failed: {:?}", record.failure_reason),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not ready: {record:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        lease_of(&db, &id).await,
        ("ready".to_owned(), "server-a".to_owned())
    );
    // Several of B's watch rounds and A's lease renewals pass; nothing changes hands.
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 2)).await;
    assert_eq!(
        lease_of(&db, &id).await,
        ("ready".to_owned(), "server-a".to_owned())
    );

    // The same learner's session works on B (one database holds sessions and clusters).
    let (status, shown) = api(
        &b,
        &learner_on_a,
        reqwest::Method::GET,
        &format!("/api/clusters/{id}"),
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"], "ready");

    // A terminal through A sets a variable; the terminal through B is the same shell and sees it.
    let mut on_a = terminal(&a, &id, &learner_on_a).await;
    type_and_wait(
        &mut on_a,
        "export OPENED_ON=server-a; echo set-$((40+2))\r",
        "set-42",
    )
    .await;
    drop(on_a);
    let mut on_b = terminal(&b, &id, &learner_on_a).await;
    type_and_wait(
        &mut on_b,
        "echo \"shell of $OPENED_ON\"\r",
        "shell of server-a",
    )
    .await;
    drop(on_b);

    // Check through B grades the cluster A created.
    let before: i64 = sqlx::query("SELECT COUNT(*) AS n FROM check_attempts")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    learner_on_a.get("/").await;
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/labs/demo-etcd/steps/encrypt/check", b.base_url))
        .header(reqwest::header::COOKIE, learner_on_a.cookie_header())
        .header("origin", &b.base_url)
        .form(&[("csrf", learner_on_a.csrf().unwrap_or_default())])
        .send()
        .await
        .unwrap();
    assert!(
        page.status().is_success() || page.status().is_redirection(),
        "{}",
        page.status()
    );
    let row = sqlx::query("SELECT COUNT(*) AS n FROM check_attempts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let after: i64 = row.try_get("n").unwrap();
    assert_eq!(after, before + 1, "B graded and recorded the attempt");
    let results: String =
        sqlx::query("SELECT results_json FROM check_attempts ORDER BY started_at DESC LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .try_get("results_json")
            .unwrap();
    assert!(
        results.contains("etcd."),
        "the grader judged the cluster: {results}"
    );
    assert!(!results.contains("could not reach"), "{results}");

    // A stops (as `serve` does on shutdown, and as a crash amounts to: no more renewals). Within
    // about a lease period (plus a reaper round) B holds the cluster, still ready.
    manager(&a).stop_background();
    drop(a);
    let stopped = Instant::now();
    let until = stopped + Duration::from_secs(LEASE_SECONDS * 4 + 10);
    loop {
        let (state, holder) = lease_of(&db, &id).await;
        assert_eq!(state, "ready", "taking over must not fail the cluster");
        if holder == "server-b" {
            break;
        }
        assert!(Instant::now() < until, "B did not take over A's cluster");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "B took over A's cluster {:.1} s after A stopped",
        stopped.elapsed().as_secs_f64()
    );

    // B reaps now: the cluster expires and B removes it.
    sqlx::query("UPDATE clusters SET expires_at = 1 WHERE id = $1")
        .bind(&id)
        .execute(&db.pool)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (state, _) = lease_of(&db, &id).await;
        if state == "deleted" {
            break;
        }
        assert!(
            Instant::now() < until,
            "B did not reap the expired cluster (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let container = hardlab_server::clusters::node_container_name(&id);
    let output = tokio::process::Command::new("docker")
        .args(["inspect", &container])
        .output()
        .await
        .unwrap();
    assert!(
        !output.status.success(),
        "the reaped cluster's container is gone"
    );
    drop(b);
    cleanup.drop_database().await;
}
