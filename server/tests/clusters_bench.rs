//! Benchmarks for BENCHMARKS.md (ignored by default; they take minutes):
//!
//! ```sh
//! source .ci/env
//! cargo test --release -p hardlab-server --test clusters_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! - Start → usable terminal (the shell's prompt arrives over the WebSocket), with a warm pool and
//!   cold, on the test node image;
//! - memory of one idle test node container (`docker stats`);
//! - terminal round trip on loopback: one keystroke over the WebSocket until its echo comes back
//!   from the TTY in the node.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{Extensions, HeaderMap};
use futures::{SinkExt, StreamExt};
use hardlab_server::clusters::lifecycle::LabClusterRequest;
use hardlab_server::clusters::routes::{ClustersState, Site, Viewer, router};
use hardlab_server::clusters::{ClusterManager, ClusterState, ManagerConfig};
use hardlab_server::terminal::{TerminalConfig, TerminalHub};
use support::{TEST_IMAGE, assert_nothing_left, docker_or_skip, test_db};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct CookieSite;

#[async_trait]
impl Site for CookieSite {
    async fn viewer(&self, headers: &HeaderMap, _: &Extensions) -> Option<Viewer> {
        let user = headers
            .get("cookie")?
            .to_str()
            .ok()?
            .strip_prefix("session=")?;
        Some(Viewer {
            user_id: user.to_owned(),
            staff: false,
        })
    }
    fn lab_request(&self, lab_id: &str) -> Option<LabClusterRequest> {
        Some(LabClusterRequest {
            lab_id: lab_id.to_owned(),
            ..Default::default()
        })
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Bench {
    addr: std::net::SocketAddr,
    manager: Arc<ClusterManager>,
    provider: hardlab_server::clusters::DockerProvider,
    _db: tempfile::TempDir,
}

async fn bench(pool_size: usize) -> Option<Bench> {
    let provider = docker_or_skip().await?;
    let (db, dir) = test_db().await;
    let request = LabClusterRequest {
        lab_id: "bench".into(),
        ..Default::default()
    };
    let config = ManagerConfig {
        image: TEST_IMAGE.to_owned(),
        pool_size,
        pool_labs: vec![request],
        max_clusters: 40,
        ..ManagerConfig::default()
    };
    let manager = ClusterManager::new(db, Arc::new(provider.clone()), config);
    let terminals = TerminalHub::new(
        hardlab_server::clusters::docker::DockerShells::new(provider.docker().clone()),
        TerminalConfig::default(),
    );
    let state = ClustersState {
        manager: Arc::clone(&manager),
        terminals,
        site: Arc::new(CookieSite),
    };
    let app = router::<ClustersState>().with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Some(Bench {
        addr,
        manager,
        provider,
        _db: dir,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Bench {
    async fn terminal(&self, user: &str, cluster: &str) -> Socket {
        let url = format!("ws://{}/api/clusters/{cluster}/terminal", self.addr);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("cookie", format!("session={user}").parse().unwrap());
        request
            .headers_mut()
            .insert("origin", format!("http://{}", self.addr).parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }

    /// Start (as the browser's POST does) → ready → terminal open → the prompt is on screen.
    async fn start_to_prompt(&self, user: &str) -> (Duration, String) {
        let mut events = self.manager.subscribe();
        let started = Instant::now();
        let request = LabClusterRequest {
            lab_id: "bench".into(),
            ..Default::default()
        };
        let record = self.manager.start(user, None, &request).await.unwrap();
        if record.state != ClusterState::Ready {
            loop {
                let event = events.recv().await.unwrap();
                if event.cluster == record.id && event.state == ClusterState::Ready {
                    break;
                }
                assert_ne!(event.state, ClusterState::Failed, "{:?}", event.reason);
            }
        }
        let mut socket = self.terminal(user, &record.id).await;
        let mut seen = String::new();
        while !seen.contains(":~# ") {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Ok(_)) => {}
                other => panic!("terminal ended: {other:?}"),
            }
        }
        (started.elapsed(), record.id)
    }

    async fn wait_for_pool(&self, size: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let live = self.manager.list_live().await.unwrap();
            let ready = live
                .iter()
                .filter(|r| r.pooled && r.state == ClusterState::Ready)
                .count();
            if ready >= size {
                return;
            }
            assert!(Instant::now() < deadline, "the pool did not fill");
            self.manager.refill_pool().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn cleanup(&self) {
        let ids: Vec<String> = self
            .manager
            .list_live()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        for id in &ids {
            self.manager.delete(id).await.unwrap();
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_nothing_left(&self.provider, &refs).await;
    }
}

#[tokio::test]
#[ignore = "benchmark: minutes of cluster creation"]
async fn start_to_usable_terminal_with_a_warm_pool() {
    let Some(bench) = bench(2).await else { return };
    let mut samples = Vec::new();
    for round in 0..10 {
        // Steady state: the pool has refilled since the last Start.
        bench.wait_for_pool(2).await;
        let (elapsed, id) = bench.start_to_prompt(&format!("learner-{round}")).await;
        samples.push(elapsed);
        bench.manager.delete(&id).await.unwrap();
    }
    let (p50, p95) = (
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 95.0),
    );
    println!(
        "BENCH warm-start n={} p50={} p95={} max={}",
        samples.len(),
        ms(p50),
        ms(p95),
        ms(*samples.iter().max().unwrap())
    );
    bench.cleanup().await;
}

#[tokio::test]
#[ignore = "benchmark: minutes of cluster creation"]
async fn start_to_usable_terminal_cold_and_node_memory() {
    let Some(bench) = bench(0).await else { return };
    let mut samples = Vec::new();
    let mut last = String::new();
    for round in 0..3 {
        let (elapsed, id) = bench.start_to_prompt(&format!("cold-{round}")).await;
        samples.push(elapsed);
        if round < 2 {
            bench.manager.delete(&id).await.unwrap();
        }
        last = id;
    }
    let (p50, p95) = (
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 95.0),
    );
    println!(
        "BENCH cold-start n={} p50={} p95={} max={}",
        samples.len(),
        ms(p50),
        ms(p95),
        ms(*samples.iter().max().unwrap())
    );

    // Memory of an idle node 20 s after it became ready, as `docker stats` reports it.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let container = hardlab_server::clusters::node_container_name(&last);
    let output = tokio::process::Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            &container,
        ])
        .output()
        .await
        .unwrap();
    println!(
        "BENCH node-memory {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );
    bench.cleanup().await;
}

#[tokio::test]
#[ignore = "benchmark"]
async fn terminal_round_trip_on_loopback() {
    let Some(bench) = bench(0).await else { return };
    let (_, id) = bench.start_to_prompt("rtt").await;
    let mut socket = bench.terminal("rtt", &id).await;
    // Drain the replayed prompt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), socket.next()).await {}
    let mut samples = Vec::new();
    for i in 0..500 {
        let key = if i % 2 == 0 { b"x" } else { b"\x7f" }; // type a character, then delete it
        let sent = Instant::now();
        socket
            .send(Message::Binary(key.to_vec().into()))
            .await
            .unwrap();
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("terminal ended: {other:?}"),
            }
        }
        samples.push(sent.elapsed());
    }
    let (p50, p95) = (
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 95.0),
    );
    println!(
        "BENCH terminal-rtt n={} p50={} p95={}",
        samples.len(),
        ms(p50),
        ms(p95)
    );
    bench.cleanup().await;
}
