//! Two learners doing lab 6 at once, through the app as `serve` builds it (sessions, CSRF, the
//! access proxy and its routes) on SQLite and PostgreSQL, against a real kube-apiserver: each is
//! the admin of a tenant of their own, does the lab's proxy steps with the real `hardlab` CLI
//! (configured as a lab node's is, by the file the server writes into the node), and sees only
//! their own roles, users, clusters and audit events; nothing reaches the other tenant or the
//! site's real roles.
//!
//! The CLI runs on the host with the node's configuration file instead of inside a node: the
//! same binary and the same file, without a Docker node per learner.
#![allow(clippy::unwrap_used)]

mod common;
mod proxy_common;

use std::path::PathBuf;
use std::process::Output;

use common::{Agent, TestApp, each_database};
use hardlab_server::proxy::tenant::Tenant;
use hardlab_server::proxy::{store, totp};

const PASSWORD: &str = "correct-horse-battery";

fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    totp::code_for_step(secret, totp::step_at(now) + offset).unwrap()
}

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

/// Enrols and confirms an authenticator on the Access page's API; returns the secret.
async fn enrol(app: &TestApp, agent: &Agent) -> String {
    let (status, answer) =
        post_json(app, agent, "/api/proxy/totp/enroll", serde_json::json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let secret = answer["secret"].as_str().unwrap().to_owned();
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

/// One learner's terminal: a home of their own, the node's client configuration, and the
/// kubeconfig kubectl uses through the proxy.
struct Terminal {
    home: tempfile::TempDir,
    client_env: PathBuf,
}

impl Terminal {
    fn new(files: &[hardlab_server::clusters::routes::NodeFile]) -> Self {
        let home = tempfile::tempdir().unwrap();
        let env = files
            .iter()
            .find(|f| f.path == hardlab_server::proxy::web::NODE_CLIENT_ENV)
            .unwrap();
        let client_env = home.path().join("client.env");
        std::fs::write(&client_env, &env.contents).unwrap();
        Terminal { home, client_env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// Runs `program` as the learner's shell would, with `extra` variables.
    fn run(&self, program: &str, args: &[&str], extra: &[(&str, String)]) -> Output {
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("HARDLAB_CLIENT_ENV", &self.client_env)
            .env("KUBECONFIG", self.path("proxy.kubeconfig"))
            .env("RUST_LOG", "warn");
        for (key, value) in extra {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    fn hardlab(&self, args: &[&str], extra: &[(&str, String)]) -> Output {
        self.run(env!("CARGO_BIN_EXE_hardlab"), args, extra)
    }

    fn ok(&self, args: &[&str], extra: &[(&str, String)]) -> String {
        let output = self.hardlab(args, extra);
        assert!(
            output.status.success(),
            "hardlab {args:?}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// As bob: his own login home and kubeconfig.
fn as_bob(terminal: &Terminal) -> Vec<(&'static str, String)> {
    vec![
        (
            "HARDLAB_HOME",
            terminal.path(".hardlab-bob").display().to_string(),
        ),
        (
            "KUBECONFIG",
            terminal.path("bob.kubeconfig").display().to_string(),
        ),
    ]
}

fn lab_steps(terminal: &Terminal, name: &str, secret: &str) {
    let login = [
        ("HARDLAB_PASSWORD", PASSWORD.to_owned()),
        ("HARDLAB_OTP", code(secret, 0)),
    ];
    let out = terminal.ok(&["login"], &login);
    assert!(out.contains(&format!("Logged in as {name}")), "{out}");
    terminal.ok(&["kube", "login"], &[]);
    let refused = terminal.run("kubectl", &["get", "pods"], &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("do not allow Kubernetes access"),
        "{}",
        text(&refused.stderr)
    );
    let admins = terminal.write(
        "admins.yaml",
        &format!(
            "roles:\n  - name: kubernetes-admins\n    kubernetes_labels: {{\"*\": \"*\"}}\n    kubernetes_groups: [\"system:masters\"]\nusers:\n  - name: {name}\n    roles: [kubernetes-admins]\n"
        ),
    );
    terminal.ok(&["proxy", "apply", &admins], &[]);
    let pods = terminal.run("kubectl", &["get", "pods", "-A"], &[]);
    assert!(pods.status.success(), "{}", text(&pods.stderr));
    let out = terminal.ok(&["proxy", "invite", "bob"], &[]);
    assert!(out.contains("Invited bob"), "{out}");
    let developers = terminal.write(
        "developers.yaml",
        "roles:\n  - name: developer-read\n    kubernetes_labels: {env: dev}\n    kubernetes_groups: [developer-read]\nusers:\n  - name: bob\n    roles: [developer-read]\n",
    );
    terminal.ok(&["proxy", "apply", &developers], &[]);
    terminal.ok(
        &["login", "--user", "bob", "--simulated"],
        &as_bob(terminal),
    );
    terminal.ok(&["kube", "login"], &as_bob(terminal));
    let pods = terminal.run("kubectl", &["get", "pods"], &as_bob(terminal));
    assert!(pods.status.success(), "{}", text(&pods.stderr));
    let services = terminal.run("kubectl", &["get", "services"], &as_bob(terminal));
    assert!(
        text(&services.stderr).contains("User \"bob\" cannot list resource \"services\""),
        "{}",
        text(&services.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_learners_doing_lab_6_at_once_see_only_their_own_roles_users_clusters_and_audit() {
    if !proxy_common::control_plane_available() {
        return;
    }
    let plane = proxy_common::ControlPlane::start().await;
    plane.apply(proxy_common::DEV_READ_RBAC);
    let upstream = plane.proxy_identity_kubeconfig();
    each_database(|db| {
        let upstream = upstream.clone();
        async move {
            let app = TestApp::start(db).await;
            let proxy = app.state.proxy.clone().expect("serve starts the proxy");
            let mut learners = Vec::new();
            let mut homes = Vec::new();
            for name in ["alice", "dana"] {
                let agent = app.learner(name).await;
                let secret = enrol(&app, &agent).await;
                // What Start does once the learner's cluster is ready (AppSite::lab_ready).
                let lab = proxy
                    .register_lab_cluster(&app.user_id(name).await, &upstream)
                    .await
                    .unwrap();
                assert_eq!(lab.cluster, format!("lab-{name}"));
                let files = hardlab_server::proxy::web::node_client_files(&app.base_url, &lab);
                homes.push((name, secret.clone(), Terminal::new(&files)));
                learners.push((name, agent, secret));
            }
            // Both do the lab's proxy steps from their terminals at the same time.
            let handles: Vec<_> = homes
                .into_iter()
                .map(|(name, secret, terminal)| {
                    std::thread::spawn(move || {
                        lab_steps(&terminal, name, &secret);
                        terminal
                    })
                })
                .collect();
            let terminals: Vec<Terminal> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();

            for ((me, agent, _), terminal) in learners.iter().zip(&terminals) {
                let other = if *me == "alice" { "dana" } else { "alice" };
                // Their tenant through the CLI: their roles, their users, their cluster.
                let shown = terminal.ok(&["proxy", "show"], &[]);
                assert!(shown.contains(&format!("lab-{me}")), "{shown}");
                assert!(!shown.contains(other), "{me} sees {other}: {shown}");
                // Their audit log through the CLI: every event theirs or bob's, in their tenant.
                let exported = terminal.ok(&["audit", "export"], &[]);
                assert!(exported.lines().count() >= 5, "{exported}");
                for line in exported.lines() {
                    let event: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(event["tenant"], *me, "{line}");
                    assert!(
                        event["user"] == *me || event["user"] == "bob",
                        "{me} sees {line}"
                    );
                    assert!(!line.contains(&format!("lab-{other}")), "{line}");
                }
                assert!(exported.contains("\"response_code\":403"), "{exported}");
                let verified = terminal.ok(&["audit", "verify"], &[]);
                assert!(verified.contains("audit chain intact"), "{verified}");
                // Their pages, through the session: their lab cluster and users, not the other's.
                let access = agent.get("/access").await.body;
                assert!(access.contains(&format!("<td>lab-{me}</td>")), "{access}");
                assert!(!access.contains(&format!("lab-{other}")), "{me}: {access}");
                let audit = agent.get("/access/audit").await.body;
                assert!(audit.contains("bob got 403 on list services"), "{audit}");
                assert!(!audit.contains(&format!("lab-{other}")), "{audit}");
                let exported = agent.get("/access/audit.jsonl?scope=lab").await.body;
                assert!(
                    exported.lines().all(|l| l.contains(&format!("\"tenant\":\"{me}\""))),
                    "{exported}"
                );
                // The other's cluster does not exist for them: the answer for a name nobody has.
                terminal.ok(&["kube", "login", "--cluster", &format!("lab-{other}")], &[]);
                let probe = terminal.run("kubectl", &["get", "pods"], &[]);
                assert!(!probe.status.success());
                assert!(
                    text(&probe.stderr).contains("hardlab proxy"),
                    "{}",
                    text(&probe.stderr)
                );
                terminal.ok(&["kube", "login"], &[]);
            }

            // Bob of one tenant is nobody in the other, even with his password and a fresh code.
            let alice_bob: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(terminals[0].path(".hardlab-simulated/bob.json"))
                    .unwrap(),
            )
            .unwrap();
            let crossed = terminals[1].hardlab(
                &["login", "--tenant", "dana", "--user", "bob"],
                &[
                    ("HARDLAB_PASSWORD", alice_bob["password"].as_str().unwrap().to_owned()),
                    (
                        "HARDLAB_OTP",
                        code(alice_bob["totp_secret"].as_str().unwrap(), 1),
                    ),
                    (
                        "HARDLAB_HOME",
                        terminals[1].path(".hardlab-crossed").display().to_string(),
                    ),
                ],
            );
            assert!(!crossed.status.success());
            assert!(
                text(&crossed.stderr).contains("wrong user name, password or code"),
                "{}",
                text(&crossed.stderr)
            );
            // bob may use the cluster, not administer the tenant.
            let bob_apply = terminals[0].hardlab(
                &["proxy", "apply", &terminals[0].path("admins.yaml").display().to_string()],
                &as_bob(&terminals[0]),
            );
            assert!(!bob_apply.status.success());
            assert!(
                text(&bob_apply.stderr).contains("only the admin of tenant alice"),
                "{}",
                text(&bob_apply.stderr)
            );

            // The site's real roles and clusters saw none of it.
            let pool = &app.db.pool;
            assert!(store::list_roles(pool, &Tenant::site()).await.unwrap().is_empty());
            assert!(
                store::all_user_roles(pool, &Tenant::site())
                    .await
                    .unwrap()
                    .is_empty()
            );
            let site_clusters = store::list_clusters(pool, &proxy.service.sealer, &Tenant::site())
                .await
                .unwrap();
            assert!(site_clusters.is_empty());
            // Each tenant holds its own two users and its own roles.
            for name in ["alice", "dana"] {
                let tenant = Tenant::for_learner(name);
                let users = store::all_user_roles(pool, &tenant).await.unwrap();
                let mut expected = vec!["bob".to_owned(), name.to_owned()];
                expected.sort();
                assert_eq!(users.keys().cloned().collect::<Vec<_>>(), expected);
            }
            // A learner's session cannot administer the site's proxy.
            let (status, _) = post_json(
                &app,
                &learners[0].1,
                "/api/proxy/config",
                serde_json::json!({ "yaml": "roles: [{name: sneaky, kubernetes_labels: {'*': '*'}, kubernetes_groups: [system:masters]}]" }),
            )
            .await;
            assert_eq!(status, 401);
            // Nor a tenant's cluster credentials: only labels may be changed there.
            let (status, answer) = post_json(
                &app,
                &learners[0].1,
                "/api/proxy/tenant/config",
                serde_json::json!({ "yaml": "clusters: [{name: lab-alice, labels: {env: dev}, kubeconfig: /etc/passwd}]" }),
            )
            .await;
            assert_eq!(status, 400, "{answer}");
            assert!(answer["error"].as_str().unwrap().contains("kubeconfig"));
        }
    })
    .await;
}
