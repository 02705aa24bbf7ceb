//! Shared by the proxy_* tests: a real etcd + kube-apiserver (from `KUBEBUILDER_ASSETS`), a fresh
//! database, and the access proxy in front of the API server with its own impersonating identity.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hardlab_server::proxy::ca::UserCa;
use hardlab_server::proxy::roles::Role;
use hardlab_server::proxy::service::{ProxyService, ProxySettings};
use hardlab_server::proxy::store;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sqlx::AnyPool;

/// Whether the real control plane can run here; prints why not, and fails under `CI=true`.
pub fn control_plane_available() -> bool {
    let strict = std::env::var("CI").is_ok_and(|v| v == "true");
    let why = match std::env::var("KUBEBUILDER_ASSETS") {
        Err(_) => Some("KUBEBUILDER_ASSETS is not set (source .ci/env)".to_owned()),
        Ok(dir) if !Path::new(&dir).join("kube-apiserver").exists() => {
            Some(format!("{dir}/kube-apiserver does not exist"))
        }
        Ok(_) if which("etcd").is_none() => Some("etcd is not on PATH".to_owned()),
        Ok(_) if which("kubectl").is_none() => Some("kubectl is not on PATH".to_owned()),
        Ok(_) => None,
    };
    if let Some(why) = why {
        assert!(!strict, "CI=true and the control plane cannot run: {why}");
        eprintln!("skipping: {why}");
        return false;
    }
    true
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.exists())
}

/// Starts `program` under a shell that kills it when our end of its stdin closes, so the
/// control plane dies with the test process even when no destructor runs (a shared static).
fn spawn_supervised(program: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg("\"$@\" & child=$!; read _; kill $child; wait $child")
        .arg("sh")
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

/// A client identity on the cluster: certificate and key PEM signed by the cluster CA.
pub struct ClusterIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A real etcd and kube-apiserver; both are killed on drop.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub server: String,
    pub ca_pem: String,
    ca_cert: String,
    ca_key: KeyPair,
    processes: Vec<Child>,
    pub admin_kubeconfig: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in &mut self.processes {
            // Closing the shell's stdin makes it stop its program and wait for it.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl ControlPlane {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test cluster CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();

        let serving_key = KeyPair::generate().unwrap();
        let mut serving =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();
        std::fs::write(dir.path().join("apiserver.crt"), serving_cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("apiserver.key"),
            serving_key.serialize_pem(),
        )
        .unwrap();
        let sa_key = KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("sa.key"), sa_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("sa.pub"), sa_key.public_key_pem()).unwrap();

        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd_args = vec![
            format!("--data-dir={}", dir.path().join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
        ];
        let etcd = spawn_supervised(
            &which("etcd").unwrap(),
            &etcd_args,
            &dir.path().join("etcd.log"),
        );
        let secure_port = free_port();
        let assets = std::env::var("KUBEBUILDER_ASSETS").unwrap();
        let d = |name: &str| dir.path().join(name).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--secure-port={secure_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--insecure-port=0".to_owned(),
            format!("--cert-dir={}", dir.path().display()),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
        ];
        let apiserver = spawn_supervised(
            &Path::new(&assets).join("kube-apiserver"),
            &apiserver_args,
            &dir.path().join("apiserver.log"),
        );
        let mut plane = ControlPlane {
            server: format!("https://127.0.0.1:{secure_port}"),
            ca_pem,
            ca_cert: ca_cert.pem(),
            ca_key,
            processes: vec![etcd, apiserver],
            admin_kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
        };
        let admin = plane.issue_client_cert("admin", &["system:masters"]);
        let text = plane.kubeconfig_for(&admin);
        std::fs::write(&plane.admin_kubeconfig, text).unwrap();
        plane.wait_ready();
        plane
    }

    /// A client certificate for `user` in (at most one) group, signed by the cluster CA.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> ClusterIdentity {
        assert!(groups.len() <= 1, "rcgen writes one O per subject");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = groups.first() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert, &self.ca_key).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        ClusterIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn kubeconfig_for(&self, identity: &ClusterIdentity) -> String {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: me\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: me\ncurrent-context: test\n",
            self.server,
            b64(&self.ca_pem),
            b64(&identity.cert_pem),
            b64(&identity.key_pem)
        )
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            let output = self.kubectl_admin(&["get", "--raw", "/readyz"]);
            if output.status.success() {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.path().join("apiserver.log"))
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!("the API server did not become ready in 60 s:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn kubectl_admin(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// Applies YAML as the admin.
    pub fn apply(&self, yaml: &str) {
        let path = self
            .dir
            .path()
            .join(format!("apply-{}.yaml", rand::random::<u32>()));
        std::fs::write(&path, yaml).unwrap();
        let output = self.kubectl_admin(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The proxy's own identity: may impersonate users and groups, and nothing else.
    pub fn proxy_identity_kubeconfig(&self) -> String {
        self.apply(PROXY_RBAC);
        let identity = self.issue_client_cert("hardlab-proxy", &[]);
        self.kubeconfig_for(&identity)
    }
}

pub const PROXY_RBAC: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: hardlab-proxy-impersonator}
rules:
- apiGroups: [\"\"]
  resources: [users, groups]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: hardlab-proxy-impersonator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hardlab-proxy-impersonator}
subjects:
- {kind: User, name: hardlab-proxy, apiGroup: rbac.authorization.k8s.io}
";

/// The talk's developer-read Role and RoleBinding, in `default`.
pub const DEV_READ_RBAC: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev-read, namespace: default}
rules:
- apiGroups: [\"\"]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-read-binding, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev-read}
subjects:
- {kind: Group, name: developer-read, apiGroup: rbac.authorization.k8s.io}
";

/// A fresh SQLite database with every migration applied; keep the directory alive.
pub async fn test_db() -> (AnyPool, tempfile::TempDir) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let pool = AnyPool::connect(&url).await.unwrap();
    sqlx::migrate!("../migrations").run(&pool).await.unwrap();
    (pool, dir)
}

pub fn role(yaml: &str) -> Role {
    serde_yaml::from_str(yaml).unwrap()
}

/// The proxy on a free port in front of `plane`, registered as cluster `dev` (env: dev), with
/// the talk's roles: kubernetes-admins (system:masters) for alice, developer-read for bob.
pub struct Harness {
    pub plane: ControlPlane,
    pub pool: AnyPool,
    pub service: Arc<ProxyService>,
    pub db_dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        let plane = ControlPlane::start().await;
        plane.apply(DEV_READ_RBAC);
        let (pool, db_dir) = test_db().await;
        store::put_role(
            &pool,
            &role("{name: kubernetes-admins, kubernetes_labels: {'*': '*'}, kubernetes_groups: ['system:masters']}"),
        )
        .await
        .unwrap();
        store::put_role(
            &pool,
            &role("{name: developer-read, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}"),
        )
        .await
        .unwrap();
        store::set_user_roles(&pool, "alice", &["kubernetes-admins".to_owned()])
            .await
            .unwrap();
        store::set_user_roles(&pool, "bob", &["developer-read".to_owned()])
            .await
            .unwrap();
        let labels = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        store::put_cluster(&pool, "dev", &labels, &plane.proxy_identity_kubeconfig())
            .await
            .unwrap();
        let service = ProxyService::start(
            pool.clone(),
            ProxySettings {
                listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
                public_url: None,
                config_file: None,
            },
        )
        .await
        .unwrap();
        Harness {
            plane,
            pool,
            service,
            db_dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A kubeconfig reaching cluster `cluster` through the proxy with a certificate for `user`
    /// holding `roles`, issued by `ca` (the proxy's user CA unless a test forges another).
    pub fn user_kubeconfig(
        &self,
        ca: &UserCa,
        user: &str,
        roles: &[&str],
        lifetime: time::Duration,
        cluster: &str,
    ) -> PathBuf {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let (key_pem, csr_pem) = hardlab_server::proxy::ca::new_key_and_csr(user).unwrap();
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let issued = ca
            .issue_client_cert(&csr_pem, user, &roles, lifetime)
            .unwrap();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: https://{}/k8s/{cluster}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: p\n  context:\n    cluster: p\n    user: u\n    namespace: default\ncurrent-context: p\n",
            self.service.listen,
            b64(self.service.ca.cert_pem()),
            b64(&issued.cert_pem),
            b64(&key_pem)
        );
        let path = self
            .home
            .path()
            .join(format!("{user}-{}.kubeconfig", rand::random::<u32>()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A raw HTTPS GET through the proxy with a fresh certificate for `user` holding `roles`.
    pub async fn raw_get(&self, user: &str, roles: &[&str], path: &str) -> (u16, String) {
        let (key_pem, csr_pem) = hardlab_server::proxy::ca::new_key_and_csr(user).unwrap();
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let issued = self
            .service
            .ca
            .issue_client_cert(&csr_pem, user, &roles, time::Duration::hours(1))
            .unwrap();
        let identity =
            reqwest::Identity::from_pem(format!("{}{key_pem}", issued.cert_pem).as_bytes())
                .unwrap();
        let ca = reqwest::Certificate::from_pem(self.service.ca.cert_pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .build()
            .unwrap();
        let response = client
            .get(format!("https://{}{path}", self.service.listen))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn admin_client(&self) -> kube::Client {
        let text = std::fs::read_to_string(&self.plane.admin_kubeconfig).unwrap();
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", self.home.path())
            .output()
            .unwrap()
    }
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One control plane and proxy for every test in a binary: starting an API server takes seconds,
/// and each test works as its own users in its own names. The proxy runs on this runtime, which
/// outlives the tests; they reach it with `block_on` from their own threads.
pub struct Shared {
    pub runtime: tokio::runtime::Runtime,
    pub harness: Harness,
}

static SHARED: std::sync::OnceLock<Option<Shared>> = std::sync::OnceLock::new();

/// The shared harness, or `None` (after printing why) where the control plane cannot run.
pub fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| {
            if !control_plane_available() {
                return None;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let harness = runtime.block_on(Harness::start());
            Some(Shared { runtime, harness })
        })
        .as_ref()
}

impl Shared {
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The audit events of `user`, oldest first, once the writer has caught up.
    pub fn audit_of(&self, user: &str) -> Vec<hardlab_server::proxy::audit::AuditEvent> {
        self.block_on(async {
            self.harness.service.kube.audit().flush().await;
            let mut events = hardlab_server::proxy::audit::list(
                &self.harness.pool,
                &hardlab_server::proxy::audit::AuditFilter {
                    user: user.to_owned(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            events.reverse();
            events
        })
    }
}
