//! Workshops (issue 14): the admin CLI's contract through the real `hardlab` binary, the join
//! page, the instructor's board and its authorization, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, TestDb, each_database, fixture_labs};
use hardlab_grader::{CheckResult, Severity, Status};
use hardlab_server::web::check::{self, AttemptRecord, AttemptRow, Trigger};

fn hardlab(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(args)
        // The settings come from flags only, whatever the environment of the test run says.
        .env_remove("HARDLAB_DATABASE_URL")
        .env_remove("HARDLAB_LABS")
        .output()
        .unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "hardlab failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `hardlab workshop create ... --json` on this database; returns the printed object.
fn create_workshop(db: &TestDb, extra: &[&str]) -> serde_json::Value {
    let labs = fixture_labs();
    let mut args = vec![
        "workshop",
        "create",
        "--title",
        "Hardening day",
        "--labs",
        "demo-etcd,reading",
        "--capacity",
        "3",
        "--json",
        "--database-url",
        &db.url,
        "--labs-dir",
        labs.to_str().unwrap(),
        "--public-url",
        "https://lab.example.org/",
    ];
    args.extend_from_slice(extra);
    let out = stdout(&hardlab(&args));
    assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
    serde_json::from_str(&out).unwrap()
}

fn result(check: &str, step: &str, status: Status, message: &str) -> CheckResult {
    CheckResult {
        check: check.to_owned(),
        title: format!("the check {check}"),
        lab: "demo-etcd".to_owned(),
        step: step.to_owned(),
        status,
        severity: Severity::High,
        message: message.to_owned(),
        evidence: None,
        remediation: "do the step".to_owned(),
        references: Vec::new(),
        locations: Vec::new(),
        location_problems: Vec::new(),
        duration_ms: 3,
    }
}

/// An attempt stored through the one place verdicts become progress (`check::store`), as a
/// Check on a cluster would store it.
async fn attempt(app: &TestApp, user: &str, step: &str, status: Status, message: &str) {
    let user_id = app.user_id(user).await;
    let record = AttemptRecord {
        problem: None,
        results: vec![result("etcd.encryption-configured", step, status, message)],
    };
    check::store(
        &app.state,
        &user_id,
        "demo-etcd",
        step,
        AttemptRow::New {
            started_at: hardlab_server::db::now_ms(),
        },
        Trigger::Check,
        record,
    )
    .await
    .unwrap();
}

async fn start_app(db: TestDb) -> TestApp {
    TestApp::builder(db)
        .configure(|config| config.clusters = None)
        .start()
        .await
}

#[tokio::test]
async fn the_admin_cli_creates_lists_shows_exports_and_ends_workshops() {
    each_database(|db| async move {
        let created = create_workshop(&db, &[]);
        let id = created["id"].as_str().unwrap().to_owned();
        let code = created["code"].as_str().unwrap().to_owned();
        assert!(code.len() >= 8, "{code}");
        assert!(
            code.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0oO1lIi".contains(c)),
            "{code}"
        );
        assert_eq!(
            created["join_url"],
            format!("https://lab.example.org/join/{code}")
        );
        assert_eq!(created["labs"], serde_json::json!(["demo-etcd", "reading"]));
        // A second workshop gets another code.
        let second = create_workshop(
            &db,
            &[
                "--starts",
                "2030-01-01T09:00:00Z",
                "--ends",
                "2030-01-01T17:00:00+00:00",
            ],
        );
        assert_ne!(second["code"], created["code"]);
        assert_eq!(second["starts_at"], "2030-01-01T09:00:00Z");
        assert_eq!(second["state"], "scheduled");

        // Bad input names what to change and writes nothing.
        let labs = fixture_labs();
        let labs = labs.to_str().unwrap();
        for (args, wanted) in [
            (
                vec!["--labs", "demo-etcd,no-such-lab", "--capacity", "3"],
                "no lab \"no-such-lab\"",
            ),
            (vec!["--labs", "reading", "--capacity", "0"], "capacity:"),
            (
                vec![
                    "--labs",
                    "reading",
                    "--capacity",
                    "3",
                    "--ends",
                    "next week",
                ],
                "ends:",
            ),
            (
                vec![
                    "--labs",
                    "reading",
                    "--capacity",
                    "3",
                    "--instructor",
                    "nobody",
                ],
                "instructor:",
            ),
        ] {
            let mut all = vec![
                "workshop",
                "create",
                "--title",
                "Broken",
                "--database-url",
                &db.url,
                "--labs-dir",
                labs,
            ];
            all.extend_from_slice(&args);
            let output = hardlab(&all);
            assert!(!output.status.success(), "{args:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(wanted), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workshops")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 2);

        let list = stdout(&hardlab(&["workshop", "list", "--database-url", &db.url]));
        assert!(
            list.contains(&code) && list.contains("Hardening day"),
            "{list}"
        );

        // Learners join and check; the export shows what they did.
        let app = start_app(db.clone()).await;
        let workshop = hardlab_server::workshops::get(&db.pool, &id)
            .await
            .unwrap()
            .unwrap();
        for name in ["alice", "bob"] {
            app.learner(name).await;
            let user_id = app.user_id(name).await;
            hardlab_server::workshops::join(&db.pool, &workshop, &user_id)
                .await
                .unwrap()
                .unwrap();
        }
        attempt(
            &app,
            "alice",
            "encrypt",
            Status::Fail,
            "identity comes first",
        )
        .await;
        attempt(&app, "alice", "encrypt", Status::Pass, "aescbc first").await;
        attempt(&app, "bob", "encrypt", Status::Fail, "identity comes first").await;

        let show = stdout(&hardlab(&[
            "workshop",
            "show",
            &code,
            "--json",
            "--database-url",
            &db.url,
        ]));
        let show: serde_json::Value = serde_json::from_str(&show).unwrap();
        assert_eq!(show["id"], id.as_str());
        assert_eq!(show["learners"].as_array().unwrap().len(), 2);

        let csv = stdout(&hardlab(&[
            "workshop",
            "export",
            &code,
            "--format",
            "csv",
            "--database-url",
            &db.url,
            "--labs",
            labs,
        ]));
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        for wanted in [
            "learner",
            "lab",
            "step",
            "passed",
            "attempts",
            "first_passed_at",
            "time_spent_seconds",
        ] {
            assert!(header.contains(&wanted), "{wanted} missing: {header:?}");
        }
        let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
        // Two learners, three steps (demo-etcd: look, encrypt; reading: read).
        assert_eq!(rows.len(), 6, "{csv}");
        let alice_encrypt = rows
            .iter()
            .find(|row| row[0] == "alice" && row[2] == "encrypt")
            .unwrap();
        assert_eq!(alice_encrypt[1], "demo-etcd");
        assert_eq!(alice_encrypt[3], "true");
        assert_eq!(alice_encrypt[4], "2");
        assert!(alice_encrypt[5].starts_with("20"), "{alice_encrypt:?}");
        let bob_encrypt = rows
            .iter()
            .find(|row| row[0] == "bob" && row[2] == "encrypt")
            .unwrap();
        assert_eq!(&bob_encrypt[3..6], ["false", "1", ""]);

        // By ID as well as by code; one line per attempt in the grader's JSON report format.
        let jsonl = stdout(&hardlab(&[
            "workshop",
            "export",
            &id,
            "--format",
            "jsonl",
            "--database-url",
            &db.url,
        ]));
        let lines: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{jsonl}");
        for line in &lines {
            assert_eq!(line["tool"], "hardlab-grade");
            assert_eq!(line["mode"], "live");
            assert!(line["summary"].is_object(), "{line}");
            assert_eq!(line["results"][0]["check"], "etcd.encryption-configured");
        }
        assert_eq!(lines[1]["attempt"]["learner"], "alice");
        assert_eq!(lines[1]["attempt"]["verdict"], "pass");
        assert_eq!(lines[1]["results"][0]["status"], "pass");
        assert_eq!(lines[2]["attempt"]["learner"], "bob");

        let ended = stdout(&hardlab(&[
            "workshop",
            "end",
            &code,
            "--database-url",
            &db.url,
        ]));
        assert!(ended.contains("ended"), "{ended}");
        let show = stdout(&hardlab(&[
            "workshop",
            "show",
            &id,
            "--database-url",
            &db.url,
        ]));
        assert!(show.contains("state:       ended"), "{show}");
        let missing = hardlab(&["workshop", "show", "nosuchcode", "--database-url", &db.url]);
        assert!(!missing.status.success());
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains("nosuchcode"),
            "{missing:?}"
        );
    })
    .await;
}

/// A workshop of the fixture labs made through the library (the CLI's path is tested above).
async fn workshop_for(app: &TestApp, capacity: i64) -> hardlab_server::workshops::Workshop {
    let now = hardlab_server::db::now_ms();
    hardlab_server::workshops::create(
        &app.db.pool,
        &app.state.labs,
        hardlab_server::workshops::NewWorkshop {
            title: "Friday <b>hardening</b>".to_owned(),
            labs: vec!["demo-etcd".to_owned()],
            capacity,
            starts_at: now - 1000,
            ends_at: now + 3_600_000,
            created_by: None,
            instructors: Vec::new(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn learners_join_with_the_code_until_it_is_full_or_ended() {
    each_database(|db| async move {
        let app = start_app(db).await;
        let workshop = workshop_for(&app, 2).await;
        let join = format!("/join/{}", workshop.join_code);

        let alice = app.learner("alice").await;
        let page = alice.get(&join).await;
        assert_eq!(page.status, 200);
        // The title as text, never as markup; the labs and the end time.
        assert!(
            page.body
                .contains("Friday &#60;b&#62;hardening&#60;/b&#62;"),
            "{}",
            page.body
        );
        assert!(page.body.contains("Demo, encrypt Secrets at rest"));
        assert!(page.body.contains(" UTC</strong>"), "{}", page.body);
        assert!(page.body.contains("Join the workshop"));
        // Typed from a projector: capitals and dashes do not matter.
        let typed = format!(
            "/join/{}-{}",
            &workshop.join_code[..6].to_uppercase(),
            &workshop.join_code[6..]
        );
        assert_eq!(alice.get(&typed).await.status, 200);
        assert_eq!(alice.get("/join/notacode").await.status, 404);

        // The form needs its CSRF token.
        assert_eq!(alice.post_form_raw(&join, &[]).await.status, 403);
        let joined = alice.post_form(&join, &[]).await;
        assert_eq!(joined.status, 303, "{}", joined.body);
        let page = alice.get(&join).await;
        assert!(
            page.body.contains("You are in this workshop"),
            "{}",
            page.body
        );
        assert!(page.body.contains("href=\"/labs/demo-etcd\""));
        // Joining again changes nothing.
        assert_eq!(alice.post_form(&join, &[]).await.status, 303);

        let bob = app.learner("bob").await;
        bob.get(&join).await;
        assert_eq!(bob.post_form(&join, &[]).await.status, 303);
        let carol = app.learner("carol").await;
        let page = carol.get(&join).await;
        assert!(page.body.contains("This workshop is full"), "{}", page.body);
        let refused = carol.post_form(&join, &[]).await;
        assert_eq!(refused.status, 409);
        assert!(refused.body.contains("This workshop is full"));
        let learners = hardlab_server::workshops::learners(&app.db.pool, &workshop.id)
            .await
            .unwrap();
        assert_eq!(learners.len(), 2);

        hardlab_server::workshops::end(&app.db.pool, &workshop, None)
            .await
            .unwrap();
        let dave = app.learner("dave").await;
        let page = dave.get(&join).await;
        assert!(
            page.body.contains("This workshop has ended"),
            "{}",
            page.body
        );
        assert_eq!(dave.post_form(&join, &[]).await.status, 410);
    })
    .await;
}

#[tokio::test]
async fn a_name_alone_joins_only_where_the_signup_mode_allows_it() {
    use hardlab_server::web::signup::SignupMode;
    each_database(|db| async move {
        // signup: code — the workshop's own code is the proof; no account needed.
        let app = TestApp::builder(db.clone())
            .configure(|config| {
                config.clusters = None;
                config.signup = SignupMode::Code;
                config.signup_code =
                    Some(hardlab_server::config::JoinCode::new("server-wide-code").unwrap());
            })
            .start()
            .await;
        let workshop = workshop_for(&app, 5).await;
        let join = format!("/join/{}", workshop.join_code);
        let visitor = app.agent();
        let page = visitor.get(&join).await;
        assert!(page.body.contains("name=\"name\""), "{}", page.body);
        let bad = visitor.post_form(&join, &[("name", "x")]).await;
        assert_eq!(bad.status, 400);
        assert!(
            bad.body.contains("Name: a username has 3 to 40"),
            "{}",
            bad.body
        );
        let joined = visitor.post_form(&join, &[("name", "Room-Seat-7")]).await;
        assert_eq!(joined.status, 303, "{}", joined.body);
        let page = visitor.get(&join).await;
        assert!(
            page.body.contains("You are in this workshop"),
            "{}",
            page.body
        );
        assert!(page.body.contains("room-seat-7"));
        let user_id = app.user_id("room-seat-7").await;
        assert!(
            hardlab_server::workshops::is_learner(&app.db.pool, &workshop.id, &user_id)
                .await
                .unwrap()
        );
        // A taken name is said so, and nothing is joined twice.
        let other = app.agent();
        other.get(&join).await;
        let taken = other.post_form(&join, &[("name", "room-seat-7")]).await;
        assert_eq!(taken.status, 400);
        assert!(taken.body.contains("is taken"), "{}", taken.body);
        drop(app);

        // signup: invite — only accounts join; a name alone is refused and makes no account.
        let app = TestApp::builder(db)
            .configure(|config| {
                config.clusters = None;
                config.signup = SignupMode::Invite;
            })
            .start()
            .await;
        let visitor = app.agent();
        let page = visitor.get(&join).await;
        assert!(page.body.contains("Sign in to join"), "{}", page.body);
        assert!(!page.body.contains("name=\"name\""));
        let refused = visitor.post_form(&join, &[("name", "sneaky-one")]).await;
        assert_eq!(refused.status, 403);
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM users WHERE username = 'sneaky-one'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(count, 0);
    })
    .await;
}
