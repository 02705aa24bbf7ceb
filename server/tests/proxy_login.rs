//! `hardlab login` end to end over HTTP: password plus TOTP for a certificate made from a key that
//! never left the client, with every role as an `O=` and a lifetime capped by the roles; the
//! certificate then works through the proxy with kubectl, and the exec plugin reports it.
#![allow(clippy::unwrap_used)]

mod proxy_common;
// Only the WebDriver client of the web tests' support, not their whole app harness.
#[allow(dead_code)]
#[path = "common/webdriver.rs"]
mod webdriver;

use std::sync::Arc;

use hardlab_server::proxy::ProxyError;
use hardlab_server::proxy::ca::{client_identity, pem_body};
use hardlab_server::proxy::tenant::Tenant;
use hardlab_server::proxy::web::{AppAccounts, ProxyWeb};
use hardlab_server::proxy::{client, store, totp};
use hardlab_server::web::{AppState, accounts};
use proxy_common::{shared, stderr};

/// hardlab's web app (real accounts, sessions and CSRF) with the proxy's routes, on a free port,
/// over the shared harness's database; bob and dana have accounts, admin is an admin.
fn serve_web(shared: &proxy_common::Shared) -> (String, AppState) {
    let pool = shared.harness.pool.clone();
    for (name, role) in [
        ("bob", accounts::Role::Learner),
        ("dana", accounts::Role::Learner),
        ("admin", accounts::Role::Admin),
    ] {
        // Another test in this binary may have created the account already.
        let _ = shared.block_on(accounts::create_user(&pool, name, PASSWORD, role));
    }
    let config = hardlab_server::config::Config {
        static_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../static"),
        // Not the default `data/secret.key`, which would land in the checkout.
        secret_key_file: std::env::temp_dir().join(format!(
            "hardlab-test-key-{}",
            hardlab_server::db::random_id()
        )),
        ..hardlab_server::config::Config::default()
    };
    let mut state = AppState::new(pool.clone(), config, hardlab_server::labs::Labs::default());
    state.proxy = Some(Arc::new(ProxyWeb {
        service: Arc::clone(&shared.harness.service),
        accounts: Arc::new(AppAccounts { db: pool }),
    }));
    let app = hardlab_server::web::app(state.clone());
    let listener = shared
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    shared.runtime.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{address}"), state)
}

const PASSWORD: &str = "a long enough passphrase 42";

/// The code for the current time step plus `offset` steps.
fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    totp::code_for_step(secret, totp::step_at(now) + offset).unwrap()
}

#[test]
fn bob_logs_in_with_password_and_code_and_reaches_the_cluster_with_the_certificate() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let (server, _state) = serve_web(shared);
    let pool = &h.pool;
    let capped = proxy_common::role(
        "{name: short-sessions, kubernetes_labels: {env: prod}, kubernetes_groups: [x], max_session_ttl: 8h}",
    );
    shared
        .block_on(store::put_role(pool, &Tenant::site(), &capped))
        .unwrap();
    shared
        .block_on(store::set_user_roles(
            pool,
            &Tenant::site(),
            "bob",
            &["developer-read".to_owned(), "short-sessions".to_owned()],
        ))
        .unwrap();
    let secret = shared
        .block_on(store::enroll_totp(pool, &h.sealer, "bob", None))
        .unwrap();
    let home = tempfile::tempdir().unwrap();

    // An unconfirmed enrolment is not usable for login; the enrolment page confirms it (here
    // with the previous step's code, which is still accepted, so the current one stays fresh).
    let unconfirmed = shared.block_on(client::login(
        home.path(),
        &server,
        "",
        "bob",
        PASSWORD,
        &code(&secret, 0),
        None,
    ));
    assert!(matches!(unconfirmed, Err(ProxyError::Unauthorized(_))));
    shared
        .block_on(store::check_totp(
            pool,
            &h.sealer,
            &Tenant::site(),
            "bob",
            &code(&secret, -1),
            true,
        ))
        .unwrap();

    let wrong_password = shared.block_on(client::login(
        home.path(),
        &server,
        "",
        "bob",
        "guess",
        "000000",
        None,
    ));
    assert!(matches!(wrong_password, Err(ProxyError::Unauthorized(_))));

    let code = code(&secret, 0);
    let profile = shared
        .block_on(client::login(
            home.path(),
            &server,
            "",
            "bob",
            PASSWORD,
            &code,
            None,
        ))
        .unwrap();
    assert_eq!(profile.roles, ["developer-read", "short-sessions"]);

    let replayed = shared.block_on(client::login(
        home.path(),
        &server,
        "",
        "bob",
        PASSWORD,
        &code,
        None,
    ));
    assert!(
        matches!(replayed, Err(ProxyError::Unauthorized(_))),
        "a code must work once"
    );

    let cert_pem = std::fs::read_to_string(home.path().join("cert.pem")).unwrap();
    let identity = client_identity(&pem_body(&cert_pem, "CERTIFICATE").unwrap()).unwrap();
    assert_eq!(identity.user, "bob");
    assert_eq!(identity.roles, ["developer-read", "short-sessions"]);
    let lifetime = identity.not_after - time::OffsetDateTime::now_utc();
    assert!(
        lifetime <= time::Duration::hours(8) && lifetime > time::Duration::hours(7),
        "capped by max_session_ttl: {lifetime}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The exec plugin's answer, as kubectl reads it.
    let credential: serde_json::Value =
        serde_json::from_str(&client::exec_credential(home.path()).unwrap()).unwrap();
    assert_eq!(
        credential["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["status"]["clientCertificateData"], cert_pem);
    let expiry = time::OffsetDateTime::parse(
        credential["status"]["expirationTimestamp"]
            .as_str()
            .unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let early = identity.not_after - expiry;
    assert!(
        early >= time::Duration::seconds(59) && early <= time::Duration::seconds(61),
        "{early}"
    );

    // The kubeconfig entry `hardlab kube login` writes; kubectl uses the plugin's certificate.
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://example.invalid'}\n").unwrap();
    let context =
        client::write_kubeconfig_entry(home.path(), &kubeconfig, "dev", "hardlab").unwrap();
    assert_eq!(context, "hardlab-dev");
    let written: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    assert_eq!(written["current-context"], "hardlab-dev");
    assert_eq!(
        written["clusters"].as_sequence().unwrap().len(),
        2,
        "other entries kept"
    );
    let user = &written["users"][0]["user"]["exec"];
    assert_eq!(user["command"], "hardlab");
    assert_eq!(user["args"][2], "--cluster");

    // Same certificate, embedded, straight through kubectl (the plugin needs the hardlab binary).
    let key_pem = std::fs::read_to_string(home.path().join("key.pem")).unwrap();
    let direct = {
        use base64::Engine;
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let path = home.path().join("embedded");
        std::fs::write(&path, format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: https://{}/k8s/dev\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: p\n  context: {{cluster: p, user: u}}\ncurrent-context: p\n",
            h.service.listen, b64(h.service.ca.cert_pem()), b64(&cert_pem), b64(&key_pem))).unwrap();
        path
    };
    let pods = h.kubectl(&direct, &["get", "pods", "-n", "default"]);
    assert!(pods.status.success(), "{}", stderr(&pods));
}

#[test]
fn a_user_who_never_enrolled_a_second_factor_cannot_log_in() {
    let Some(shared) = shared() else { return };
    let (server, _state) = serve_web(shared);
    let home = tempfile::tempdir().unwrap();
    let result = shared.block_on(client::login(
        home.path(),
        &server,
        "",
        "dana",
        PASSWORD,
        "123456",
        None,
    ));
    assert!(
        matches!(result, Err(ProxyError::Unauthorized(_))),
        "{result:?}"
    );
    assert!(!home.path().join("cert.pem").exists());
}

/// A signed-in browser: its cookie header and the CSRF token from the Access page.
fn browser(
    shared: &proxy_common::Shared,
    state: &AppState,
    server: &str,
    user: &str,
) -> (String, String) {
    let (user_id,): (String,) = shared
        .block_on(
            sqlx::query_as("SELECT id FROM users WHERE username = $1")
                .bind(user)
                .fetch_one(&state.db),
        )
        .unwrap();
    let set_cookie = shared
        .block_on(hardlab_server::web::session::start(state, &user_id))
        .unwrap();
    let cookie = set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = shared
        .block_on(async {
            reqwest::Client::new()
                .get(format!("{server}/access"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
        })
        .unwrap();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

fn post_config(
    shared: &proxy_common::Shared,
    server: &str,
    cookie: &str,
    csrf: Option<&str>,
    yaml: &str,
) -> (u16, String) {
    shared.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{server}/api/proxy/config"))
            .header("cookie", cookie)
            .json(&serde_json::json!({ "yaml": yaml }));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

#[test]
fn an_admin_edits_roles_in_the_web_ui_and_only_an_admin_with_the_csrf_token_may() {
    let Some(shared) = shared() else { return };
    let (server, state) = serve_web(shared);
    let (admin_cookie, admin_csrf) = browser(shared, &state, &server, "admin");
    let yaml = "roles:\n  - {name: web-readers, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}\nusers:\n  - {name: dana, roles: [web-readers]}\n";

    let (code, _) = post_config(shared, &server, &admin_cookie, None, yaml);
    assert_eq!(code, 403, "no CSRF token");
    let (bob_cookie, bob_csrf) = browser(shared, &state, &server, "bob");
    let (code, body) = post_config(shared, &server, &bob_cookie, Some(&bob_csrf), yaml);
    assert_eq!(code, 401, "a learner: {body}");
    let (code, body) = post_config(
        shared,
        &server,
        &admin_cookie,
        Some(&admin_csrf),
        "roles:\n  - name: x\n    kubernetes_group: [typo]\n",
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("roles:3") && body.contains("kubernetes_group"),
        "{body}"
    );

    let (code, body) = post_config(shared, &server, &admin_cookie, Some(&admin_csrf), yaml);
    assert_eq!(code, 200, "{body}");
    let dana = shared
        .block_on(store::user_roles(
            &shared.harness.pool,
            &Tenant::site(),
            "dana",
        ))
        .unwrap();
    assert_eq!(dana, ["web-readers"]);
    let page = shared.block_on(async {
        reqwest::Client::new()
            .get(format!("{server}/access"))
            .header("cookie", &admin_cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(page.contains("web-readers"), "the editor shows the role");
}

#[test]
fn the_audit_log_exports_json_lines_and_a_learner_sees_only_their_own_events() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let (server, state) = serve_web(shared);
    for (user, roles) in [
        ("bob", &["developer-read"][..]),
        ("alice", &["kubernetes-admins"]),
    ] {
        let kubeconfig =
            h.user_kubeconfig(&h.service.ca, user, roles, time::Duration::hours(1), "dev");
        let output = h.kubectl(&kubeconfig, &["get", "pods"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    shared.audit_of("alice");
    let export = |cookie: &str, query: &str| {
        shared.block_on(async {
            reqwest::Client::new()
                .get(format!("{server}/access/audit.jsonl{query}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let (bob_cookie, _) = browser(shared, &state, &server, "bob");
    let mine = export(&bob_cookie, "");
    let users: Vec<String> = mine
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["user"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        !users.is_empty() && users.iter().all(|u| u == "bob"),
        "{users:?}"
    );
    let (admin_cookie, _) = browser(shared, &state, &server, "admin");
    let alice = export(&admin_cookie, "?user=alice&verb=list");
    assert!(!alice.is_empty());
    assert!(
        alice
            .lines()
            .all(|l| l.contains("\"user\":\"alice\"") && l.contains("\"verb\":\"list\""))
    );
    let page = shared.block_on(async {
        reqwest::Client::new()
            .get(format!("{server}/access/audit?user=bob"))
            .header("cookie", &admin_cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        page.contains("bob got 200 on list pods"),
        "the page renders the summary"
    );
}

#[test]
fn kubectl_gets_its_credentials_from_hardlab_kube_credentials() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let home = tempfile::tempdir().unwrap();
    // What `hardlab login` leaves behind, for a user holding developer-read.
    let (issued, key_pem) = h.issue(
        &h.service.ca,
        "erin",
        &["developer-read"],
        time::Duration::hours(1),
    );
    std::fs::write(home.path().join("key.pem"), key_pem).unwrap();
    std::fs::write(home.path().join("cert.pem"), &issued.cert_pem).unwrap();
    std::fs::write(home.path().join("proxy-ca.pem"), h.service.ca.cert_pem()).unwrap();
    let profile = serde_json::json!({"server": "http://unused", "user": "erin",
        "proxy_url": format!("https://{}", h.service.listen), "roles": ["developer-read"], "not_after": ""});
    std::fs::write(home.path().join("profile.json"), profile.to_string()).unwrap();

    let kubeconfig = home.path().join("config");
    let login = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["kube", "login", "--cluster", "dev", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("HARDLAB_HOME", home.path())
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));

    // kubectl with this home: the kubeconfig's exec plugin reads the profile saved there.
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let pods = kubectl(&["get", "pods", "-n", "default"]);
    assert!(pods.status.success(), "{}", stderr(&pods));
    let services = kubectl(&["get", "services", "-n", "default"]);
    assert!(
        stderr(&services).contains("User \"erin\" cannot list resource \"services\""),
        "{}",
        stderr(&services)
    );
}

#[test]
fn an_admin_enrols_a_second_factor_and_applies_roles_on_the_access_pages_in_chromium() {
    let Some(shared) = shared() else { return };
    if !hardlab_testkit::require(hardlab_testkit::Component::Chromium) {
        return;
    }
    let (server, state) = serve_web(shared);
    let (cookie, _) = browser(shared, &state, &server, "admin");
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    shared.block_on(async {
        let chromium = webdriver::Browser::start().await;
        chromium.goto(&format!("{server}/healthz")).await;
        chromium
            .script(&format!("document.cookie = '{cookie}; path=/'; return true;"))
            .await;
        chromium.goto(&format!("{server}/access")).await;
        assert_eq!(chromium.text("main h1").await, "Access");
        assert!(chromium.text(".nav").await.contains("Access"));

        // Enrolment goes through static/access.js with the page's CSRF token.
        chromium.click("button[data-action=enroll]").await;
        chromium.find("#confirm:not([hidden])").await;
        assert!(chromium.text("#uri").await.starts_with("otpauth://totp/"));
        // The QR code is the server's SVG, drawn in the page.
        chromium.find("#qr svg").await;

        // The roles editor, as an admin uses it.
        let yaml = "roles:\n  - {name: page-readers, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}\n";
        chromium
            .script(&format!(
                "document.getElementById('roles').value = {}; return true;",
                serde_json::to_string(yaml).unwrap()
            ))
            .await;
        chromium.click("button[data-action=apply-roles]").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while chromium.text("#apply-status").await != "Applied." {
            assert!(std::time::Instant::now() < deadline, "{}", chromium.text("#apply-status").await);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        chromium
            .full_page_screenshot(&artifacts.join("access-1280.png"), 1280)
            .await;
        chromium.goto(&format!("{server}/access/audit")).await;
        assert_eq!(chromium.text("main h1").await, "Audit log");
        chromium.find("form.filters input[name=user]").await;
        chromium
            .full_page_screenshot(&artifacts.join("access-audit-1280.png"), 1280)
            .await;
        chromium
            .full_page_screenshot(&artifacts.join("access-audit-390.png"), 390)
            .await;
    });
    let roles = shared
        .block_on(store::list_roles(&shared.harness.pool, &Tenant::site()))
        .unwrap();
    assert!(roles.iter().any(|role| role.name == "page-readers"));
}
