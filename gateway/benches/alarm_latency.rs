//! Alarm latency (`cargo bench -p gateway --bench alarm_latency`): from the
//! MQTT publish of a reading past its setpoint to (a) the alarm on the event
//! stream (`/api/v1/events`, SSE, what the duty desk shows) and (b) the
//! notifier's HTTP request to the site's webhook, at 1,000 alarms a minute
//! across 100 sites (each site its own channel, as each institution has its
//! own group bot).
//!
//! The whole gateway runs in this process (`app::start`: embedded broker,
//! SQLite, pipeline, notifier, HTTP) on a 2-thread runtime, beside the
//! publisher, the SSE reader and the webhook server. Prints one JSON line.
//! `ALARMS` and `PER_MIN` override the load (defaults 1000 and 1000).

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use gateway::config::Config;
use gateway::tickets::Role;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const SITES: usize = 100;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(site: &str, node: &str, channel: &str) -> String {
    format!("{site}/{node}/{channel}")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 100.0).round() / 100.0
}

async fn hook(
    State(tx): State<mpsc::UnboundedSender<(String, Instant)>>,
    body: axum::body::Bytes,
) -> &'static str {
    let at = Instant::now();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = j["text"].as_str().unwrap_or("");
    let mut events = vec![j["event"].clone()];
    if j["event"]["type"] == "group" {
        events = j["event"]["items"].as_array().cloned().unwrap_or_default();
    }
    if text.starts_with("【报警") {
        for e in events {
            if let (Some(s), Some(n), Some(c)) = (
                e["site"].as_str(),
                e["node"].as_str(),
                e["channel"].as_str(),
            ) {
                let _ = tx.send((key(s, n, c), at));
            }
        }
    }
    "ok"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let alarms = env("ALARMS", 1000);
    let per_min = env("PER_MIN", 1000).max(1);
    let channels_per_site = alarms.div_ceil(SITES);

    // The webhook every site's channel points at.
    let (hook_tx, mut hook_rx) = mpsc::unbounded_channel();
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_addr = hook_listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/hook/{site}", post(hook))
        .with_state(hook_tx);
    tokio::spawn(async move { axum::serve(hook_listener, app).await.expect("serve") });

    let dir = tempfile::tempdir().expect("temp dir");
    let mqtt_port = free_port();
    let mut toml = format!(
        "[storage]\ndata_dir = \"{}\"\n[mqtt]\nembedded_listen = \"127.0.0.1:{mqtt_port}\"\nport = {mqtt_port}\n\
         username = \"bench-publisher\"\npassword = \"bench-pw\"\n\
         [rules.residual_current]\non_delay_ms = 0\n[notify]\nremind_every_secs = 0\n",
        dir.path().display()
    );
    for s in 0..SITES {
        toml.push_str(&format!(
            "[[notify.channels]]\nname = \"hook_{s:03}\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hook/s{s:03}\"\n"
        ));
    }
    for s in 0..SITES {
        toml.push_str(&format!(
            "[[notify.routes]]\nsites = [\"s{s:03}\"]\nduty = [\"hook_{s:03}\"]\n"
        ));
    }
    for s in 0..SITES {
        toml.push_str(&format!(
            "[[sites]]\nid = \"s{s:03}\"\nname = \"养老院{s:03}\"\n[[sites.nodes]]\nid = \"n01\"\n"
        ));
    }
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gw = gateway::app::start(config, http).await.expect("gateway");
    gw.store
        .add_user("bench", "bench", Role::Admin, None, "bench-pass", 0)
        .await
        .expect("user");
    let (token, _) = gw
        .store
        .login("bench", "bench-pass", gateway::domain::time::now_ms())
        .await
        .expect("login")
        .expect("token");

    // The event stream, as the duty desk reads it.
    let (sse_tx, mut sse_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/events", gw.http_addr))
        .bearer_auth(&token)
        .send()
        .await
        .expect("events");
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for line in frame.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let j: serde_json::Value =
                        serde_json::from_str(data.trim()).unwrap_or_default();
                    if j["type"] == "alarm_raised" {
                        let a = &j["alarm"];
                        if let (Some(s), Some(n), Some(c)) = (
                            a["site"].as_str(),
                            a["node"].as_str(),
                            a["channel"].as_str(),
                        ) {
                            let _ = sse_tx.send((key(s, n, c), at));
                        }
                    }
                }
            }
        }
    });

    // The nodes: one MQTT client publishing for all of them, as the
    // configured login the gate lets publish anywhere.
    let mut opts = MqttOptions::new("bench-nodes", "127.0.0.1", mqtt_port);
    opts.set_credentials("bench-publisher", "bench-pw");
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut published: HashMap<String, Instant> = HashMap::new();
    let interval = Duration::from_secs_f64(60.0 / per_min as f64);
    let mut tick = tokio::time::interval(interval);
    let ts0 = gateway::domain::time::now_ms();
    let start = Instant::now();
    for i in 0..alarms {
        tick.tick().await;
        let (s, c) = (i % SITES, i / SITES % channels_per_site);
        let topic = format!("fire/v1/s{s:03}/n01/telemetry");
        let payload = format!(
            r#"{{"boot":1,"seq":{},"ts":{},"ch":[{{"id":"rc{c}","q":"residual_current","v":700,"s":"ok"}}]}}"#,
            i / SITES + 1,
            ts0 + start.elapsed().as_millis() as u64
        );
        published.insert(
            key(&format!("s{s:03}"), "n01", &format!("rc{c}")),
            Instant::now(),
        );
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
    let publish_s = start.elapsed().as_secs_f64();

    // Collect until every alarm is seen on both paths, or 60 s more.
    let (mut sse, mut notified) = (HashMap::new(), HashMap::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (sse.len() < published.len() || notified.len() < published.len())
        && tokio::time::Instant::now() < deadline
    {
        tokio::select! {
            Some((k, at)) = sse_rx.recv() => { sse.entry(k).or_insert(at); }
            Some((k, at)) = hook_rx.recv() => { notified.entry(k).or_insert(at); }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let lat = |seen: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = published
            .iter()
            .filter_map(|(k, t0)| {
                seen.get(k)
                    .map(|t| t.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let (s, n) = (lat(&sse), lat(&notified));
    println!(
        "{}",
        serde_json::json!({
            "bench": "alarm_latency",
            "alarms": published.len(),
            "sites": SITES,
            "per_min": per_min,
            "publish_s": (publish_s * 10.0).round() / 10.0,
            "sse_p50_ms": pct(&s, 0.5),
            "sse_p99_ms": pct(&s, 0.99),
            "sse_missing": published.len() - s.len(),
            "notify_p50_ms": pct(&n, 0.5),
            "notify_p99_ms": pct(&n, 0.99),
            "notify_missing": published.len() - n.len(),
            "target_p99_ms": 1000,
        })
    );
    gw.shutdown().await;
}
