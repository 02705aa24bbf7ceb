//! Shared by the proxy_* tests: the testkit's real etcd + kube-apiserver, a fresh database, and the
//! access proxy in front of the API server with its own impersonating identity.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hardlab_server::db::seal::Sealer;
use hardlab_server::proxy::ca::UserCa;
use hardlab_server::proxy::roles::Role;
use hardlab_server::proxy::service::{ProxyService, ProxySettings};
use hardlab_server::proxy::store;
use hardlab_server::proxy::tenant::Tenant;
use sqlx::AnyPool;

/// Whether the real control plane and kubectl can run here; prints why not, and fails under
/// `CI=true`.
pub fn control_plane_available() -> bool {
    if !hardlab_testkit::require(hardlab_testkit::Component::ControlPlane) {
        return false;
    }
    let has_kubectl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("kubectl").exists());
    if !has_kubectl {
        let strict = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!strict, "CI=true and kubectl is not on PATH");
        eprintln!("skipping: kubectl is not on PATH");
    }
    has_kubectl
}

/// A client identity on the cluster: certificate and key PEM signed by the cluster CA.
pub struct ClusterIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The testkit's real etcd and kube-apiserver, with what the proxy tests need from it close at hand.
pub struct ControlPlane {
    inner: hardlab_testkit::ControlPlane,
    pub server: String,
    pub ca_pem: String,
    pub admin_kubeconfig: PathBuf,
}

impl ControlPlane {
    pub async fn start() -> Self {
        let inner = hardlab_testkit::ControlPlane::builder()
            .start()
            .await
            .unwrap();
        ControlPlane {
            server: inner.server_url(),
            ca_pem: inner.ca_pem().to_owned(),
            admin_kubeconfig: inner.kubeconfig_path().to_owned(),
            inner,
        }
    }

    /// A client certificate for `user` in `groups`, signed by the cluster CA.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> ClusterIdentity {
        let (cert_pem, key_pem) = self.inner.issue_client_cert(user, groups);
        ClusterIdentity { cert_pem, key_pem }
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
            .inner
            .dir()
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
/// Opened as `serve` opens it (`db::connect`: WAL journal, every migration), so the proxy's
/// synchronous audit writes cost here what they cost in production.
pub async fn test_db() -> (AnyPool, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let pool = hardlab_server::db::connect(&url).await.unwrap();
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
    /// The server key lives in `db_dir`, the audit checkpoints next to it.
    pub sealer: Arc<Sealer>,
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
            &Tenant::site(),
            &role("{name: kubernetes-admins, kubernetes_labels: {'*': '*'}, kubernetes_groups: ['system:masters']}"),
        )
        .await
        .unwrap();
        store::put_role(
            &pool,
            &Tenant::site(),
            &role("{name: developer-read, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}"),
        )
        .await
        .unwrap();
        store::set_user_roles(
            &pool,
            &Tenant::site(),
            "alice",
            &["kubernetes-admins".to_owned()],
        )
        .await
        .unwrap();
        store::set_user_roles(
            &pool,
            &Tenant::site(),
            "bob",
            &["developer-read".to_owned()],
        )
        .await
        .unwrap();
        let sealer = Arc::new(Sealer::new(db_dir.path().join("secret.key")));
        let labels = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        store::put_cluster(
            &pool,
            &sealer,
            &Tenant::site(),
            "dev",
            &labels,
            &plane.proxy_identity_kubeconfig(),
        )
        .await
        .unwrap();
        let service = ProxyService::start(
            pool.clone(),
            Arc::clone(&sealer),
            ProxySettings {
                listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
                ..ProxySettings::default()
            },
        )
        .await
        .unwrap();
        Harness {
            plane,
            pool,
            sealer,
            service,
            db_dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Signs a certificate as the server would and, when `ca` is the proxy's own, puts it on
    /// record (the proxy refuses certificates it has no record of). A non-empty `roles` is also
    /// what `user` holds in the database from now on, since the proxy reads roles from there on
    /// every request; the certificate's `O=` is only what it held at login.
    pub fn issue(
        &self,
        ca: &UserCa,
        user: &str,
        roles: &[&str],
        lifetime: time::Duration,
    ) -> (hardlab_server::proxy::ca::IssuedCert, String) {
        self.issue_in(&Tenant::site(), ca, user, roles, lifetime)
    }

    /// [`Self::issue`] in `tenant` (the certificate's record, and the roles, are that tenant's).
    pub fn issue_in(
        &self,
        tenant: &Tenant,
        ca: &UserCa,
        user: &str,
        roles: &[&str],
        lifetime: time::Duration,
    ) -> (hardlab_server::proxy::ca::IssuedCert, String) {
        let tenant = tenant.clone();
        let (key_pem, csr_pem) = hardlab_server::proxy::ca::new_key_and_csr(user).unwrap();
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let issued = ca
            .issue_client_cert(&csr_pem, user, &roles, lifetime)
            .unwrap();
        if ca.cert_pem() == self.service.ca.cert_pem() {
            // Tests call this from inside and outside the runtime.
            let pool = self.pool.clone();
            let record = issued.clone();
            let user = user.to_owned();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        if !roles.is_empty() {
                            store::set_user_roles(&pool, &tenant, &user, &roles)
                                .await
                                .unwrap();
                        }
                        store::record_certificate(&pool, &tenant, &record, &user, &roles, None)
                            .await
                            .unwrap();
                    });
            })
            .join()
            .unwrap();
        }
        (issued, key_pem)
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
        self.user_kubeconfig_in(&Tenant::site(), ca, user, roles, lifetime, cluster)
    }

    /// [`Self::user_kubeconfig`] with a certificate of `tenant`.
    pub fn user_kubeconfig_in(
        &self,
        tenant: &Tenant,
        ca: &UserCa,
        user: &str,
        roles: &[&str],
        lifetime: time::Duration,
        cluster: &str,
    ) -> PathBuf {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let (issued, key_pem) = self.issue_in(tenant, ca, user, roles, lifetime);
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
        let (issued, key_pem) = self.issue(&self.service.ca, user, roles, time::Duration::hours(1));
        let client = self.client_for(&issued, &key_pem);
        let response = client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// An HTTPS client presenting `issued` to the proxy (it keeps its connection alive).
    pub fn client_for(
        &self,
        issued: &hardlab_server::proxy::ca::IssuedCert,
        key_pem: &str,
    ) -> reqwest::Client {
        let identity =
            reqwest::Identity::from_pem(format!("{}{key_pem}", issued.cert_pem).as_bytes())
                .unwrap();
        let ca = reqwest::Certificate::from_pem(self.service.ca.cert_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .build()
            .unwrap()
    }

    /// `https://<proxy>` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.service.listen)
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

    /// The audit events of `user`, oldest first (a request's event is stored before its answer).
    pub fn audit_of(&self, user: &str) -> Vec<hardlab_server::proxy::audit::AuditEvent> {
        self.block_on(async {
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
