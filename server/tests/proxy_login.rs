//! `hardlab login` end to end over HTTP: password plus TOTP for a certificate made from a key that
//! never left the client, with every role as an `O=` and a lifetime capped by the roles; the
//! certificate then works through the proxy with kubectl, and the exec plugin reports it.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::request::Parts;
use hardlab_server::proxy::ProxyError;
use hardlab_server::proxy::ca::{client_identity, pem_body};
use hardlab_server::proxy::web::{Accounts, ProxyWeb, Viewer};
use hardlab_server::proxy::{client, store, totp};
use proxy_common::{shared, stderr};

/// Stands in for hardlab's account store, which the web app provides: fixed passwords.
struct FixedPasswords(BTreeMap<&'static str, &'static str>);

#[async_trait]
impl Accounts for FixedPasswords {
    async fn verify_password(&self, user: &str, password: &str) -> bool {
        self.0.get(user).is_some_and(|p| *p == password)
    }
    async fn viewer(&self, _parts: &Parts) -> Option<Viewer> {
        None
    }
}

/// Serves the proxy's routes on a free port and returns the base URL.
fn serve_web(shared: &proxy_common::Shared) -> String {
    let web = Arc::new(ProxyWeb {
        service: Arc::clone(&shared.harness.service),
        accounts: Arc::new(FixedPasswords(BTreeMap::from([
            ("bob", "bobs-password"),
            ("dana", "danas-password"),
        ]))),
    });
    let app = hardlab_server::proxy::web::router().with_state(web);
    let listener = shared
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    shared.runtime.spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{address}")
}

/// The code for the current time step plus `offset` steps.
fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    totp::code_for_step(secret, totp::step_at(now) + offset).unwrap()
}

#[test]
fn bob_logs_in_with_password_and_code_and_reaches_the_cluster_with_the_certificate() {
    let Some(shared) = shared() else { return };
    let h = &shared.harness;
    let server = serve_web(shared);
    let pool = &h.pool;
    let capped = proxy_common::role(
        "{name: short-sessions, kubernetes_labels: {env: prod}, kubernetes_groups: [x], max_session_ttl: 8h}",
    );
    shared.block_on(store::put_role(pool, &capped)).unwrap();
    shared
        .block_on(store::set_user_roles(
            pool,
            "bob",
            &["developer-read".to_owned(), "short-sessions".to_owned()],
        ))
        .unwrap();
    let secret = shared.block_on(store::enroll_totp(pool, "bob")).unwrap();
    let home = tempfile::tempdir().unwrap();

    // An unconfirmed enrolment is not usable for login; the enrolment page confirms it (here
    // with the previous step's code, which is still accepted, so the current one stays fresh).
    let unconfirmed = shared.block_on(client::login(
        home.path(),
        &server,
        "bob",
        "bobs-password",
        &code(&secret, 0),
        None,
    ));
    assert!(matches!(unconfirmed, Err(ProxyError::Unauthorized(_))));
    shared
        .block_on(store::check_totp(pool, "bob", &code(&secret, -1), true))
        .unwrap();

    let wrong_password = shared.block_on(client::login(
        home.path(),
        &server,
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
            "bob",
            "bobs-password",
            &code,
            None,
        ))
        .unwrap();
    assert_eq!(profile.roles, ["developer-read", "short-sessions"]);

    let replayed = shared.block_on(client::login(
        home.path(),
        &server,
        "bob",
        "bobs-password",
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
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
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
    let server = serve_web(shared);
    let home = tempfile::tempdir().unwrap();
    let result = shared.block_on(client::login(
        home.path(),
        &server,
        "dana",
        "danas-password",
        "123456",
        None,
    ));
    assert!(
        matches!(result, Err(ProxyError::Unauthorized(_))),
        "{result:?}"
    );
    assert!(!home.path().join("cert.pem").exists());
}
