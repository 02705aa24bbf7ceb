//! Test support for the web app: a fresh database per test (SQLite always, PostgreSQL too when
//! `HARDLAB_TEST_POSTGRES_URL` is set), the app served on 127.0.0.1:0, and an HTTP agent that
//! keeps cookies and fills in the CSRF token like a browser would.
//!
//! Use from any test file in server/tests:
//!
//! ```ignore
//! mod common;
//! use common::{TestApp, each_database};
//!
//! #[tokio::test]
//! async fn something_works_on_both_databases() {
//!     each_database(|db| async move {
//!         let app = TestApp::start(db).await;          // fixture labs, fresh DB
//!         let learner = app.learner("alice").await;    // signed-up, signed-in agent
//!         let page = learner.get("/").await;
//!         assert_eq!(page.status, 200);
//!     }).await;
//! }
//! ```
//!
//! `each_database` runs the closure once on a new SQLite file and, when the variable is set, once
//! on a new PostgreSQL database named `hardlab_test_<random>`, dropped afterwards even when the
//! test panics. Under `CI=true` a missing PostgreSQL fails the test instead of skipping it.
//! `TestApp::builder(db)` changes the labs folder or the configuration before start;
//! `app.state` gives direct access to the pool, labs and metrics.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::FutureExt;
use hardlab_server::config::{ClusterSettings, Config, ProxyConfig};
use hardlab_server::web::AppState;
use sqlx::AnyPool;

pub mod webdriver;

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints why a test cannot run here, or fails under `CI=true`.
pub fn skip(reason: &str) {
    assert!(!ci(), "CI=true and this test cannot run: {reason}");
    eprintln!("skipping: {reason}");
}

pub fn fixture_labs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/labs")
}

/// Learners' clusters as tests run them: the unprivileged test node image, and a label value of
/// the test's own, so start-up adoption and orphan removal touch no other test's nodes.
pub fn test_cluster_settings() -> ClusterSettings {
    ClusterSettings {
        // A node image with binaries of one's own (docker/testnode/build.sh under another tag).
        node_image: std::env::var("HARDLAB_TEST_NODE_IMAGE")
            .unwrap_or_else(|_| "hardlab/testnode:latest".to_owned()),
        node_unprivileged: true,
        node_memory_mb: 1024,
        docker_instance: Some(format!("test-{}", hardlab_server::clusters::random_name())),
        ..ClusterSettings::default()
    }
}

pub fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../static")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// A database of one test; keep it alive as long as the test uses it. Clones share it.
#[derive(Clone)]
pub struct TestDb {
    pub kind: DbKind,
    pub url: String,
    pub pool: AnyPool,
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
}

pub struct PostgresCleanup {
    admin_url: String,
    name: String,
}

impl PostgresCleanup {
    pub async fn drop_database(&self) {
        let admin = AnyPool::connect(&self.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

impl TestDb {
    /// A new SQLite file in a temporary folder, migrated.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hardlab.db").display());
        let pool = hardlab_server::db::connect(&url).await.unwrap();
        TestDb {
            kind: DbKind::Sqlite,
            url,
            pool,
            _dir: Some(std::sync::Arc::new(dir)),
        }
    }

    pub async fn postgres() -> Option<(TestDb, PostgresCleanup)> {
        let Ok(admin_url) = std::env::var("HARDLAB_TEST_POSTGRES_URL") else {
            skip(
                "HARDLAB_TEST_POSTGRES_URL is not set; the PostgreSQL half of this test is skipped",
            );
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!(
            "hardlab_test_{}",
            hardlab_server::db::random_id()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
        );
        let admin = AnyPool::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) if server.contains("://") && !server.ends_with('/') => {
                format!("{server}/{name}")
            }
            _ => format!("{}/{name}", admin_url.trim_end_matches('/')),
        };
        let pool = hardlab_server::db::connect(&url).await.unwrap();
        Some((
            TestDb {
                kind: DbKind::Postgres,
                url,
                pool,
                _dir: None,
            },
            PostgresCleanup { admin_url, name },
        ))
    }
}

/// Runs `test` on SQLite, then on PostgreSQL when available (see the module docs).
pub async fn each_database<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    test(TestDb::sqlite().await).await;
    if let Some((db, cleanup)) = TestDb::postgres().await {
        let outcome = std::panic::AssertUnwindSafe(test(db)).catch_unwind().await;
        cleanup.drop_database().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

pub struct TestAppBuilder {
    db: TestDb,
    config: Config,
    for_nodes: bool,
}

/// The host's address on Docker's default bridge: where a node reaches its host whatever its
/// own network (the host never dials a node's address; the node dials this one).
pub fn docker_host_gateway() -> String {
    let output = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}} {{(index .IPAM.Config 0).Subnet}}",
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // Older engines leave Gateway empty: the bridge then has the subnet's first address.
    let (gateway, subnet) = answer.split_once(' ').unwrap_or(("", answer.as_str()));
    if !gateway.is_empty() {
        return gateway.to_owned();
    }
    let network: std::net::Ipv4Addr = subnet
        .split('/')
        .next()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("docker's bridge: no gateway or subnet in {answer:?}"));
    std::net::Ipv4Addr::from(u32::from(network) + 1).to_string()
}

impl TestAppBuilder {
    pub fn labs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.labs_dir = dir.into();
        self
    }

    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// These cluster settings instead of the tests' defaults (the test node image, a label of the
    /// test's own).
    pub fn clusters(mut self, settings: ClusterSettings) -> Self {
        self.config.clusters = Some(settings);
        self
    }

    /// The web app and the access proxy reachable from learners' nodes, as a deployment's are:
    /// both listen on every address (tests otherwise use loopback only) and the public URLs name
    /// the host's address on Docker's bridge. Host-side agents still use 127.0.0.1.
    pub fn reachable_from_nodes(mut self) -> Self {
        self.for_nodes = true;
        self
    }

    /// Through the app builder `hardlab serve` uses (`hardlab_server::app`): what `serve` wires,
    /// the test gets, on a free loopback port.
    pub async fn start(self) -> TestApp {
        let bind = if self.for_nodes {
            "0.0.0.0:0"
        } else {
            "127.0.0.1:0"
        };
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut config = self.config;
        config.listen = listener.local_addr().unwrap();
        if self.for_nodes {
            let gateway = docker_host_gateway();
            config.public_url = Some(format!("http://{gateway}:{port}"));
            // A port picked now, so the proxy's public URL can name it.
            let proxy_port = std::net::TcpListener::bind("0.0.0.0:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            config.proxy.listen = SocketAddr::from(([0, 0, 0, 0], proxy_port));
            config.proxy.public_url = Some(format!("https://{gateway}:{proxy_port}"));
        }
        let state = hardlab_server::app::build(config, self.db.pool.clone())
            .await
            .unwrap();
        let server = tokio::spawn(hardlab_server::app::serve(
            state.clone(),
            listener,
            std::future::pending(),
        ));
        let server = tokio::spawn(async move {
            if let Ok(Err(error)) = server.await {
                panic!("the test app stopped: {error}");
            }
        });
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            state,
            db: self.db,
            server,
        }
    }
}

/// The app served on a free loopback port with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub state: AppState,
    pub db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        // The access proxy's audit checkpoints, written next to this test's key file.
        let _ = std::fs::remove_file(hardlab_server::proxy::audit::checkpoint_file_for(
            &self.state.config.secret_key_file,
        ));
    }
}

impl TestApp {
    pub fn builder(db: TestDb) -> TestAppBuilder {
        let secret_key_file = std::env::temp_dir().join(format!(
            "hardlab-test-key-{}",
            hardlab_server::db::random_id()
        ));
        TestAppBuilder {
            db,
            for_nodes: false,
            config: Config {
                labs_dir: fixture_labs(),
                static_dir: static_dir(),
                secret_key_file,
                setup_token: false,
                // Tests that need to wait for a restarting API server say so.
                check_patience: std::time::Duration::from_secs(1),
                // Most tests sign learners up freely; tests of the sign-up modes set their own.
                signup: hardlab_server::web::signup::SignupMode::Open,
                // Every test API server listens on loopback; the tests of the address rules
                // turn this off again.
                allow_private_cluster_addresses: true,
                clusters: Some(test_cluster_settings()),
                // A port of its own for every test app's access proxy.
                proxy: ProxyConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..ProxyConfig::default()
                },
                ..Config::default()
            },
        }
    }

    /// Fixture labs, default configuration.
    pub async fn start(db: TestDb) -> TestApp {
        Self::builder(db).start().await
    }

    /// A second server on the same database, as when several instances run behind a balancer.
    pub async fn another_instance(&self) -> TestApp {
        TestApp::builder(self.db.clone())
            .configure(|c| {
                c.labs_dir = self.state.config.labs_dir.clone();
                c.secret_key_file = self.state.config.secret_key_file.clone();
            })
            .start()
            .await
    }

    pub fn agent(&self) -> Agent {
        Agent::new(&self.base_url)
    }

    /// An agent whose connections come from another loopback address (127.0.0.0/8 is all local
    /// on Linux), as a second client machine would.
    pub fn agent_from(&self, address: std::net::IpAddr) -> Agent {
        Agent::from_address(&self.base_url, address)
    }

    /// A new learner account, signed in through the sign-up form.
    pub async fn learner(&self, name: &str) -> Agent {
        let agent = self.agent();
        agent.sign_up(name, "correct-horse-battery").await;
        agent
    }

    /// An account with this role, created directly in the database, then signed in by form.
    pub async fn user_with_role(
        &self,
        name: &str,
        role: hardlab_server::web::accounts::Role,
    ) -> Agent {
        hardlab_server::web::accounts::create_user(
            &self.db.pool,
            name,
            "correct-horse-battery",
            role,
        )
        .await
        .unwrap();
        let agent = self.agent();
        let page = agent
            .post_form(
                "/signin",
                &[("username", name), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(page.status, 303, "sign-in of {name}: {}", page.body);
        agent.get("/").await;
        agent
    }

    pub async fn user_id(&self, name: &str) -> String {
        let (id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
            .bind(name)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
        id
    }
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// An HTTP client that behaves like a browser for forms: keeps cookies, never follows redirects
/// on its own (tests look at them), and sends the CSRF token of the last page it saw.
pub struct Agent {
    client: reqwest::Client,
    base_url: String,
    cookies: Mutex<BTreeMap<String, String>>,
    csrf: Mutex<Option<String>>,
    /// Sent with every request (e.g. `X-Forwarded-For` as a reverse proxy would add it).
    extra_headers: Mutex<Vec<(String, String)>>,
}

impl Agent {
    pub fn new(base_url: &str) -> Agent {
        Self::with_client(
            base_url,
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
        )
    }

    /// Connections from this local source address.
    pub fn from_address(base_url: &str, address: std::net::IpAddr) -> Agent {
        Self::with_client(
            base_url,
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(address),
        )
    }

    fn with_client(base_url: &str, builder: reqwest::ClientBuilder) -> Agent {
        Agent {
            client: builder.build().unwrap(),
            base_url: base_url.to_owned(),
            cookies: Mutex::new(BTreeMap::new()),
            csrf: Mutex::new(None),
            extra_headers: Mutex::new(Vec::new()),
        }
    }

    /// Sends this header (replacing an earlier value of the same name) with every request.
    pub fn set_header(&self, name: &str, value: &str) {
        let mut headers = self.extra_headers.lock().unwrap();
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_owned(), value.to_owned()));
    }

    fn with_extra_headers(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in self.extra_headers.lock().unwrap().iter() {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn csrf(&self) -> Option<String> {
        self.csrf.lock().unwrap().clone()
    }

    async fn finish(&self, response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all(reqwest::header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                let mut cookies = self.cookies.lock().unwrap();
                if value.is_empty() || text.contains("Max-Age=0") {
                    cookies.remove(name);
                } else {
                    cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let body = response.text().await.unwrap();
        if let Some(token) = body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            *self.csrf.lock().unwrap() = Some(token.to_owned());
        }
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .with_extra_headers(self.client.get(format!("{}{path}", self.base_url)))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    /// Posts a form with the CSRF token of the last page (fetching `/signin` first when none).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        if self.csrf().is_none() {
            self.get("/signin").await;
        }
        let token = self.csrf().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_form_raw(path, &all).await
    }

    /// Posts exactly these fields (no CSRF token added).
    pub async fn post_form_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .with_extra_headers(self.client.post(format!("{}{path}", self.base_url)))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(
                fields
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}={}",
                            form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>(),
                            form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    pub async fn sign_up(&self, name: &str, password: &str) {
        let page = self
            .post_form(
                "/signup",
                &[
                    ("username", name),
                    ("password", password),
                    ("confirm", password),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "sign-up of {name}: {}", page.body);
        // Load a page so the session's CSRF token replaces the anonymous one.
        self.get("/").await;
    }
}
