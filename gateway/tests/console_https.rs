//! The web console over HTTPS in a real browser (issue 15 item 4): headless
//! Chromium, driven over WebDriver through chromedriver, opens
//! `https://127.0.0.1:PORT/` of a whole gateway serving `[http.tls]`, a
//! duty officer logs in, a node reports leakage over MQTT and the alarm
//! appears on the duty desk through the event stream, over TLS.
//!
//! Trust: the test makes its own CA (rcgen) and adds it to an NSS database
//! (`certutil`, Debian `libnss3-tools`) in the browser's own `$HOME/.pki/nssdb`
//! — the store Chromium on Linux takes locally trusted CAs from, as an
//! administrator would install a bureau's CA. No certificate error is
//! ignored: a certificate Chromium did not trust would show its
//! interstitial page instead of the login form, and the test would fail.
//! (`--ignore-certificate-errors-spki-list` would pin the one certificate
//! but skip the chain and name checks a real deployment depends on.)
//!
//! Needs `chromium`, `chromium-driver` and `libnss3-tools`; without them
//! the test fails naming the install command — it never skips.

mod common;

use common::tls::TestCa;
use gateway::config::Config;
use gateway::ticket::Role;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install -y chromium chromium-driver libnss3-tools";
const PASSWORD: &str = "console-https-pw";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where a program is, from PATH or /usr/bin; fails loudly when missing.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: the console's HTTPS test needs it. Run: {INSTALL}")
        })
}

/// An NSS database in `{home}/.pki/nssdb` trusting `ca_file` to identify
/// web servers (`-t C,,`).
fn trust_in_nss(home: &Path, ca_file: &Path) {
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

/// chromedriver (and the browsers it starts) with `HOME` set to `home`;
/// stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(home: &Path) -> Driver {
        let mut child = Command::new(program("chromedriver"))
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .env("HOME", home)
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

/// A browser session: the few WebDriver commands the test needs (as in
/// `tests/console.rs`).
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn open(driver: &Driver, profile: &Path) -> Browser {
        let http = reqwest::Client::new();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=zh-CN",
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

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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

    async fn find_all(&self, css: &str) -> Vec<String> {
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

    async fn script(&self, script: &str) -> Value {
        self.call(
            "post",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Polls until the first element matching `css` has text containing
    /// `want`, failing after `within` with the page's text.
    async fn wait_text(&self, css: &str, want: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                let text = self
                    .call("get", &format!("/element/{e}/text"), None)
                    .await
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if text.contains(want) {
                    return text;
                }
            }
            if Instant::now() > deadline {
                let text = self.script("return document.body.innerText").await;
                panic!("no {css} with {want:?} within {within:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                let text = self.script("return document.body.innerText").await;
                panic!("no {css} within {within:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css, Duration::from_secs(10)).await;
        self.call(
            "post",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn log_in(&self, login: &str, password: &str) {
        self.type_into("#login-form input[name=login]", login).await;
        self.type_into("#login-form input[name=password]", password)
            .await;
        let submit = self
            .wait("#login-form button[type=submit]", Duration::from_secs(5))
            .await;
        let v = self
            .call("post", &format!("/element/{submit}/click"), None)
            .await;
        assert!(v.is_null(), "click: {v}");
    }

    async fn close(&self) {
        self.call("delete", "", None).await;
    }
}

/// Publishes one telemetry message as node home_a/n01 (anonymous, as a
/// node of the file) and waits for the broker's PUBACK.
async fn publish_leakage(broker: SocketAddr, milliamps: i64) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new("home_a.n01", broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(15));
    let (client, mut events) = AsyncClient::new(o, 10);
    let payload = json!({
        "boot": 1, "seq": 1, "ts": 0,
        "ch": [{ "id": "rc1", "q": "residual_current", "v": milliamps, "s": "ok" }],
    });
    client
        .publish(
            "fire/v1/home_a/n01/telemetry",
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("MQTT: {e}"),
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "no PUBACK within 10 s");
    let _ = client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duty_desk_over_https_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("fire console test CA");
    let cert = ca.server(&["127.0.0.1", "localhost"]);
    let (cert_file, key_file) = (dir.path().join("https.pem"), dir.path().join("https.key"));
    std::fs::write(&cert_file, &cert.cert_pem).unwrap();
    std::fs::write(&key_file, &cert.key_pem).unwrap();
    let home = tempfile::tempdir().unwrap();
    trust_in_nss(home.path(), &ca.write(dir.path(), "ca.pem"));

    let mut config = Config::from_toml(&format!(
        "[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"2号楼厨房配电箱\"\n",
        cert_file.display(),
        key_file.display()
    ))
    .unwrap();
    config.storage.data_dir = dir.path().join("data");
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "console-https-test".into();
    config.mqtt.anonymous_config_nodes = true;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    running
        .store
        .add_user(
            "duty_a",
            "值班员小李",
            Role::Duty,
            Some(&["home_a".to_string()]),
            PASSWORD,
            gateway::time::now_ms(),
        )
        .await
        .unwrap();

    let driver = Driver::start(home.path());
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path()).await;
    let long = Duration::from_secs(20);
    let base = format!("https://127.0.0.1:{}", running.http_addr.port());
    browser
        .call("post", "/url", Some(json!({ "url": format!("{base}/") })))
        .await;
    // An untrusted certificate would show Chromium's interstitial here.
    browser.wait("#login-form", long).await;
    assert_eq!(
        browser.script("return location.protocol").await,
        json!("https:")
    );
    assert_eq!(
        browser.script("return window.isSecureContext").await,
        json!(true)
    );
    browser.log_in("duty_a", PASSWORD).await;
    browser.wait("#desk", long).await;
    browser.wait_text("#live", "实时", long).await;

    // A node reports 620 mA: the alarm arrives over the event stream, over TLS.
    publish_leakage(broker, 620).await;
    let row = browser
        .wait_text("#desk-fire tr[data-alarm-id]", "剩余电流 620 mA", long)
        .await;
    assert!(row.contains("报警") && row.contains("阳光养老院"), "{row}");
    assert!(row.contains("2号楼厨房配电箱"), "{row}");

    browser.close().await;
    drop(driver);
    running.shutdown().await;
}
