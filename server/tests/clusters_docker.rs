//! Clusters on the real Docker engine with the test node image (`hardlab/testnode:latest`):
//! create, ready, exec, kubeconfig, expiry, adoption after a restart, orphan cleanup and a Docker
//! engine that goes away mid-create. Every test ends by checking that nothing labelled with its
//! clusters is left on the host.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hardlab_server::clusters::lifecycle::LabClusterRequest;
use hardlab_server::clusters::{
    Bootstrap, ClusterManager, ClusterProvider, ClusterSpec, ClusterState, DockerProvider,
    ManagerConfig, Ownership, Phase, random_name,
};
use support::{TEST_IMAGE, assert_nothing_left, docker_or_skip, test_db};

fn test_config() -> ManagerConfig {
    ManagerConfig {
        image: TEST_IMAGE.to_owned(),
        memory_bytes: Some(1 << 30),
        ..ManagerConfig::default()
    }
}

fn spec(name: &str) -> ClusterSpec {
    ClusterSpec {
        name: name.to_owned(),
        image: TEST_IMAGE.to_owned(),
        bootstrap: Bootstrap::SelfStarting,
        privileged: false,
        memory_bytes: Some(1 << 30),
        pids_limit: Some(4096),
        nano_cpus: None,
        ownership: Ownership {
            owner: "u1".into(),
            lab: "etcd-secrets".into(),
            session: "s1".into(),
            expiry_ms: 1,
        },
        apiserver_flags: BTreeMap::new(),
        apiserver_mounts: Vec::new(),
    }
}

#[tokio::test]
async fn a_cluster_is_created_ready_answers_exec_and_its_kubeconfig_reaches_the_api_server() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let name = random_name();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&phases);
    let record = move |phase: Phase| seen.lock().unwrap().push(phase);
    let mut wanted = spec(&name);
    wanted
        .apiserver_flags
        .insert("anonymous-auth".into(), "false".into());
    let created = provider.create(&wanted, &record).await.expect("create");
    let node = &created.node;
    assert!(node.running);
    let port = node.api_port.expect("published port");
    assert_eq!(node.ownership.owner, "u1");
    assert_eq!(
        *phases.lock().unwrap(),
        [
            Phase::PreparingNode,
            Phase::StartingControlPlane,
            Phase::WaitingForApiServer,
            Phase::ExportingKubeconfig
        ]
    );

    let output = provider
        .exec(&name, &["kubectl".into(), "get".into(), "ns".into()], None)
        .await
        .unwrap();
    assert_eq!(output.exit_code, 0, "{}", output.short_output());
    assert!(output.stdout_text().contains("kube-system"));
    // stdin reaches the command and EOF ends it.
    let echoed = provider
        .exec(&name, &["cat".into()], Some(b"hello node".to_vec()))
        .await
        .unwrap();
    assert_eq!(echoed.stdout_text(), "hello node");
    let failing = provider
        .exec(&name, &["sh".into(), "-c".into(), "exit 3".into()], None)
        .await
        .unwrap();
    assert_eq!(failing.exit_code, 3);
    // The lab's flag reached the API server manifest.
    let manifest = provider
        .exec(
            &name,
            &[
                "cat".into(),
                "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
            ],
            None,
        )
        .await
        .unwrap();
    assert!(
        manifest
            .stdout_text()
            .contains("    - --anonymous-auth=false\n")
    );

    // From the host, with the rewritten kubeconfig (a real TLS client, the apiserver cert has 127.0.0.1).
    // The server's own kubeconfig, from the certificates captured before hand-over.
    let address = provider.address(&name).await.unwrap();
    assert_eq!(address.api_port, port);
    let kubeconfig = created.credentials.kubeconfig_yaml(&name, &address);
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{port}")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, &kubeconfig).unwrap();
    let kubectl = tokio::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            path.to_str().unwrap(),
            "get",
            "--raw",
            "/readyz",
        ])
        .output()
        .await
        .expect("kubectl on the host");
    assert_eq!(
        String::from_utf8_lossy(&kubectl.stdout),
        "ok",
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );

    let listed = provider.list_own().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|n| n.cluster == name && n.api_port == Some(port))
    );
    provider.delete(&name).await.unwrap();
    provider
        .delete(&name)
        .await
        .expect("deleting twice is not an error");
    assert_nothing_left(&provider, &[&name]).await;
}

#[tokio::test]
async fn two_clusters_have_their_own_keys() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (a, b) = (random_name(), random_name());
    let ignore = |_: Phase| {};
    let (spec_a, spec_b) = (spec(&a), spec(&b));
    let (first, second) = tokio::join!(
        provider.create(&spec_a, &ignore),
        provider.create(&spec_b, &ignore)
    );
    first.unwrap();
    second.unwrap();
    let ca = |name: String| {
        let provider = provider.clone();
        async move {
            provider
                .exec(
                    &name,
                    &["cat".into(), "/etc/kubernetes/pki/ca.crt".into()],
                    None,
                )
                .await
                .unwrap()
                .stdout_text()
        }
    };
    let (ca_a, ca_b) = (ca(a.clone()).await, ca(b.clone()).await);
    assert!(ca_a.contains("BEGIN CERTIFICATE"));
    assert_ne!(ca_a, ca_b);
    provider.delete(&a).await.unwrap();
    provider.delete(&b).await.unwrap();
    assert_nothing_left(&provider, &[&a, &b]).await;
}

#[tokio::test]
async fn an_image_that_is_not_there_fails_clearly_and_leaves_nothing() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let name = random_name();
    let mut missing = spec(&name);
    missing.image = "hardlab/does-not-exist:never".into();
    let error = provider.create(&missing, &|_| {}).await.unwrap_err();
    assert!(
        error.to_string().contains("hardlab/does-not-exist:never"),
        "{error}"
    );
    assert_nothing_left(&provider, &[&name]).await;
}

#[tokio::test]
async fn the_manager_records_phases_then_ready_and_expiry_removes_everything() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let config = ManagerConfig {
        ttl: Duration::from_secs(3600),
        ..test_config()
    };
    let manager = ClusterManager::new(db.clone(), Arc::new(provider.clone()), config);
    let mut events = manager.subscribe();
    let request = LabClusterRequest {
        lab_id: "etcd-secrets".into(),
        apiserver_flags: BTreeMap::new(),
        setup: None,
        solutions: Vec::new(),
    };
    let started = manager
        .start("learner-1", Some("sess"), &request)
        .await
        .unwrap();
    assert_eq!(started.state, ClusterState::Requested);
    // The same learner pressing Start again gets the same cluster.
    assert_eq!(
        manager
            .start("learner-1", Some("sess"), &request)
            .await
            .unwrap()
            .id,
        started.id
    );

    let mut states = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.cluster != started.id {
                continue;
            }
            states.push((event.state, event.phase.clone()));
            if matches!(event.state, ClusterState::Ready | ClusterState::Failed) {
                return event;
            }
        }
    })
    .await
    .expect("ready within 3 minutes");
    assert_eq!(ready.state, ClusterState::Ready, "{:?}", ready.reason);
    assert!(
        states.contains(&(
            ClusterState::Creating,
            Some("waiting-for-api-server".into())
        )),
        "{states:?}"
    );
    let record = manager.get(&started.id).await.unwrap().unwrap();
    assert!(record.api_port.is_some());

    // Expire it in the database, as time would.
    sqlx::query("UPDATE clusters SET expires_at = 1 WHERE id = $1")
        .bind(&started.id)
        .execute(&db)
        .await
        .unwrap();
    let reaped = manager.reap_once().await.unwrap();
    assert_eq!(reaped, vec![started.id.clone()]);
    assert_eq!(
        manager.get(&started.id).await.unwrap().unwrap().state,
        ClusterState::Deleted
    );
    assert_nothing_left(&provider, &[&started.id]).await;
}

#[tokio::test]
async fn extend_pushes_the_expiry_and_idle_clusters_are_reaped() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let manager = ClusterManager::new(db.clone(), Arc::new(provider.clone()), test_config());
    let name = random_name();
    let record = manager
        .create_named(&name, None, None, Some("learner-2"))
        .await
        .unwrap();
    assert_eq!(
        record.state,
        ClusterState::Ready,
        "{:?}",
        record.failure_reason
    );
    sqlx::query("UPDATE clusters SET expires_at = $1 WHERE id = $2")
        .bind(hardlab_server::clusters::now_ms() + 1000)
        .bind(&name)
        .execute(&db)
        .await
        .unwrap();
    let extended = manager.extend(&name).await.unwrap();
    assert!(extended.expires_at > hardlab_server::clusters::now_ms() + 59 * 60 * 1000);
    assert!(
        manager.reap_once().await.unwrap().is_empty(),
        "an extended, active cluster stays"
    );

    sqlx::query("UPDATE clusters SET last_active_at = 1 WHERE id = $1")
        .bind(&name)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(manager.reap_once().await.unwrap(), vec![name.clone()]);
    assert_nothing_left(&provider, &[&name]).await;
}

#[tokio::test]
async fn the_cap_refuses_a_cluster_beyond_the_hosts_limit_with_a_readable_reason() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let manager = ClusterManager::new(
        db,
        Arc::new(provider.clone()),
        ManagerConfig {
            max_clusters: 0,
            ..test_config()
        },
    );
    let request = LabClusterRequest {
        lab_id: "etcd-secrets".into(),
        apiserver_flags: BTreeMap::new(),
        setup: None,
        solutions: Vec::new(),
    };
    let error = manager
        .start("learner-3", None, &request)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("limit"), "{error}");
}

#[tokio::test]
async fn a_restarted_server_adopts_running_clusters_and_removes_expired_and_orphaned_ones() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let (keep, expired, orphan) = (random_name(), random_name(), random_name());
    {
        let manager = ClusterManager::new(db.clone(), Arc::new(provider.clone()), test_config());
        let (a, b) = tokio::join!(
            manager.create_named(&keep, None, None, Some("u")),
            manager.create_named(&expired, None, None, Some("u"))
        );
        assert_eq!(a.unwrap().state, ClusterState::Ready);
        assert_eq!(b.unwrap().state, ClusterState::Ready);
        sqlx::query("UPDATE clusters SET expires_at = 1 WHERE id = $1")
            .bind(&expired)
            .execute(&db)
            .await
            .unwrap();
    }
    // A cluster on the host that the database does not know: an orphan (e.g. from a lost database).
    provider.create(&spec(&orphan), &|_| {}).await.unwrap();

    // "Restart": a new manager on the same database and Docker host.
    let manager = ClusterManager::new(db.clone(), Arc::new(provider.clone()), test_config());
    let report = manager.adopt().await.unwrap();
    assert_eq!(report.adopted, vec![keep.clone()]);
    let mut removed = report.removed.clone();
    removed.sort();
    let mut wanted = vec![expired.clone(), orphan.clone()];
    wanted.sort();
    assert_eq!(removed, wanted);
    assert_eq!(
        manager.get(&keep).await.unwrap().unwrap().state,
        ClusterState::Ready
    );
    assert_eq!(
        manager.get(&expired).await.unwrap().unwrap().state,
        ClusterState::Deleted
    );
    // The adopted one still works.
    let output = provider
        .exec(
            &keep,
            &[
                "kubectl".into(),
                "get".into(),
                "--raw".into(),
                "/readyz".into(),
            ],
            None,
        )
        .await;
    assert_eq!(output.unwrap().stdout_text(), "ok");
    manager.delete(&keep).await.unwrap();
    assert_nothing_left(&provider, &[&keep, &expired, &orphan]).await;
}

#[tokio::test]
async fn a_node_killed_while_the_control_plane_starts_fails_the_cluster_and_removes_everything() {
    // Fault injection: the node container is killed (as if the engine lost it) while the provider
    // waits for the API server.
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let manager = ClusterManager::new(db, Arc::new(provider.clone()), test_config());
    let mut events = manager.subscribe();
    let request = LabClusterRequest {
        lab_id: "etcd-secrets".into(),
        apiserver_flags: BTreeMap::new(),
        setup: None,
        solutions: Vec::new(),
    };
    let started = manager.start("learner-4", None, &request).await.unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.cluster != started.id {
                continue;
            }
            if event.phase.as_deref() == Some("waiting-for-api-server") {
                let container = hardlab_server::clusters::node_container_name(&started.id);
                let _ = provider
                    .docker()
                    .kill_container(
                        &container,
                        None::<bollard::query_parameters::KillContainerOptions>,
                    )
                    .await;
            }
            if matches!(event.state, ClusterState::Ready | ClusterState::Failed) {
                return event;
            }
        }
    })
    .await
    .expect("an outcome");
    assert_eq!(failed.state, ClusterState::Failed);
    let reason = failed.reason.unwrap();
    assert!(
        reason.contains("not running") || reason.contains("did not become ready"),
        "{reason}"
    );
    assert_nothing_left(&provider, &[&started.id]).await;
}

#[tokio::test]
async fn docker_going_away_mid_create_fails_the_cluster_and_the_next_start_cleans_up() {
    // Fault injection: the provider talks to Docker through a socket proxy that this test shuts
    // down as soon as the node container is starting, like an engine that stops mid-create.
    let Some(real) = docker_or_skip().await else {
        return;
    };
    let proxy = support::DyingDockerSocket::start().await;
    let flaky = DockerProvider::connect_to_socket(proxy.path())
        .await
        .unwrap()
        .with_instance(real.instance());
    let (db, _dir) = test_db().await;
    let manager = ClusterManager::new(db.clone(), Arc::new(flaky), test_config());
    let name = random_name();
    let killer = {
        let proxy = proxy.clone();
        let name = name.clone();
        let real = real.clone();
        tokio::spawn(async move {
            // Dies once the node container exists, before the API server answers.
            let container = hardlab_server::clusters::node_container_name(&name);
            for _ in 0..600 {
                if real
                    .docker()
                    .inspect_container(&container, None)
                    .await
                    .is_ok()
                {
                    proxy.kill();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let record = manager
        .create_named(&name, None, None, Some("u"))
        .await
        .unwrap();
    killer.await.unwrap();
    assert_eq!(record.state, ClusterState::Failed);
    let reason = record.failure_reason.unwrap();
    assert!(
        reason.contains("Docker engine is not reachable"),
        "{reason}"
    );
    assert!(
        manager.health().await.is_err(),
        "health must report the engine as gone"
    );

    // The engine is "back": the next server start removes what the failed create left behind.
    let recovered = ClusterManager::new(db, Arc::new(real.clone()), test_config());
    let report = recovered.adopt().await.unwrap();
    // The provider could not clean up through the dead socket, so the leftovers are removed now.
    assert_eq!(report.removed, vec![name.clone()], "{report:?}");
    assert_nothing_left(&real, &[&name]).await;
}

#[tokio::test]
async fn the_grader_reads_the_nodes_manifests_through_docker_exec() {
    use hardlab_grader::target::NodeAccess;
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let name = random_name();
    provider.create(&spec(&name), &|_| {}).await.unwrap();
    let node = hardlab_grader::target::docker::DockerNode::new(
        hardlab_server::clusters::node_container_name(&name),
    )
    .unwrap();
    let manifest = node
        .read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")
        .await
        .unwrap()
        .unwrap();
    let manifest = String::from_utf8(manifest).unwrap();
    assert!(
        manifest.contains("- --etcd-servers=https://127.0.0.1:2379"),
        "{manifest}"
    );
    let mut entries = node.list_dir("/etc/kubernetes/manifests").await.unwrap();
    entries.sort();
    assert_eq!(
        entries,
        [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml"
        ]
    );
    assert!(
        node.read_file("/etc/kubernetes/no-such-file")
            .await
            .unwrap()
            .is_none()
    );
    provider.delete(&name).await.unwrap();
    assert_nothing_left(&provider, &[&name]).await;
}

/// A remote engine as `dockerd --tlsverify -H tcp://...` serves one: TLS with a certificate from
/// its own CA, and only clients with a certificate from that CA get through. Here it fronts the
/// local engine's socket (no second engine can run on this machine); the bytes behind it are the
/// real engine's.
struct TlsEngine {
    address: String,
    dir: tempfile::TempDir,
    relay: tokio::task::JoinHandle<()>,
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl TlsEngine {
    async fn start() -> TlsEngine {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let ca = hardlab_testkit::Authority::new("docker-engine-ca").unwrap();
        let (server_cert, server_key) = ca
            .issue(
                "docker-engine",
                &[],
                &["127.0.0.1", "localhost"],
                &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
            )
            .unwrap();
        let (client_cert, client_key) = ca
            .issue(
                "hardlab-server",
                &[],
                &[],
                &[rcgen::ExtendedKeyUsagePurpose::ClientAuth],
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &client_cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &client_key).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let relay = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        TlsEngine {
            address,
            dir,
            relay,
        }
    }

    fn args(&self, instance: &str) -> hardlab_server::config::ClusterSettings {
        hardlab_server::config::ClusterSettings {
            docker_host: Some(self.address.clone()),
            docker_tls_ca: Some(self.dir.path().join("ca.pem")),
            docker_tls_cert: Some(self.dir.path().join("cert.pem")),
            docker_tls_key: Some(self.dir.path().join("key.pem")),
            docker_instance: Some(instance.to_owned()),
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn a_remote_engine_is_driven_over_tls_with_a_client_certificate_and_refused_without_one() {
    let Some(local) = docker_or_skip().await else {
        return;
    };
    let engine = TlsEngine::start().await;
    let args = engine.args(local.instance());
    let remote = hardlab_server::clusters::setup::connect(&args, false)
        .await
        .expect("the engine over TLS");
    remote.health().await.unwrap();
    let name = random_name();
    let created = remote.create(&spec(&name), &|_| {}).await.unwrap();
    assert!(created.node.running);
    let output = remote
        .exec(&name, &["kubectl".into(), "get".into(), "ns".into()], None)
        .await
        .unwrap();
    assert!(
        output.stdout_text().contains("kube-system"),
        "{}",
        output.short_output()
    );
    remote.delete(&name).await.unwrap();
    assert_nothing_left(&local, &[&name]).await;

    // No client certificate: refused before a connection is tried.
    let mut bare = args.clone();
    bare.docker_tls_cert = None;
    let refused = hardlab_server::clusters::setup::connect(&bare, false)
        .await
        .err()
        .expect("a TCP engine without TLS client files is refused");
    assert!(
        refused.to_string().contains("--docker-tls-cert"),
        "{refused}"
    );
    // A certificate from another CA: the engine's TLS refuses it.
    let stranger = hardlab_testkit::Authority::new("someone-else").unwrap();
    let (cert, key) = stranger
        .issue(
            "intruder",
            &[],
            &[],
            &[rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        )
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("cert.pem"), cert).unwrap();
    std::fs::write(other.path().join("key.pem"), key).unwrap();
    let mut forged = args.clone();
    forged.docker_tls_cert = Some(other.path().join("cert.pem"));
    forged.docker_tls_key = Some(other.path().join("key.pem"));
    assert!(
        hardlab_server::clusters::setup::connect(&forged, false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_learner_has_at_most_their_share_of_clusters_and_extensions_stop_at_the_ceiling() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let manager = ClusterManager::new(
        db.clone(),
        Arc::new(provider.clone()),
        ManagerConfig {
            max_clusters_per_user: 1,
            max_lifetime: Duration::from_secs(90 * 60),
            ..test_config()
        },
    );
    let request = |lab: &str| LabClusterRequest {
        lab_id: lab.into(),
        apiserver_flags: BTreeMap::new(),
        setup: None,
        solutions: Vec::new(),
    };
    let first = manager
        .start("learner-4", None, &request("etcd-secrets"))
        .await
        .unwrap();
    // Another lab would be a second cluster: refused with the reason.
    let error = manager
        .start("learner-4", None, &request("network-policies"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("you already have 1 clusters"),
        "{error}"
    );
    // The same lab gives back the cluster they have.
    let again = manager
        .start("learner-4", None, &request("etcd-secrets"))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    // Another learner is not held back by this one.
    let other = manager
        .start("learner-5", None, &request("etcd-secrets"))
        .await
        .unwrap();

    for id in [&first.id, &other.id] {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while manager.get(id).await.unwrap().unwrap().state != ClusterState::Ready {
            assert!(std::time::Instant::now() < deadline, "{id} not ready");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Extend gives a full TTL (60 min) but not past 90 minutes after creation; then it refuses.
    let created = manager.get(&first.id).await.unwrap().unwrap().created_at;
    sqlx::query("UPDATE clusters SET created_at = $1, expires_at = $2 WHERE id = $3")
        .bind(created - 40 * 60 * 1000)
        .bind(hardlab_server::clusters::now_ms() + 1000)
        .bind(&first.id)
        .execute(&db)
        .await
        .unwrap();
    let extended = manager.extend(&first.id).await.unwrap();
    assert_eq!(
        extended.expires_at,
        created - 40 * 60 * 1000 + 90 * 60 * 1000
    );
    let refused = manager.extend(&first.id).await.unwrap_err();
    assert!(
        refused.to_string().contains("longer than 90 minutes"),
        "{refused}"
    );
    manager.delete(&first.id).await.unwrap();
    manager.delete(&other.id).await.unwrap();
    assert_nothing_left(&provider, &[&first.id, &other.id]).await;
}

#[tokio::test]
async fn the_reaper_goes_on_after_a_failed_removal_and_clears_rows_stuck_in_creation() {
    // Fault injection: the first manager reaches Docker through a socket that is dead, so every
    // removal it tries fails, as with an engine that hangs up.
    let Some(real) = docker_or_skip().await else {
        return;
    };
    let (db, _dir) = test_db().await;
    let healthy = ClusterManager::new(db.clone(), Arc::new(real.clone()), test_config());
    let expired = random_name();
    healthy
        .create_named(&expired, None, None, Some("learner-6"))
        .await
        .unwrap();
    let now = hardlab_server::clusters::now_ms();
    sqlx::query("UPDATE clusters SET expires_at = 1 WHERE id = $1")
        .bind(&expired)
        .execute(&db)
        .await
        .unwrap();
    // A row whose creation was cut short long ago (a server that died mid-create).
    let stuck = random_name();
    sqlx::query(
        "INSERT INTO clusters (id, owner_id, lab_id, session_id, image, state, phase, failure_reason, api_port, \
         pooled, created_at, updated_at, expires_at, last_active_at) \
         VALUES ($1, 'learner-7', 'etcd-secrets', NULL, $2, 'creating', 'waiting-for-api-server', NULL, NULL, 0, $3, $3, $4, $3)",
    )
    .bind(&stuck)
    .bind(TEST_IMAGE)
    .bind(now - 60 * 60 * 1000)
    .bind(now + 60 * 60 * 1000)
    .execute(&db)
    .await
    .unwrap();

    let proxy = support::DyingDockerSocket::start().await;
    proxy.kill();
    let broken = DockerProvider::connect_to_socket(proxy.path()).await;
    if let Ok(broken) = broken {
        let failing = ClusterManager::new(
            db.clone(),
            Arc::new(broken.with_instance(real.instance())),
            test_config(),
        );
        let removed = failing
            .reap_once()
            .await
            .expect("a failed removal is not the reaper's end");
        assert!(!removed.contains(&expired), "{removed:?}");
    }
    // The next round, with the engine back, finishes the job.
    let removed = healthy.reap_once().await.unwrap();
    assert!(removed.contains(&expired), "{removed:?}");
    assert!(removed.contains(&stuck), "{removed:?}");
    let stuck_row = healthy.get(&stuck).await.unwrap().unwrap();
    assert_eq!(stuck_row.state, ClusterState::Failed);
    assert!(stuck_row.failure_reason.unwrap().contains("took too long"));
    assert_nothing_left(&real, &[&expired]).await;
}

/// A checkout whose `docker/node/Dockerfile` builds from `scratch` (no pull: nothing can be
/// pulled here) with the given body; the lab image list is empty.
fn checkout_with_dockerfile(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docker/node")).unwrap();
    std::fs::write(dir.path().join("docker/node/Dockerfile"), body).unwrap();
    std::fs::write(dir.path().join("docker/node/images.txt"), "# none\n").unwrap();
    std::fs::write(dir.path().join("docker/node/marker"), "built by hardlab\n").unwrap();
    dir
}

#[tokio::test]
async fn a_missing_node_image_is_built_from_the_checkout_on_first_need_with_the_phase_shown() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let checkout = checkout_with_dockerfile(
        "FROM scratch\nCOPY docker/node/marker /marker\nCOPY docker/node/images/ /kind/images/hardlab/\n\
         LABEL io.hardlab.node.bootstrap=self-starting io.hardlab.node.privileged=false\n",
    );
    let provider = provider.with_image_source(
        hardlab_server::clusters::node_image::NodeImageSource::discover(Some(checkout.path())),
    );
    let image = format!("hardlab/autobuild-test:{}", random_name());
    let name = random_name();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&phases);
    let record = move |phase: Phase| seen.lock().unwrap().push(phase);
    let mut wanted = spec(&name);
    wanted.image.clone_from(&image);
    // The image has no program to run, so the node cannot start: what matters is that it was
    // built, said so, and that the failed start left nothing behind.
    let error = provider
        .create(&wanted, &record)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        phases.lock().unwrap().contains(&Phase::BuildingNodeImage),
        "{:?}",
        phases.lock().unwrap()
    );
    let built = provider.docker().inspect_image(&image).await.unwrap();
    let labels = built.config.unwrap().labels.unwrap();
    assert_eq!(labels["io.hardlab.node.bootstrap"], "self-starting");
    assert!(!error.contains("could not be pulled"), "{error}");
    assert_nothing_left(&provider, &[&name]).await;
    provider
        .docker()
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_node_image_build_that_fails_says_why_and_without_a_checkout_the_image_is_missing() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    let image = format!("hardlab/autobuild-test:{}", random_name());
    let mut wanted = spec(&random_name());
    wanted.image.clone_from(&image);
    let error = provider
        .create(&wanted, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("could not be pulled"), "{error}");

    let checkout = checkout_with_dockerfile("FROM scratch\nCOPY docker/node/absent /absent\n");
    let provider = provider.with_image_source(
        hardlab_server::clusters::node_image::NodeImageSource::discover(Some(checkout.path())),
    );
    let error = provider
        .create(&wanted, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("building the node image"), "{error}");
    assert!(
        error.contains("absent"),
        "the builder's reason is kept: {error}"
    );
    assert_nothing_left(&provider, &[&wanted.name]).await;
}
