//! The web terminal end to end: the cluster routes served by axum on a loopback port, a real
//! WebSocket client, `docker exec` into a real test node. Typing `kubectl get ns`, reconnecting
//! to the same shell, editing the API server manifest with vim and seeing the API server come back
//! with the new flag, and who may open a terminal at all.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use hardlab_server::clusters::lifecycle::LabClusterRequest;
use hardlab_server::clusters::routes::{ClustersState, Site, Viewer, router};
use hardlab_server::clusters::{
    ClusterManager, ClusterProvider, ClusterState, ManagerConfig, random_name,
};
use hardlab_server::terminal::{TerminalConfig, TerminalHub};
use support::{TEST_IMAGE, assert_nothing_left, docker_or_skip, test_db};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Test sign-in: the cookie `session=<user>` is that user; `staff` is an instructor.
struct CookieSite;

#[async_trait]
impl Site for CookieSite {
    async fn viewer(&self, headers: &HeaderMap, _: &axum::http::Extensions) -> Option<Viewer> {
        let cookie = headers.get("cookie")?.to_str().ok()?;
        let user = cookie.strip_prefix("session=")?;
        Some(Viewer {
            user_id: user.to_owned(),
            staff: user == "staff",
        })
    }
    fn lab_request(&self, lab_id: &str) -> Option<LabClusterRequest> {
        Some(LabClusterRequest {
            lab_id: lab_id.to_owned(),
            ..Default::default()
        })
    }
}

struct Harness {
    addr: std::net::SocketAddr,
    manager: Arc<ClusterManager>,
    provider: hardlab_server::clusters::DockerProvider,
    cluster: String,
    _db: tempfile::TempDir,
}

async fn harness(terminal: TerminalConfig) -> Option<Harness> {
    let provider = docker_or_skip().await?;
    let (db, dir) = test_db().await;
    let config = ManagerConfig {
        image: TEST_IMAGE.to_owned(),
        ..ManagerConfig::default()
    };
    let manager = ClusterManager::new(db, Arc::new(provider.clone()), config);
    let cluster = random_name();
    let record = manager
        .create_named(&cluster, None, None, Some("alice"))
        .await
        .unwrap();
    assert_eq!(
        record.state,
        ClusterState::Ready,
        "{:?}",
        record.failure_reason
    );
    let terminals = TerminalHub::new(
        hardlab_server::clusters::docker::DockerShells::new(provider.docker().clone()),
        terminal,
    );
    terminals.spawn_sweeper();
    let state = ClustersState {
        manager: Arc::clone(&manager),
        terminals,
        site: Arc::new(CookieSite),
    };
    let app = router::<ClustersState>().with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Some(Harness {
        addr,
        manager,
        provider,
        cluster,
        _db: dir,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Harness {
    fn request(
        &self,
        user: &str,
        origin: Option<&str>,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        let url = format!("ws://{}/api/clusters/{}/terminal", self.addr, self.cluster);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("cookie", format!("session={user}").parse().unwrap());
        let origin = origin.map_or_else(|| format!("http://{}", self.addr), str::to_owned);
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    }

    async fn connect(&self, user: &str) -> Socket {
        let (socket, _) = tokio_tungstenite::connect_async(self.request(user, None))
            .await
            .unwrap();
        socket
    }

    async fn status_for(&self, user: &str, origin: Option<&str>) -> u16 {
        match tokio_tungstenite::connect_async(self.request(user, origin)).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    async fn finish(self) {
        self.manager.delete(&self.cluster).await.unwrap();
        assert_nothing_left(&self.provider, &[&self.cluster]).await;
    }
}

async fn send(socket: &mut Socket, text: &str) {
    socket
        .send(Message::Binary(text.as_bytes().to_vec().into()))
        .await
        .unwrap();
}

/// Reads terminal output until `wanted` appears; returns everything read.
async fn read_until(socket: &mut Socket, wanted: &str, timeout: Duration) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + timeout;
    while !seen.contains(wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(_))) => {}
            other => {
                let tail: String = seen
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!("no {wanted:?} in the terminal ({other:?}); it ended with:\n{tail:?}")
            }
        }
    }
    seen
}

#[tokio::test]
async fn typing_kubectl_get_ns_in_the_web_terminal_shows_the_namespaces() {
    let Some(harness) = harness(TerminalConfig::default()).await else {
        return;
    };
    let mut socket = harness.connect("alice").await;
    socket
        .send(Message::Text(
            r#"{"type":"resize","cols":120,"rows":40}"#.into(),
        ))
        .await
        .unwrap();
    send(&mut socket, "kubectl get ns\r").await;
    let output = read_until(&mut socket, "kube-system", Duration::from_secs(30)).await;
    assert!(output.contains("default"), "{output}");
    // The resize reached the TTY.
    send(&mut socket, "stty size\r").await;
    read_until(&mut socket, "40 120", Duration::from_secs(10)).await;
    socket.close(None).await.unwrap();
    harness.finish().await;
}

#[tokio::test]
async fn a_reconnecting_browser_gets_the_same_shell_back() {
    let Some(harness) = harness(TerminalConfig::default()).await else {
        return;
    };
    let mut first = harness.connect("alice").await;
    send(&mut first, "export HARDLAB_MARK=kept-$((6*7))\r").await;
    send(&mut first, "echo ready-$HARDLAB_MARK\r").await;
    read_until(&mut first, "ready-kept-42", Duration::from_secs(20)).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = harness.connect("alice").await;
    send(&mut second, "echo again-$HARDLAB_MARK\r").await;
    read_until(&mut second, "again-kept-42", Duration::from_secs(20)).await;
    harness.finish().await;
}

#[tokio::test]
async fn only_the_owner_or_staff_from_this_site_may_open_the_terminal() {
    let Some(harness) = harness(TerminalConfig::default()).await else {
        return;
    };
    assert_eq!(
        harness.status_for("mallory", None).await,
        403,
        "another learner"
    );
    assert_eq!(
        harness
            .status_for("alice", Some("https://evil.example"))
            .await,
        403,
        "another site"
    );
    assert_eq!(
        harness.status_for("staff", None).await,
        101,
        "an instructor"
    );
    let mut socket = harness.connect("alice").await;
    send(&mut socket, "echo owner-$((1+1))\r").await;
    read_until(&mut socket, "owner-2", Duration::from_secs(20)).await;
    // No session cookie at all.
    let url = format!(
        "ws://{}/api/clusters/{}/terminal",
        harness.addr, harness.cluster
    );
    let mut anonymous = url.into_client_request().unwrap();
    anonymous.headers_mut().insert(
        "origin",
        format!("http://{}", harness.addr).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(anonymous).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        other => panic!("anonymous terminal opened: {:?}", other.map(|_| ())),
    }
    harness.finish().await;
}

#[tokio::test]
async fn a_shell_with_no_browser_is_closed_after_the_grace_period() {
    let config = TerminalConfig {
        grace: Duration::from_secs(1),
        ..TerminalConfig::default()
    };
    let Some(harness) = harness(config).await else {
        return;
    };
    let mut first = harness.connect("alice").await;
    send(&mut first, "export HARDLAB_MARK=old\r").await;
    send(&mut first, "echo set-$HARDLAB_MARK\r").await;
    read_until(&mut first, "set-old", Duration::from_secs(20)).await;
    // A foreground program keeps a TTY shell alive past the end of its input.
    send(&mut first, "sleep 777\r").await;
    let running = || async {
        harness
            .provider
            .exec(
                &harness.cluster,
                &[
                    "sh".into(),
                    "-c".into(),
                    "pgrep -f 'sleep [7]77' || true".into(),
                ],
                None,
            )
            .await
            .unwrap()
            .stdout_text()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running().await.trim().is_empty() {
        assert!(Instant::now() < deadline, "sleep did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(first);
    // The sweeper runs every 2 s; give it two rounds past the 1 s grace, and the hang-up its second.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        running().await.trim(),
        "",
        "the closed shell's foreground program still runs"
    );
    let mut second = harness.connect("alice").await;
    send(&mut second, "echo now-${HARDLAB_MARK:-fresh}\r").await;
    read_until(&mut second, "now-fresh", Duration::from_secs(20)).await;
    harness.finish().await;
}

#[tokio::test]
async fn editing_the_api_server_manifest_with_vim_in_the_terminal_restarts_it_with_the_new_flag() {
    let Some(harness) = harness(TerminalConfig::default()).await else {
        return;
    };
    let port = harness
        .manager
        .get(&harness.cluster)
        .await
        .unwrap()
        .unwrap()
        .api_port
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let anonymous_api = format!("https://127.0.0.1:{port}/api");
    // Before: anonymous requests are answered (403 as system:anonymous, not 401).
    assert_eq!(
        client
            .get(&anonymous_api)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    let mut socket = harness.connect("alice").await;
    socket
        .send(Message::Text(
            r#"{"type":"resize","cols":120,"rows":40}"#.into(),
        ))
        .await
        .unwrap();
    send(
        &mut socket,
        "vim /etc/kubernetes/manifests/kube-apiserver.yaml\r",
    )
    .await;
    // vim's status line ("... 82L, 3712B") says it has loaded the file and reads keys now.
    read_until(&mut socket, "L, ", Duration::from_secs(20)).await;
    // Find the --secure-port line, open a line below it with the new flag, save and quit
    // (paste mode, so vim's YAML indenting does not move what is typed).
    send(&mut socket, ":set paste\r").await;
    send(&mut socket, "/--secure-port\r").await;
    send(&mut socket, "o    - --anonymous-auth=false\x1b").await;
    send(&mut socket, ":wq\r").await;
    // Keys typed before the shell's prompt is back would go to the exiting vim.
    read_until(&mut socket, "B written", Duration::from_secs(20)).await;
    read_until(&mut socket, ":~# ", Duration::from_secs(20)).await;
    send(
        &mut socket,
        "echo FLAG-LINES-$(grep -c -- '^    - --anonymous-auth=false$' /etc/kubernetes/manifests/kube-apiserver.yaml)\r",
    )
    .await;
    read_until(&mut socket, "FLAG-LINES-1", Duration::from_secs(20)).await;
    send(
        &mut socket,
        "sleep 2; until kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.5; done; echo API-BACK-$((40+2))\r",
    )
    .await;
    read_until(&mut socket, "API-BACK-42", Duration::from_secs(90)).await;

    // After: the restarted API server runs with the flag and refuses anonymous requests.
    let status = client
        .get(&anonymous_api)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401, "anonymous auth should be off after the edit");
    harness.finish().await;
}
