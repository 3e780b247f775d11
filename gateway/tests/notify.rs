//! Alarm delivery against local servers that imitate each vendor's API —
//! 钉钉 (signature checked, 20 a minute enforced with errcode 130101),
//! 飞书 (signature checked: 19021), 企业微信, a signed webhook (HMAC
//! checked) and an SMS gateway: a storm is grouped, never dropped and never
//! past the limit; a refused signature fails over; an unacknowledged alarm
//! escalates to the manager and the bureau, an acknowledged one does not;
//! every attempt is in the log.

mod common;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::serve::Listener as _;
use axum::{Json, Router};
use common::db::TestDb;
use common::tls::{TestCa, TlsListener};
use gateway::alarms::events::{AlarmView, GatewayEvent};
use gateway::config::Config;
use gateway::notify::vendor;
use gateway::store::{AlarmInput, AlarmKey, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const DINGTALK_SECRET: &str = "SEC-dingtalk";
const FEISHU_SECRET: &str = "feishu-right";
const WEBHOOK_SECRET: &str = "hook-key";

/// What the imitation servers received and answered.
#[derive(Default)]
struct Seen {
    /// (vendor, text, answer code).
    requests: Vec<(String, String, i64)>,
    dingtalk_sent: Vec<std::time::Instant>,
}

type Shared = Arc<Mutex<Seen>>;

fn param<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn vendor_api(
    State(seen): State<Shared>,
    Path(which): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Json<Value> {
    let now_ms = gateway::domain::time::now_ms();
    let j: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut seen = seen.lock().unwrap();
    let (text, answer) = match which.as_str() {
        "dingtalk" => {
            let q = q.unwrap_or_default();
            let ts: u64 = param(&q, "timestamp")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let sign = percent_decode(param(&q, "sign").unwrap_or(""));
            let text = j["text"]["content"].as_str().unwrap_or("").to_string();
            let minute_ago = std::time::Instant::now() - Duration::from_secs(60);
            seen.dingtalk_sent.retain(|t| *t > minute_ago);
            if sign != vendor::dingtalk_sign(DINGTALK_SECRET, ts) || ts.abs_diff(now_ms) > 3_600_000
            {
                (text, json!({"errcode": 310000, "errmsg": "sign not match"}))
            } else if seen.dingtalk_sent.len() >= 20 {
                (
                    text,
                    json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
                )
            } else {
                seen.dingtalk_sent.push(std::time::Instant::now());
                (text, json!({"errcode": 0, "errmsg": "ok"}))
            }
        }
        "feishu" => {
            let ts: u64 = j["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let text = j["content"]["text"].as_str().unwrap_or("").to_string();
            if j["sign"].as_str() != Some(&vendor::feishu_sign(FEISHU_SECRET, ts)) {
                (
                    text,
                    json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}),
                )
            } else {
                (text, json!({"code": 0, "msg": "success"}))
            }
        }
        "wecom" => (
            j["text"]["content"].as_str().unwrap_or("").to_string(),
            json!({"errcode": 0, "errmsg": "ok"}),
        ),
        "webhook" => {
            let ts: u64 = headers["x-fire-timestamp"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let sig = headers["x-fire-signature"].to_str().unwrap();
            assert_eq!(
                sig,
                vendor::webhook_signature(WEBHOOK_SECRET, ts, &body),
                "webhook signature"
            );
            (
                j["text"].as_str().unwrap_or("").to_string(),
                json!({"ok": true}),
            )
        }
        "sms" => (
            j["text"].as_str().unwrap_or("").to_string(),
            json!({"ok": true}),
        ),
        _ => (String::new(), json!({"errcode": 404})),
    };
    let code = answer["errcode"]
        .as_i64()
        .or(answer["code"].as_i64())
        .unwrap_or(0);
    seen.requests.push((which, text, code));
    Json(answer)
}

fn vendor_app(seen: &Shared) -> Router {
    Router::new()
        .route("/{which}", post(vendor_api))
        .with_state(seen.clone())
}

async fn vendors() -> (String, Shared) {
    let seen: Shared = Default::default();
    let app = vendor_app(&seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// The same stand-ins over HTTPS, with a certificate for 127.0.0.1 signed
/// by `ca`; also the count of handshakes that failed.
async fn vendors_over_https(ca: &TestCa) -> (String, Shared, Arc<AtomicUsize>) {
    let seen: Shared = Default::default();
    let app = vendor_app(&seen);
    let listener = TlsListener::bind(&ca.server(&["127.0.0.1"])).await;
    let failed = listener.failed_handshakes.clone();
    let base = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen, failed)
}

fn config(base: &str, notify: &str) -> Arc<Config> {
    let text = format!(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\nlocation = \"2号楼厨房配电箱\"\n\
         [notify]\nbase_url = \"http://console.local\"\n{}",
        notify.replace("BASE", base)
    );
    Arc::new(Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}")))
}

async fn raise(store: &Store, ch: usize, at: u64) -> AlarmView {
    let input = AlarmInput {
        key: AlarmKey {
            site: "home_a".into(),
            node: "n01".into(),
            channel: format!("rc{ch}"),
            cause: "residual_current_high".into(),
        },
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(600 + ch as i32),
        setpoint: Some(500),
        at,
        suppressed: false,
    };
    AlarmView::from(store.raise(&input, None).await.unwrap().0)
}

/// Polls `check` until it holds, failing after `within`.
async fn until<F: FnMut(&Seen) -> bool>(seen: &Shared, within: Duration, mut check: F) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check(&seen.lock().unwrap()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_storm_is_grouped_within_dingtalks_limit_and_nothing_is_dropped() {
    let (base, seen) = vendors().await;
    let cfg = config(
        &base,
        &format!(
            "[[notify.channels]]\nname = \"duty_ding\"\nkind = \"dingtalk\"\nurl = \"BASE/dingtalk?access_token=t\"\nsecret = \"{DINGTALK_SECRET}\"\n\
             [[notify.routes]]\nsites = [\"*\"]\nduty = [\"duty_ding\"]\n"
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, rx) = broadcast::channel(1024);
    let stop = CancellationToken::new();
    let task = gateway::notify::start(cfg, store.clone(), rx, stop.clone()).unwrap();
    let now = gateway::domain::time::now_ms();
    for ch in 0..30 {
        let alarm = raise(&store, ch, now).await;
        tx.send(GatewayEvent::AlarmRaised {
            alarm,
            ticket: None,
        })
        .unwrap();
    }
    // All 30 alarms reach the group, in at most 20 requests.
    let carried = |s: &Seen| {
        (0..30)
            .filter(|ch| {
                s.requests
                    .iter()
                    .any(|(_, t, c)| *c == 0 && t.contains(&format!("n01/rc{ch} ")))
            })
            .count()
    };
    until(&seen, Duration::from_secs(20), |s| carried(s) == 30).await;
    {
        let s = seen.lock().unwrap();
        assert!(s.requests.len() <= 20, "{} requests", s.requests.len());
        assert!(
            s.requests.iter().all(|(_, _, code)| *code == 0),
            "refused: {:?}",
            s.requests
        );
        assert!(
            s.requests
                .iter()
                .any(|(_, t, _)| t.starts_with("【报警汇总】") && t.contains("条报警")),
            "no group: {:?}",
            s.requests
        );
    }
    stop.cancel();
    task.await.unwrap();
    let log = store.notifications_in(None, 1000).await.unwrap();
    let delivered = log.iter().filter(|r| r.log.outcome == "delivered").count();
    assert_eq!(delivered, 30, "one delivered row per alarm");
    assert!(log.iter().any(|r| r.log.group_size > 1));
}

#[tokio::test]
async fn a_refused_signature_fails_over_to_the_next_channel() {
    let (base, seen) = vendors().await;
    let cfg = config(
        &base,
        "[[notify.channels]]\nname = \"feishu\"\nkind = \"feishu\"\nurl = \"BASE/feishu\"\nsecret = \"feishu-wrong\"\nfailover = \"wecom\"\n\
         [[notify.channels]]\nname = \"wecom\"\nkind = \"wecom\"\nurl = \"BASE/wecom?key=k\"\n\
         [[notify.routes]]\nsites = [\"home_a\"]\nduty = [\"feishu\"]\n",
    );
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, rx) = broadcast::channel(64);
    let stop = CancellationToken::new();
    let task = gateway::notify::start(cfg, store.clone(), rx, stop.clone()).unwrap();
    let alarm = raise(&store, 1, gateway::domain::time::now_ms()).await;
    tx.send(GatewayEvent::AlarmRaised {
        alarm,
        ticket: None,
    })
    .unwrap();
    until(&seen, Duration::from_secs(10), |s| {
        s.requests.iter().any(|(v, _, c)| v == "wecom" && *c == 0)
    })
    .await;
    let text = {
        let s = seen.lock().unwrap();
        assert_eq!(s.requests[0].0, "feishu");
        assert_eq!(s.requests[0].2, 19021);
        s.requests
            .iter()
            .find(|(v, _, _)| v == "wecom")
            .unwrap()
            .1
            .clone()
    };
    // The message people read: level, place, value, setpoint, time, link.
    assert!(
        text.starts_with(
            "【报警】阳光养老院 2号楼厨房配电箱 n01/rc1 剩余电流 601 mA（报警值 500 mA）"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n时间：20") && text.contains("详情：http://console.local/alarms/"),
        "{text}"
    );
    stop.cancel();
    task.await.unwrap();
    let log = store.notifications_in(None, 100).await.unwrap();
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .rev()
        .map(|r| (r.log.channel.as_str(), r.log.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [("feishu", "refused"), ("wecom", "delivered")]);
    assert!(
        log[1].log.detail.starts_with("19021"),
        "{}",
        log[1].log.detail
    );
}

#[tokio::test]
async fn an_unacknowledged_alarm_escalates_and_an_acknowledged_one_does_not() {
    let (base, seen) = vendors().await;
    let cfg = config(
        &base,
        &format!(
            "manager_after_secs = 1\nbureau_after_secs = 2\nremind_every_secs = 0\n\
             [[notify.channels]]\nname = \"duty\"\nkind = \"wecom\"\nurl = \"BASE/wecom?key=k\"\n\
             [[notify.channels]]\nname = \"manager\"\nkind = \"webhook\"\nurl = \"BASE/webhook\"\nsecret = \"{WEBHOOK_SECRET}\"\n\
             [[notify.channels]]\nname = \"bureau\"\nkind = \"sms\"\nurl = \"BASE/sms\"\nphones = [\"13800000000\"]\n\
             [[notify.routes]]\nsites = [\"*\"]\nduty = [\"duty\"]\nmanager = [\"manager\"]\nbureau = [\"bureau\"]\n"
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, rx) = broadcast::channel(64);
    let stop = CancellationToken::new();
    let task = gateway::notify::start(cfg, store.clone(), rx, stop.clone()).unwrap();
    let now = gateway::domain::time::now_ms();
    let ignored = raise(&store, 1, now).await;
    let acked = raise(&store, 2, now).await;
    tx.send(GatewayEvent::AlarmRaised {
        alarm: ignored,
        ticket: None,
    })
    .unwrap();
    tx.send(GatewayEvent::AlarmRaised {
        alarm: acked.clone(),
        ticket: None,
    })
    .unwrap();
    let acked = store
        .ack(acked.row.id, "值班员小李", now + 100)
        .await
        .unwrap()
        .unwrap();
    tx.send(GatewayEvent::AlarmUpdated {
        alarm: AlarmView::from(acked),
    })
    .unwrap();
    until(&seen, Duration::from_secs(10), |s| {
        s.requests.iter().any(|(v, _, _)| v == "sms")
    })
    .await;
    let requests = seen.lock().unwrap().requests.clone();
    let to = |vendor: &str| -> Vec<String> {
        requests
            .iter()
            .filter(|(v, _, _)| v == vendor)
            .map(|r| r.1.clone())
            .collect()
    };
    assert_eq!(
        to("wecom").len(),
        2,
        "both reach the duty desk: {:?}",
        to("wecom")
    );
    let manager = to("webhook");
    assert_eq!(manager.len(), 1, "{manager:?}");
    assert!(
        manager[0].starts_with("【升级·机构负责人】") && manager[0].contains("n01/rc1 "),
        "{manager:?}"
    );
    let bureau = to("sms");
    assert_eq!(bureau.len(), 1, "{bureau:?}");
    assert!(
        bureau[0].starts_with("【升级·民政局】") && bureau[0].contains("n01/rc1 "),
        "{bureau:?}"
    );
    stop.cancel();
    task.await.unwrap();
}

/// Every vendor's robot over HTTPS, its certificate signed by a CA made
/// here and given as `[tls] extra_ca_file`: each signed request arrives and
/// is accepted (the stand-ins check the 钉钉/飞书 signatures and the
/// webhook's HMAC), one alarm reaching all five.
#[tokio::test]
async fn every_vendor_is_reached_over_https_trusting_the_extra_ca() {
    let ca = TestCa::new("fire-gateway test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (base, seen, failed) = vendors_over_https(&ca).await;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let cfg = config(
        &base,
        &format!(
            "[[notify.channels]]\nname = \"ding\"\nkind = \"dingtalk\"\nurl = \"BASE/dingtalk?access_token=t\"\nsecret = \"{DINGTALK_SECRET}\"\n\
             [[notify.channels]]\nname = \"feishu\"\nkind = \"feishu\"\nurl = \"BASE/feishu\"\nsecret = \"{FEISHU_SECRET}\"\n\
             [[notify.channels]]\nname = \"wecom\"\nkind = \"wecom\"\nurl = \"BASE/wecom?key=k\"\n\
             [[notify.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"BASE/webhook\"\nsecret = \"{WEBHOOK_SECRET}\"\n\
             [[notify.channels]]\nname = \"sms\"\nkind = \"sms\"\nurl = \"BASE/sms\"\nphones = [\"13800000000\"]\n\
             [[notify.routes]]\nsites = [\"*\"]\nduty = [\"ding\", \"feishu\", \"wecom\", \"hook\", \"sms\"]\n\
             [tls]\nextra_ca_file = \"{}\"\n",
            ca_file.display()
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, rx) = broadcast::channel(64);
    let stop = CancellationToken::new();
    let task = gateway::notify::start(cfg, store.clone(), rx, stop.clone()).unwrap();
    let alarm = raise(&store, 1, gateway::domain::time::now_ms()).await;
    tx.send(GatewayEvent::AlarmRaised {
        alarm,
        ticket: None,
    })
    .unwrap();
    let vendors = ["dingtalk", "feishu", "wecom", "webhook", "sms"];
    until(&seen, Duration::from_secs(10), |s| {
        vendors
            .iter()
            .all(|v| s.requests.iter().any(|(w, _, _)| w == v))
    })
    .await;
    {
        let s = seen.lock().unwrap();
        for (vendor, text, code) in &s.requests {
            assert_eq!(*code, 0, "{vendor} refused: {text}");
            assert!(text.contains("n01/rc1 "), "{vendor}: {text}");
        }
    }
    stop.cancel();
    task.await.unwrap();
    let log = store.notifications_in(None, 100).await.unwrap();
    let mut delivered: Vec<&str> = log
        .iter()
        .filter(|r| r.log.outcome == "delivered")
        .map(|r| r.log.channel.as_str())
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        ["ding", "feishu", "hook", "sms", "wecom"],
        "{log:?}"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "failed handshakes");
}

/// The same HTTPS robot without its CA: the system's store does not know
/// it, so the handshake fails, the log says it was the certificate, and
/// the alarm goes to the next channel at once (no request ever reached
/// the robot).
#[tokio::test]
async fn an_untrusted_certificate_fails_over_with_a_certificate_error() {
    let ca = TestCa::new("a CA nobody configured");
    let (https, https_seen, failed) = vendors_over_https(&ca).await;
    let (http, http_seen) = vendors().await;
    let cfg = config(
        &https,
        &format!(
            "[[notify.channels]]\nname = \"ding\"\nkind = \"dingtalk\"\nurl = \"BASE/dingtalk?access_token=t\"\nsecret = \"{DINGTALK_SECRET}\"\nfailover = \"wecom\"\n\
             [[notify.channels]]\nname = \"wecom\"\nkind = \"wecom\"\nurl = \"{http}/wecom?key=k\"\n\
             [[notify.routes]]\nsites = [\"*\"]\nduty = [\"ding\"]\n"
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, rx) = broadcast::channel(64);
    let stop = CancellationToken::new();
    let task = gateway::notify::start(cfg, store.clone(), rx, stop.clone()).unwrap();
    let alarm = raise(&store, 1, gateway::domain::time::now_ms()).await;
    tx.send(GatewayEvent::AlarmRaised {
        alarm,
        ticket: None,
    })
    .unwrap();
    until(&http_seen, Duration::from_secs(10), |s| {
        s.requests.iter().any(|(v, _, c)| v == "wecom" && *c == 0)
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert!(https_seen.lock().unwrap().requests.is_empty());
    assert!(
        failed.load(Ordering::SeqCst) >= 1,
        "no handshake was refused"
    );
    let log = store.notifications_in(None, 100).await.unwrap();
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .rev()
        .map(|r| (r.log.channel.as_str(), r.log.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("ding", "refused"), ("wecom", "delivered")],
        "{}",
        log[log.len() - 1].log.detail
    );
    let detail = &log[1].log.detail;
    assert!(
        detail.contains("TLS: the server's certificate is not accepted")
            && detail.contains("UnknownIssuer"),
        "{detail}"
    );
    // The robot's key (the URL's query) is not in the log.
    assert!(!detail.contains("access_token"), "{detail}");
}
