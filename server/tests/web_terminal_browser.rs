//! The learner's whole path in real headless Chromium, on the real Docker engine with the test node
//! image: Start on a lab step creates their own cluster, the creation phases arrive by server-sent
//! events, the xterm.js terminal opens a login shell in the node, typed commands and "Run in
//! terminal" blocks print their output there, Check grades that cluster, and Remove leaves nothing
//! behind. The second test reads lab 1 from start to finish the same way: each step's Check fails,
//! the revealed solution runs in the terminal, Check passes.
//! Screenshots go to target/test-artifacts/.
#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{TestApp, TestDb};
use hardlab_server::clusters::{ClusterManager, DockerProvider, random_name};
use hardlab_server::config::ClusterSettings;
use hardlab_testkit::{Component, require};
use support::{TEST_IMAGE, assert_nothing_left, docker_or_skip};

/// The WebDriver key code of Enter.
const ENTER: &str = "\u{E007}";
/// Creating a test node and running lab 1's setup (two control-plane restarts) on 2 cores.
const CLUSTER_READY: Duration = Duration::from_secs(300);
const COMMAND: Duration = Duration::from_secs(60);
const SOLUTION: Duration = Duration::from_secs(300);

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
}

fn repo_labs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../labs")
}

async fn app_with_clusters() -> TestApp {
    TestApp::builder(TestDb::sqlite().await)
        .labs(repo_labs())
        .configure(|config| config.check_patience = Duration::from_secs(45))
        .clusters(ClusterSettings {
            node_image: TEST_IMAGE.to_owned(),
            node_unprivileged: true,
            node_memory_mb: 1024,
            // Its own label value, so start-up adoption and orphan removal touch no other test's nodes.
            docker_instance: Some(format!("test-{}", random_name())),
            ..ClusterSettings::default()
        })
        .start()
        .await
}

/// The Docker provider, the app with learners' clusters, and Chromium signed in as `learner`;
/// `None` (after saying why) where Docker or Chromium is missing.
async fn learner_in_chromium(learner: &str) -> Option<(DockerProvider, TestApp, Browser)> {
    let provider = docker_or_skip().await?;
    if !require(Component::Chromium) {
        return None;
    }
    let app = app_with_clusters().await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, learner).await;
    Some((provider, app, browser))
}

fn clusters(app: &TestApp) -> &ClusterManager {
    &app.state.clusters.as_ref().unwrap().manager
}

/// Signs `name` up through the app and hands the session cookie to the browser.
async fn sign_in(browser: &Browser, app: &TestApp, name: &str) {
    let learner = app.learner(name).await;
    let cookie = learner.cookie("hardlab_session").unwrap();
    browser.goto(&format!("{}/healthz", app.base_url)).await;
    browser
        .script(&format!(
            "document.cookie = 'hardlab_session={cookie}; path=/'; return true;"
        ))
        .await;
}

/// Everything the page's xterm.js terminal holds, scrollback included.
async fn terminal_text(browser: &Browser) -> String {
    browser
        .script(
            "const panel = window.hardlabTerminal; const term = panel && panel.terminal;
             if (!term) return '';
             const buffer = term.buffer.active; const lines = [];
             for (let i = 0; i < buffer.length; i++) {
               const line = buffer.getLine(i); if (line) lines.push(line.translateToString(true));
             }
             return lines.join('\\n');",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_for_terminal(browser: &Browser, wanted: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = terminal_text(browser).await;
        if text.contains(wanted) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{wanted:?} did not appear in the terminal within {timeout:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The exit codes of the solution runs the terminal shows, oldest first. A reattached terminal
/// replays the shell's recent output, so earlier steps' runs are in there too.
fn script_exits(text: &str) -> Vec<String> {
    const MARK: &str = "[script exited with ";
    text.match_indices(MARK)
        .filter_map(|(at, _)| {
            let rest = &text[at + MARK.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            // `$?` in a typed command is not an exit line.
            (!digits.is_empty() && rest[digits.len()..].starts_with(']')).then_some(digits)
        })
        .collect()
}

/// Waits for one more exit line than `before`; returns its code and the terminal's text.
async fn wait_for_script_exit(
    browser: &Browser,
    before: usize,
    timeout: Duration,
) -> (String, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = terminal_text(browser).await;
        let exits = script_exits(&text);
        if exits.len() > before {
            return (exits[before].clone(), text);
        }
        assert!(
            Instant::now() < deadline,
            "the script did not finish within {timeout:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn cluster_of_page(browser: &Browser, lab: &str) -> String {
    browser
        .script(&format!(
            "return sessionStorage.getItem('hardlab-cluster-{lab}') || '';"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Starts the lab's cluster from the open step page and waits for its terminal; returns the
/// creation phases the page showed, in order.
async fn start_and_watch(browser: &Browser) -> Vec<String> {
    // Records each phase the progress list marks current, as the events arrive.
    browser
        .script(
            "window.seenPhases = [];
             const root = document.querySelector('[data-hardlab-cluster]');
             const note = () => {
               const current = root.querySelector('li[data-state=current]');
               const seen = window.seenPhases;
               if (current && seen[seen.length - 1] !== current.dataset.phase) seen.push(current.dataset.phase);
             };
             new MutationObserver(note).observe(root, { subtree: true, childList: true, attributes: true });
             return true;",
        )
        .await;
    browser.click("[data-action=start]").await;
    browser
        .wait_for("[data-cluster-state=ready]", CLUSTER_READY)
        .await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    let phases = browser.script("return window.seenPhases;").await;
    phases
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|phase| phase.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_learner_starts_a_lab_watches_it_come_up_types_in_the_terminal_and_checks() {
    let Some((provider, app, browser)) = learner_in_chromium("ada").await else {
        return;
    };

    browser
        .goto(&format!(
            "{}/labs/etcd-secrets/steps/plaintext",
            app.base_url
        ))
        .await;
    browser.find("[data-action=start]").await;
    let phases = start_and_watch(&browser).await;
    // Lab 1 has a setup script, so the last phase before ready is the lab's own preparation; the
    // node's phases before it arrive as events too (which ones depends on timing).
    assert!(
        phases.len() >= 2 && phases.last().map(String::as_str) == Some("preparing-lab"),
        "phases seen: {phases:?}"
    );
    let cluster = cluster_of_page(&browser, "etcd-secrets").await;
    assert!(!cluster.is_empty());
    let record = clusters(&app).get(&cluster).await.unwrap().unwrap();
    assert_eq!(
        record.owner_id.as_deref(),
        Some(app.user_id("ada").await.as_str())
    );
    assert!(
        browser
            .text(".cluster-status")
            .await
            .contains("Your cluster is ready")
    );

    // Typed by hand into xterm.js.
    browser
        .type_into(".xterm-helper-textarea", &format!("kubectl get ns{ENTER}"))
        .await;
    wait_for_terminal(&browser, "kube-system", COMMAND).await;

    // The step's first shell block, sent with one click: the Secret and its base64 value.
    browser
        .click(".step-text pre[data-run] ~ button.run:not([hidden])")
        .await;
    wait_for_terminal(
        &browser,
        "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==",
        COMMAND,
    )
    .await;
    // The lab's setup ran before the learner arrived: etcd answers on plain HTTP without a certificate.
    browser
        .type_into(
            ".xterm-helper-textarea",
            &format!(
                "etcdctl --endpoints http://127.0.0.1:4001 get /registry/secrets/default/db-password | grep -c correct-horse{ENTER}"
            ),
        )
        .await;
    let text = wait_for_terminal(&browser, "\n1\n", COMMAND).await;
    assert!(!text.contains("command not found"), "{text}");
    // xterm.js, its style elements and the WebSocket all work under the Content-Security-Policy.
    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:?}");
    browser
        .full_page_screenshot(&artifacts().join("terminal-ready-1280.png"), 1280)
        .await;
    browser.resize(1280, 900).await;

    // Check grades this learner's own Docker cluster: encryption at rest is still off.
    browser
        .goto(&format!(
            "{}/labs/etcd-secrets/steps/encrypt-aescbc",
            app.base_url
        ))
        .await;
    browser.find("[data-cluster-state=ready]").await;
    browser
        .click("form[data-check-form] button[type=submit]")
        .await;
    browser
        .wait_for(".attempt-fail", Duration::from_secs(120))
        .await;
    assert!(
        browser
            .text(".results")
            .await
            .contains("etcd.secrets-encrypted")
    );
    // The page came back with the same cluster and reattached to the same shell.
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    assert_eq!(cluster_of_page(&browser, "etcd-secrets").await, cluster);

    // Remove: the page says so and nothing of the cluster is left on the engine.
    browser.click("[data-action=remove]").await;
    browser.find("[data-action=start]").await;
    assert!(browser.text(".cluster-status").await.contains("removed"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = clusters(&app)
            .get(&cluster)
            .await
            .unwrap()
            .map(|r| r.state.as_str().to_owned());
        if state.as_deref() == Some("deleted") {
            break;
        }
        assert!(Instant::now() < deadline, "cluster state {state:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_nothing_left(&provider, &[&cluster]).await;
}

#[tokio::test]
async fn a_node_that_dies_under_the_learner_says_so_on_the_page_and_offers_start_again() {
    let Some((provider, app, browser)) = learner_in_chromium("grace").await else {
        return;
    };
    browser
        .goto(&format!("{}/labs/access-proxy/steps/no-role", app.base_url))
        .await;
    browser.find("[data-action=start]").await;
    start_and_watch(&browser).await;
    let cluster = cluster_of_page(&browser, "access-proxy").await;
    provider
        .docker()
        .kill_container(
            &hardlab_server::clusters::node_container_name(&cluster),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    // The page hears it from the cluster's events: no reload, no terminal retrying a dead node.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = browser.text(".cluster-status").await;
        if status.contains("Your cluster stopped working") {
            assert!(status.contains("stopped (exit code"), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the page still says: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(browser.text("[data-action=start]").await, "Start again");
    assert!(
        browser
            .try_find("[data-terminal=connected]")
            .await
            .is_none()
    );
    browser
        .full_page_screenshot(&artifacts().join("node-died-1280.png"), 1280)
        .await;
    assert_nothing_left(&provider, &[&cluster]).await;
}

/// Steps the test node cannot host (it runs kube-apiserver v1.20: no KMS v2), as the harness skips them.
const NOT_OFFLINE: &[&str] = &["kms-v2"];

#[tokio::test]
async fn lab_1_read_start_to_finish_in_the_browser_every_check_fails_then_passes() {
    let Some((provider, app, browser)) = learner_in_chromium("grace").await else {
        return;
    };
    let lab = app.state.labs.get("etcd-secrets").unwrap().clone();
    let step_url = |step: &str| format!("{}/labs/etcd-secrets/steps/{step}", app.base_url);

    browser
        .goto(&format!("{}/labs/etcd-secrets", app.base_url))
        .await;
    browser
        .full_page_screenshot(&artifacts().join("lab1-intro-1280.png"), 1280)
        .await;
    browser.resize(1280, 900).await;
    browser.goto(&step_url(&lab.steps[0].id)).await;
    browser.find("[data-action=start]").await;
    start_and_watch(&browser).await;
    let cluster = cluster_of_page(&browser, "etcd-secrets").await;

    for (number, step) in lab.steps.iter().enumerate() {
        if step
            .needs
            .iter()
            .any(|need| NOT_OFFLINE.contains(&need.as_str()))
        {
            continue;
        }
        browser.goto(&step_url(&step.id)).await;
        browser.wait_for("[data-terminal=connected]", COMMAND).await;
        if !step.checks.is_empty() {
            browser
                .click("form[data-check-form] button[type=submit]")
                .await;
            browser
                .wait_for(".attempt-fail", Duration::from_secs(120))
                .await;
            browser.wait_for("[data-terminal=connected]", COMMAND).await;
        }
        // Reveal the solution and run it in the terminal, as a stuck learner would.
        browser.click("details.solution summary").await;
        let before = script_exits(&terminal_text(&browser).await).len();
        browser
            .click("details.solution button.run:not([hidden])")
            .await;
        let (code, text) = wait_for_script_exit(&browser, before, SOLUTION).await;
        assert!(
            code == "0",
            "step {}'s solution failed in the terminal:\n{text}",
            step.id
        );
        browser
            .full_page_screenshot(
                &artifacts().join(format!("lab1-step{}-{}-1280.png", number + 1, step.id)),
                1280,
            )
            .await;
        browser.resize(1280, 900).await;
        if !step.checks.is_empty() {
            browser
                .click("form[data-check-form] button[type=submit]")
                .await;
            // aescbc passes with a warning (a weak provider): still a pass of the step.
            browser
                .wait_for(".attempt-pass, .attempt-warn", Duration::from_secs(120))
                .await;
        }
    }
    browser
        .goto(&format!("{}/labs/etcd-secrets", app.base_url))
        .await;
    browser
        .full_page_screenshot(&artifacts().join("lab1-done-1280.png"), 1280)
        .await;

    clusters(&app).delete(&cluster).await.unwrap();
    assert_nothing_left(&provider, &[&cluster]).await;
}

/// Loads the page again (going to the same address with a `#fragment` would not).
async fn reload(browser: &Browser) {
    let url = browser.url().await;
    browser.goto("about:blank").await;
    browser.goto(&url).await;
}

/// Screenshots of a step with the terminal open at both sizes.
async fn screenshots_at_both_sizes(browser: &Browser, name: &str, ready: &str) {
    browser.resize(1280, 900).await;
    reload(browser).await;
    browser.find(ready).await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    browser
        .screenshot(&artifacts().join(format!("{name}-1280.png")))
        .await;
    browser.resize(390, 844).await;
    reload(browser).await;
    browser.find(ready).await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    browser
        .screenshot(&artifacts().join(format!("{name}-390.png")))
        .await;
    browser.resize(1280, 900).await;
}

/// How long the background check may take to pass a step after its solution finished: its
/// interval (20 s), a grading that waits for a restarting API server (up to the 45 s patience
/// here) and a margin for two busy cores.
const AUTO_CHECK_WITHIN: Duration = Duration::from_secs(120);

#[tokio::test]
async fn catch_up_to_lab_1_step_4_then_the_background_check_passes_step_5_after_its_solution() {
    let Some((provider, app, browser)) = learner_in_chromium("lin").await else {
        return;
    };
    let user = app.user_id("lin").await;
    let step_url = |step: &str| format!("{}/labs/etcd-secrets/steps/{step}", app.base_url);
    browser.resize(1280, 900).await;
    browser.goto(&step_url("plaintext")).await;
    browser.find("[data-action=start]").await;
    start_and_watch(&browser).await;
    let cluster = cluster_of_page(&browser, "etcd-secrets").await;

    // "Start the lab here" on step 4: steps 1-3's solutions run and the grader confirms them.
    browser.goto(&step_url("kms-v2")).await;
    browser.click(".steps-drawer > summary").await;
    browser
        .click("form[data-catch-up-form] button[type=submit]")
        .await;
    browser.find("#catch-up").await;
    let started = Instant::now();
    let deadline = started + 3 * SOLUTION;
    loop {
        if browser.try_find("#catch-up[data-running]").await.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            browser.text("#catch-up").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("catch-up to step 4 took {:?}", started.elapsed());
    let summary = browser.text("#catch-up").await;
    assert!(
        summary.contains("Done: every earlier step is confirmed by the grader"),
        "{summary}"
    );
    let states: Vec<(String, String)> = sqlx::query_as(
        "SELECT step_id, state FROM step_progress WHERE user_id = $1 ORDER BY step_id",
    )
    .bind(&user)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    // Step 1 has no checks (its solution ran); steps 2 and 3 passed by the grader (aescbc with
    // its warning).
    assert_eq!(
        states,
        vec![
            ("encrypt-aescbc".to_owned(), "warned".to_owned()),
            ("rewrite-secrets".to_owned(), "passed".to_owned()),
        ]
    );
    let (by_catch_up,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM check_attempts WHERE user_id = $1 AND origin = 'catch-up' \
         AND status IN ('pass', 'warn')",
    )
    .bind(&user)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(by_catch_up, 2);
    let progress = app.state.catch_ups.get(&user, "etcd-secrets").unwrap();
    assert!(progress.succeeded(), "{progress:?}");
    assert_eq!(progress.steps[0].state, "ran");

    // Step 2 after catch-up: passed with warnings, with the terminal open.
    browser
        .goto(&format!("{}#result", step_url("encrypt-aescbc")))
        .await;
    screenshots_at_both_sizes(&browser, "terminal-step2-warn", ".attempt-warn").await;

    // Step 5 before Check, then Check: not yet. The results are in view at both sizes.
    browser.goto(&step_url("lock-down-etcd")).await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    browser
        .screenshot(&artifacts().join("terminal-step5-before-1280.png"))
        .await;
    browser
        .click("form[data-check-form] button[type=submit]")
        .await;
    browser
        .wait_for(".attempt-fail", Duration::from_secs(120))
        .await;
    browser.assert_uncovered(".attempt .verdict").await;
    browser
        .screenshot(&artifacts().join("terminal-step5-fail-1280.png"))
        .await;
    browser.resize(390, 844).await;
    reload(&browser).await;
    browser.find(".attempt-fail").await;
    browser.assert_uncovered(".attempt .verdict").await;
    browser
        .screenshot(&artifacts().join("terminal-step5-fail-390.png"))
        .await;
    // The terminal tab: the whole width for the shell.
    browser.click("[data-tab=terminal]").await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    browser.assert_uncovered(".terminal-screen").await;
    browser
        .screenshot(&artifacts().join("terminal-step5-terminal-390.png"))
        .await;
    // "Run in terminal" in the lesson is clickable on a phone: nothing covers it.
    browser.click("[data-tab=lesson]").await;
    browser.click("details.solution summary").await;
    browser
        .scroll_to("details.solution button.run:not([hidden])")
        .await;
    browser
        .assert_uncovered("details.solution button.run:not([hidden])")
        .await;
    browser
        .scroll_to(".step-text pre[data-run] ~ button.run:not([hidden])")
        .await;
    browser
        .assert_uncovered(".step-text pre[data-run] ~ button.run:not([hidden])")
        .await;

    // Could not be judged (as the grader reports a check it cannot run), with the terminal open.
    // Fed to the one store of gradings; it leaves the step "not yet" and opens no hint.
    let skipped = hardlab_server::web::check::AttemptRecord {
        problem: None,
        results: vec![hardlab_grader::CheckResult {
            check: "etcd.client-cert-auth".into(),
            title: "etcd demands client certificates".into(),
            lab: "etcd".into(),
            step: "lock-down-etcd".into(),
            status: hardlab_grader::Status::Skip,
            severity: hardlab_grader::Severity::High,
            message: "not run: etcd's manifest is not readable here".into(),
            evidence: None,
            remediation: "Set `--client-cert-auth=true`.".into(),
            references: Vec::new(),
            locations: Vec::new(),
            location_problems: Vec::new(),
            duration_ms: 1,
        }],
    };
    hardlab_server::web::check::store(
        &app.state,
        &user,
        "etcd-secrets",
        "lock-down-etcd",
        hardlab_server::web::check::AttemptRow::New {
            started_at: hardlab_server::db::now_ms(),
        },
        hardlab_server::web::check::Trigger::Check,
        skipped,
    )
    .await
    .unwrap();
    browser.goto("about:blank").await;
    browser
        .goto(&format!("{}#result", step_url("lock-down-etcd")))
        .await;
    screenshots_at_both_sizes(&browser, "terminal-step5-unjudged", ".attempt-unjudged").await;

    // The solution, run from the lesson at 1280 with one click; then no click: the background
    // check turns the step passed.
    browser.goto(&step_url("lock-down-etcd")).await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    browser.click("details.solution summary").await;
    browser
        .scroll_to("details.solution button.run:not([hidden])")
        .await;
    browser
        .assert_uncovered("details.solution button.run:not([hidden])")
        .await;
    let before = script_exits(&terminal_text(&browser).await).len();
    browser
        .click("details.solution button.run:not([hidden])")
        .await;
    let (code, text) = wait_for_script_exit(&browser, before, SOLUTION).await;
    assert_eq!(code, "0", "{text}");
    let solved = Instant::now();
    loop {
        if browser
            .try_find("[data-auto-check-status][data-state=passed]")
            .await
            .is_some()
        {
            break;
        }
        assert!(
            solved.elapsed() < AUTO_CHECK_WITHIN,
            "not passed {AUTO_CHECK_WITHIN:?} after the solution: {}",
            browser.text("[data-auto-check-status]").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the background check passed step 5 {:?} after its solution finished",
        solved.elapsed()
    );
    assert!(
        browser
            .try_find(".attempt-pass, .attempt-warn")
            .await
            .is_some()
    );
    let (auto,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM check_attempts WHERE user_id = $1 AND step_id = 'lock-down-etcd' \
         AND origin = 'auto'",
    )
    .bind(&user)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(auto, 1, "only the background check's pass is an attempt");
    browser
        .screenshot(&artifacts().join("terminal-step5-auto-passed-1280.png"))
        .await;

    // A second tab (its own session storage) attaches to the running cluster without Start.
    browser.script("sessionStorage.clear(); return true;").await;
    reload(&browser).await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    assert!(browser.try_find("[data-action=start]").await.is_none());
    assert_eq!(cluster_of_page(&browser, "etcd-secrets").await, cluster);

    // My clusters: the running one with its lab, state, time left, Open / Extend / Remove.
    browser.goto(&format!("{}/cluster", app.base_url)).await;
    let row = browser
        .text(&format!("[data-cluster-row='{cluster}']"))
        .await;
    assert!(row.contains("Encrypt Secrets at rest"), "{row}");
    assert!(row.contains("ready"), "{row}");
    assert!(row.contains("min"), "{row}");
    browser
        .full_page_screenshot(&artifacts().join("my-clusters-1280.png"), 1280)
        .await;
    browser.resize(1280, 900).await;
    browser
        .click(&format!(
            "[data-cluster-row='{cluster}'] form[action$='/extend'] button"
        ))
        .await;
    browser
        .find(&format!("[data-cluster-row='{cluster}']"))
        .await;
    // An error page keeps the navigation.
    browser
        .goto(&format!("{}/labs/no-such-lab", app.base_url))
        .await;
    assert!(browser.text("h1").await.contains("Not found"));
    assert!(browser.text(".nav").await.contains("My clusters"));
    browser.goto(&format!("{}/cluster", app.base_url)).await;
    browser
        .click(&format!(
            "[data-cluster-row='{cluster}'] form[action$='/remove'] button"
        ))
        .await;
    browser.find("[data-no-running]").await;
    assert_nothing_left(&provider, &[&cluster]).await;
}
