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
use hardlab_server::config::Config;
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

struct PostgresCleanup {
    admin_url: String,
    name: String,
}

impl PostgresCleanup {
    async fn drop_database(&self) {
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

    async fn postgres() -> Option<(TestDb, PostgresCleanup)> {
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
    clusters: Option<hardlab_server::clusters::app::ClusterArgs>,
    proxy: bool,
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

    /// Learners' clusters on the real Docker engine, as `serve` starts them.
    pub fn clusters(mut self, args: hardlab_server::clusters::app::ClusterArgs) -> Self {
        self.clusters = Some(args);
        self
    }

    /// The access proxy, as `serve` starts it, listening on a free loopback port.
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    pub async fn start(self) -> TestApp {
        let labs = hardlab_server::labs::load(&self.config.labs_dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = self.config;
        config.listen = addr;
        let mut state = AppState::new(self.db.pool.clone(), config, labs);
        if let Some(args) = &self.clusters {
            let clusters = hardlab_server::clusters::app::start(
                state.db.clone(),
                std::sync::Arc::clone(&state.labs),
                args,
                std::sync::Arc::clone(&state.sealer),
            )
            .await
            .unwrap();
            state.clusters = Some(clusters);
        }
        // Beside this test's own key file, not in the shared temp folder, and removed on drop.
        let proxy_checkpoints = self.proxy.then(|| {
            let mut name = state.config.secret_key_file.clone().into_os_string();
            name.push(".audit-checkpoints");
            PathBuf::from(name)
        });
        if let Some(checkpoints) = &proxy_checkpoints {
            let settings = hardlab_server::proxy::service::ProxySettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                audit_checkpoint_file: Some(checkpoints.clone()),
                ..Default::default()
            };
            let proxy = hardlab_server::proxy::web::start(
                state.db.clone(),
                std::sync::Arc::clone(&state.sealer),
                settings,
            )
            .await
            .unwrap();
            state.proxy = Some(proxy);
        }
        let router = hardlab_server::web::app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            state,
            db: self.db,
            server,
            proxy_checkpoints,
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
    /// The access proxy's audit checkpoint file, when the proxy runs.
    pub proxy_checkpoints: Option<PathBuf>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(file) = &self.proxy_checkpoints {
            let _ = std::fs::remove_file(file);
        }
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
            config: Config {
                labs_dir: fixture_labs(),
                static_dir: static_dir(),
                secret_key_file,
                setup_token: false,
                // Tests that need to wait for a restarting API server say so.
                check_patience: std::time::Duration::from_secs(1),
                ..Config::default()
            },
            clusters: None,
            proxy: false,
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
}

impl Agent {
    pub fn new(base_url: &str) -> Agent {
        Agent {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base_url: base_url.to_owned(),
            cookies: Mutex::new(BTreeMap::new()),
            csrf: Mutex::new(None),
        }
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
            .client
            .get(format!("{}{path}", self.base_url))
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
            .client
            .post(format!("{}{path}", self.base_url))
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
