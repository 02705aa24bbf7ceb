//! The second factor for real, through the app as `serve` builds it (accounts, sessions, CSRF and
//! the access proxy's routes) on SQLite and PostgreSQL: once a user has an authenticator, web
//! sign-in needs its code as `hardlab login` does; replacing or removing it needs its current code
//! (or an admin's reset, which is audited); wrong codes are throttled; enrolment shows a QR code;
//! certificate lifetimes are capped and a huge `--ttl` is a clear 400.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Agent, TestApp, each_database};
use hardlab_server::proxy::{client, totp};
use hardlab_server::web::accounts::{self, Role};

const PASSWORD: &str = "correct-horse-battery";

/// The code for the current time step plus `offset` steps (one step early or late is accepted,
/// and each step works once, so a test that needs several codes uses -1, 0 and +1).
fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    totp::code_for_step(secret, totp::step_at(now) + offset).unwrap()
}

/// A JSON call from a signed-in page: the session cookie and the page's CSRF token.
async fn post_json(
    app: &TestApp,
    agent: &Agent,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    if agent.csrf().is_none() {
        agent.get("/access").await;
    }
    let response = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .header("cookie", agent.cookie_header())
        .header("x-csrf-token", agent.csrf().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Enrols and confirms an authenticator for a signed-in agent; returns the secret.
async fn enrol(app: &TestApp, agent: &Agent) -> String {
    let (status, answer) =
        post_json(app, agent, "/api/proxy/totp/enroll", serde_json::json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let secret = answer["secret"].as_str().unwrap().to_owned();
    let svg = answer["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("<svg") && !svg.contains("<script"), "{svg}");
    let (status, answer) = post_json(
        app,
        agent,
        "/api/proxy/totp/confirm",
        serde_json::json!({ "code": code(&secret, -1) }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    secret
}

async fn sign_in(app: &TestApp, name: &str, code: &str) -> common::Page {
    app.agent()
        .post_form(
            "/signin",
            &[("username", name), ("password", PASSWORD), ("code", code)],
        )
        .await
}

#[tokio::test]
async fn web_sign_in_needs_the_code_once_an_authenticator_is_enrolled() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let sana = app.user_with_role("sana", Role::Learner).await;
        // No second factor yet: the password is enough, and the form says a code comes later.
        let page = sign_in(&app, "sana", "").await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert!(
            app.agent()
                .get("/signin")
                .await
                .body
                .contains("Authenticator code")
        );

        let secret = enrol(&app, &sana).await;
        let without = sign_in(&app, "sana", "").await;
        assert_eq!(without.status, 401);
        assert!(
            without.body.contains("enter its current 6-digit code"),
            "{}",
            without.body
        );
        assert!(
            without
                .headers
                .get("set-cookie")
                .is_none_or(|c| !c.to_str().unwrap().contains("hardlab_session="))
        );
        let wrong = sign_in(&app, "sana", "000000").await;
        assert_eq!(wrong.status, 401);
        assert!(
            wrong.body.contains("Wrong username, password or code."),
            "{}",
            wrong.body
        );
        // One code for both attempts: computed twice, a time step passing between them (a loaded
        // machine) would make the second a new, valid code.
        let current = code(&secret, 0);
        let right = sign_in(&app, "sana", &current).await;
        assert_eq!(right.status, 303, "{}", right.body);
        // The same code a second time: burnt.
        let again = sign_in(&app, "sana", &current).await;
        assert_eq!(again.status, 401);
    })
    .await;
}

#[tokio::test]
async fn hardlab_login_needs_the_code_and_a_wrong_one_has_the_login_forms_words() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let lena = app.user_with_role("lena", Role::Learner).await;
        let secret = enrol(&app, &lena).await;
        let home = tempfile::tempdir().unwrap();
        let refused =
            client::login(home.path(), &app.base_url, "", "lena", PASSWORD, "", None).await;
        let error = refused.unwrap_err().to_string();
        assert!(
            error.contains("wrong user name, password or code"),
            "{error}"
        );
        let profile = client::login(
            home.path(),
            &app.base_url,
            "",
            "lena",
            PASSWORD,
            &code(&secret, 0),
            None,
        )
        .await
        .unwrap();
        assert_eq!(profile.user, "lena");
    })
    .await;
}

#[tokio::test]
async fn replacing_or_removing_the_authenticator_needs_its_current_code() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let rosa = app.user_with_role("rosa", Role::Learner).await;
        let secret = enrol(&app, &rosa).await;
        // A stolen session (or password) alone cannot move the second factor elsewhere.
        let (status, answer) =
            post_json(&app, &rosa, "/api/proxy/totp/enroll", serde_json::json!({})).await;
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("current code"),
            "{answer}"
        );
        let (status, answer) = post_json(
            &app,
            &rosa,
            "/api/proxy/totp/remove",
            serde_json::json!({ "code": "123456" }),
        )
        .await;
        assert_eq!(status, 401, "{answer}");
        // The confirm form's refusal speaks of the code only.
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains("code") && !message.contains("password"),
            "{message}"
        );

        let (status, answer) = post_json(
            &app,
            &rosa,
            "/api/proxy/totp/enroll",
            serde_json::json!({ "code": code(&secret, 0) }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let replacement = answer["secret"].as_str().unwrap().to_owned();
        assert_ne!(replacement, secret);
        let (status, _) = post_json(
            &app,
            &rosa,
            "/api/proxy/totp/confirm",
            serde_json::json!({ "code": code(&replacement, 0) }),
        )
        .await;
        assert_eq!(status, 200);
        let (status, answer) = post_json(
            &app,
            &rosa,
            "/api/proxy/totp/remove",
            serde_json::json!({ "code": code(&replacement, 1) }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            sign_in(&app, "rosa", "").await.status,
            303,
            "password alone again"
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_codes_are_throttled_even_before_the_right_one() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let tom = app.user_with_role("tom", Role::Learner).await;
        let secret = enrol(&app, &tom).await;
        for _ in 0..5 {
            assert_eq!(sign_in(&app, "tom", "000000").await.status, 401);
        }
        let page = sign_in(&app, "tom", &code(&secret, 0)).await;
        assert_eq!(page.status, 429, "{}", page.body);
        assert!(page.headers.get("retry-after").is_some());
        let home = tempfile::tempdir().unwrap();
        let login = client::login(
            home.path(),
            &app.base_url,
            "",
            "tom",
            PASSWORD,
            &code(&secret, 0),
            None,
        )
        .await;
        let error = login.unwrap_err().to_string();
        assert!(
            error.contains("429") && error.contains("too many wrong codes"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn only_an_admin_resets_a_second_factor_and_the_reset_is_audited() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let lost = app.user_with_role("lost", Role::Learner).await;
        enrol(&app, &lost).await;
        let other = app.user_with_role("other", Role::Learner).await;
        let (status, _) = post_json(
            &app,
            &other,
            "/api/proxy/second-factor/reset",
            serde_json::json!({ "user": "lost" }),
        )
        .await;
        assert_eq!(status, 401);
        let admin = app.user_with_role("root", Role::Admin).await;
        let (status, answer) = post_json(
            &app,
            &admin,
            "/api/proxy/second-factor/reset",
            serde_json::json!({ "user": "lost" }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(sign_in(&app, "lost", "").await.status, 303);
        let events = hardlab_server::proxy::audit::list(
            &app.state.db,
            &hardlab_server::proxy::audit::AuditFilter::default(),
        )
        .await
        .unwrap();
        let reset = events
            .iter()
            .find(|e| e.event == "auth.second_factor_reset")
            .unwrap();
        assert_eq!(
            (reset.user.as_str(), reset.resource_name.as_str()),
            ("root", "lost")
        );
    })
    .await;
}

#[tokio::test]
async fn a_huge_ttl_is_a_clear_400_and_a_long_one_is_capped_at_the_sites_12_hours() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let tess = app.user_with_role("tess", Role::Learner).await;
        let secret = enrol(&app, &tess).await;
        let home = tempfile::tempdir().unwrap();
        for ttl in ["99999999999999999h", "9223372036854775807d", "forever"] {
            let result = client::login(
                home.path(),
                &app.base_url,
                "",
                "tess",
                PASSWORD,
                &code(&secret, 0),
                Some(ttl.to_owned()),
            )
            .await;
            let error = result.unwrap_err().to_string();
            assert!(
                error.contains("400") && error.contains("ttl"),
                "{ttl}: {error}"
            );
        }
        let profile = client::login(
            home.path(),
            &app.base_url,
            "",
            "tess",
            PASSWORD,
            &code(&secret, 1),
            Some("1000h".to_owned()),
        )
        .await
        .unwrap();
        let not_after = time::OffsetDateTime::parse(
            &profile.not_after,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let lifetime = not_after - time::OffsetDateTime::now_utc();
        assert!(
            lifetime <= time::Duration::hours(12) && lifetime > time::Duration::hours(11),
            "{lifetime}"
        );
        // The password check behind hardlab login is the accounts' one.
        assert!(
            accounts::check_password(&app.state.db, "tess", PASSWORD)
                .await
                .unwrap()
        );
    })
    .await;
}

/// Every JSON route of the proxy that changes something, with a body it would accept.
const PROXY_ACTIONS: &[(&str, &str)] = &[
    ("/api/proxy/totp/enroll", "{}"),
    ("/api/proxy/totp/confirm", r#"{"code":"123456"}"#),
    ("/api/proxy/totp/remove", r#"{"code":"123456"}"#),
    ("/api/proxy/webauthn/step-up", "{}"),
    ("/api/proxy/webauthn/register/start", r#"{"name":"key"}"#),
    (
        "/api/proxy/webauthn/register/finish",
        r#"{"credential":{}}"#,
    ),
    ("/api/proxy/webauthn/remove", r#"{"credential_id":"x"}"#),
    ("/api/proxy/second-factor/reset", r#"{"user":"victim"}"#),
    ("/api/proxy/certificates/revoke", r#"{"user":"victim"}"#),
    ("/api/proxy/config", r#"{"yaml":"roles: []"}"#),
];

#[tokio::test]
async fn the_proxy_routes_refuse_anonymous_visitors_missing_csrf_tokens_and_learners_acting_on_others()
 {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let victim = app.user_with_role("victim", Role::Learner).await;
        enrol(&app, &victim).await;
        let mallory = app.user_with_role("mallory", Role::Learner).await;
        mallory.get("/access").await;
        let http = reqwest::Client::new();
        for (path, body) in PROXY_ACTIONS {
            let anonymous = http
                .post(format!("{}{path}", app.base_url))
                .header("content-type", "application/json")
                .body(*body)
                .send()
                .await
                .unwrap();
            assert!(
                [401, 403].contains(&anonymous.status().as_u16()),
                "anonymous {path}: {}",
                anonymous.status()
            );
            let without_csrf = http
                .post(format!("{}{path}", app.base_url))
                .header("cookie", mallory.cookie_header())
                .header("content-type", "application/json")
                .body(*body)
                .send()
                .await
                .unwrap();
            assert_eq!(without_csrf.status().as_u16(), 403, "no CSRF token {path}");
        }
        // Signed in with the token, mallory still cannot touch the victim's account.
        for path in [
            "/api/proxy/second-factor/reset",
            "/api/proxy/certificates/revoke",
        ] {
            let (status, answer) = post_json(
                &app,
                &mallory,
                path,
                serde_json::json!({ "user": "victim" }),
            )
            .await;
            assert_eq!(status, 401, "{path}: {answer}");
        }
        for page in [
            "/access",
            "/access/audit",
            "/access/audit.jsonl",
            "/access/sessions",
        ] {
            let response = app.agent().get(page).await;
            assert!(
                [303, 401].contains(&response.status),
                "anonymous {page}: {}",
                response.status
            );
        }
        assert_eq!(
            sign_in(&app, "victim", "").await.status,
            401,
            "victim still has the factor"
        );
    })
    .await;
}
