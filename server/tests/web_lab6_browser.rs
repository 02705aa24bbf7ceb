//! Lab 6 read from start to finish in real headless Chromium, as lab 1 is: the learner enrols an
//! authenticator on the Access page (QR code), starts the lab (their cluster goes behind their own
//! access proxy), and for every step presses Check (not yet), reveals the solution and runs it in
//! the page's terminal (`hardlab` in the node, answering `hardlab login`'s prompts by typing), and
//! presses Check again (pass). The node image must carry this build's `hardlab`:
//! `.ci/run` builds `hardlab/testnode:latest` with it; elsewhere build one under another tag and
//! name it in `HARDLAB_TEST_NODE_IMAGE` (docker/testnode/build.sh). Screenshots go to
//! target/screenshots/.
#![allow(clippy::unwrap_used)]

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{TestApp, TestDb};
use hardlab_testkit::{Component, require};
use support::{assert_nothing_left, docker_or_skip};

const ENTER: &str = "\u{E007}";
const PASSWORD: &str = "correct-horse-battery";
const CLUSTER_READY: Duration = Duration::from_secs(300);
const COMMAND: Duration = Duration::from_secs(60);
const SOLUTION: Duration = Duration::from_secs(180);

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn code(secret: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    hardlab_server::proxy::totp::code_for_step(
        secret,
        hardlab_server::proxy::totp::step_at(now) + offset,
    )
    .unwrap()
}

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

fn script_exits(text: &str) -> Vec<String> {
    const MARK: &str = "[script exited with ";
    text.match_indices(MARK)
        .filter_map(|(at, _)| {
            let rest = &text[at + MARK.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!digits.is_empty() && rest[digits.len()..].starts_with(']')).then_some(digits)
        })
        .collect()
}

async fn wait_for_script_exit(browser: &Browser, before: usize) -> (String, String) {
    let deadline = Instant::now() + SOLUTION;
    loop {
        let text = terminal_text(browser).await;
        let exits = script_exits(&text);
        if exits.len() > before {
            return (exits[before].clone(), text);
        }
        assert!(
            Instant::now() < deadline,
            "the script did not finish:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn shot(browser: &Browser, name: &str) {
    browser
        .full_page_screenshot(&screenshots().join(name), 1280)
        .await;
    browser.resize(1280, 900).await;
}

#[tokio::test]
async fn lab_6_read_start_to_finish_in_chromium_every_check_fails_then_passes() {
    let Some(provider) = docker_or_skip().await else {
        return;
    };
    if !require(Component::Chromium) {
        return;
    }
    let app = TestApp::builder(TestDb::sqlite().await)
        .labs(Path::new(env!("CARGO_MANIFEST_DIR")).join("../labs"))
        .reachable_from_nodes()
        .configure(|config| config.check_patience = Duration::from_secs(30))
        .start()
        .await;
    let browser = Browser::start().await;
    let learner = app.learner("ada").await;
    let cookie = learner.cookie("hardlab_session").unwrap();
    browser.goto(&format!("{}/healthz", app.base_url)).await;
    browser
        .script(&format!(
            "document.cookie = 'hardlab_session={cookie}; path=/'; return true;"
        ))
        .await;

    // The second factor, enrolled on the Access page with its QR code.
    browser.goto(&format!("{}/access", app.base_url)).await;
    browser.click("[data-action=enroll]").await;
    browser.wait_for("#qr svg", COMMAND).await;
    let secret = browser.text("#secret").await.trim().to_owned();
    assert!(!secret.is_empty());
    shot(&browser, "lab6-access-enrol-1280.png").await;
    browser.type_into("#code", &code(&secret, -1)).await;
    browser.click("[data-action=confirm]").await;
    let deadline = Instant::now() + COMMAND;
    while !browser.text("#totp-status").await.contains("Confirmed") {
        assert!(
            Instant::now() < deadline,
            "{}",
            browser.text("#totp-status").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let lab = app.state.labs.get("access-proxy").unwrap().clone();
    let step_url = |step: &str| format!("{}/labs/access-proxy/steps/{step}", app.base_url);
    browser
        .goto(&format!("{}/labs/access-proxy", app.base_url))
        .await;
    shot(&browser, "lab6-intro-1280.png").await;
    browser.goto(&step_url(&lab.steps[0].id)).await;
    browser.click("[data-action=start]").await;
    browser
        .wait_for("[data-cluster-state=ready]", CLUSTER_READY)
        .await;
    browser.wait_for("[data-terminal=connected]", COMMAND).await;
    let cluster = browser
        .script("return sessionStorage.getItem('hardlab-cluster-access-proxy') || '';")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!cluster.is_empty());

    for (number, step) in lab.steps.iter().enumerate() {
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
        browser.click("details.solution summary").await;
        let before = script_exits(&terminal_text(&browser).await).len();
        browser
            .click("details.solution button.run:not([hidden])")
            .await;
        if number == 0 {
            // hardlab login asks, as it asks a learner.
            wait_for_terminal(&browser, "Password for ada:", COMMAND).await;
            browser
                .type_into(".xterm-helper-textarea", &format!("{PASSWORD}{ENTER}"))
                .await;
            wait_for_terminal(&browser, "Authenticator code:", COMMAND).await;
            browser
                .type_into(
                    ".xterm-helper-textarea",
                    &format!("{}{ENTER}", code(&secret, 0)),
                )
                .await;
        }
        let (exit, text) = wait_for_script_exit(&browser, before).await;
        assert_eq!(exit, "0", "step {}'s solution failed:\n{text}", step.id);
        shot(
            &browser,
            &format!("lab6-step{}-{}-1280.png", number + 1, step.id),
        )
        .await;
        if !step.checks.is_empty() {
            browser
                .click("form[data-check-form] button[type=submit]")
                .await;
            browser
                .wait_for(".attempt-pass", Duration::from_secs(120))
                .await;
            shot(
                &browser,
                &format!("lab6-step{}-{}-pass-1280.png", number + 1, step.id),
            )
            .await;
        }
    }
    // The learner's own proxy on the Access page and its audit log.
    browser.goto(&format!("{}/access", app.base_url)).await;
    assert!(
        browser
            .text("#lab-proxy")
            .await
            .contains("Your lab 6 proxy")
    );
    shot(&browser, "lab6-access-tenant-1280.png").await;
    browser
        .goto(&format!("{}/access/audit", app.base_url))
        .await;
    assert!(
        browser
            .text_of_page()
            .await
            .contains("bob got 403 on list services")
    );
    shot(&browser, "lab6-audit-1280.png").await;

    app.state
        .clusters
        .as_ref()
        .unwrap()
        .manager
        .delete(&cluster)
        .await
        .unwrap();
    assert_nothing_left(&provider, &[&cluster]).await;
}
