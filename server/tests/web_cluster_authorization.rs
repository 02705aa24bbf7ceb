//! Authorization of every cluster route (`/api/clusters/{id}`: show, events, extend, delete,
//! terminal; and Start, `/api/labs/{lab}/cluster`, which must only ever hand out the caller's own)
//! for learner A (alice) against learner B's (bob's) cluster, through the app that
//! `hardlab serve` builds: its session layer, its cluster routes wired to the real Docker engine,
//! two signed-in agents, both databases.
//!
//! The refusals need no container: bob's cluster is a row inserted directly into the database
//! (state `ready`, far from expiry, no captured credentials, so neither the reaper nor the node
//! watcher touches it). The terminal test that needs a shell behind the socket runs a real test
//! node (`hardlab/testnode`).
#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Agent, TestApp, TestDb, each_database};
use futures::{FutureExt, SinkExt, StreamExt};
use hardlab_server::clusters::random_name;
use hardlab_server::config::ClusterSettings;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The app with clusters on the real Docker engine, labelled for this test only; `None` (the test
/// is skipped, or fails under CI=true) without Docker and the test node image.
async fn app_with_clusters(db: TestDb) -> Option<TestApp> {
    app_with_cluster_args(db, ClusterSettings::default()).await
}

async fn app_with_cluster_args(db: TestDb, args: ClusterSettings) -> Option<TestApp> {
    support::docker_or_skip().await?;
    let args = ClusterSettings {
        node_image: support::TEST_IMAGE.to_owned(),
        docker_instance: Some(format!("test-{}", random_name())),
        ..args
    };
    Some(TestApp::builder(db).clusters(args).start().await)
}

/// Bob's cluster as a database row only (no container): enough for every refusal.
async fn insert_cluster_row(app: &TestApp, id: &str, owner_id: &str) {
    let now = hardlab_server::db::now_ms();
    sqlx::query(
        "INSERT INTO clusters (id, owner_id, lab_id, image, state, pooled, created_at, updated_at, \
         expires_at, last_active_at) VALUES ($1, $2, 'demo-etcd', 'hardlab/testnode:latest', \
         'ready', 0, $3, $3, $4, $3)",
    )
    .bind(id)
    .bind(owner_id)
    .bind(now)
    .bind(now + 3_600_000)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn expires_at(app: &TestApp, id: &str) -> Option<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT expires_at FROM clusters WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
    row.map(|(expiry,)| expiry)
}

async fn state_of(app: &TestApp, id: &str) -> Option<String> {
    let row: Option<(String,)> = sqlx::query_as("SELECT state FROM clusters WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
    row.map(|(state,)| state)
}

struct Answer {
    status: u16,
    body: String,
}

/// A request as the lab page's script makes it: the agent's cookies, its CSRF token in
/// `x-csrf-token` (so a refusal is the route's, not the CSRF check's) and this site's Origin.
async fn call(app: &TestApp, agent: &Agent, method: reqwest::Method, path: &str) -> Answer {
    if agent.csrf().is_none() {
        agent.get("/").await;
    }
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base_url))
        .header("cookie", agent.cookie_header())
        .header("x-csrf-token", agent.csrf().unwrap_or_default())
        .header("origin", &app.base_url)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    // An event stream does not end: the first event is all that is read.
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        stream.next(),
    )
    .await
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
        if body.contains("\n\n") {
            break;
        }
    }
    Answer { status, body }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the cluster's terminal WebSocket with the agent's session cookie from this site's page;
/// the HTTP status of a refused upgrade otherwise.
async fn open_terminal(app: &TestApp, agent: &Agent, id: &str) -> Result<Socket, u16> {
    let url = format!("ws://{}/api/clusters/{id}/terminal", app.addr);
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", agent.cookie_header().parse().unwrap());
    headers.insert("origin", app.base_url.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("the terminal handshake failed below HTTP: {other}"),
    }
}

#[tokio::test]
async fn learner_a_is_refused_every_route_of_learner_bs_cluster() {
    each_database(|db| async move {
        let Some(app) = app_with_clusters(db).await else {
            return;
        };
        let alice = app.learner("alice").await;
        let bob = app.learner("bob").await;
        let bob_id = app.user_id("bob").await;
        let cluster = random_name();
        insert_cluster_row(&app, &cluster, &bob_id).await;
        let base = format!("/api/clusters/{cluster}");
        let expiry = expires_at(&app, &cluster).await;

        // The owner sees it (so the refusals below are about who asks, not a broken route).
        let shown = call(&app, &bob, reqwest::Method::GET, &base).await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert!(shown.body.contains(&cluster), "{}", shown.body);
        let events = call(&app, &bob, reqwest::Method::GET, &format!("{base}/events")).await;
        assert_eq!(events.status, 200);
        assert!(events.body.contains("event: cluster"), "{}", events.body);

        for (method, path) in [
            (reqwest::Method::GET, base.clone()),
            (reqwest::Method::GET, format!("{base}/events")),
            (reqwest::Method::POST, format!("{base}/extend")),
            (reqwest::Method::DELETE, base.clone()),
        ] {
            let refused = call(&app, &alice, method.clone(), &path).await;
            assert_eq!(refused.status, 403, "{method} {path}: {}", refused.body);
            assert!(
                refused.body.contains("not your cluster"),
                "{method} {path}: {}",
                refused.body
            );
            assert!(
                !refused.body.contains("ready") && !refused.body.contains("event:"),
                "{method} {path} leaks the cluster: {}",
                refused.body
            );
            // Signed out, the same request is not even looked up.
            let anonymous = call(&app, &app.agent(), method.clone(), &path).await;
            assert!(
                matches!(anonymous.status, 401 | 403),
                "{method} {path} anonymously: {} {}",
                anonymous.status,
                anonymous.body
            );
        }
        assert_eq!(
            open_terminal(&app, &alice, &cluster).await.err(),
            Some(403),
            "alice's terminal upgrade"
        );
        assert_eq!(
            open_terminal(&app, &app.agent(), &cluster).await.err(),
            Some(401),
            "an anonymous terminal upgrade"
        );

        // Nothing alice asked for happened.
        assert_eq!(
            expires_at(&app, &cluster).await,
            expiry,
            "alice extended it"
        );
        assert_eq!(
            state_of(&app, &cluster).await.as_deref(),
            Some("ready"),
            "alice removed it"
        );

        // A cluster that does not exist answers 404 to anyone.
        let missing = call(&app, &alice, reqwest::Method::GET, "/api/clusters/no-such").await;
        assert_eq!(missing.status, 404);

        let removed = call(&app, &bob, reqwest::Method::DELETE, &base).await;
        assert_eq!(removed.status, 204, "{}", removed.body);
        assert_eq!(state_of(&app, &cluster).await.as_deref(), Some("deleted"));
    })
    .await;
}

#[tokio::test]
async fn start_never_hands_learner_a_the_cluster_learner_b_has_for_the_lab() {
    each_database(|db| async move {
        // No learner may have a new cluster, so nothing is created: Start can only hand out one
        // that exists, and it must be the caller's own.
        let args = ClusterSettings {
            max_clusters_per_user: 0,
            ..ClusterSettings::default()
        };
        let Some(app) = app_with_cluster_args(db, args).await else {
            return;
        };
        let alice = app.learner("alice").await;
        let bob = app.learner("bob").await;
        let bob_id = app.user_id("bob").await;
        let cluster = random_name();
        insert_cluster_row(&app, &cluster, &bob_id).await;
        let start = "/api/labs/demo-etcd/cluster";

        let own = call(&app, &bob, reqwest::Method::POST, start).await;
        assert_eq!(own.status, 202, "{}", own.body);
        assert!(own.body.contains(&cluster), "{}", own.body);

        let refused = call(&app, &alice, reqwest::Method::POST, start).await;
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert!(!refused.body.contains(&cluster), "{}", refused.body);
        let anonymous = call(&app, &app.agent(), reqwest::Method::POST, start).await;
        assert!(matches!(anonymous.status, 401 | 403), "{}", anonymous.body);
    })
    .await;
}

/// Reads terminal output until `wanted` appears.
async fn read_until(socket: &mut Socket, wanted: &str) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains(wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {wanted:?} in the terminal ({other:?}); saw {seen:?}"),
        }
    }
}

#[tokio::test]
async fn only_the_owner_opens_the_terminal_and_an_oversized_frame_closes_only_that_socket() {
    each_database(|db| async move {
        let Some(app) = app_with_clusters(db).await else {
            return;
        };
        let alice = app.learner("alice").await;
        let bob = app.learner("bob").await;
        let bob_id = app.user_id("bob").await;
        let manager = &app.state.clusters.as_ref().unwrap().manager;
        let cluster = random_name();
        let record = manager
            .create_named(&cluster, None, None, Some(&bob_id))
            .await
            .unwrap();
        // The node is removed even when an assertion below fails.
        let outcome = std::panic::AssertUnwindSafe(async {
            assert_eq!(
                record.state,
                hardlab_server::clusters::ClusterState::Ready,
                "{:?}",
                record.failure_reason
            );
            terminal_checks(&app, &alice, &bob, &cluster).await;
        })
        .catch_unwind()
        .await;
        manager.delete(&cluster).await.unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

/// Alice is refused bob's terminal; bob's socket closes on a frame past the limit and the server
/// and his shell carry on.
async fn terminal_checks(app: &TestApp, alice: &Agent, bob: &Agent, cluster: &str) {
    assert_eq!(open_terminal(app, alice, cluster).await.err(), Some(403));

    let mut socket = open_terminal(app, bob, cluster).await.unwrap();
    socket
        .send(Message::Binary(b"echo first-$((40+2))\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, "first-42").await;

    // One byte over the limit: the server closes this socket instead of buffering it.
    let limit = hardlab_server::terminal::TerminalConfig::default().max_message_bytes;
    let oversized = vec![b'x'; limit + 1];
    let _ = socket.send(Message::Binary(oversized.into())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the socket stayed open after an oversized frame"),
        }
    }

    // The server carries on, and so does bob's shell.
    assert_eq!(app.agent().get("/healthz").await.status, 200);
    let mut again = open_terminal(app, bob, cluster).await.unwrap();
    again
        .send(Message::Binary(b"echo again-$((40+3))\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut again, "again-43").await;
}
