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
        // Two learners, one checked step (demo-etcd's encrypt; its "look" and the reading lab
        // have no checks, so no verdict).
        assert_eq!(rows.len(), 2, "{csv}");
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

/// Reads the event stream until an event's data satisfies `wanted`; returns that data.
async fn next_board(response: &mut reqwest::Response, wanted: impl Fn(&str) -> bool) -> String {
    let mut buffer = String::new();
    let mut last = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|line| line.strip_prefix(' ').unwrap_or(line))
                .collect::<Vec<_>>()
                .join("\n");
            if event.contains("event: board") && wanted(&data) {
                return data;
            }
            last = data;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such board event; the last one was:\n{last}"
        );
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), response.chunk())
            .await
            .expect("the board stream went quiet")
            .unwrap()
            .expect("the board stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_board_is_live_for_its_instructors_only() {
    use hardlab_server::web::accounts::Role;
    each_database(|db| async move {
        let app = start_app(db).await;
        let teacher = app.user_with_role("teacher", Role::Instructor).await;
        let other_teacher = app.user_with_role("other-teacher", Role::Instructor).await;
        let admin = app.user_with_role("root", Role::Admin).await;

        // An instructor creates a workshop on the page; they run it.
        teacher.get("/workshops").await;
        let created = teacher
            .post_form(
                "/workshops",
                &[
                    ("title", "Etcd morning"),
                    ("labs", "demo-etcd"),
                    ("labs", "reading"),
                    ("capacity", "10"),
                    ("minutes", "120"),
                ],
            )
            .await;
        assert_eq!(created.status, 303, "{}", created.body);
        let board_url = created.location().unwrap().to_owned();
        let id = board_url.strip_prefix("/workshops/").unwrap().to_owned();
        let workshop = hardlab_server::workshops::get(&app.db.pool, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(workshop.labs, ["demo-etcd", "reading"]);
        let bad = teacher
            .post_form(
                "/workshops",
                &[("title", "x"), ("labs", "nope"), ("capacity", "3")],
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("there is no lab &#34;nope&#34;"), "{}", bad.body);

        let page = teacher.get(&board_url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains(&workshop.join_code));
        assert!(page.body.contains("Nobody has joined yet"));
        // Another instructor's workshop is not there for them; an admin sees every one.
        let others = other_teacher.get("/workshops").await;
        assert!(!others.body.contains(&workshop.join_code), "{}", others.body);
        assert_eq!(other_teacher.get(&board_url).await.status, 404);
        assert_eq!(
            other_teacher.get(&format!("{board_url}/events")).await.status,
            404
        );
        assert_eq!(
            other_teacher
                .post_form(&format!("{board_url}/end"), &[])
                .await
                .status,
            404
        );
        assert_eq!(admin.get(&board_url).await.status, 200);

        // The board's event stream, as the page's script opens it.
        let mut stream = reqwest::Client::new()
            .get(format!("{}{board_url}/events", app.base_url))
            .header(reqwest::header::COOKIE, teacher.cookie_header())
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        next_board(&mut stream, |data| data.contains("Nobody has joined yet")).await;

        let join = format!("/join/{}", workshop.join_code);
        let mut learners = Vec::new();
        for name in ["ann", "ben", "cid"] {
            let learner = app.learner(name).await;
            learner.get(&join).await;
            assert_eq!(learner.post_form(&join, &[]).await.status, 303);
            learners.push(learner);
        }
        next_board(&mut stream, |data| data.contains("3 learner(s)")).await;

        // A learner sees no board: not of their workshop, not of another.
        let other_workshop = workshop_for(&app, 5).await;
        for learner in &learners {
            assert_eq!(learner.get(&board_url).await.status, 404);
            assert_eq!(learner.get(&format!("{board_url}/events")).await.status, 404);
            assert_eq!(learner.get(&format!("{board_url}/board")).await.status, 404);
            assert_eq!(
                learner
                    .get(&format!("/workshops/{}", other_workshop.id))
                    .await
                    .status,
                404
            );
            assert_eq!(learner.get("/workshops").await.status, 404);
        }
        // The join page lists no other learner.
        let page = learners[0].get(&join).await;
        assert!(!page.body.contains("ben") && !page.body.contains("cid"));

        // Attempts show without a reload; three failures in a row flag a learner.
        let stored = std::time::Instant::now();
        attempt(&app, "ann", "encrypt", Status::Pass, "aescbc first").await;
        let data = next_board(&mut stream, |data| data.contains("1 of 1 passed")).await;
        eprintln!(
            "the board showed ann's pass {} ms after it was stored",
            stored.elapsed().as_millis()
        );
        assert!(data.contains("ann"), "{data}");
        for _ in 0..3 {
            attempt(&app, "ben", "encrypt", Status::Fail, "identity comes first").await;
        }
        attempt(&app, "cid", "encrypt", Status::Fail, "identity comes first").await;
        let data = next_board(&mut stream, |data| {
            data.contains("3 failed checks in a row") && data.contains("<strong>2</strong> learner(s)")
        })
        .await;
        assert!(data.contains("1 stuck"), "{data}");
        assert!(
            data.contains("fail <code>etcd.encryption-configured</code> on step “Turn on encryption at rest”: identity comes first"),
            "{data}"
        );
        // Stuck learners come first.
        let ben = data.find("data-learner=\"ben\"").unwrap();
        let ann = data.find("data-learner=\"ann\"").unwrap();
        assert!(ben < ann, "{data}");

        // Actions: broadcast, extend, end; each in the log.
        let sent = teacher
            .post_form(&format!("{board_url}/broadcast"), &[("message", "Break until 11:00 <b>!</b>")])
            .await;
        assert_eq!(sent.status, 303);
        let page = learners[1].get(&join).await;
        assert!(page.body.contains("Break until 11:00 &#60;b&#62;!&#60;/b&#62;"), "{}", page.body);
        assert_eq!(
            teacher
                .post_form(&format!("{board_url}/broadcast"), &[("message", "  ")])
                .await
                .status,
            400
        );
        let before = workshop.ends_at;
        assert_eq!(
            teacher
                .post_form(&format!("{board_url}/extend"), &[("minutes", "15")])
                .await
                .status,
            303
        );
        let extended = hardlab_server::workshops::get(&app.db.pool, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(extended.ends_at, before + 15 * 60_000);
        assert_eq!(
            teacher
                .post_form(&format!("{board_url}/end"), &[])
                .await
                .status,
            303
        );
        let page = teacher.get(&board_url).await;
        assert!(page.body.contains("Workshop · ended 20"), "{}", page.body);
        assert!(!page.body.contains("/extend"), "nothing to change once ended");
        assert_eq!(
            teacher
                .post_form(&format!("{board_url}/broadcast"), &[("message", "late")])
                .await
                .status,
            400
        );
        let actions: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT action, actor_id FROM workshop_audit WHERE workshop_id = $1 ORDER BY at, id",
        )
        .bind(&id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        let teacher_id = app.user_id("teacher").await;
        let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["create", "broadcast", "extend", "end", "teardown"]);
        assert!(actions.iter().all(|(_, actor)| actor.as_deref() == Some(teacher_id.as_str())));
        let late = app.learner("late").await;
        late.get(&join).await;
        assert_eq!(late.post_form(&join, &[]).await.status, 410);
    })
    .await;
}
