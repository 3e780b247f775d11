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

mod common;

use common::browser::{Browser, Driver};
use common::node::publish_leakage;
use gateway::config::Config;
use gateway::store::AlarmFilter;
use gateway::tickets::Role;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    let now = gateway::domain::time::now_ms();
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
                gateway::alarms::rollup::Key {
                    site: "home_a".into(),
                    node: node.into(),
                    channel: channel.into(),
                    quantity: "residual_current".into(),
                    hour: this_hour - h as i64 * hour,
                },
                gateway::alarms::rollup::Agg {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duty_desk_tickets_and_bureau_in_a_real_browser() {
    let driver = Driver::start();
    let dir = tempfile::tempdir().unwrap();
    let (running, broker) = gateway(&dir).await;
    let base = format!("http://{}", running.http_addr);
    let shots = screenshot_dir();
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path(), 1650).await;
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
