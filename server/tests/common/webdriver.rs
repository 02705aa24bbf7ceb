//! A small WebDriver client for real headless Chromium through chromedriver (the W3C WebDriver
//! HTTP protocol, JSON over HTTP), enough for the browser tests: navigate, find, type, click,
//! read text, run a script, resize, screenshot, switch frames, read the console.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How many times a page load or click aborted by ERR_NETWORK_CHANGED is made again.
const NETWORK_CHANGE_RETRIES: u32 = 3;

/// `chromedriver` and one headless Chromium session with a fresh profile; both end on drop.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
    /// The page and the selector of the last click, so that a click whose navigation Chromium
    /// aborted with ERR_NETWORK_CHANGED can be made again (see `network_changed`).
    last_click: std::sync::Mutex<Option<(String, String)>>,
}

impl Drop for Browser {
    /// Runs on every path out of a test, panics included. Killing chromedriver alone leaves its
    /// Chromium (and that one's helpers) running, orphaned to init: so the session is ended over
    /// WebDriver first, then the whole process group chromedriver leads is killed.
    fn drop(&mut self) {
        end_session(&self.base, &self.session);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` with a plain blocking request (a `Drop` has no runtime to wait on),
/// bounded to a few seconds; chromedriver then closes its Chromium itself.
fn end_session(base: &str, session: &str) {
    use std::io::{Read, Write};
    let Some(address) = base.strip_prefix("http://") else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that the browser it starts can be killed with it.
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http.get(format!("{base}/status")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                // Console messages (CSP refusals among them) for `console_messages`.
                "goog:loggingPrefs": {"browser": "ALL"}
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            http,
            base,
            session,
            driver,
            _profile: profile,
            last_click: std::sync::Mutex::new(None),
        }
    }

    /// The browser's temporary profile folder (gone once the browser is dropped).
    pub fn profile_dir(&self) -> std::path::PathBuf {
        self._profile.path().to_path_buf()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        *self.last_click.lock().unwrap() = None;
        for _ in 0..NETWORK_CHANGE_RETRIES {
            self.post("/url", json!({ "url": url })).await;
            if !self.network_changed().await {
                return;
            }
            eprintln!("Chromium aborted loading {url} with ERR_NETWORK_CHANGED; loading it again");
        }
    }

    /// Whether Chromium shows its error page for ERR_NETWORK_CHANGED. Chromium drops every
    /// connection when the host's addresses change, and on this test machine they change whenever
    /// a test creates or removes a cluster's Docker network beside the browser. A learner's browser
    /// is on another machine, so this is the test bench's event, not the product's: the browser
    /// helpers load the page (or press the button) again, as a person would, and say so.
    async fn network_changed(&self) -> bool {
        self.script(
            "return document.documentURI.startsWith('chrome-error:') && \
             (document.body ? document.body.innerText : '').includes('ERR_NETWORK_CHANGED');",
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// After ERR_NETWORK_CHANGED: back to the page of the last click and the same click again, or
    /// else the same page again.
    async fn redo_after_network_change(&self) {
        let last = self.last_click.lock().unwrap().clone();
        match last {
            Some((page, css)) => {
                eprintln!("ERR_NETWORK_CHANGED after clicking {css} on {page}; clicking it again");
                self.goto(&page).await;
                *self.last_click.lock().unwrap() = Some((page.clone(), css.clone()));
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(element) = self.try_find(&css).await {
                        self.press(&element).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            None => {
                eprintln!("ERR_NETWORK_CHANGED; loading the page again");
                self.post("/refresh", json!({})).await;
            }
        }
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
    }

    /// Waits up to `timeout` for an element to appear.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        let mut redone = 0;
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            if redone < NETWORK_CHANGE_RETRIES && self.network_changed().await {
                redone += 1;
                self.redo_after_network_change().await;
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not appear within {timeout:?} on {}:\n{}",
                self.url().await,
                self.text_of_page().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(css, Duration::from_secs(10)).await
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks like a person would: the element is scrolled to the middle of the window first (a
    /// docked panel may cover the bottom), and a click that lands on something else fails the test.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let page = self.url().await;
        *self.last_click.lock().unwrap() = Some((page, css.to_owned()));
        self.press(&element).await;
    }

    /// Scrolls an element into view and clicks it.
    async fn press(&self, element: &Element) {
        self.post(
            "/execute/sync",
            json!({
                "script": "arguments[0].scrollIntoView({block: 'center'}); return true;",
                "args": [{ ELEMENT_KEY: element.0 }]
            }),
        )
        .await;
        let answer = self
            .post(&format!("/element/{}/click", element.0), json!({}))
            .await;
        if let Some(error) = answer.get("error") {
            panic!(
                "clicking element {} failed: {error}: {}",
                element.0,
                answer["message"].as_str().unwrap_or_default()
            );
        }
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn text_of_page(&self) -> String {
        self.script("return document.body ? document.body.innerText : '';")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Adds a virtual authenticator (WebDriver's WebAuthn extension) to the browser: from now on
    /// `navigator.credentials` talks to it, with no person to touch anything. `options` is the
    /// extension's JSON (`protocol`, `transport`, `hasResidentKey`, `hasUserVerification`,
    /// `isUserVerified`, ...). Returns the authenticator's id.
    pub async fn add_virtual_authenticator(&self, options: Value) -> String {
        let answer = self.post("/webauthn/authenticator", options).await;
        answer
            .as_str()
            .unwrap_or_else(|| panic!("no virtual authenticator: {answer}"))
            .to_owned()
    }

    /// Removes a virtual authenticator and the credentials it holds.
    pub async fn remove_virtual_authenticator(&self, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{id}"),
            None,
        )
        .await;
    }

    /// The credentials a virtual authenticator holds (`credentialId`, `rpId`, `signCount`, ...).
    pub async fn virtual_credentials(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/webauthn/authenticator/{id}/credentials"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Console messages since the last call (chromedriver's log endpoint), as `LEVEL message`.
    pub async fn console_messages(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({"type": "browser"})).await;
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e["level"].as_str().unwrap_or_default(),
                            e["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Console messages since the last call that report a Content-Security-Policy refusal.
    pub async fn csp_violations(&self) -> Vec<String> {
        self.console_messages()
            .await
            .into_iter()
            .filter(|m| m.contains("Content Security Policy") || m.contains("Refused to"))
            .collect()
    }

    /// Commands go to the document of this frame until [`Browser::switch_to_top`].
    pub async fn switch_to_frame(&self, css: &str) {
        let frame = self.find(css).await;
        let answer = self
            .post("/frame", json!({ "id": { ELEMENT_KEY: frame.0 } }))
            .await;
        assert!(
            answer.get("error").is_none(),
            "switching to {css}: {answer}"
        );
    }

    pub async fn switch_to_top(&self) {
        self.post("/frame", json!({ "id": null })).await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The element is inside the window and nothing covers its middle: what `elementFromPoint`
    /// finds there is the element or inside it (the page is not scrolled for it).
    pub async fn assert_uncovered(&self, css: &str) {
        let found = self
            .script(&format!(
                "const e = document.querySelector({css:?}); if (!e) return 'missing';
                 const r = e.getBoundingClientRect();
                 const x = r.left + Math.min(r.width / 2, 40), y = r.top + Math.min(r.height / 2, 10);
                 if (r.width === 0 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) return 'outside the window: ' + JSON.stringify(r);
                 const hit = document.elementFromPoint(x, y);
                 return (hit === e || e.contains(hit)) ? 'ok' : 'covered by ' + (hit ? hit.tagName + '.' + hit.className : 'nothing');"
            ))
            .await;
        assert_eq!(found.as_str(), Some("ok"), "{css}: {found}");
    }

    /// Scrolls the element into the middle of its scrolling box, as a reader would.
    pub async fn scroll_to(&self, css: &str) {
        self.script(&format!(
            "document.querySelector({css:?}).scrollIntoView({{block: 'center'}}); return true;"
        ))
        .await;
    }

    /// Saves a PNG of the viewport to `path` (its folder is created).
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A PNG of the whole page: the window is made as tall as the document first.
    pub async fn full_page_screenshot(&self, path: &Path, width: u32) {
        let height = self
            .script("return Math.ceil(document.documentElement.scrollHeight);")
            .await
            .as_u64()
            .unwrap_or(900);
        self.resize(width, u32::try_from(height.clamp(600, 6000)).unwrap() + 120)
            .await;
        self.screenshot(path).await;
    }
}
