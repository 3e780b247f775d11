//! Headless Chromium driven over the W3C WebDriver protocol through
//! chromedriver: the few commands the console tests need (open a page, find,
//! wait for, read and click elements, type, run a script, take a
//! screenshot, log in and out), shared by `console.rs`,
//! `console_https.rs` and `gb26875_console.rs`.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages); without them a
//! test fails naming the install command — it never skips.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "apt-get install -y chromium chromium-driver libnss3-tools";

/// Where a program is, from PATH or /usr/bin; fails loudly when missing.
pub fn program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: the console's browser tests need it. Run: {INSTALL}")
    })
}

/// chromedriver on a free loopback port; stopped when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub fn start() -> Driver {
        Driver::start_with_home(None)
    }

    /// With `HOME` set to `home` for chromedriver and the browsers it
    /// starts (where Chromium finds its NSS trust database).
    pub fn start_with_home(home: Option<&Path>) -> Driver {
        let mut command = Command::new(program("chromedriver"));
        if let Some(home) = home {
            command.env("HOME", home);
        }
        let mut child = command
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}). Run: {INSTALL}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver did not report its port within 30 s");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session: the few WebDriver commands the test needs.
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// A session in a fresh profile directory, a window 1400 px wide and
    /// `height` high.
    pub async fn open(driver: &Driver, profile: &Path, height: u32) -> Browser {
        let http = reqwest::Client::new();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--window-size=1400,{height}"), "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let url = format!("http://127.0.0.1:{}/session", driver.port);
        let resp: Value = http
            .post(&url)
            .body(caps.to_string())
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session ({INSTALL}?): {resp}"));
        Browser {
            base: format!("{url}/{id}"),
            http,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "get" => self.http.get(&url),
            "delete" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let text = req.send().await.unwrap().text().await.unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {text}"));
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("post", "/url", Some(json!({ "url": url }))).await;
    }

    /// The elements matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                "post",
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .map(|xs| {
                xs.iter()
                    .filter_map(|x| x[ELEMENT].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls until an element matches `css`, failing after `within` with
    /// the page's text.
    pub async fn wait(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                let text = self
                    .script("return document.body.innerText", json!([]))
                    .await;
                panic!("no {css} within {within:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until the first element matching `css` has text containing `want`.
    pub async fn wait_text(&self, css: &str, want: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                let text = self.text(&e).await;
                if text.contains(want) {
                    return text;
                }
            }
            if Instant::now() > deadline {
                let text = self
                    .script("return document.body.innerText", json!([]))
                    .await;
                panic!("no {css} with {want:?} within {within:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn text(&self, element: &str) -> String {
        self.call("get", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn click(&self, element: &str) {
        let v = self
            .call("post", &format!("/element/{element}/click"), None)
            .await;
        assert!(v.is_null(), "click: {v}");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css, Duration::from_secs(10)).await;
        self.call(
            "post",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "post",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub async fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.call("get", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, bytes).unwrap();
    }

    pub async fn log_in(&self, login: &str, password: &str) {
        self.type_into("#login-form input[name=login]", login).await;
        self.type_into("#login-form input[name=password]", password)
            .await;
        let submit = self
            .wait("#login-form button[type=submit]", Duration::from_secs(5))
            .await;
        self.click(&submit).await;
    }

    pub async fn log_out(&self) {
        let button = self.wait("#logout", Duration::from_secs(5)).await;
        self.click(&button).await;
        self.wait("#login-form", Duration::from_secs(10)).await;
    }

    pub async fn close(&self) {
        self.call("delete", "", None).await;
    }
}

/// An NSS database in `{home}/.pki/nssdb` trusting `ca_file` to identify
/// web servers (`-t C,,`).
pub fn trust_in_nss(home: &Path, ca_file: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let certutil = program("certutil");
    let run = |args: &[&str]| {
        let out = Command::new(&certutil).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-N", "-d", &db_arg, "--empty-password"]);
    let ca = ca_file.display().to_string();
    run(&[
        "-A",
        "-d",
        &db_arg,
        "-n",
        "fire test CA",
        "-t",
        "C,,",
        "-i",
        &ca,
    ]);
}
