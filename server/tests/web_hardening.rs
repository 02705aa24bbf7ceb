//! Web hardening on the real app over HTTP: security headers on every kind of response, HSTS and
//! Secure cookies from an https public URL, `next` targets that cannot leave the site, and
//! sign-in throttling per account and per (account, client address), with `X-Forwarded-For`
//! read only from configured proxies. Other client machines are other loopback addresses
//! (127.0.0.2, ...), which Linux routes to the same listener.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::{Page, TestApp, each_database};

const PASSWORD: &str = "correct-horse-battery";

fn header<'a>(page: &'a Page, name: &str) -> &'a str {
    page.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", page.headers))
        .to_str()
        .unwrap()
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn sign_in(agent: &common::Agent, password: &str) -> Page {
    agent
        .post_form("/signin", &[("username", "alice"), ("password", password)])
        .await
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let anonymous = app.agent();
        let forged = anonymous
            .post_form_raw("/signin", &[("csrf", "forged"), ("username", "x")])
            .await;
        assert_eq!(forged.status, 403);
        let pages = [
            ("sign-in page", anonymous.get("/signin").await),
            ("static file", anonymous.get("/static/app.css").await),
            ("not found", anonymous.get("/no/such/page").await),
            ("redirect to sign-in", anonymous.get("/cluster").await),
            ("health", anonymous.get("/healthz").await),
            ("CSRF refusal", forged),
            ("lab list", alice.get("/").await),
        ];
        for (what, page) in &pages {
            let policy = header(page, "content-security-policy");
            for directive in [
                "default-src 'self'",
                "script-src 'self';",
                "style-src 'self';",
                "connect-src 'self'",
                "object-src 'none'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ] {
                assert!(
                    policy.contains(directive),
                    "{what}: {directive} in {policy}"
                );
            }
            assert!(!policy.contains("unsafe"), "{what}: {policy}");
            assert_eq!(header(page, "x-frame-options"), "DENY", "{what}");
            assert_eq!(header(page, "x-content-type-options"), "nosniff", "{what}");
            assert_eq!(header(page, "referrer-policy"), "same-origin", "{what}");
            assert!(
                page.headers.get("strict-transport-security").is_none(),
                "{what}: HSTS over plain http"
            );
        }
        // The step page hosts the terminal, whose renderer creates style elements: they may carry
        // this response's nonce, which the page hands to static/style-nonce.js. Scripts are as
        // strict as everywhere else.
        let mut nonces = Vec::new();
        for _ in 0..2 {
            let step = alice.get("/labs/demo-etcd/steps/encrypt").await;
            assert_eq!(step.status, 200, "{}", step.body);
            let policy = header(&step, "content-security-policy");
            assert!(policy.contains("script-src 'self';"), "{policy}");
            assert!(!policy.contains("unsafe"), "{policy}");
            let nonce = policy
                .split("style-src 'self' 'nonce-")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .unwrap_or_else(|| panic!("no style nonce in {policy}"))
                .to_owned();
            assert!(nonce.len() >= 16, "{nonce}");
            assert!(
                step.body
                    .contains(&format!("<meta name=\"style-nonce\" content=\"{nonce}\">")),
                "{}",
                step.body
            );
            nonces.push(nonce);
        }
        assert_ne!(nonces[0], nonces[1], "a nonce is per response");
    })
    .await;
}

#[tokio::test]
async fn no_template_has_inline_script_handlers_or_style_attributes() {
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    for entry in std::fs::read_dir(templates).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().to_ascii_lowercase();
        for (at, _) in text.match_indices("<script") {
            let tag = &text[at..text[at..].find('>').map_or(text.len(), |end| at + end)];
            assert!(
                tag.contains(" src="),
                "{}: inline script {tag}",
                path.display()
            );
        }
        for attribute in [
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!text.contains(attribute), "{}: {attribute}", path.display());
        }
    }
}

#[tokio::test]
async fn an_https_public_url_turns_on_hsts_and_secure_cookies() {
    each_database(|db| async move {
        let app = TestApp::builder(db)
            .configure(|c| {
                c.public_url = Some("https://lab.example.org".into());
                c.frame_ancestors = vec!["https://lms.example.org".into()];
            })
            .start()
            .await;
        let agent = app.agent();
        let page = agent.get("/signin").await;
        assert_eq!(
            header(&page, "strict-transport-security"),
            "max-age=31536000"
        );
        let csrf_cookie = header(&page, "set-cookie");
        assert!(csrf_cookie.contains("; Secure"), "{csrf_cookie}");
        // An embedding origin is listed; X-Frame-Options cannot say that, so it is left out.
        let policy = header(&page, "content-security-policy");
        assert!(
            policy.contains("frame-ancestors https://lms.example.org"),
            "{policy}"
        );
        assert!(page.headers.get("x-frame-options").is_none());
        let signed_up = agent
            .post_form(
                "/signup",
                &[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(signed_up.status, 303, "{}", signed_up.body);
        let session = signed_up
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("hardlab_session="))
            .unwrap();
        assert!(session.contains("; Secure"), "{session}");
        assert!(session.contains("HttpOnly"), "{session}");
    })
    .await;
}

#[tokio::test]
async fn sign_in_never_redirects_to_another_origin() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        app.learner("alice").await;
        for (next, expected) in [
            ("/labs/demo-etcd", "/labs/demo-etcd"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("/\t/evil.example", "/"),
            ("/%2F%2Fevil.example", "/"),
            ("/%5Cevil.example", "/"),
            ("/%252F%252Fevil.example", "/"),
            ("https://evil.example", "/"),
            ("javascript:alert(1)", "/"),
        ] {
            let agent = app.agent();
            let page = agent
                .post_form(
                    "/signin",
                    &[
                        ("username", "alice"),
                        ("password", PASSWORD),
                        ("next", next),
                    ],
                )
                .await;
            assert_eq!(page.status, 303, "{next:?}: {}", page.body);
            assert_eq!(page.location(), Some(expected), "{next:?}");
            // The sign-in page carries only a safe value into its form, too.
            let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            let form = app.agent().get(&format!("/signin?next={encoded}")).await;
            assert!(
                form.body
                    .contains(&format!("name=\"next\" value=\"{expected}\"")),
                "{next:?}: {}",
                form.body
            );
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_passwords_from_one_address_lock_that_pair_but_not_the_account_elsewhere() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        app.learner("alice").await;
        let attacker = app.agent_from(address("127.0.0.2"));
        for attempt in 1..=hardlab_server::web::accounts::FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS {
            let page = sign_in(&attacker, "wrong-password-guess").await;
            assert_eq!(page.status, 401, "attempt {attempt}: {}", page.body);
        }
        // The attacker's address is blocked, even with the right password.
        let page = sign_in(&attacker, PASSWORD).await;
        assert_eq!(page.status, 429, "{}", page.body);
        assert!(page.headers.get("retry-after").is_some());
        // Alice, on her own machine, signs in as usual.
        let alice = app.agent_from(address("127.0.0.3"));
        let page = sign_in(&alice, PASSWORD).await;
        assert_eq!(page.status, 303, "{}", page.body);
        // Her success does not lift the attacker's block.
        let page = sign_in(&attacker, PASSWORD).await;
        assert_eq!(page.status, 429, "{}", page.body);
    })
    .await;
}

#[tokio::test]
async fn a_classroom_behind_one_address_does_not_lock_itself_out() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let names: Vec<String> = (1..=8).map(|i| format!("learner{i}")).collect();
        for name in &names {
            app.learner(name).await;
        }
        // Everyone behind the same NAT mistypes their own password a few times.
        let classroom = address("127.0.0.4");
        for name in &names {
            let agent = app.agent_from(classroom);
            for _ in 0..3 {
                let page = agent
                    .post_form(
                        "/signin",
                        &[("username", name), ("password", "typo-typo-typo")],
                    )
                    .await;
                assert_eq!(page.status, 401, "{name}");
            }
            let page = agent
                .post_form("/signin", &[("username", name), ("password", PASSWORD)])
                .await;
            assert_eq!(page.status, 303, "{name}: {}", page.body);
        }
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    each_database(|db| async move {
        // No trusted proxies: a client that writes a new X-Forwarded-For each time gains nothing.
        let app = TestApp::start(db.clone()).await;
        app.learner("alice").await;
        let attacker = app.agent_from(address("127.0.0.5"));
        for attempt in 1..=5 {
            attacker.set_header("x-forwarded-for", &format!("198.51.100.{attempt}"));
            assert_eq!(sign_in(&attacker, "wrong-password-guess").await.status, 401);
        }
        attacker.set_header("x-forwarded-for", "198.51.100.99");
        assert_eq!(sign_in(&attacker, PASSWORD).await.status, 429);
        drop(app);

        // Behind a trusted proxy (the loopback peer 127.0.0.1), the client is the right-most
        // hop the proxy did not add itself.
        let proxied = TestApp::builder(db)
            .configure(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()])
            .start()
            .await;
        let through_proxy = proxied.agent_from(address("127.0.0.1"));
        through_proxy.set_header("x-forwarded-for", "203.0.113.7");
        let guesses = hardlab_server::web::accounts::FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS;
        // alice's account counter holds 5 failures from the first server's database.
        sqlx::query("DELETE FROM sign_in_failures")
            .execute(&proxied.db.pool)
            .await
            .unwrap();
        for _ in 0..guesses {
            assert_eq!(
                sign_in(&through_proxy, "wrong-password-guess").await.status,
                401
            );
        }
        assert_eq!(sign_in(&through_proxy, PASSWORD).await.status, 429);
        // The attacker prepends an address of their choice: the proxy appended the real one.
        through_proxy.set_header("x-forwarded-for", "192.0.2.50, 203.0.113.7");
        assert_eq!(sign_in(&through_proxy, PASSWORD).await.status, 429);
        // Another client behind the same proxy signs in.
        let alice = proxied.agent_from(address("127.0.0.1"));
        alice.set_header("x-forwarded-for", "192.0.2.50");
        assert_eq!(sign_in(&alice, PASSWORD).await.status, 303);
        // A peer that is not the proxy is itself the client, whatever it forwards.
        let direct = proxied.agent_from(address("127.0.0.6"));
        direct.set_header("x-forwarded-for", "192.0.2.50");
        for _ in 0..guesses {
            assert_eq!(sign_in(&direct, "wrong-password-guess").await.status, 401);
        }
        assert_eq!(sign_in(&direct, PASSWORD).await.status, 429);
        let alice_again = proxied.agent_from(address("127.0.0.1"));
        alice_again.set_header("x-forwarded-for", "192.0.2.50");
        assert_eq!(sign_in(&alice_again, PASSWORD).await.status, 303);
    })
    .await;
}

#[tokio::test]
async fn guesses_spread_over_many_addresses_still_block_the_account() {
    each_database(|db| async move {
        let app = TestApp::builder(db)
            .configure(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()])
            .start()
            .await;
        app.learner("alice").await;
        let botnet = app.agent_from(address("127.0.0.1"));
        for n in 0..hardlab_server::web::accounts::FREE_FAILURES_PER_ACCOUNT {
            botnet.set_header("x-forwarded-for", &format!("198.51.100.{n}"));
            assert_eq!(
                sign_in(&botnet, "wrong-password-guess").await.status,
                401,
                "{n}"
            );
        }
        // A fresh address now waits too: the account's own, looser limit is reached.
        botnet.set_header("x-forwarded-for", "198.51.100.200");
        let page = sign_in(&botnet, PASSWORD).await;
        assert_eq!(page.status, 429, "{}", page.body);
    })
    .await;
}

#[tokio::test]
async fn failures_of_names_nobody_tries_again_are_forgotten_after_the_window() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        // A made-up name that failed long ago, and one blocked right now.
        for (key, last, blocked) in [
            ("account:ghost", 1_i64, 0_i64),
            ("account:still-blocked", 1, i64::MAX),
        ] {
            sqlx::query(
                "INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at, blocked_until) \
                 VALUES ($1, 3, $2, $3)",
            )
            .bind(key)
            .bind(last)
            .bind(blocked)
            .execute(&app.db.pool)
            .await
            .unwrap();
        }
        let page = sign_in(&app.agent(), "wrong-password-guess").await;
        assert_eq!(page.status, 401);
        let keys: Vec<(String,)> =
            sqlx::query_as("SELECT throttle_key FROM sign_in_failures ORDER BY throttle_key")
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        let keys: Vec<&str> = keys.iter().map(|(k,)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "account-address:alice 127.0.0.1",
                "account:alice",
                "account:still-blocked"
            ]
        );
    })
    .await;
}
