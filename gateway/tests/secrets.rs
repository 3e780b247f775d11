//! Secrets stay out of logs and API answers (issue 14, item 4). The real
//! `gateway` binary runs on PostgreSQL with a password in its database URL
//! and two alarm channels whose robot tokens live in their URLs: one whose
//! server is down (the HTTP client's error names the URL) and one whose
//! server refuses the request and quotes the URL, token and signature back.
//! A node raises an alarm; both deliveries fail and are logged. Neither
//! token, the signature nor the database password appears in any log line
//! of the process or in any answer of the API.

mod common;

use axum::extract::RawQuery;
use axum::routing::post;
use axum::{Json, Router};
use common::db::TestDb;
use rumqttc::{AsyncClient, Event, MqttOptions, QoS};
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WECOM_TOKEN: &str = "wecom-SECRET-5f1c9a";
const DING_TOKEN: &str = "ding-SECRET-77ab02";
const DING_SIGN_SECRET: &str = "SECsign-SECRET-3c4d";
const DB_PASSWORD: &str = "pg-SECRET-a9e1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 钉钉 imitation that refuses every request, quoting the request's URL
/// (token and signature) in its error message, as real vendors' hints do.
async fn quoting_vendor() -> (String, Arc<Mutex<u32>>) {
    let hits = Arc::new(Mutex::new(0u32));
    let h = hits.clone();
    let app = Router::new().route(
        "/robot/send",
        post(move |RawQuery(q): RawQuery| {
            let h = h.clone();
            async move {
                *h.lock().unwrap() += 1;
                Json(json!({
                    "errcode": 300001,
                    "errmsg": format!(
                        "token is not exist, url: http://oapi.local/robot/send?{0} (hint: {0})",
                        q.unwrap_or_default()
                    ),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

/// Everything the process writes to stderr, read on a thread so the pipe
/// never fills.
fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let l = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            l.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    log
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [WECOM_TOKEN, DING_TOKEN, DING_SIGN_SECRET, DB_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds {secret}: {text}");
    }
    // The 钉钉 request's `sign=` is derived from the secret: hidden too.
    assert!(
        !text.contains("&sign=") || text.contains("&sign=***"),
        "{what} holds a signature: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_tokens_and_the_database_password_reach_no_log_and_no_answer() {
    let db = TestDb::postgres().await;
    // The test server trusts local connections; the password is carried
    // (and would be logged) all the same.
    let db_url = db
        .url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let (vendor, refusals) = quoting_vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt, down) = (free_port(), free_port(), free_port());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{data}\"\ndatabase_url = \"{db_url}\"\n\
             [mqtt]\nembedded_listen = \"127.0.0.1:{mqtt}\"\nanonymous_config_nodes = true\n\
             [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n\
             [notify]\nbase_url = \"http://console.local\"\ntimeout_ms = 2000\n\
             [[notify.channels]]\nname = \"wecom_down\"\nkind = \"wecom\"\n\
             url = \"http://127.0.0.1:{down}/cgi-bin/webhook/send?key={WECOM_TOKEN}\"\n\
             [[notify.channels]]\nname = \"ding_quoting\"\nkind = \"dingtalk\"\n\
             url = \"{vendor}/robot/send?access_token={DING_TOKEN}\"\nsecret = \"{DING_SIGN_SECRET}\"\n\
             [[notify.routes]]\nsites = [\"*\"]\nduty = [\"wecom_down\", \"ding_quoting\"]\n",
            data = dir.path().join("data").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        // The production log filter.
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect(child.stderr.take().unwrap());
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = client.get(format!("{base}/healthz")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy: {}",
            log.lock().unwrap()
        );
        assert!(child.try_wait().unwrap().is_none(), "gateway exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let add = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["user", "add", "--config"])
        .arg(&config)
        .args(["--login", "root", "--name", "管理员", "--role", "admin"])
        .args(["--sites", "*"])
        .env("GATEWAY_NEW_PASSWORD", "admin-password-2026")
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    assert_no_secret("user add", &String::from_utf8_lossy(&add.stderr));

    // A node raises an alarm over the embedded broker.
    let mut o = MqttOptions::new("home_a.n01", "127.0.0.1", mqtt);
    o.set_keep_alive(Duration::from_secs(30));
    let (node, mut el) = AsyncClient::new(o, 10);
    let node_task = tokio::spawn(async move {
        while let Ok(e) = el.poll().await {
            let _ = matches!(e, Event::Incoming(_));
        }
    });
    node.publish(
        "fire/v1/home_a/n01/telemetry",
        QoS::AtLeastOnce,
        false,
        r#"{"boot":1,"seq":1,"ts":0,"ch":[{"id":"rc1","q":"residual_current","v":720,"s":"ok"}]}"#,
    )
    .await
    .unwrap();

    let login: Value = client
        .post(format!("{base}/api/v1/login"))
        .header("content-type", "application/json")
        .body(r#"{"login":"root","password":"admin-password-2026"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let token = login["token"].as_str().expect("a token").to_string();
    let get = |path: &str| {
        let req = client
            .get(format!("{base}{path}"))
            .header("authorization", format!("Bearer {token}"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };

    // Both channels failed at least once, and said why.
    let notifications = loop {
        let body = get("/api/v1/notifications").await;
        let rows: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        let failed = |channel: &str, outcome: &str| {
            rows.iter()
                .any(|r| r["channel"] == channel && r["outcome"] == outcome)
        };
        if failed("wecom_down", "failed") && failed("ding_quoting", "refused") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no failed deliveries: {body}\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(*refusals.lock().unwrap() >= 1);
    assert!(
        notifications.contains("request failed") && notifications.contains("300001"),
        "the reasons are kept: {notifications}"
    );
    assert_no_secret("GET /api/v1/notifications", &notifications);
    for path in [
        "/api/v1/alarms?state=all",
        "/api/v1/tickets",
        "/healthz",
        "/metrics",
        "/api/v1/sites",
    ] {
        assert_no_secret(path, &get(path).await);
    }

    node.disconnect().await.ok();
    node_task.abort();
    let status = common::sigterm_and_wait(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    // The reader thread ends with the pipe.
    let end = Instant::now() + Duration::from_secs(5);
    while !log.lock().unwrap().contains("gateway stopped") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log.lock().unwrap().clone();
    // The lines that would have carried the secrets were written…
    assert!(
        log.contains("database ready") && log.contains("postgres:***@127.0.0.1"),
        "{log}"
    );
    assert!(
        log.contains("notification not delivered") && log.contains("request failed"),
        "{log}"
    );
    // …without them.
    assert_no_secret("the gateway's log", &log);
}
