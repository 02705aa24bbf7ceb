//! Secrets never reach the logs. Everything the server logs at debug level, its dependencies
//! included, is captured while a person signs up, fails and succeeds to sign in, uses the
//! first-admin setup link, registers a kubeconfig with a bearer token and presses Check against an
//! unreachable cluster; none of those secrets may appear in what was logged.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{TestApp, TestDb};

/// Everything logged by this test binary.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD: &str = "Never-Logged-Pa55word";
const WRONG_PASSWORD: &str = "Also-Never-Logged-W0rong";
const TOKEN: &str = "kubeconfig-bearer-token-never-logged";

#[tokio::test]
async fn passwords_tokens_cookies_and_kubeconfigs_stay_out_of_the_logs() {
    let logs = captured();
    let app = TestApp::start(TestDb::sqlite().await).await;

    // The first-admin link, used once.
    let setup_token = hardlab_server::web::accounts::issue_setup_token(&app.db.pool)
        .await
        .unwrap()
        .unwrap();
    let admin = app.agent();
    let form = admin.get(&format!("/setup?token={setup_token}")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let created = admin
        .post_form(
            "/setup",
            &[
                ("token", setup_token.as_str()),
                ("username", "root"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);

    // A learner: sign up, a wrong password, the right one.
    let learner = app.agent();
    learner.sign_up("alice", PASSWORD).await;
    learner.post_form("/signout", &[]).await;
    // A fresh form, as a browser would load it (the signed-out visitor has a new CSRF token).
    learner.get("/signin").await;
    let refused = learner
        .post_form(
            "/signin",
            &[("username", "alice"), ("password", WRONG_PASSWORD)],
        )
        .await;
    assert_ne!(refused.status, 303);
    learner.get("/signin").await;
    let signed_in = learner
        .post_form("/signin", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    learner.get("/cluster").await;

    // A kubeconfig with a bearer token, and a Check that cannot reach its cluster.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'}}}}]\n\
         users: [{{name: u, user: {{token: {TOKEN}}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
         current-context: x\n"
    );
    let registered = learner
        .post_form("/cluster", &[("kubeconfig", &kubeconfig)])
        .await;
    assert_eq!(registered.status, 303, "{}", registered.body);
    learner
        .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
        .await;
    let page = learner.get("/labs/demo-etcd/steps/encrypt").await;
    assert!(
        page.body.contains("Cannot reach your cluster"),
        "{}",
        page.body
    );

    let session = learner.cookie("hardlab_session").unwrap();
    let csrf = learner.csrf().unwrap();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // The flows above were logged at all (else the capture is broken and the test proves nothing).
    assert!(text.contains("signed up"), "nothing captured:\n{text}");
    assert!(text.contains("step checked"), "{text}");
    for (what, secret) in [
        ("the password", PASSWORD),
        ("the wrong password", WRONG_PASSWORD),
        ("the setup token", setup_token.as_str()),
        ("the kubeconfig's bearer token", TOKEN),
        ("the session cookie", session.as_str()),
        ("the CSRF token", csrf.as_str()),
    ] {
        assert!(!text.contains(secret), "{what} is in the logs:\n{text}");
    }
}
