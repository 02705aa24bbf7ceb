//! Sign-up modes on the real app over HTTP: the default (`invite`) lets nobody in without a link,
//! staff make links on /admin/invites (stored hashed, with uses and an expiry), `closed` and
//! `code` do what they say, and the settings are read and checked like the others.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Agent, Page, TestApp, TestDb, each_database};
use hardlab_server::config::{Config, ConfigArgs};
use hardlab_server::web::accounts::Role;
use hardlab_server::web::signup::{JoinCode, SignupMode};

const PASSWORD: &str = "correct-horse-battery";

async fn sign_up(agent: &Agent, name: &str, extra: &[(&str, &str)]) -> Page {
    let mut fields = vec![
        ("username", name),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    fields.extend_from_slice(extra);
    agent.post_form("/signup", &fields).await
}

async fn users(app: &TestApp) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    count
}

fn mode(db: TestDb, signup: SignupMode) -> common::TestAppBuilder {
    TestApp::builder(db).configure(move |c| c.signup = signup)
}

/// The token of the link on a page that just created one.
fn invite_token(page: &Page) -> String {
    page.body
        .split("/signup?invite=")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no link on the page: {}", page.body))
        .to_owned()
}

#[tokio::test]
async fn the_default_mode_is_invite_and_lets_nobody_in_without_a_link() {
    assert_eq!(Config::default().signup, SignupMode::Invite);
    assert_eq!(
        ConfigArgs::default().resolve().unwrap().signup,
        SignupMode::Invite
    );
    each_database(|db| async move {
        let app = TestApp::builder(db)
            .configure(|c| c.signup = Config::default().signup)
            .start()
            .await;
        let visitor = app.agent();
        let page = visitor.get("/signup").await;
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains("Sign-up is by invitation: ask your instructor for a link."),
            "{}",
            page.body
        );
        assert!(
            !page.body.contains("action=\"/signup\""),
            "a form without a link"
        );
        let signin = visitor.get("/signin").await;
        assert!(
            signin.body.contains("Sign-up is by invitation"),
            "{}",
            signin.body
        );
        let note = signin.body.split("class=\"signup-mode\"").nth(1).unwrap();
        assert!(
            !note.split("</p>").next().unwrap().contains("href"),
            "{note}"
        );
        // Posting the form anyway creates nothing.
        let page = sign_up(&visitor, "mallory", &[]).await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.body.contains("by invitation"), "{}", page.body);
        let page = sign_up(&visitor, "mallory", &[("invite", "made-up-token")]).await;
        assert_eq!(page.status, 404, "{}", page.body);
        assert!(page.body.contains("not valid"), "{}", page.body);
        assert_eq!(users(&app).await, 0);
    })
    .await;
}

#[tokio::test]
async fn an_instructor_invites_learners_with_a_link_that_is_used_up_then_refused() {
    each_database(|db| async move {
        let app = mode(db, SignupMode::Invite).start().await;
        let teacher = app.user_with_role("teacher", Role::Instructor).await;
        assert!(
            teacher
                .get("/")
                .await
                .body
                .contains("href=\"/admin/invites\"")
        );
        let page = teacher.get("/admin/invites").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body
                .contains("Sign-up on this server is <strong>invite</strong>")
        );
        let created = teacher
            .post_form("/admin/invites", &[("uses", "2"), ("hours", "4")])
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        let token = invite_token(&created);
        assert!(
            created
                .body
                .contains(&format!("{}/signup?invite={token}", app.base_url)),
            "{}",
            created.body
        );
        // Only the hash is stored.
        let (hash, uses, max_uses): (String, i64, i64) =
            sqlx::query_as("SELECT token_hash, uses, max_uses FROM signup_invites")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_ne!(hash, token);
        assert!(!hash.contains(&token));
        assert_eq!((uses, max_uses), (0, 2));
        // The list shows the link, but not its token again.
        let list = teacher.get("/admin/invites").await;
        assert!(list.body.contains("0 of 2"), "{}", list.body);
        assert!(!list.body.contains(&token));

        // A learner opens the link and signs up; a typo first does not spend a use.
        let first = app.agent();
        let form = first.get(&format!("/signup?invite={token}")).await;
        assert_eq!(form.status, 200);
        assert!(
            form.body
                .contains("Your invitation lets you create an account"),
            "{}",
            form.body
        );
        assert!(
            form.body
                .contains(&format!("name=\"invite\" value=\"{token}\""))
        );
        let typo = first
            .post_form(
                "/signup",
                &[
                    ("username", "ann"),
                    ("password", "short"),
                    ("confirm", "short"),
                    ("invite", &token),
                ],
            )
            .await;
        assert_eq!(typo.status, 400, "{}", typo.body);
        assert!(typo.body.contains("at least 10 characters"));
        let page = sign_up(&first, "ann", &[("invite", &token)]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        // A taken name gives the use back.
        let clash = sign_up(&app.agent(), "ann", &[("invite", &token)]).await;
        assert_eq!(clash.status, 400, "{}", clash.body);
        let page = sign_up(&app.agent(), "ben", &[("invite", &token)]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert!(teacher.get("/admin/invites").await.body.contains("2 of 2"));

        // Used up: the link says so plainly, on the page and on the form.
        let late = app.agent();
        let page = late.get(&format!("/signup?invite={token}")).await;
        assert_eq!(page.status, 410);
        assert!(page.body.contains("has been used up"), "{}", page.body);
        assert!(!page.body.contains("action=\"/signup\""));
        let page = sign_up(&late, "carl", &[("invite", &token)]).await;
        assert_eq!(page.status, 410, "{}", page.body);
        assert_eq!(users(&app).await, 3);

        // Expired: another link whose time has passed.
        let created = teacher
            .post_form("/admin/invites", &[("uses", "5"), ("hours", "1")])
            .await;
        let expired = invite_token(&created);
        sqlx::query("UPDATE signup_invites SET expires_at = 1 WHERE max_uses = 5")
            .execute(&app.db.pool)
            .await
            .unwrap();
        let page = late.get(&format!("/signup?invite={expired}")).await;
        assert_eq!(page.status, 410);
        assert!(page.body.contains("has expired"), "{}", page.body);
        assert_eq!(
            sign_up(&late, "carl", &[("invite", &expired)]).await.status,
            410
        );
        assert_eq!(users(&app).await, 3);
    })
    .await;
}

#[tokio::test]
async fn two_sign_ups_racing_for_the_last_use_make_one_account() {
    each_database(|db| async move {
        let app = mode(db, SignupMode::Invite).start().await;
        let token = hardlab_server::web::signup::create_invite(&app.db.pool, None, 1, 1)
            .await
            .unwrap();
        let (a, b) = (app.agent(), app.agent());
        a.get("/signin").await;
        b.get("/signin").await;
        let proof = [("invite", token.as_str())];
        let (first, second) = tokio::join!(
            sign_up(&a, "racer-a", &proof),
            sign_up(&b, "racer-b", &proof)
        );
        let mut statuses = [first.status, second.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [303, 410], "{} / {}", first.body, second.body);
        assert_eq!(users(&app).await, 1);
    })
    .await;
}

#[tokio::test]
async fn invitation_pages_are_for_staff_and_links_are_revoked_by_their_owner_or_an_admin() {
    each_database(|db| async move {
        let app = mode(db, SignupMode::Invite).start().await;
        let admin = app.user_with_role("root", Role::Admin).await;
        let teacher = app.user_with_role("teacher", Role::Instructor).await;
        let learner = app.user_with_role("lea", Role::Learner).await;
        admin
            .post_form("/admin/invites", &[("uses", "3"), ("hours", "2")])
            .await;
        let (admin_invite,): (String,) = sqlx::query_as("SELECT id FROM signup_invites")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        // Learners and visitors see nothing.
        assert_eq!(learner.get("/admin/invites").await.status, 404);
        let made = learner
            .post_form("/admin/invites", &[("uses", "3"), ("hours", "2")])
            .await;
        assert_eq!(made.status, 404);
        let revoke = format!("/admin/invites/{admin_invite}/revoke");
        assert_eq!(learner.post_form(&revoke, &[]).await.status, 404);
        let anonymous = app.agent().get("/admin/invites").await;
        assert_eq!(anonymous.status, 303);
        assert!(anonymous.location().unwrap().starts_with("/signin?next="));
        // An instructor cannot revoke the admin's link and does not get a button for it.
        assert!(!teacher.get("/admin/invites").await.body.contains(&revoke));
        assert_eq!(teacher.post_form(&revoke, &[]).await.status, 404);
        assert_eq!(
            teacher
                .post_form("/admin/invites/no-such-invite/revoke", &[])
                .await
                .status,
            404
        );
        // Bad numbers are refused by field.
        for (uses, hours, field) in [
            ("0", "2", "uses"),
            ("many", "2", "uses"),
            ("2", "0", "hours"),
            ("2", "99999", "hours"),
        ] {
            let page = teacher
                .post_form("/admin/invites", &[("uses", uses), ("hours", hours)])
                .await;
            assert_eq!(page.status, 400, "{uses} {hours}");
            assert!(
                page.body.contains(&format!("{field}:")),
                "{uses} {hours}: {}",
                page.body
            );
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM signup_invites")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(count, 1);
        // The admin revokes it; the link then says it has expired.
        assert!(admin.get("/admin/invites").await.body.contains(&revoke));
        assert_eq!(admin.post_form(&revoke, &[]).await.status, 303);
        assert!(admin.get("/admin/invites").await.body.contains("expired"));
    })
    .await;
}

#[tokio::test]
async fn closed_sign_up_has_no_form_and_creates_no_account() {
    each_database(|db| async move {
        let app = mode(db, SignupMode::Closed).start().await;
        let visitor = app.agent();
        let page = visitor.get("/signup").await;
        assert!(page.body.contains("Sign-up is closed"), "{}", page.body);
        assert!(!page.body.contains("action=\"/signup\""));
        assert!(
            visitor
                .get("/signin")
                .await
                .body
                .contains("Sign-up is closed")
        );
        // Not even with a valid invitation: closed means admins create accounts.
        let token = hardlab_server::web::signup::create_invite(&app.db.pool, None, 5, 1)
            .await
            .unwrap();
        let page = sign_up(&visitor, "mallory", &[("invite", &token)]).await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert_eq!(users(&app).await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_join_code_lets_learners_in_and_wrong_codes_are_throttled() {
    each_database(|db| async move {
        let app = TestApp::builder(db)
            .configure(|c| {
                c.signup = SignupMode::Code;
                c.signup_code = Some(JoinCode::new("k8s-workshop-7").unwrap());
            })
            .start()
            .await;
        let visitor = app.agent();
        let page = visitor.get("/signup").await;
        assert!(page.body.contains("join code"), "{}", page.body);
        assert!(page.body.contains("name=\"code\""), "{}", page.body);
        let signin = visitor.get("/signin").await;
        let note = signin.body.split("class=\"signup-mode\"").nth(1).unwrap();
        assert!(
            note.split("</p>")
                .next()
                .unwrap()
                .contains("href=\"/signup\""),
            "{note}"
        );
        let page = sign_up(&visitor, "ann", &[]).await;
        assert_eq!(page.status, 403);
        assert!(page.body.contains("Join code:"), "{}", page.body);
        let page = sign_up(&visitor, "ann", &[("code", " k8s-workshop-7 ")]).await;
        assert_eq!(page.status, 303, "{}", page.body);
        // An invitation link works in this mode too, without the code.
        let token = hardlab_server::web::signup::create_invite(&app.db.pool, None, 1, 1)
            .await
            .unwrap();
        let invited = app.agent();
        let form = invited.get(&format!("/signup?invite={token}")).await;
        assert!(!form.body.contains("name=\"code\""), "{}", form.body);
        assert_eq!(
            sign_up(&invited, "ben", &[("invite", &token)]).await.status,
            303
        );

        let guesser = app.agent_from("127.0.0.9".parse().unwrap());
        for attempt in 1..=hardlab_server::web::accounts::FREE_FAILURES_JOIN_CODE {
            let page = sign_up(
                &guesser,
                "mallory",
                &[("code", &format!("guess-{attempt:04}"))],
            )
            .await;
            assert_eq!(page.status, 403, "attempt {attempt}");
            assert!(page.body.contains("not the code"), "{}", page.body);
        }
        let page = sign_up(&guesser, "mallory", &[("code", "k8s-workshop-7")]).await;
        assert_eq!(page.status, 429, "{}", page.body);
        assert!(page.headers.get("retry-after").is_some());
        assert_eq!(users(&app).await, 2);
    })
    .await;
}

#[tokio::test]
async fn the_settings_are_read_from_the_file_and_bad_values_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hardlab.yaml");
    let read = |yaml: &str| {
        std::fs::write(&file, yaml).unwrap();
        ConfigArgs {
            config: Some(file.clone()),
            ..ConfigArgs::default()
        }
        .resolve()
    };
    let config = read(
        "signup: code\nsignup_code: workshop-2026\nframe_ancestors: [\"https://lms.example.org\", \"'self'\"]\n\
         trusted_proxies: [10.0.0.0/8, \"192.0.2.1\"]\npublic_url: https://lab.example.org\n",
    )
    .unwrap();
    assert_eq!(config.signup, SignupMode::Code);
    assert_eq!(
        config.frame_ancestors,
        ["https://lms.example.org", "'self'"]
    );
    assert_eq!(config.trusted_proxies.len(), 2);
    assert!(config.cookies_secure());
    for (yaml, field) in [
        ("signup: sometimes\n", "signup"),
        ("signup: code\n", "signup_code"),
        ("signup: code\nsignup_code: short\n", "signup_code"),
        ("frame_ancestors: [\"*\"]\n", "frame_ancestors"),
        (
            "frame_ancestors: [\"https://lms.example.org; script-src *\"]\n",
            "frame_ancestors",
        ),
        ("trusted_proxies: [proxy.local]\n", "trusted_proxies"),
        ("trusted_proxies: [10.0.0.0/40]\n", "trusted_proxies"),
    ] {
        let error = read(yaml).unwrap_err().to_string();
        assert!(error.contains(field), "{yaml}: {error}");
    }
    assert!(!Config::default().cookies_secure());
}

#[test]
fn open_sign_up_with_privileged_nodes_warns_at_start() {
    use hardlab_server::web::accounts::startup_warnings;
    let open = Config {
        signup: SignupMode::Open,
        ..Config::default()
    };
    let warnings = startup_warnings(&open, true);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("root on the Docker host"),
        "{warnings:?}"
    );
    assert!(startup_warnings(&open, false).is_empty());
    assert!(startup_warnings(&Config::default(), true).is_empty());
}

#[tokio::test]
async fn admin_invite_prints_a_link_on_the_public_url_that_signs_up() {
    // The command writes into the database a server then uses.
    let db = TestDb::sqlite().await;
    let url = db.url.clone();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args([
            "admin",
            "invite",
            "--uses",
            "3",
            "--hours",
            "2",
            "--database-url",
            &url,
            "--public-url",
            "https://lab.example.org/",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let link = stdout.split_whitespace().next().unwrap();
    let token = link
        .strip_prefix("https://lab.example.org/signup?invite=")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        stdout.contains("up to 3 account(s), for 2 hour(s)"),
        "{stdout}"
    );

    let (max_uses, created_by): (i64, Option<String>) =
        sqlx::query_as("SELECT max_uses, created_by FROM signup_invites")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((max_uses, created_by), (3, None));
    // The printed link signs up on a server with that database.
    let app = mode(db, SignupMode::Invite).start().await;
    let visitor = app.agent();
    assert_eq!(
        sign_up(&visitor, "ann", &[("invite", token)]).await.status,
        303
    );

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["admin", "invite", "--uses", "0", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("uses:"),
        "{refused:?}"
    );
}

#[test]
fn serve_help_lists_the_settings_and_never_shows_the_join_code() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(["serve", "--help"])
        .env("HARDLAB_SIGNUP_CODE", "secret-join-code-42")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for wanted in [
        "--signup <MODE>",
        "[default: invite]",
        "HARDLAB_SIGNUP",
        "--signup-code <CODE>",
        "HARDLAB_SIGNUP_CODE",
        "--frame-ancestors <ORIGINS>",
        "HARDLAB_FRAME_ANCESTORS",
        "--trusted-proxies <ADDRS>",
        "HARDLAB_TRUSTED_PROXIES",
        "HSTS and Secure cookies",
    ] {
        assert!(help.contains(wanted), "{wanted} missing:\n{help}");
    }
    assert!(!help.contains("secret-join-code-42"), "{help}");
}
