//! Accounts on the real app over HTTP: sign-up, sign-in, sessions, CSRF, throttling.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestApp, each_database};

#[tokio::test]
async fn health_and_readiness_answer_without_signing_in() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let agent = app.agent();
        assert_eq!(agent.get("/healthz").await.status, 200);
        assert_eq!(agent.get("/readyz").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_new_learner_signs_up_and_sees_the_lab_list() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let learner = app.learner("alice").await;
        let page = learner.get("/").await;
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("Demo, encrypt Secrets at rest"),
            "{}",
            page.body
        );
        assert!(page.body.contains("alice"));
    })
    .await;
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax_and_secure_when_configured() {
    each_database(|db| async move {
        let app = TestApp::start(db.clone()).await;
        let agent = app.agent();
        agent.get("/signin").await;
        let page = agent
            .post_form(
                "/signup",
                &[
                    ("username", "alice"),
                    ("password", "correct-horse-battery"),
                    ("confirm", "correct-horse-battery"),
                ],
            )
            .await;
        let cookie = page
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("hardlab_session="))
            .unwrap();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");

        let secure = TestApp::builder(db)
            .configure(|c| c.secure_cookies = true)
            .start()
            .await;
        let agent = secure.agent();
        let page = agent
            .post_form(
                "/signin",
                &[("username", "alice"), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(page.status, 303);
        let cookie = page.headers.get("set-cookie").unwrap().to_str().unwrap();
        assert!(cookie.contains("; Secure"), "{cookie}");
    })
    .await;
}

#[tokio::test]
async fn a_forged_or_missing_csrf_token_is_refused_and_changes_nothing() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        for fields in [
            vec![("csrf", "forged-token-123456"), ("kubeconfig", kubeconfig)],
            vec![("kubeconfig", kubeconfig)],
        ] {
            let page = alice.post_form_raw("/cluster", &fields).await;
            assert_eq!(page.status, 403, "{}", page.body);
            assert!(page.body.contains("security token"), "{}", page.body);
        }
        // The anonymous token of another browser is no good for Alice's session either.
        let stranger = app.agent();
        stranger.get("/signin").await;
        let stolen = stranger.cookie("hardlab_csrf").unwrap();
        let page = alice
            .post_form_raw("/cluster", &[("csrf", &stolen), ("kubeconfig", kubeconfig)])
            .await;
        assert_eq!(page.status, 403);
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM static_clusters")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
        // Sign-out without the token does not sign out.
        assert_eq!(alice.post_form_raw("/signout", &[]).await.status, 403);
        assert_eq!(alice.get("/").await.status, 200);
        // A forged sign-in form is refused before the password is even looked at.
        let anonymous = app.agent();
        anonymous.get("/signin").await;
        let page = anonymous
            .post_form_raw(
                "/signin",
                &[
                    ("csrf", "not-the-cookie-value"),
                    ("username", "alice"),
                    ("password", "correct-horse-battery"),
                ],
            )
            .await;
        assert_eq!(page.status, 403);
        assert!(anonymous.cookie("hardlab_session").is_none());
        // With the right token the same form works.
        let page = alice.post_form("/signout", &[]).await;
        assert_eq!(page.status, 303);
    })
    .await;
}

#[tokio::test]
async fn five_wrong_passwords_block_sign_in_with_retry_after_on_every_instance() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        app.learner("alice").await;
        let attacker = app.agent();
        for attempt in 1..=5 {
            let page = attacker
                .post_form(
                    "/signin",
                    &[("username", "alice"), ("password", "wrong-password-guess")],
                )
                .await;
            assert_eq!(page.status, 401, "attempt {attempt}");
            assert!(page.body.contains("Wrong username or password"));
        }
        // Now even the right password waits, and the answer says how long.
        let page = attacker
            .post_form(
                "/signin",
                &[("username", "alice"), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(page.status, 429, "{}", page.body);
        let retry: u64 = page
            .headers
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
        assert!(attacker.cookie("hardlab_session").is_none());

        // The count is in the database: a second instance refuses too.
        let other = app.another_instance().await;
        let elsewhere = other.agent();
        let page = elsewhere
            .post_form(
                "/signin",
                &[("username", "alice"), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(page.status, 429);

        // Once the block has passed, the right password works again.
        sqlx::query("UPDATE sign_in_failures SET blocked_until = 0")
            .execute(&app.db.pool)
            .await
            .unwrap();
        let page = elsewhere
            .post_form(
                "/signin",
                &[("username", "alice"), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
    })
    .await;
}

#[tokio::test]
async fn signing_out_ends_the_session_even_for_a_copied_cookie() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let copied = alice.cookie_header();
        assert_eq!(alice.post_form("/signout", &[]).await.status, 303);
        let replay = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/", app.base_url))
            .header("cookie", copied)
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status().as_u16(), 303);
        // The database keeps a hash of the session token, never the token.
        let (sessions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(sessions, 0);
    })
    .await;
}

#[tokio::test]
async fn the_session_token_is_stored_only_as_a_hash() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let token = alice.cookie("hardlab_session").unwrap();
        let (hash,): (String,) = sqlx::query_as("SELECT token_hash FROM sessions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_ne!(hash, token);
        assert!(!hash.contains(&token));
        let (stored,): (String,) =
            sqlx::query_as("SELECT password_hash FROM users WHERE username = 'alice'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
    })
    .await;
}

#[tokio::test]
async fn the_one_time_setup_token_creates_the_first_admin_once() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let token = hardlab_server::web::accounts::issue_setup_token(&app.db.pool)
            .await
            .unwrap()
            .unwrap();
        let visitor = app.agent();
        assert_eq!(
            visitor.get(&format!("/setup?token={token}")).await.status,
            200
        );
        let page = visitor
            .post_form(
                "/setup",
                &[
                    ("token", &token),
                    ("username", "root"),
                    ("password", "correct-horse-battery"),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        visitor.get("/").await;
        assert_eq!(visitor.get("/admin/users").await.status, 200);
        let again = app.agent();
        let page = again
            .post_form(
                "/setup",
                &[
                    ("token", &token),
                    ("username", "mallory"),
                    ("password", "correct-horse-battery"),
                ],
            )
            .await;
        // The used link says so, in the form's place, when opened and when posted again.
        assert_eq!(page.status, 410);
        assert!(
            page.body.contains("This setup link has been used already"),
            "{}",
            page.body
        );
        let reopened = again.get(&format!("/setup?token={token}")).await;
        assert_eq!(reopened.status, 410);
        assert!(
            reopened.body.contains("data-setup-used"),
            "{}",
            reopened.body
        );
        assert!(
            !reopened.body.contains("name=\"password\""),
            "{}",
            reopened.body
        );
        // With an admin, no new token is issued.
        assert!(
            hardlab_server::web::accounts::issue_setup_token(&app.db.pool)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn sign_up_refuses_short_passwords_taken_names_and_mismatches() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        app.learner("alice").await;
        let agent = app.agent();
        for (name, password, confirm, expected) in [
            ("bob", "short", "short", "at least 10 characters"),
            (
                "alice",
                "correct-horse-battery",
                "correct-horse-battery",
                "is taken",
            ),
            (
                "bob",
                "correct-horse-battery",
                "different-horse-battery",
                "differ",
            ),
            (
                "b",
                "correct-horse-battery",
                "correct-horse-battery",
                "3 to 40 characters",
            ),
        ] {
            let page = agent
                .post_form(
                    "/signup",
                    &[
                        ("username", name),
                        ("password", password),
                        ("confirm", confirm),
                    ],
                )
                .await;
            assert_eq!(page.status, 400, "{name}");
            assert!(page.body.contains(expected), "{name}: {}", page.body);
        }
    })
    .await;
}

#[tokio::test]
async fn admin_create_user_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args([
            "admin",
            "create-user",
            "root",
            "--admin",
            "--database-url",
            &url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct-horse-battery\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("created root (admin)"), "{stdout}");
    let all = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        !all.contains("correct-horse-battery"),
        "the password was echoed: {all}"
    );
    let pool = hardlab_server::db::connect(&url).await.unwrap();
    assert!(
        hardlab_server::web::accounts::admin_exists(&pool)
            .await
            .unwrap()
    );
}
