//! A real etcd + kube-apiserver (from `KUBEBUILDER_ASSETS`) for the netpol and mtls live tests,
//! and helpers to create objects through its API. Stand-in until `hardlab_testkit` offers one.
//! There is no kubelet: pods stay Pending, which is what the "not run" paths need.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; tests may unwrap

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

/// Why the control plane cannot run here, or `None` when it can. Under `CI=true` a missing
/// component fails the test instead of skipping it.
fn missing_component() -> Option<String> {
    let reason = match std::env::var("KUBEBUILDER_ASSETS") {
        Err(_) => Some("KUBEBUILDER_ASSETS is not set (source .ci/env)".to_owned()),
        Ok(dir) if !Path::new(&dir).join("kube-apiserver").exists() => {
            Some(format!("{dir}/kube-apiserver does not exist"))
        }
        Ok(_) => None,
    };
    reason
        .or_else(|| {
            on_path("etcd")
                .is_none()
                .then(|| "etcd is not on PATH".to_owned())
        })
        .or_else(|| {
            on_path("openssl")
                .is_none()
                .then(|| "openssl is not on PATH".to_owned())
        })
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.exists())
}

/// `None` (after printing why) when the components are absent outside CI.
pub fn available() -> bool {
    match missing_component() {
        None => true,
        Some(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the control plane cannot start: {reason}")
        }
        Some(reason) => {
            eprintln!("skipped: {reason}");
            false
        }
    }
}

/// Runs a program under a shell that stops it when our end of its stdin closes, so it dies with
/// the test process even when no destructor runs (the shared plane is a static).
fn spawn_tied_to_us(program: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new("sh")
        .args(["-c", "\"$@\" & pid=$!; read _; kill $pid; wait $pid", "sh"])
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ControlPlane {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    pub kubeconfig: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports; an admin authenticates with a
    /// static token in group system:masters.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&["genrsa", "-out", &path("sa.key"), "2048"]);
        openssl(&[
            "rsa",
            "-in",
            &path("sa.key"),
            "-pubout",
            "-out",
            &path("sa.pub"),
        ]);
        let token = format!("admin-{:016x}", rand::random::<u64>());
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},admin,admin,system:masters\n"),
        )
        .unwrap();

        let etcd_port = free_port();
        let etcd = spawn_tied_to_us(
            Path::new("etcd"),
            &[
                format!("--data-dir={}", path("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{}", free_port()),
            ],
            &dir.path().join("etcd.log"),
        );
        let port = free_port();
        let assets = std::env::var("KUBEBUILDER_ASSETS").unwrap();
        let apiserver = spawn_tied_to_us(
            &Path::new(&assets).join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".into(),
                "--insecure-port=0".into(),
                format!("--cert-dir={}", path("certs")),
                format!("--token-auth-file={}", path("tokens.csv")),
                format!("--service-account-key-file={}", path("sa.pub")),
                format!("--service-account-signing-key-file={}", path("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--authorization-mode=RBAC".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // No controller manager makes service account tokens; pods need none here.
                "--disable-admission-plugins=ServiceAccount".into(),
            ],
            &dir.path().join("apiserver.log"),
        );
        let kubeconfig = dir.path().join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: admin\ncurrent-context: envtest\n"
            ),
        )
        .unwrap();
        let plane = Self {
            dir,
            children: vec![etcd, apiserver],
            kubeconfig,
        };
        plane.wait_ready();
        plane
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["get", "--raw", "/readyz"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.path().join("apiserver.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "the API server was not ready within 60 s:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A client for the current test's runtime (clients must not cross runtimes).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

/// One control plane per test binary, started on first use.
pub fn shared() -> Option<&'static ControlPlane> {
    static PLANE: OnceLock<Option<ControlPlane>> = OnceLock::new();
    PLANE
        .get_or_init(|| available().then(ControlPlane::start))
        .as_ref()
}

/// A namespace name no other test uses.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// The plural the API uses for a kind the tests create.
fn plural(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        "PeerAuthentication" => "peerauthentications".into(),
        "AuthorizationPolicy" => "authorizationpolicies".into(),
        "MeshTLSAuthentication" => "meshtlsauthentications".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// Creates every object of a multi-document YAML text through the API; namespaced objects go
/// to `namespace` (overriding what the file says), so one fixture serves many tests.
pub async fn create(client: &kube::Client, yaml: &str, namespace: Option<&str>) {
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap().to_owned();
        let kind = value["kind"].as_str().unwrap().to_owned();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &kind),
            &plural(&kind),
        );
        let cluster_scoped = matches!(kind.as_str(), "Namespace" | "CustomResourceDefinition");
        let target_namespace = if cluster_scoped {
            None
        } else {
            namespace
                .map(str::to_owned)
                .or_else(|| value["metadata"]["namespace"].as_str().map(str::to_owned))
        };
        if let Some(ns) = &target_namespace {
            value["metadata"]["namespace"] = Value::String(ns.clone());
        }
        let object: DynamicObject = serde_json::from_value(value).unwrap();
        let api: Api<DynamicObject> = match &target_namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("creating {kind}: {error}"));
    }
}

/// Creates a namespace with these labels and annotations.
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect::<serde_json::Map<_, _>>()
    };
    let namespace = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)}
    });
    create(client, &serde_yaml::to_string(&namespace).unwrap(), None).await;
}

pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}
