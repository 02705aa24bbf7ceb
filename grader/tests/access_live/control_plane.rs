//! A real etcd and kube-apiserver (v1.20.2 from `KUBEBUILDER_ASSETS`) for the live access and pod
//! security tests, with an admin client certificate (`O=system:masters`).
//!
//! hardlab_testkit is meant to provide this; until it does, these tests start their own. The
//! processes run under `sh` reading our end of a pipe, so they die with the test process even
//! when the shared control plane (a static) is never dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hardlab_grader::context::ApiEndpoint;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde::Deserialize;
use tokio::sync::OnceCell;

/// Whether a control plane can start here. Prints why not; under `CI=true` a missing part fails.
pub fn available() -> bool {
    let missing = match std::env::var("KUBEBUILDER_ASSETS") {
        Err(_) => Some("KUBEBUILDER_ASSETS is not set (source .ci/env)".to_owned()),
        Ok(dir) if !Path::new(&dir).join("kube-apiserver").exists() => {
            Some(format!("{dir}/kube-apiserver does not exist"))
        }
        Ok(_) if on_path("etcd").is_none() => Some("etcd is not on PATH".to_owned()),
        Ok(_) => None,
    };
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the control plane cannot start: {missing}"
    );
    eprintln!("skipping: {missing}");
    false
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
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
    pub url: String,
    ca_pem: String,
    kubeconfig: String,
    children: Vec<Child>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

fn supervised(program: &Path, args: &[String], log: &Path) -> Child {
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

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// One control plane per test binary for the tests that do not change API server flags.
pub async fn shared() -> &'static ControlPlane {
    SHARED.get_or_init(|| ControlPlane::start(&[])).await
}

impl ControlPlane {
    /// Starts etcd and a kube-apiserver with RBAC and `extra_flags` (e.g. `--anonymous-auth=false`).
    pub async fn start(extra_flags: &[&str]) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "hardlab test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let serving_key = KeyPair::generate().unwrap();
        let mut serving =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let serving_pem = serving.signed_by(&serving_key, &issuer).unwrap().pem();
        let admin_key = KeyPair::generate().unwrap();
        let mut admin = CertificateParams::new(Vec::<String>::new()).unwrap();
        admin
            .distinguished_name
            .push(DnType::CommonName, "hardlab-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let admin_pem = admin.signed_by(&admin_key, &issuer).unwrap().pem();
        let service_account_key = KeyPair::generate().unwrap();
        for (name, content) in [
            ("ca.crt", ca_pem.clone()),
            ("apiserver.crt", serving_pem),
            ("apiserver.key", serving_key.serialize_pem()),
            ("sa.key", service_account_key.serialize_pem()),
            ("sa.pub", service_account_key.public_key_pem()),
        ] {
            std::fs::write(dir.path().join(name), content).unwrap();
        }

        let (client_port, peer_port, secure_port) = (free_port(), free_port(), free_port());
        let etcd = supervised(
            &on_path("etcd").unwrap(),
            &[
                format!("--data-dir={}", path("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            ],
            &dir.path().join("etcd.log"),
        );
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{client_port}"),
            format!("--secure-port={secure_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--cert-dir={}", dir.path().display()),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--client-ca-file={}", path("ca.crt")),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            // As kubeadm sets it: privileged pods must be creatable to be judged.
            "--allow-privileged=true".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            // No controller manager creates service account tokens here.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
        ];
        args.extend(extra_flags.iter().map(|flag| (*flag).to_owned()));
        let assets = std::env::var("KUBEBUILDER_ASSETS").unwrap();
        let apiserver = supervised(
            &Path::new(&assets).join("kube-apiserver"),
            &args,
            &dir.path().join("apiserver.log"),
        );
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let url = format!("https://127.0.0.1:{secure_port}");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin}}\n",
            b64(&ca_pem),
            b64(&admin_pem),
            b64(&admin_key.serialize_pem())
        );
        let plane = ControlPlane {
            dir,
            url,
            ca_pem,
            kubeconfig,
            children: vec![etcd, apiserver],
        };
        plane.wait_ready().await;
        plane
    }

    pub async fn config(&self) -> kube::Config {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig).unwrap();
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap()
    }

    /// An admin client; make one per test, since a client belongs to the runtime that made it.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await).unwrap()
    }

    pub async fn endpoint(&self) -> ApiEndpoint {
        ApiEndpoint::from_config(&self.config().await)
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        let client = self.client().await;
        loop {
            let request = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if client.request_text(request).await.is_ok() {
                return;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let log = std::fs::read_to_string(self.dir.path().join("apiserver.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "kube-apiserver was not ready within 90 s:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn resource_of(value: &serde_json::Value) -> (ApiResource, Option<String>) {
    let api_version = value["apiVersion"].as_str().unwrap();
    let kind = value["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Namespace" => "namespaces",
        "Pod" => "pods",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "StatefulSet" => "statefulsets",
        "Job" => "jobs",
        other => panic!("no plural for {other}"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
    (resource, namespace)
}

fn api(client: &kube::Client, value: &serde_json::Value) -> Api<DynamicObject> {
    let (resource, namespace) = resource_of(value);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Creates every document of `yaml`; returns them for [`delete`].
pub async fn create(client: &kube::Client, yaml: &str) -> Vec<serde_json::Value> {
    let mut created = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value =
            serde_json::to_value(serde_yaml::Value::deserialize(document).unwrap()).unwrap();
        let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        api(client, &value)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("creating {value}: {error}"));
        created.push(value);
    }
    created
}

pub async fn delete(client: &kube::Client, objects: &[serde_json::Value]) {
    for value in objects {
        let name = value["metadata"]["name"].as_str().unwrap();
        let _ = api(client, value)
            .delete(name, &DeleteParams::default())
            .await;
    }
}
