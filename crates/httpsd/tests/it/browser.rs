//! The admin page in a real browser: Debian's headless Chromium driven through
//! chromedriver's WebDriver HTTP API. Loads the page under a URL prefix, checks its
//! content, checks that a hostile file name ran no script, follows a link to a path,
//! and keeps a screenshot in `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Server, Tree, client};

const INSTALL: &str = "apt-get install -y chromium chromium-driver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn require(bin: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{bin} is required for the browser test of the admin page: install it with `{INSTALL}`"
        )
    })
}

struct Driver {
    child: Child,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(profile: &std::path::Path) -> Driver {
        let chromium = require("chromium");
        let chromedriver = require("chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let mut driver = Driver {
            child,
            base,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client()
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = driver.call("POST", "/session", Some(caps)).await;
        driver.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        driver
    }

    /// One WebDriver command; returns its `value` (panics on a WebDriver error).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.try_call(method, path, body).await;
        if v.get("error").is_some() {
            panic!("WebDriver {method} {path}: {v}");
        }
        v
    }

    async fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => client().post(&url).json(&body.unwrap_or(json!({}))),
            "DELETE" => client().delete(&url),
            _ => client().get(&url),
        };
        let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let v: Value = r.json().await.expect("WebDriver JSON");
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                "POST",
                &self.s("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn text(&self, element: &str) -> String {
        let v = self
            .call("GET", &self.s(&format!("/element/{element}/text")), None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }
}

#[tokio::test]
async fn admin_page_in_headless_chromium() {
    let t = Tree::new();
    t.write("good.json", r#"[{"targets":["10.0.0.1:9100"]}]"#);
    t.write(
        "<img src=x onerror=alert(1)>.json",
        r#"[{"targets":["10.0.0.2:9100"]}]"#,
    );
    t.write("team a&b/x.json", r#"[{"targets":["10.0.0.3:9100"]}]"#);
    t.write("broken/bad.json", "{not json");
    let s = Server::serve(t.root(), &["-r", "/sd"]);
    let profile = tempfile::tempdir().expect("profile dir");
    let d = Driver::start(profile.path()).await;
    let page = s.url("/sd/");
    d.call("POST", &d.s("/url"), Some(json!({"url": page})))
        .await;
    let title = d.call("GET", &d.s("/title"), None).await;
    assert_eq!(title, "Prometheus HTTP SD Admin");
    // The hostile name ran nothing: no alert is open, and it shows as text.
    let alert = d.try_call("GET", &d.s("/alert/text"), None).await;
    assert_eq!(alert["error"], "no such alert", "{alert}");
    let body = d.find_all("body").await;
    let text = d.text(&body[0]).await;
    assert!(text.contains("<img src=x onerror=alert(1)>.json"), "{text}");
    assert!(text.contains("1 failing"), "{text}");
    assert!(text.contains("broken/bad.json: invalid JSON"), "{text}");
    assert!(
        d.find_all("img").await.is_empty(),
        "an <img> element was injected"
    );
    // Keep a screenshot as a test artifact.
    let shot = d.call("GET", &d.s("/screenshot"), None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().expect("screenshot"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join("admin-page.png"), &png).expect("write screenshot");
    // Click through to a path: the relative link works under the prefix.
    let mut target = None;
    for e in d.find_all("a.targets-link").await {
        if d.text(&e).await.contains("team a&b") {
            target = Some(e);
        }
    }
    let target = target.expect("a link to /targets/team a&b");
    d.call("POST", &d.s(&format!("/element/{target}/click")), None)
        .await;
    let want = s.url("/sd/targets/team%20a%26b");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let url = d.call("GET", &d.s("/url"), None).await;
        let source = d.call("GET", &d.s("/source"), None).await;
        let source = source.as_str().unwrap_or_default().to_string();
        if url == want.as_str() && source.contains("10.0.0.3:9100") {
            break source;
        }
        assert!(
            Instant::now() < deadline,
            "the link did not lead to {want}: at {url}, page {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("\"targets\":[\"10.0.0.3:9100\"]"), "{text}");
    d.call("DELETE", &d.s(""), None).await;
}
