//! The rules for kubeconfigs people register, through the `/cluster` form of the app `hardlab
//! serve` builds: only inline credentials (each refused field is named to the learner), API server
//! addresses checked against the installation's rules at registration and again at Check, errors
//! that do not make Check a port scanner, and bounded request bodies.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Agent, TestApp, TestDb, each_database};

/// A kubeconfig with a bearer token for `server`; `user_extra` is appended to the user entry
/// (indented four spaces) and `cluster_extra` to the cluster entry.
fn kubeconfig(server: &str, user_extra: &str, cluster_extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
{cluster_extra}users:
- name: learner
  user:
    token: never-shown-token
{user_extra}contexts:
- name: ctx
  context: {{cluster: lab, user: learner}}
current-context: ctx
"
    )
}

async fn registered(app: &TestApp, name: &str) -> bool {
    let id = app.user_id(name).await;
    let row: Option<(String,)> =
        sqlx::query_as("SELECT owner_id FROM static_clusters WHERE owner_id = $1")
            .bind(&id)
            .fetch_optional(&app.db.pool)
            .await
            .unwrap();
    row.is_some()
}

/// The app with the address rules as shipped (no private addresses).
async fn strict_app(db: TestDb) -> TestApp {
    TestApp::builder(db)
        .configure(|c| c.allow_private_cluster_addresses = false)
        .start()
        .await
}

#[tokio::test]
async fn every_field_that_would_run_or_read_something_on_the_server_is_named_on_the_form() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let server = "https://127.0.0.1:6443";
        for (text, named) in [
            (
                kubeconfig(
                    server,
                    "    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/touch, args: [/tmp/hardlab-pwned]}\n",
                    "",
                ),
                "uses exec",
            ),
            (
                kubeconfig(server, "    auth-provider: {name: oidc, config: {}}\n", ""),
                "uses auth-provider",
            ),
            (
                kubeconfig(server, "    tokenFile: /data/secret.key\n", ""),
                "uses tokenFile",
            ),
            (
                kubeconfig(server, "    client-certificate: /data/secret.key\n", ""),
                "uses client-certificate (a file path",
            ),
            (
                kubeconfig(server, "    client-key: /data/secret.key\n", ""),
                "uses client-key (a file path",
            ),
            (
                kubeconfig(server, "    as: system:admin\n", ""),
                "uses as (impersonation)",
            ),
            (
                kubeconfig(server, "", "    certificate-authority: /etc/ssl/private/ca.pem\n"),
                "uses certificate-authority (a file path",
            ),
            (
                kubeconfig(server, "", "    proxy-url: http://10.0.0.1:3128\n"),
                "uses proxy-url",
            ),
            (
                kubeconfig("http://127.0.0.1:6443", "", ""),
                "is not an https:// URL",
            ),
        ] {
            let page = alice.post_form("/cluster", &[("kubeconfig", &text)]).await;
            assert_eq!(page.status, 400, "{named}: {}", page.body);
            assert!(page.body.contains(named), "{named}: {}", page.body);
            // The entry is named too (quotes are HTML-escaped on the page).
            assert!(
                page.body.contains("learner") || page.body.contains("lab"),
                "{named}: {}",
                page.body
            );
            assert!(!page.body.contains("never-shown-token"));
            assert!(!registered(&app, "alice").await, "{named} was stored");
        }
        assert!(!std::path::Path::new("/tmp/hardlab-pwned").exists());
    })
    .await;
}

#[tokio::test]
async fn the_address_rules_refuse_on_the_form_and_again_when_check_connects() {
    each_database(|db| async move {
        let app = strict_app(db).await;
        let alice = app.learner("alice").await;
        for (server, named) in [
            ("https://127.0.0.1:6443", "allow_private_cluster_addresses"),
            ("https://10.1.2.3:6443", "private address"),
            ("https://[::ffff:127.0.0.1]:6443", "loopback address"),
            ("https://localhost:6443", "loopback address"),
            ("https://169.254.169.254", "cloud metadata address"),
            ("https://169.254.10.1:6443", "link-local address"),
            ("https://[fe80::1]:6443", "link-local address"),
            ("https://metadata.google.internal", "cloud metadata service"),
            ("https://0.0.0.0:6443", "unspecified address"),
        ] {
            let page = alice
                .post_form("/cluster", &[("kubeconfig", &kubeconfig(server, "", ""))])
                .await;
            assert_eq!(page.status, 400, "{server}: {}", page.body);
            assert!(page.body.contains(named), "{server}: {}", page.body);
            assert!(!registered(&app, "alice").await, "{server} was stored");
        }
        // The admin's form for a user applies the same rules.
        let admin = app
            .user_with_role("root", hardlab_server::web::accounts::Role::Admin)
            .await;
        let alice_id = app.user_id("alice").await;
        let page = admin
            .post_form(
                &format!("/admin/users/{alice_id}/cluster"),
                &[("kubeconfig", &kubeconfig("https://[fd00:ec2::254]", "", ""))],
            )
            .await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(
            page.body.contains("cloud metadata address"),
            "{}",
            page.body
        );
        assert!(!registered(&app, "alice").await);

        // A public address is taken (nothing is dialled at registration).
        let public = alice
            .post_form(
                "/cluster",
                &[("kubeconfig", &kubeconfig("https://192.0.2.10:6443", "", ""))],
            )
            .await;
        assert_eq!(public.status, 303, "{}", public.body);

        // A loopback registration made while private addresses were allowed (another server on
        // the same database) is refused when this one connects for Check.
        let permissive = TestApp::builder(app.db.clone())
            .configure(|c| {
                c.labs_dir = app.state.config.labs_dir.clone();
                c.secret_key_file = app.state.config.secret_key_file.clone();
                c.allow_private_cluster_addresses = true;
            })
            .start()
            .await;
        let bob_there = permissive.learner("bob").await;
        let saved = bob_there
            .post_form(
                "/cluster",
                &[("kubeconfig", &kubeconfig("https://127.0.0.1:1", "", ""))],
            )
            .await;
        assert_eq!(saved.status, 303, "{}", saved.body);
        let bob_here = app.agent();
        let signed_in = bob_here
            .post_form(
                "/signin",
                &[("username", "bob"), ("password", "correct-horse-battery")],
            )
            .await;
        assert_eq!(signed_in.status, 303);
        bob_here.get("/").await;
        bob_here
            .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
            .await;
        let step = bob_here.get("/labs/demo-etcd/steps/encrypt").await;
        assert!(
            step.body.contains("Cannot reach your cluster"),
            "{}",
            step.body
        );
        assert!(
            step.body.contains("allow_private_cluster_addresses"),
            "{}",
            step.body
        );
    })
    .await;
}

async fn check_message(app: &TestApp, learner: &Agent, server: &str) -> String {
    let saved = learner
        .post_form("/cluster", &[("kubeconfig", &kubeconfig(server, "", ""))])
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    learner
        .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
        .await;
    let page = learner.get("/labs/demo-etcd/steps/encrypt").await;
    // The problem as shown, not the rest of the page (the lab's own text talks about TLS).
    let Some(at) = page.body.find("Cannot reach your cluster") else {
        panic!("no problem shown on {}: {}", app.base_url, page.body);
    };
    page.body[at..].chars().take(400).collect()
}

#[tokio::test]
async fn a_closed_port_and_a_port_that_is_not_kubernetes_read_the_same() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        // Nothing listens on port 1; the app's own port speaks plain HTTP, not TLS.
        let closed = check_message(&app, &alice, "https://127.0.0.1:1").await;
        let own_port = app.addr.port();
        let other = check_message(&app, &alice, &format!("https://127.0.0.1:{own_port}")).await;
        for (body, address) in [
            (&closed, "127.0.0.1:1".to_owned()),
            (&other, format!("127.0.0.1:{own_port}")),
        ] {
            assert!(
                body.contains(&format!(
                    "Cannot reach your cluster: the API server at {address} did not answer as a \
                     Kubernetes API server"
                )),
                "{body}"
            );
            for raw in [
                "refused",
                "os error",
                "tcp connect",
                "InvalidContentType",
                "corrupt message",
                "tls",
                "error trying to connect",
            ] {
                assert!(
                    !body
                        .to_ascii_lowercase()
                        .contains(&raw.to_ascii_lowercase()),
                    "{raw:?} shown: {body}"
                );
            }
        }
    })
    .await;
}

/// Posts `body` as a form with the agent's cookies; `chunked` sends it without a Content-Length.
async fn post_raw(app: &TestApp, agent: &Agent, body: String, chunked: bool) -> u16 {
    let request = reqwest::Client::new()
        .post(format!("{}/cluster", app.base_url))
        .header("cookie", agent.cookie_header())
        .header("content-type", "application/x-www-form-urlencoded");
    let request = if chunked {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = body
            .into_bytes()
            .chunks(16 * 1024)
            .map(|c| Ok(c.to_vec()))
            .collect();
        request.body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
    } else {
        request.body(body)
    };
    match request.send().await {
        Ok(response) => response.status().as_u16(),
        // A server may close the connection after answering 413 before the whole body is sent.
        Err(error) => panic!("no answer to an oversized body: {error}"),
    }
}

#[tokio::test]
async fn bodies_past_the_limit_get_413_declared_or_not() {
    each_database(|db| async move {
        let app = TestApp::builder(db)
            .configure(|c| c.max_request_body_bytes = 64 * 1024)
            .start()
            .await;
        let alice = app.learner("alice").await;
        let csrf = alice.csrf().unwrap();
        let padding = "x".repeat(100 * 1024);
        let oversized = format!("csrf={csrf}&name=lab&kubeconfig={padding}");
        assert_eq!(post_raw(&app, &alice, oversized.clone(), false).await, 413);
        assert_eq!(post_raw(&app, &alice, oversized, true).await, 413);
        assert!(!registered(&app, "alice").await);
        // Within the limit, the same form is read as usual.
        let fine = alice
            .post_form(
                "/cluster",
                &[("kubeconfig", &kubeconfig("https://127.0.0.1:6443", "", ""))],
            )
            .await;
        assert_eq!(fine.status, 303, "{}", fine.body);
        // The shipped default (1 MiB) refuses a 2 MiB form.
        let default_app = TestApp::start(TestDb::sqlite().await).await;
        let bob = default_app.learner("bob").await;
        let csrf = bob.csrf().unwrap();
        let huge = format!("csrf={csrf}&kubeconfig={}", "y".repeat(2 * 1024 * 1024));
        assert_eq!(post_raw(&default_app, &bob, huge, false).await, 413);
    })
    .await;
}

/// The Check attempt's stored problem (why grading could not start), if any.
async fn last_problem(app: &TestApp, user: &str) -> Option<String> {
    let id = app.user_id(user).await;
    let (json,): (String,) = sqlx::query_as(
        "SELECT results_json FROM check_attempts WHERE user_id = $1 ORDER BY started_at DESC LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let record: serde_json::Value = serde_json::from_str(&json).unwrap();
    record["problem"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_cluster_registered_by_host_name_is_reached_at_the_checked_address_with_tls_verified() {
    use base64::Engine;
    use hardlab_testkit::{Component, require, shared_control_plane};
    if !require(Component::ControlPlane) {
        return;
    }
    let plane = shared_control_plane().await;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let (cert, key) = plane.issue_client_cert("lab-admin", &["system:masters"]);
    // The serving certificate names `localhost`; the client connects to the address `localhost`
    // was checked as, and verifies the certificate for the name (or tls-server-name).
    let port: u16 = plane
        .server_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let by_name = |tls_server_name: &str| {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://localhost:{port}
    certificate-authority-data: {}
{tls_server_name}users:
- name: lab-admin
  user:
    client-certificate-data: {}
    client-key-data: {}
contexts:
- name: lab
  context: {{cluster: lab, user: lab-admin}}
current-context: lab
",
            b64(plane.ca_pem()),
            b64(&cert),
            b64(&key)
        )
    };
    each_database(|db| {
        let good = by_name("");
        let wrong_name = by_name("    tls-server-name: not-the-api-server.example\n");
        async move {
            let app = TestApp::start(db).await;
            let alice = app.learner("alice").await;
            for (kubeconfig, reached) in [(good, true), (wrong_name, false)] {
                let saved = alice
                    .post_form("/cluster", &[("kubeconfig", &kubeconfig)])
                    .await;
                assert_eq!(saved.status, 303, "{}", saved.body);
                alice
                    .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
                    .await;
                let problem = last_problem(&app, "alice").await;
                if reached {
                    assert_eq!(problem, None, "the API server was not reached by name");
                } else {
                    let problem = problem.expect("a certificate for another name was accepted");
                    assert!(
                        problem.contains(&format!("localhost:{port} did not answer")),
                        "{problem}"
                    );
                }
            }
        }
    })
    .await;
}
