//! Framing in real headless Chromium: a page on another origin (another 127.0.0.1 port) frames
//! two apps side by side. The one with default settings is refused by the browser
//! (`frame-ancestors 'none'`, `X-Frame-Options: DENY`); the one whose `frame_ancestors` lists that
//! origin, as an LMS embedding would, shows its sign-in page. A screenshot of the framing page goes
//! to target/test-artifacts/framing.png. The sign-in page itself loads without CSP refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::response::Html;
use common::webdriver::Browser;
use common::{TestApp, TestDb};
use hardlab_testkit::{Component, require};

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
}

/// The other origin: one static page with two frames, served until the test ends.
struct Framer {
    origin: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Framer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn framer(listener: tokio::net::TcpListener, refused: &str, allowed: &str) -> Framer {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><html><head><title>Course page</title></head><body>\
         <h1>Course page on another origin</h1>\
         <p>Left: hardlab with default settings. Right: hardlab with frame_ancestors = {origin}.</p>\
         <iframe id=\"refused\" src=\"{refused}/signin\" width=\"600\" height=\"600\"></iframe>\
         <iframe id=\"allowed\" src=\"{allowed}/signin\" width=\"600\" height=\"600\"></iframe>\
         </body></html>"
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { Html(page) }
        }),
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Framer { origin, server }
}

#[tokio::test]
async fn chromium_refuses_to_show_the_app_in_a_frame_from_another_origin_unless_listed() {
    if !require(Component::Chromium) {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let framer_origin = format!("http://{}", listener.local_addr().unwrap());
    let default_app = TestApp::start(TestDb::sqlite().await).await;
    let embeddable = TestApp::builder(TestDb::sqlite().await)
        .configure(|c| c.frame_ancestors = vec![framer_origin.clone()])
        .start()
        .await;
    let framer = framer(listener, &default_app.base_url, &embeddable.base_url).await;
    let browser = Browser::start().await;

    // Without framing, the sign-in page loads with no policy refusals.
    browser
        .goto(&format!("{}/signin", default_app.base_url))
        .await;
    browser.find("form[action='/signin']").await;
    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:?}");

    browser.goto(&framer.origin).await;
    browser.find("#allowed").await;
    // The listed origin gets the app: its sign-in form appears inside the frame.
    browser.switch_to_frame("#allowed").await;
    browser
        .wait_for("form[action='/signin']", Duration::from_secs(15))
        .await;
    browser.switch_to_top().await;

    // The default app is refused: Chromium puts its own error page in the frame, which has no
    // sign-in form and is not the app's URL.
    browser.switch_to_frame("#refused").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(browser.try_find("form[action='/signin']").await.is_none());
    let inside = browser.script("return document.URL;").await;
    assert!(
        !inside
            .as_str()
            .unwrap_or_default()
            .starts_with(&default_app.base_url),
        "the refused frame shows {inside}"
    );
    browser.switch_to_top().await;
    let console = browser.console_messages().await;
    assert!(
        console.iter().any(|m| m.contains("frame-ancestors")),
        "no frame-ancestors refusal in the console: {console:?}"
    );
    browser.resize(1300, 800).await;
    browser.screenshot(&artifacts().join("framing.png")).await;
}
