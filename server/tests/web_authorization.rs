//! Authorization of every route: anonymous visitors, learner A against learner B, instructors and
//! admins. Another learner's data answers 404, never 403, so its existence does not leak.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Agent, TestApp, each_database};
use hardlab_server::web::accounts::Role;

/// A kubeconfig with inline credentials for an API server that is not there (port 1): grading
/// fails fast with "cannot reach", which is all these tests need.
pub const UNREACHABLE_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: secret-token-never-shown
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
";

/// Every page behind sign-in, with `{user}` and `{attempt}` filled in per test.
const PAGES: &[&str] = &[
    "/",
    "/labs/demo-etcd",
    "/labs/demo-etcd/steps/look",
    "/labs/demo-etcd/steps/encrypt",
    "/attempts/{attempt}",
    "/cluster",
    "/admin/users",
    "/admin/users/{user}/cluster",
    "/progress",
    "/progress/{user}",
];

const ACTIONS: &[(&str, &[(&str, &str)])] = &[
    ("/labs/demo-etcd/steps/encrypt/check", &[]),
    ("/cluster", &[("kubeconfig", UNREACHABLE_KUBECONFIG)]),
    ("/cluster/remove", &[]),
    ("/admin/users/{user}/role", &[("role", "admin")]),
    (
        "/admin/users/{user}/cluster",
        &[("kubeconfig", UNREACHABLE_KUBECONFIG)],
    ),
    ("/admin/users/{user}/cluster/remove", &[]),
    ("/signout", &[]),
];

fn fill(path: &str, user: &str, attempt: &str) -> String {
    path.replace("{user}", user).replace("{attempt}", attempt)
}

/// Learner "alice" with a registered cluster and one stored attempt; returns her agent, ID and
/// the attempt's ID.
async fn alice_with_an_attempt(app: &TestApp) -> (Agent, String, String) {
    let alice = app.learner("alice").await;
    let saved = alice
        .post_form(
            "/cluster",
            &[("name", "lab"), ("kubeconfig", UNREACHABLE_KUBECONFIG)],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let checked = alice
        .post_form("/labs/demo-etcd/steps/encrypt/check", &[])
        .await;
    assert_eq!(checked.status, 303, "{}", checked.body);
    let alice_id = app.user_id("alice").await;
    let (attempt,): (String,) = sqlx::query_as("SELECT id FROM check_attempts WHERE user_id = $1")
        .bind(&alice_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    (alice, alice_id, attempt)
}

async fn alice_role(app: &TestApp) -> String {
    let (role,): (String,) = sqlx::query_as("SELECT role FROM users WHERE username = 'alice'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    role
}

async fn alice_has_cluster(app: &TestApp, alice_id: &str) -> bool {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT owner_id FROM static_clusters WHERE owner_id = $1")
            .bind(alice_id)
            .fetch_optional(&app.db.pool)
            .await
            .unwrap();
    row.is_some()
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_sign_in_from_every_page_and_action() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let (_alice, alice_id, attempt) = alice_with_an_attempt(&app).await;
        let anonymous = app.agent();
        for path in PAGES {
            let path = fill(path, &alice_id, &attempt);
            let page = anonymous.get(&path).await;
            assert_eq!(page.status, 303, "GET {path}");
            let location = page.location().unwrap();
            assert!(
                location.starts_with("/signin?next="),
                "GET {path} -> {location}"
            );
        }
        for (path, fields) in ACTIONS {
            let path = fill(path, &alice_id, &attempt);
            // A valid anonymous CSRF token, so it is the missing session that refuses.
            let page = anonymous.post_form(&path, fields).await;
            assert_eq!(page.status, 303, "POST {path}: {}", page.body);
            assert!(
                page.location().unwrap().starts_with("/signin"),
                "POST {path}"
            );
        }
        assert_eq!(alice_role(&app).await, "learner");
        assert!(alice_has_cluster(&app, &alice_id).await);
        for public in ["/signin", "/signup", "/healthz", "/readyz", "/metrics"] {
            assert_eq!(anonymous.get(public).await.status, 200, "GET {public}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_learner_gets_404_for_another_learners_attempts_progress_cluster_and_staff_pages() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let (alice, alice_id, attempt) = alice_with_an_attempt(&app).await;
        let bob = app.learner("bob").await;
        for path in [
            format!("/attempts/{attempt}"),
            format!("/progress/{alice_id}"),
            format!("/admin/users/{alice_id}/cluster"),
            "/admin/users".to_owned(),
            "/progress".to_owned(),
            "/labs/no-such-lab".to_owned(),
            "/labs/demo-etcd/steps/no-such-step".to_owned(),
            "/attempts/no-such-attempt".to_owned(),
        ] {
            let page = bob.get(&path).await;
            assert_eq!(page.status, 404, "bob GET {path}");
            assert!(
                !page.body.contains("alice"),
                "bob GET {path} mentions alice"
            );
        }
        for (path, fields) in [
            (
                format!("/admin/users/{alice_id}/role"),
                vec![("role", "admin")],
            ),
            (
                format!("/admin/users/{alice_id}/cluster"),
                vec![("kubeconfig", UNREACHABLE_KUBECONFIG)],
            ),
            (format!("/admin/users/{alice_id}/cluster/remove"), vec![]),
        ] {
            let page = bob.post_form(&path, &fields).await;
            assert_eq!(page.status, 404, "bob POST {path}");
        }
        assert_eq!(alice_role(&app).await, "learner");
        assert!(alice_has_cluster(&app, &alice_id).await);

        // Bob's own views show none of Alice's state.
        let step = bob.get("/labs/demo-etcd/steps/encrypt").await;
        assert_eq!(step.status, 200);
        assert!(!step.body.contains(&attempt));
        // The app runs learners' clusters, as `serve` does: Bob is told to start his own.
        assert!(
            step.body
                .contains("Your cluster is not running. Start it in the terminal pane"),
            "{}",
            step.body
        );
        let cluster = bob.get("/cluster").await;
        assert!(
            cluster
                .body
                .contains("No cluster registered by kubeconfig.")
        );
        assert!(!cluster.body.contains("127.0.0.1:1"));
        // Bob removing "his" cluster leaves Alice's alone.
        assert_eq!(bob.post_form("/cluster/remove", &[]).await.status, 303);
        assert!(alice_has_cluster(&app, &alice_id).await);

        // Alice sees her own attempt but not the staff pages either.
        assert_eq!(alice.get(&format!("/attempts/{attempt}")).await.status, 200);
        assert_eq!(
            alice.get(&format!("/progress/{alice_id}")).await.status,
            404
        );
        assert_eq!(alice.get("/admin/users").await.status, 404);
    })
    .await;
}

#[tokio::test]
async fn a_learner_cannot_give_the_grader_node_or_etcd_access() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let page = alice
            .post_form(
                "/cluster",
                &[
                    ("kubeconfig", UNREACHABLE_KUBECONFIG),
                    ("node_spec", "local:/etc"),
                ],
            )
            .await;
        assert_eq!(page.status, 400);
        assert!(page.body.contains("only an admin"), "{}", page.body);
        let alice_id = app.user_id("alice").await;
        assert!(!alice_has_cluster(&app, &alice_id).await);
    })
    .await;
}

#[tokio::test]
async fn an_instructor_sees_progress_and_attempts_but_cannot_administer_users() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let (_alice, alice_id, attempt) = alice_with_an_attempt(&app).await;
        let teacher = app.user_with_role("teacher", Role::Instructor).await;
        let board = teacher.get("/progress").await;
        assert_eq!(board.status, 200);
        assert!(board.body.contains("alice"));
        let detail = teacher.get(&format!("/progress/{alice_id}")).await;
        assert_eq!(detail.status, 200);
        assert!(detail.body.contains(&attempt));
        assert_eq!(
            teacher.get(&format!("/attempts/{attempt}")).await.status,
            200
        );
        assert_eq!(teacher.get("/admin/users").await.status, 404);
        assert_eq!(
            teacher
                .get(&format!("/admin/users/{alice_id}/cluster"))
                .await
                .status,
            404
        );
        let page = teacher
            .post_form(
                &format!("/admin/users/{alice_id}/role"),
                &[("role", "admin")],
            )
            .await;
        assert_eq!(page.status, 404);
        assert_eq!(alice_role(&app).await, "learner");
    })
    .await;
}

#[tokio::test]
async fn an_admin_manages_roles_and_clusters_without_ever_seeing_a_kubeconfig() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let (_alice, alice_id, attempt) = alice_with_an_attempt(&app).await;
        let admin = app.user_with_role("root", Role::Admin).await;
        let users = admin.get("/admin/users").await;
        assert_eq!(users.status, 200);
        assert!(users.body.contains("alice"));
        assert_eq!(admin.get(&format!("/attempts/{attempt}")).await.status, 200);
        assert_eq!(
            admin.get(&format!("/progress/{alice_id}")).await.status,
            200
        );

        let cluster = admin.get(&format!("/admin/users/{alice_id}/cluster")).await;
        assert_eq!(cluster.status, 200);
        assert!(cluster.body.contains("https://127.0.0.1:1"));
        assert!(!cluster.body.contains("secret-token-never-shown"));
        let (sealed,): (String,) =
            sqlx::query_as("SELECT kubeconfig_sealed FROM static_clusters WHERE owner_id = $1")
                .bind(&alice_id)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert!(!sealed.contains("secret-token-never-shown"));
        assert!(!sealed.contains("127.0.0.1"));

        let changed = admin
            .post_form(
                &format!("/admin/users/{alice_id}/role"),
                &[("role", "instructor")],
            )
            .await;
        assert_eq!(changed.status, 303);
        assert_eq!(alice_role(&app).await, "instructor");
        let removed = admin
            .post_form(&format!("/admin/users/{alice_id}/cluster/remove"), &[])
            .await;
        assert_eq!(removed.status, 303);
        assert!(!alice_has_cluster(&app, &alice_id).await);
        assert_eq!(admin.get("/admin/users/nobody/cluster").await.status, 404);
    })
    .await;
}

#[tokio::test]
async fn a_kubeconfig_that_would_run_commands_on_the_server_is_refused() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let alice = app.learner("alice").await;
        let exec = UNREACHABLE_KUBECONFIG.replace(
            "    token: secret-token-never-shown\n",
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/touch\n      args: [/tmp/pwned]\n",
        );
        let page = alice.post_form("/cluster", &[("kubeconfig", &exec)]).await;
        assert_eq!(page.status, 400);
        assert!(page.body.contains("uses exec"), "{}", page.body);
        let garbage = alice
            .post_form("/cluster", &[("kubeconfig", "clusters: [")])
            .await;
        assert_eq!(garbage.status, 400);
        assert!(garbage.body.contains("does not parse"), "{}", garbage.body);
    })
    .await;
}
