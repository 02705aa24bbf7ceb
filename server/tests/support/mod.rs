//! Shared by the clusters_* and terminal_* tests: the real Docker engine, a fresh database, a
//! leak check and a Docker socket that can be made to die (fault injection).
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use hardlab_server::clusters::DockerProvider;
use sqlx::AnyPool;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

pub const TEST_IMAGE: &str = "hardlab/testnode:latest";

/// The Docker provider when `HARDLAB_TEST_DOCKER=1`; otherwise prints why and returns `None`,
/// except under `CI=true`, where a missing engine is a failure.
pub async fn docker_or_skip() -> Option<DockerProvider> {
    let strict = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = |why: String| {
        assert!(!strict, "CI=true and the Docker tests cannot run: {why}");
        eprintln!("skipping: {why}");
        None
    };
    if std::env::var("HARDLAB_TEST_DOCKER").as_deref() != Ok("1") {
        return skip(
            "HARDLAB_TEST_DOCKER is not 1 (needs a Docker engine and docker/testnode/build.sh)"
                .into(),
        );
    }
    let provider = match DockerProvider::connect().await {
        Ok(p) => p,
        Err(e) => return skip(format!("Docker is not reachable: {e}")),
    };
    if provider.docker().inspect_image(TEST_IMAGE).await.is_err() {
        return skip(format!(
            "{TEST_IMAGE} is not built (run docker/testnode/build.sh)"
        ));
    }
    remove_stale_test_clusters(&provider).await;
    // Each test manages only its own clusters: adoption and orphan removal in one test must not
    // touch another test's clusters running at the same time.
    Some(provider.with_instance(&format!("test-{}", hardlab_server::clusters::random_name())))
}

/// A fresh SQLite database with every migration applied; keep the directory alive.
pub async fn test_db() -> (AnyPool, tempfile::TempDir) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let pool = AnyPool::connect(&url).await.unwrap();
    sqlx::migrate!("../migrations").run(&pool).await.unwrap();
    (pool, dir)
}

/// Fails when any container, volume or network labelled with one of these clusters remains.
pub async fn assert_nothing_left(provider: &DockerProvider, clusters: &[&str]) {
    let docker = provider.docker();
    for cluster in clusters {
        let filter = std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("io.hardlab.cluster={cluster}")],
        )]);
        let containers = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .unwrap();
        assert!(
            containers.is_empty(),
            "containers of {cluster} left: {containers:?}"
        );
        let volumes = docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .unwrap();
        assert!(
            volumes.volumes.unwrap_or_default().is_empty(),
            "volumes of {cluster} left"
        );
        let networks = docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .unwrap();
        assert!(networks.is_empty(), "networks of {cluster} left");
    }
}

/// A unix socket forwarding to the real Docker socket until `kill()`: then every open connection
/// is cut and new ones are refused, as when the engine stops. Fault injection only.
#[derive(Clone)]
pub struct DyingDockerSocket {
    path: PathBuf,
    dead: Arc<AtomicBool>,
    killed: Arc<Notify>,
    _dir: Arc<tempfile::TempDir>,
}

impl DyingDockerSocket {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let proxy = DyingDockerSocket {
            path,
            dead: Arc::new(AtomicBool::new(false)),
            killed: Arc::new(Notify::new()),
            _dir: Arc::new(dir),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        if state.dead.load(Ordering::SeqCst) { continue; }
                        let state = state.clone();
                        tokio::spawn(async move {
                            let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut engine) => {}
                                _ = state.killed.notified() => {}
                            }
                        });
                    }
                    _ = state.killed.notified() => {}
                }
                if state.dead.load(Ordering::SeqCst) {
                    let _ = std::fs::remove_file(&state.path);
                    return;
                }
            }
        });
        proxy
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.killed.notify_waiters();
    }
}

/// A test that panics before its cleanup leaves its cluster behind; the next run removes test
/// clusters (instance `test-*`) older than 20 minutes, which no running test still uses.
async fn remove_stale_test_clusters(provider: &DockerProvider) {
    let filter = std::collections::HashMap::from([(
        "label".to_owned(),
        vec!["io.hardlab.managed".to_owned()],
    )]);
    let Ok(containers) = provider
        .docker()
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
    else {
        return;
    };
    let cutoff = hardlab_server::clusters::now_ms() / 1000 - 20 * 60;
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let is_test = labels
            .get("io.hardlab.managed")
            .is_some_and(|v| v.starts_with("test-"));
        if is_test
            && container.created.unwrap_or(i64::MAX) < cutoff
            && let Some(cluster) = labels.get("io.hardlab.cluster")
        {
            use hardlab_server::clusters::ClusterProvider;
            eprintln!("removing cluster {cluster} left by an earlier test run");
            let _ = provider.delete(cluster).await;
        }
    }
}
