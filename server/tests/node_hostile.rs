//! The learner is root in their node: what they do there must not reach the server. Each test
//! drives the real app over HTTP (sign-up, Start through `/api/labs/{lab}/cluster`, Check through
//! the step's form) on the real Docker engine with the test node image, then does in the node what
//! an attacker would, with `docker exec` as root, the way a learner's terminal does.
//!
//! - an `exec:` credential plugin in the node's admin.conf runs nothing on the server;
//! - `/dev/zero` behind a manifest's name is an `error` result within the read deadline, and the
//!   server's memory stays put;
//! - `etcdctl` and `cat` replaced by liars do not turn a plaintext Secret into a pass;
//! - a node container that is killed turns the cluster `failed` with the reason;
//! - a second installation on the same engine, with default settings, leaves the first one's
//!   clusters running.
#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Agent, TestApp, TestDb};
use hardlab_grader::Status;
use hardlab_server::clusters::lifecycle::{ClusterRecord, ClusterState};
use hardlab_server::clusters::{ClusterManager, node_container_name, random_name};
use hardlab_server::config::ClusterSettings;
use hardlab_server::web::check::AttemptRecord;
use support::{TEST_IMAGE, docker_or_skip};

const READY: Duration = Duration::from_secs(240);

fn cluster_args(instance: Option<String>) -> ClusterSettings {
    ClusterSettings {
        node_image: TEST_IMAGE.to_owned(),
        node_unprivileged: true,
        node_memory_mb: 1024,
        // A node spinning on /dev/zero must not take the whole (2-core) test machine.
        node_cpus: 1.0,
        docker_instance: instance,
        ..ClusterSettings::default()
    }
}

/// The app as `serve` builds it, with learners' clusters, on the fixture labs (demo-etcd has the
/// etcd checks and no setup script, so a cluster is ready as soon as its API server is).
async fn app(instance: Option<String>) -> TestApp {
    TestApp::builder(TestDb::sqlite().await)
        .configure(|config| config.check_patience = Duration::from_secs(20))
        .clusters(cluster_args(instance))
        .start()
        .await
}

fn manager(app: &TestApp) -> &ClusterManager {
    &app.state.clusters.as_ref().unwrap().manager
}

/// A JSON API call as the lab page's script makes it: session cookie and CSRF header.
async fn api(
    app: &TestApp,
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    if agent.csrf().is_none() {
        agent.get("/").await;
    }
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base_url))
        .header(reqwest::header::COOKIE, agent.cookie_header())
        .header("X-CSRF-Token", agent.csrf().unwrap_or_default())
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

/// Start on the lab page, then wait until the cluster is ready.
async fn start_cluster(app: &TestApp, agent: &Agent) -> ClusterRecord {
    let (status, view) = api(
        app,
        agent,
        reqwest::Method::POST,
        "/api/labs/demo-etcd/cluster",
    )
    .await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + READY;
    loop {
        let record = manager(app).get(&id).await.unwrap().unwrap();
        match record.state {
            ClusterState::Ready => return record,
            ClusterState::Failed => panic!("the cluster failed: {:?}", record.failure_reason),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "not ready within {READY:?}: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs a shell command in the node as root, as the learner's terminal can.
async fn as_root_in_node(cluster: &str, script: &str) {
    let output = tokio::process::Command::new("docker")
        .args(["exec", &node_container_name(cluster), "sh", "-c", script])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Presses Check on the demo lab's `encrypt` step and returns what was stored.
async fn check_encrypt_step(app: &TestApp, agent: &Agent) -> AttemptRecord {
    agent.get("/labs/demo-etcd/steps/encrypt").await;
    let page = agent
        .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (json,): (Option<String>,) =
        sqlx::query_as("SELECT results_json FROM check_attempts ORDER BY started_at DESC LIMIT 1")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    serde_json::from_str(&json.unwrap()).unwrap()
}

fn result_of<'a>(record: &'a AttemptRecord, check: &str) -> &'a hardlab_grader::CheckResult {
    record
        .results
        .iter()
        .find(|r| r.check == check)
        .unwrap_or_else(|| panic!("no result for {check}: {record:?}"))
}

/// Removes a cluster when the test ends: through the manager when it gets there, and with the
/// docker CLI if it panicked first (these clusters carry no `test-` label the stale sweep knows).
struct Cleanup<'a>(&'a ClusterManager, String);

impl Cleanup<'_> {
    async fn run(self) {
        self.0.delete(&self.1).await.unwrap();
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let cluster = &self.1;
        let run = |args: &[&str]| {
            let _ = std::process::Command::new("docker")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        run(&["rm", "-f", "-v", &node_container_name(cluster)]);
        run(&[
            "volume",
            "rm",
            "-f",
            &hardlab_server::clusters::volume_name(cluster),
        ]);
        run(&[
            "network",
            "rm",
            &hardlab_server::clusters::network_name(cluster),
        ]);
    }
}

/// Peak resident memory of this process (the server runs in it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn an_exec_plugin_in_the_nodes_admin_conf_runs_nothing_on_the_server_and_dev_zero_is_an_error()
 {
    if docker_or_skip().await.is_none() {
        return;
    }
    let app = app(Some(format!("test-{}", random_name()))).await;
    let mallory = app.learner("mallory").await;
    let cluster = start_cluster(&app, &mallory).await;
    let cleanup = Cleanup(manager(&app), cluster.id.clone());

    // The plugin would create this file wherever a client is built from the node's admin.conf.
    let marker = std::env::temp_dir().join(format!("hardlab-pwned-{}", random_name()));
    let marker_path = marker.display().to_string();
    as_root_in_node(
        &cluster.id,
        &format!(
            "sed -i 's|^\\(    client-key-data: .*\\)$|\\1\\n    exec:\\n      apiVersion: client.authentication.k8s.io/v1beta1\\n      command: /usr/bin/touch\\n      args: [\"{marker_path}\"]|' /etc/kubernetes/admin.conf && grep -q 'command: /usr/bin/touch' /etc/kubernetes/admin.conf"
        ),
    )
    .await;
    let record = check_encrypt_step(&app, &mallory).await;
    assert!(record.problem.is_none(), "{record:?}");
    // Graded with the captured certificates: the checks ran and saw the real cluster.
    assert_eq!(
        result_of(&record, "etcd.encryption-configured").status,
        Status::Fail,
        "{record:?}"
    );
    assert!(
        !marker.exists(),
        "the node's exec plugin ran on the server: {marker_path} exists"
    );

    // A manifest that never ends: an error naming the file within the read deadline, and the
    // server's memory does not follow it.
    as_root_in_node(
        &cluster.id,
        "ln -sf /dev/zero /etc/kubernetes/manifests/kube-apiserver.yaml",
    )
    .await;
    let before = peak_rss();
    let started = Instant::now();
    let record = check_encrypt_step(&app, &mallory).await;
    let took = started.elapsed();
    let grown = peak_rss().saturating_sub(before);
    let configured = result_of(&record, "etcd.encryption-configured");
    assert_eq!(configured.status, Status::Error, "{record:?}");
    assert!(
        configured.message.contains("/dev/zero")
            && configured.message.contains("not a regular file"),
        "{}",
        configured.message
    );
    assert!(took < Duration::from_secs(60), "Check took {took:?}");
    assert!(
        grown < 256 << 20,
        "the server's peak memory grew by {} MiB",
        grown >> 20
    );
    cleanup.run().await;
}

#[tokio::test]
async fn lying_etcdctl_and_cat_in_the_node_do_not_pass_a_plaintext_secret() {
    if docker_or_skip().await.is_none() {
        return;
    }
    let app = app(Some(format!("test-{}", random_name()))).await;
    let mallory = app.learner("mallory").await;
    let cluster = start_cluster(&app, &mallory).await;
    let cleanup = Cleanup(manager(&app), cluster.id.clone());

    // Both print a value that looks like aescbc ciphertext for whatever they are asked.
    as_root_in_node(
        &cluster.id,
        r#"forged='k8s:enc:aescbc:v1:key1:Zm9yZ2VkLWNpcGhlcnRleHQtdGhhdC1sb29rcy1yYW5kb20='
value=$(printf '%s' "$forged" | base64 -w0)
for tool in etcdctl cat; do
  real=$(command -v "$tool")
  cat > /tmp/liar <<EOF
#!/bin/sh
printf '{"kvs":[{"key":"L3JlZ2lzdHJ5L3NlY3JldHM=","value":"$value"}]}'
printf '%s' '$forged'
EOF
  chmod 0755 /tmp/liar
  /bin/cp /tmp/liar "$real"
done
etcdctl get x | grep -q kvs"#,
    )
    .await;
    let record = check_encrypt_step(&app, &mallory).await;
    let encrypted = result_of(&record, "etcd.secrets-encrypted");
    assert_eq!(
        encrypted.status,
        Status::Fail,
        "a plaintext Secret must fail however the node's tools lie: {record:?}"
    );
    cleanup.run().await;
}

#[tokio::test]
async fn a_killed_node_turns_the_cluster_failed_with_the_reason() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let app = app(Some(format!("test-{}", random_name()))).await;
    let learner = app.learner("ada").await;
    let cluster = start_cluster(&app, &learner).await;
    provider
        .docker()
        .kill_container(
            &node_container_name(&cluster.id),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let killed = Instant::now();
    let path = format!("/api/clusters/{}", cluster.id);
    let view = loop {
        let (status, view) = api(&app, &learner, reqwest::Method::GET, &path).await;
        assert_eq!(status, 200, "{view}");
        if view["state"] == "failed" {
            break view;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "still {view} after the node was killed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let reason = view["reason"].as_str().unwrap();
    assert!(reason.contains("stopped"), "{reason}");
    // What was left of it is gone; Start makes a new one.
    support::assert_nothing_left(&provider, &[cluster.id.as_str()]).await;
    let (status, view) = api(
        &app,
        &learner,
        reqwest::Method::POST,
        "/api/labs/demo-etcd/cluster",
    )
    .await;
    assert_eq!(status, 202, "{view}");
    assert_ne!(view["id"], cluster.id.as_str());
    manager(&app)
        .delete(view["id"].as_str().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_installation_with_default_settings_leaves_the_first_ones_clusters_running() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    // Both on the defaults: the label identity comes from each one's own database.
    let first = app(None).await;
    let learner = first.learner("ada").await;
    let cluster = start_cluster(&first, &learner).await;
    let cleanup = Cleanup(manager(&first), cluster.id.clone());

    let second = app(None).await;
    // Its start-up adoption ran; give its background rounds a moment too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = manager(&first)
        .provider()
        .inspect(&cluster.id)
        .await
        .unwrap();
    assert!(node.running, "the first installation's node was stopped");
    let record = manager(&first).get(&cluster.id).await.unwrap().unwrap();
    assert_eq!(record.state, ClusterState::Ready, "{record:?}");
    assert!(manager(&second).list_live().await.unwrap().is_empty());
    drop(second);
    cleanup.run().await;
    support::assert_nothing_left(&provider, &[cluster.id.as_str()]).await;
}

/// Whether a TCP connection from inside `cluster`'s node to `host:port` opens within 3 s.
async fn node_connects(cluster: &str, host: &str, port: u16) -> bool {
    tokio::process::Command::new("docker")
        .args([
            "exec",
            &node_container_name(cluster),
            "timeout",
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{host}/{port}"),
        ])
        .status()
        .await
        .unwrap()
        .success()
}

#[tokio::test]
async fn a_node_reaches_neither_the_server_nor_the_docker_api_nor_another_learners_node() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let app = app(Some(format!("test-{}", random_name()))).await;
    let ada = app.learner("ada").await;
    let bob = app.learner("bob").await;
    let mine = start_cluster(&app, &ada).await;
    let _mine = Cleanup(manager(&app), mine.id.clone());
    let theirs = start_cluster(&app, &bob).await;
    let _theirs = Cleanup(manager(&app), theirs.id.clone());

    // The engine applied the limits the server asked for.
    let inspected = provider
        .docker()
        .inspect_container(&node_container_name(&mine.id), None)
        .await
        .unwrap();
    let host_config = inspected.host_config.unwrap();
    assert_eq!(host_config.pids_limit, Some(4096));
    assert_eq!(host_config.nano_cpus, Some(1_000_000_000));
    assert_eq!(host_config.memory, Some(1024 << 20));

    // Where the node would look for its host: the gateway of its network (read from the engine).
    let network = provider
        .docker()
        .inspect_network(
            &hardlab_server::clusters::network_name(&mine.id),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    let gateway = network
        .ipam
        .and_then(|ipam| ipam.config)
        .and_then(|configs| configs.into_iter().find_map(|c| c.gateway))
        .unwrap();
    let their_ip = provider
        .docker()
        .inspect_container(&node_container_name(&theirs.id), None)
        .await
        .unwrap()
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|networks| {
            networks
                .get(&hardlab_server::clusters::network_name(&theirs.id))
                .cloned()
        })
        .and_then(|endpoint| endpoint.ip_address)
        .unwrap();
    // A positive control: the node does reach its own API server, so a refusal below means
    // something.
    assert!(node_connects(&mine.id, "127.0.0.1", 6443).await);
    let server_port = app.addr.port();
    assert!(
        !node_connects(&mine.id, &gateway, server_port).await,
        "the node reached the hardlab server at {gateway}:{server_port}"
    );
    assert!(!node_connects(&mine.id, "127.0.0.1", server_port).await);
    for docker_port in [2375, 2376] {
        assert!(
            !node_connects(&mine.id, &gateway, docker_port).await,
            "the node reached a Docker API port {docker_port}"
        );
    }
    as_root_in_node(&mine.id, "test ! -e /var/run/docker.sock").await;
    assert!(
        !node_connects(&mine.id, &their_ip, 6443).await,
        "one learner's node reached another's API server at {their_ip}"
    );
    manager(&app).delete(&mine.id).await.unwrap();
    manager(&app).delete(&theirs.id).await.unwrap();
}
