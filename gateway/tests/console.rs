//! The web console in a real browser: headless Chromium driven over the W3C
//! WebDriver protocol through chromedriver, against a whole gateway (broker,
//! pipeline, store, HTTP) on loopback ports.
//!
//! A duty officer logs in, a node publishes a leakage reading over MQTT, the
//! alarm appears on the duty desk through the event stream, the officer
//! acknowledges it (the time to acknowledge is shown and recorded), opens
//! its ticket and registers it; a bureau inspector sees the site coloured by
//! risk and its residual-current trend; an inspector of another jurisdiction
//! does not see the site at all. Screenshots of the duty desk and the bureau
//! trends go to `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages); without them
//! the test fails naming the install command — it never skips.

use gateway::config::Config;
use gateway::store::AlarmFilter;
use gateway::ticket::Role;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install chromium chromium-driver";

/// Where a program is, from PATH or /usr/bin; fails loudly when missing.
fn program(name: &str) -> PathBuf {
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
        panic!("`{name}` is not installed: the console's browser test needs it. Run: {INSTALL}")
    })
}

/// chromedriver on a free loopback port; stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new(program("chromedriver"))
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
struct Browser {
    http: reqwest::Client,
    base: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

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
                    "--disable-dev-shm-usage", "--window-size=1400,1650", "--lang=zh-CN",
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

    async fn goto(&self, url: &str) {
        self.call("post", "/url", Some(json!({ "url": url }))).await;
    }

    /// The elements matching `css` now.
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

    /// Polls until an element matches `css`, failing after `within` with
    /// the page's text.
    async fn wait(&self, css: &str, within: Duration) -> String {
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
    async fn wait_text(&self, css: &str, want: &str, within: Duration) -> String {
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

    async fn text(&self, element: &str) -> String {
        self.call("get", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn click(&self, element: &str) {
        let v = self
            .call("post", &format!("/element/{element}/click"), None)
            .await;
        assert!(v.is_null(), "click: {v}");
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

    async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "post",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.call("get", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, bytes).unwrap();
    }

    async fn log_in(&self, login: &str, password: &str) {
        self.type_into("#login-form input[name=login]", login).await;
        self.type_into("#login-form input[name=password]", password)
            .await;
        let submit = self
            .wait("#login-form button[type=submit]", Duration::from_secs(5))
            .await;
        self.click(&submit).await;
    }

    async fn log_out(&self) {
        let button = self.wait("#logout", Duration::from_secs(5)).await;
        self.click(&button).await;
        self.wait("#login-form", Duration::from_secs(10)).await;
    }

    async fn close(&self) {
        self.call("delete", "", None).await;
    }
}

/// `target/console-screenshots/`, beside the test binary's `debug/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/debug/deps/console-…")
        .to_path_buf();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const PASSWORD: &str = "console-test-pw";

async fn gateway(dir: &tempfile::TempDir) -> (gateway::app::Running, SocketAddr) {
    let text = "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
                [[sites.nodes]]\nid = \"n01\"\nlocation = \"2号楼厨房配电箱\"\n\
                [[sites.nodes]]\nid = \"n02\"\nlocation = \"1号楼配电室\"\n\
                [[sites]]\nid = \"home_b\"\nname = \"福星敬老院\"\n\
                [[sites.nodes]]\nid = \"n01\"\nlocation = \"主楼配电室\"\n";
    let mut config = Config::from_toml(text).unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    let mqtt = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = mqtt;
    config.mqtt.client_id = "console-test".into();
    // home_a/n01 publishes without credentials, as itself.
    config.mqtt.anonymous_config_nodes = true;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let now = gateway::time::now_ms();
    for (login, name, role, site) in [
        ("duty_a", "值班员小李", Role::Duty, "home_a"),
        ("jianguan_a", "城区民政局", Role::Inspector, "home_a"),
        ("jianguan_b", "郊区民政局", Role::Inspector, "home_b"),
        ("wang", "安装人员王工", Role::Installer, "home_a"),
        ("li", "李院长", Role::SiteManager, "home_a"),
        ("zhao", "安装人员赵工", Role::Installer, "home_c"),
    ] {
        running
            .store
            .add_user(login, name, role, Some(&[site.to_string()]), PASSWORD, now)
            .await
            .unwrap();
    }
    // Thirty days of hourly rollups for two loops, for the trend chart.
    let hour = 3_600_000i64;
    let this_hour = now as i64 / hour * hour;
    let mut rows = Vec::new();
    for h in (1..30 * 24).step_by(6) {
        for (node, channel, base) in [("n01", "rc1", 140i64), ("n02", "rc2", 90)] {
            let wave = (h % 96) as i64 * 2;
            rows.push((
                gateway::rollup::Key {
                    site: "home_a".into(),
                    node: node.into(),
                    channel: channel.into(),
                    quantity: "residual_current".into(),
                    hour: this_hour - h as i64 * hour,
                },
                gateway::rollup::Agg {
                    min: base,
                    max: base + wave,
                    sum: base * 60,
                    count: 60,
                },
            ));
        }
    }
    running.store.merge_rollups(&rows).await.unwrap();
    (running, mqtt)
}

/// Publishes one telemetry message as node home_a/n01 and waits for the
/// broker's PUBACK.
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
async fn duty_desk_tickets_and_bureau_in_a_real_browser() {
    let driver = Driver::start();
    let dir = tempfile::tempdir().unwrap();
    let (running, broker) = gateway(&dir).await;
    let base = format!("http://{}", running.http_addr);
    let shots = screenshot_dir();
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path()).await;
    let long = Duration::from_secs(20);

    // The duty officer logs in and lands on the duty desk, live.
    browser.goto(&format!("{base}/")).await;
    browser.wait("#login-form", long).await;
    browser.log_in("duty_a", "wrong-password").await;
    browser
        .wait_text("#login-error", "用户名或密码错误", long)
        .await;
    browser.goto(&format!("{base}/")).await;
    browser.log_in("duty_a", PASSWORD).await;
    browser.wait("#desk", long).await;
    browser.wait_text("#live", "实时", long).await;
    assert!(browser
        .find_all("#desk-fire tr[data-alarm-id]")
        .await
        .is_empty());

    // A node reports 620 mA of leakage: the alarm arrives over the event stream.
    publish_leakage(broker, 620).await;
    let row = browser
        .wait_text("#desk-fire tr[data-alarm-id]", "剩余电流 620 mA", long)
        .await;
    assert!(row.contains("报警") && row.contains("阳光养老院"), "{row}");
    assert!(row.contains("2号楼厨房配电箱"), "{row}");
    // Faults and offline are kept apart.
    assert!(browser
        .find_all("#desk-fault tr[data-alarm-id]")
        .await
        .is_empty());

    // One click acknowledges it; the time to acknowledge is shown and recorded.
    let ack = browser.wait("#desk-fire button.ack", long).await;
    browser.click(&ack).await;
    let acked = browser
        .wait_text("#desk-fire .acked", "确认用时", long)
        .await;
    assert!(acked.contains("值班员小李"), "{acked}");
    let stored = running.store.alarms(AlarmFilter::All, 10).await.unwrap();
    let alarm = stored
        .iter()
        .find(|a| a.channel == "rc1")
        .expect("the alarm is stored");
    assert_eq!(alarm.acked_by.as_deref(), Some("值班员小李"));
    assert!(alarm.acked_at.is_some_and(|t| t >= alarm.raised_at));
    browser.wait("#nodes tr[data-node] .badge", long).await;

    // The handover note (交接班记录) for the next shift.
    browser
        .type_into(
            "#shift-form textarea",
            "厨房回路漏电流报警已确认，电工明早8点到场",
        )
        .await;
    let submit = browser.wait("#shift-form button", long).await;
    browser.click(&submit).await;
    browser
        .wait_text("#shift td.note-text", "电工明早8点到场", long)
        .await;
    let notes = running.store.shift_notes_in(None, None, 10).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].author, "值班员小李");
    browser.screenshot(&shots.join("duty-desk.png")).await;

    // Its ticket: detail with the timeline, and the step the role allows.
    let link = browser.wait("#desk-fire a.ticket-link", long).await;
    browser.click(&link).await;
    let number = browser.wait_text("#ticket-number", "YH", long).await;
    browser.wait_text("#timeline", "开单", long).await;
    browser
        .wait("#steps form[data-action=register]", long)
        .await;
    assert_eq!(browser.find_all("#steps form.step").await.len(), 1);
    let register = browser
        .wait(
            "#steps form[data-action=register] button[type=submit]",
            long,
        )
        .await;
    browser.click(&register).await;
    browser
        .wait_text("#ticket-status-label", "已登记", long)
        .await;
    browser.wait_text("#timeline", "登记", long).await;
    browser.goto(&format!("{base}/#/tickets")).await;
    browser.wait_text("#tickets", &number, long).await;
    browser.log_out().await;

    // The bureau of the site's district: risk colour and trends.
    browser.log_in("jianguan_a", PASSWORD).await;
    browser
        .wait("#risk-map .site-card[data-site=home_a]", long)
        .await;
    // Read by selector, not by element: the map may be drawn again meanwhile.
    let colour = browser
        .script(
            "const c = document.querySelector('#risk-map .site-card[data-site=home_a]'); \
             return c ? c.dataset.risk : null",
            json!([]),
        )
        .await;
    // One open 一般 hazard, one alarm this month, nothing overdue: 黄.
    assert_eq!(colour, "yellow");
    browser
        .wait("#trend-chart svg path.series[data-name*='rc1']", long)
        .await;
    browser
        .wait("#alarm-weeks svg rect.k-electrical_fire", long)
        .await;
    browser.wait("#ticket-weeks svg rect.t-opened", long).await;
    browser.screenshot(&shots.join("bureau-trends.png")).await;
    browser.log_out().await;

    // Another district's bureau does not see the site at all.
    browser.log_in("jianguan_b", PASSWORD).await;
    browser
        .wait("#risk-map .site-card[data-site=home_b]", long)
        .await;
    assert!(browser
        .find_all(".site-card[data-site=home_a]")
        .await
        .is_empty());
    let page = browser
        .script("return document.body.innerText", json!([]))
        .await;
    let page = page.as_str().unwrap();
    assert!(!page.contains("阳光养老院"), "{page}");
    assert!(page.contains("福星敬老院"), "{page}");

    browser.log_out().await;

    // 安装调试: the installer registers a node and sees its password once;
    // a self-test of a node that is not connected fails saying why.
    browser.log_in("wang", PASSWORD).await;
    browser.wait("#commission #cm-register", long).await;
    for (field, value) in [
        ("id", "n07"),
        ("building", "1号楼"),
        ("floor", "2层"),
        ("room", "201"),
        ("panel", "AL-2"),
    ] {
        browser
            .type_into(&format!("#cm-register input[name={field}]"), value)
            .await;
    }
    browser
        .type_into(
            "#cm-register textarea[name=channels]",
            "rc1:residual_current:ct=1000\nt1:temperature:ntc",
        )
        .await;
    let submit = browser.wait("#cm-register button[type=submit]", long).await;
    browser.click(&submit).await;
    let password = browser.wait("#cm-password", long).await;
    let password = browser.text(&password).await;
    assert!(password.len() >= 24, "{password:?}");
    // The node's provisioning file is offered once, with the password.
    browser.wait("#cm-credentials #cm-artefact", long).await;
    let test = browser
        .wait("#cm-nodes tr[data-node=n07] button", long)
        .await;
    browser.click(&test).await;
    browser
        .wait_text("#cm-selftest-result", "节点离线", long)
        .await;
    // The report now counts the new node's two channels, untested.
    browser
        .wait_text("#cm-ready", "2 个通道，自检通过 0 个", long)
        .await;
    browser.screenshot(&shots.join("commissioning.png")).await;
    browser.log_out().await;

    // An installer whose jurisdiction names a site not yet created adds it.
    browser.log_in("zhao", PASSWORD).await;
    browser.wait("#cm-add-site", long).await;
    browser
        .type_into("#cm-add-site input[name=id]", "home_c")
        .await;
    browser
        .type_into("#cm-add-site input[name=name]", "康宁养老院")
        .await;
    let add = browser.wait("#cm-add-site button[type=submit]", long).await;
    browser.click(&add).await;
    browser.wait_text("#cm-site", "康宁养老院", long).await;
    browser.wait("#cm-register", long).await;
    browser.log_out().await;

    // The site manager cannot sign before every channel passed.
    browser.log_in("li", PASSWORD).await;
    browser.wait("#desk", long).await;
    browser.goto(&format!("{base}/#/commission")).await;
    browser
        .type_into("#cm-sign input[name=note]", "同意验收")
        .await;
    let sign = browser.wait("#cm-sign button[type=submit]", long).await;
    browser.click(&sign).await;
    browser
        .wait_text("#cm-sign-error", "尚不具备验收条件", long)
        .await;

    browser.close().await;
    drop(driver);
    running.shutdown().await;
    for shot in ["duty-desk.png", "bureau-trends.png", "commissioning.png"] {
        let len = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
