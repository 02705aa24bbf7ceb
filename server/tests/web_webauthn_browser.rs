//! Security keys in real headless Chromium with WebDriver's virtual authenticator (CTAP2, no
//! person needed), through the app as `serve` builds it (sessions, CSRF, the proxy's routes) on
//! SQLite and PostgreSQL: a learner adds a key on the Access page, signs out, signs in with
//! password and key; the password alone opens no session, a forged or replayed answer is
//! refused, a key that is not registered is refused; adding or removing a factor without the
//! current one is refused; `hardlab login` refuses an account whose only factor is a key; each
//! step is in the audit log. The browser goes to `localhost` (browsers refuse WebAuthn on an IP
//! address; without a public URL the server's relying party is localhost on any port).
//! Screenshots go to target/screenshots/.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{TestApp, each_database};
use hardlab_testkit::{Component, require};
use serde_json::json;

const PASSWORD: &str = "correct-horse-battery";
const WAIT: Duration = Duration::from_secs(20);

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn authenticator() -> serde_json::Value {
    json!({
        "protocol": "ctap2",
        "transport": "usb",
        "hasResidentKey": true,
        "hasUserVerification": true,
        "isUserVerified": true,
    })
}

async fn shot(browser: &Browser, name: &str) {
    browser
        .full_page_screenshot(&screenshots().join(name), 1280)
        .await;
    browser.resize(1280, 900).await;
}

/// Waits until the page's text contains `wanted`.
async fn wait_for_text(browser: &Browser, wanted: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = browser.text_of_page().await;
        if text.contains(wanted) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{wanted:?} did not appear:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sign_in_form(browser: &Browser, base: &str, name: &str) {
    browser.goto(&format!("{base}/signin")).await;
    browser.type_into("#username", name).await;
    browser.type_into("#password", PASSWORD).await;
    browser
        .click("form[action='/signin'] button[type=submit]")
        .await;
}

/// A JSON call made by the Access page's own script (its session cookie and CSRF token):
/// `"ok"` or the server's refusal.
async fn page_call(browser: &Browser, path: &str, body: serde_json::Value) -> String {
    browser
        .script(&format!(
            "return window.hardlabWebauthn.postJson({path:?}, {body}).then(() => 'ok', e => e.message);"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The site's audit events about `user`, as stored (canonical JSON).
async fn audit_events(app: &TestApp, user: &str) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT event_json FROM proxy_audit WHERE user_name = $1 ORDER BY seq")
            .bind(user)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    rows.into_iter().map(|(json,)| json).collect()
}

#[tokio::test]
async fn a_security_key_enrolled_in_chromium_is_required_at_sign_in_and_guards_the_factors() {
    if !require(Component::Chromium) {
        return;
    }
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        // WebAuthn needs a host name: the same server through localhost.
        let base = app.base_url.replace("127.0.0.1", "localhost");
        app.learner("ada").await;
        let browser = Browser::start().await;
        let key = browser.add_virtual_authenticator(authenticator()).await;

        // Password alone while there is no second factor; then a key on the Access page.
        sign_in_form(&browser, &base, "ada").await;
        browser.wait_for("form[action='/signout']", WAIT).await;
        browser.goto(&format!("{base}/access")).await;
        browser.type_into("#key-name", "yubikey").await;
        browser.click("[data-action=add-key]").await;
        wait_for_text(&browser, "Remove").await;
        browser.wait_for(".key-name", WAIT).await;
        assert_eq!(browser.text(".key-name").await.trim(), "yubikey");
        shot(&browser, "webauthn-access-key-added-1280.png").await;
        let held = browser.virtual_credentials(&key).await;
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0]["rpId"], "localhost");
        let (stored,): (String,) = sqlx::query_as(
            "SELECT credential_json FROM proxy_webauthn_keys WHERE user_name = 'ada'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        // Public data only: no private key leaves the authenticator.
        assert!(!stored.contains("PRIVATE KEY"), "{stored}");

        // Re-enrolment and removal without the current factor: refused, nothing changed.
        let refused =
            page_call(&browser, "/api/proxy/webauthn/register/start", json!({"name": "second"}))
                .await;
        assert!(refused.contains("prove you still hold it"), "{refused}");
        let refused = page_call(&browser, "/api/proxy/totp/enroll", json!({})).await;
        assert!(refused.contains("prove you still hold it"), "{refused}");
        let credential_id: String = browser
            .script("return document.querySelector('[data-action=remove-key]').dataset.credential;")
            .await
            .as_str()
            .unwrap()
            .to_owned();
        let refused = page_call(
            &browser,
            "/api/proxy/webauthn/remove",
            json!({"credential_id": credential_id, "code": "123456"}),
        )
        .await;
        assert!(refused.contains("prove you still hold it"), "{refused}");
        // With the key's answer to a step-up challenge it is accepted, once: the same answer
        // again finds no challenge waiting.
        let replay = browser
            .script(
                "const w = window.hardlabWebauthn;
                 return w.postJson('/api/proxy/webauthn/step-up', {})
                   .then(options => w.get(options))
                   .then(assertion => w.postJson('/api/proxy/webauthn/register/start', {name: 'second', assertion})
                     .then(() => w.postJson('/api/proxy/webauthn/register/start', {name: 'third', assertion}))
                     .then(() => 'replay accepted', e => 'first ok, replay: ' + e.message));",
            )
            .await;
        let replay = replay.as_str().unwrap_or_default();
        assert!(
            replay.starts_with("first ok, replay: ") && replay.contains("no security key challenge is waiting"),
            "{replay}"
        );
        let (keys,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM proxy_webauthn_keys WHERE user_name = 'ada'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(keys, 1);

        // Another learner, signed in with the CSRF token, cannot remove ada's key.
        let mallory = app.learner("mallory").await;
        mallory.get("/access").await;
        let removal = reqwest::Client::new()
            .post(format!("{}/api/proxy/webauthn/remove", app.base_url))
            .header("cookie", mallory.cookie_header())
            .header("x-csrf-token", mallory.csrf().unwrap())
            .json(&json!({"credential_id": credential_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(removal.status(), 404);
        let (keys,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM proxy_webauthn_keys WHERE user_name = 'ada'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(keys, 1, "still there");

        // Sign out; the password alone now leads to the key step, not into the site.
        browser.click("form[action='/signout'] button").await;
        browser.wait_for("a[href^='/signin']", WAIT).await;
        let agent = app.agent();
        let page = agent
            .post_form("/signin", &[("username", "ada"), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Sign in: security key"), "{}", page.body);
        assert!(agent.cookie("hardlab_session").is_none());
        assert_eq!(agent.get("/access").await.status, 303);
        // A made-up answer to that challenge: refused, and no session.
        let forged = reqwest::Client::new()
            .post(format!("{}/signin/key", app.base_url))
            .header("cookie", agent.cookie_header())
            .header("x-csrf-token", agent.csrf().unwrap())
            .json(&json!({"credential": {
                "id": "AAAA", "rawId": "AAAA", "type": "public-key",
                "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);
        assert!(forged.headers().get_all("set-cookie").iter().all(|c| {
            !c.to_str().unwrap().starts_with("hardlab_session=")
        }));
        // A code instead of the key, for an account without an authenticator app: refused.
        let page = agent
            .post_form(
                "/signin",
                &[("username", "ada"), ("password", PASSWORD), ("code", "123456")],
            )
            .await;
        assert_eq!(page.status, 401, "{}", page.body);

        // Password and key in the browser: signed in.
        sign_in_form(&browser, &base, "ada").await;
        browser.wait_for("form[action='/signout']", WAIT).await;
        let url = browser.url().await;
        assert!(!url.contains("/signin"), "{url}");
        browser.goto(&format!("{base}/access")).await;
        let text = wait_for_text(&browser, "yubikey").await;
        assert!(!text.contains("never"), "the key's last use is shown: {text}");
        shot(&browser, "webauthn-signed-in-with-key-1280.png").await;

        // hardlab login cannot hold a key up: refused with the way out, not let in.
        let login = reqwest::Client::new()
            .post(format!("{}/api/proxy/login", app.base_url))
            .json(&json!({"user": "ada", "password": PASSWORD, "totp": "", "csr_pem": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 401);
        let body = login.text().await.unwrap();
        assert!(body.contains("hardlab login cannot use"), "{body}");

        // Another key, not registered to ada: the sign-in page's challenge is not answered.
        browser.click("form[action='/signout'] button").await;
        browser.wait_for("a[href^='/signin']", WAIT).await;
        browser.remove_virtual_authenticator(&key).await;
        let stranger = browser.add_virtual_authenticator(authenticator()).await;
        sign_in_form(&browser, &base, "ada").await;
        browser.wait_for("#key-signin", WAIT).await;
        wait_for_text(&browser, "Not signed in").await;
        shot(&browser, "webauthn-sign-in-unknown-key-refused-1280.png").await;
        assert!(browser.url().await.contains("/signin"));
        browser.goto(&format!("{base}/access")).await;
        assert!(browser.url().await.contains("/signin"), "no session without the key");
        browser.remove_virtual_authenticator(&stranger).await;

        // An admin's reset removes the keys (ada lost them) and is audited; the password alone
        // signs in again.
        let admin = app
            .user_with_role("root", hardlab_server::web::accounts::Role::Admin)
            .await;
        admin.get("/access").await;
        let reset = reqwest::Client::new()
            .post(format!("{}/api/proxy/second-factor/reset", app.base_url))
            .header("cookie", admin.cookie_header())
            .header("x-csrf-token", admin.csrf().unwrap())
            .json(&json!({"user": "ada"}))
            .send()
            .await
            .unwrap();
        assert_eq!(reset.status(), 200);
        let page = app
            .agent()
            .post_form("/signin", &[("username", "ada"), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        let reset_event = audit_events(&app, "root").await;
        assert!(
            reset_event
                .iter()
                .any(|e| e.contains("auth.second_factor_reset") && e.contains("\"ada\"")),
            "{reset_event:#?}"
        );

        let events = audit_events(&app, "ada").await;
        assert!(
            events.iter().any(|e| e.contains("\"event\":\"auth.webauthn_enrol\"") && e.contains("yubikey")),
            "{events:#?}"
        );
        assert!(
            events.iter().any(|e| e.contains("\"event\":\"auth.signin\"") && e.contains("security key yubikey")),
            "{events:#?}"
        );
        let csp = browser.csp_violations().await;
        assert!(csp.is_empty(), "{csp:?}");
    })
    .await;
}
