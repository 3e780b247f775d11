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

use common::browser::{trust_in_nss, Browser, Driver};
use common::node::publish_leakage;
use common::tls::TestCa;
use gateway::config::Config;
use gateway::tickets::Role;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const PASSWORD: &str = "console-https-pw";

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
            gateway::domain::time::now_ms(),
        )
        .await
        .unwrap();

    let driver = Driver::start_with_home(Some(home.path()));
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path(), 1000).await;
    let long = Duration::from_secs(20);
    let base = format!("https://127.0.0.1:{}", running.http_addr.port());
    browser
        .call("post", "/url", Some(json!({ "url": format!("{base}/") })))
        .await;
    // An untrusted certificate would show Chromium's interstitial here.
    browser.wait("#login-form", long).await;
    assert_eq!(
        browser.script("return location.protocol", json!([])).await,
        json!("https:")
    );
    assert_eq!(
        browser
            .script("return window.isSecureContext", json!([]))
            .await,
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
