//! The end-to-end self-test (自检) through the whole gateway: an installer
//! starts it over HTTP, the gateway sends `selftest` on the node's `cmd`
//! topic through the embedded broker, a simulated node (a real MQTT client
//! behaving as the firmware does) injects its test signal, and the result
//! per channel comes back with the path latency — while no alarm record,
//! ticket or alarm event is produced by the test, and the real rules judge
//! the next real reading as before.
//!
//! Waiting is on observable state with a deadline; ports are bound on
//! 127.0.0.1:0 (the embedded broker's port is a free one).

mod common;

use common::node::{spawn, NodeSpec};
use gateway::alarms::events::GatewayEvent;
use gateway::config::Config;
use gateway::store::AlarmFilter;
use gateway::tickets::Role;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

const PASSWORD: &str = "a-long-password";

struct Gateway {
    running: gateway::app::Running,
    broker: SocketAddr,
    tokens: HashMap<&'static str, String>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(
        "offline_after_secs = 60\n\
         [commissioning]\nselftest_window_secs = 10\n\
         [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"1号楼2层配电箱\"\n\
         [[sites.nodes]]\nid = \"n02\"\nlocation = \"1号楼3层配电箱\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "selftest-gw".into();
    // The simulated nodes have no credentials: they log in as themselves.
    config.mqtt.anonymous_config_nodes = true;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let now = gateway::domain::time::now_ms();
    let mut tokens = HashMap::new();
    for (login, role) in [("duty_a", Role::Duty), ("bureau", Role::Inspector)] {
        let sites = vec!["home_a".to_string()];
        running
            .store
            .add_user(login, login, role, Some(&sites), PASSWORD, now)
            .await
            .unwrap();
        let token = running
            .store
            .login(login, PASSWORD, now)
            .await
            .unwrap()
            .unwrap()
            .0;
        tokens.insert(login, token);
    }
    Gateway {
        running,
        broker,
        tokens,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Gateway {
    async fn call(&self, method: reqwest::Method, path: &str, who: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("http://{}{path}", self.running.http_addr))
            .bearer_auth(&self.tokens[who])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Starts a self-test as `who`; (status, body).
    async fn start(&self, node: &str, who: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/sites/home_a/nodes/{node}/selftest"),
            who,
        )
        .await
    }

    /// Polls the self-test until it is no longer running (30 s at most).
    async fn result(&self, id: i64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/selftests/{id}"),
                    "duty_a",
                )
                .await;
            assert_eq!(status, 200, "{body}");
            if body["result"] != "running" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "self-test {id} still running: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn channel<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["channel"] == id))
        .unwrap_or_else(|| panic!("no channel {id} in {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_test_proves_each_channel_and_raises_nothing() {
    let gw = gateway().await;
    let node = spawn(
        gw.broker,
        NodeSpec {
            site: "home_a",
            node: "n01",
            credentials: None,
            faulted_rc2: true,
            history_from: None,
            boot: 1,
        },
    );
    // The node is up and its channels known once its telemetry is in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gw
        .running
        .metrics
        .readings_accepted
        .load(std::sync::atomic::Ordering::Relaxed)
        < 9
    {
        assert!(tokio::time::Instant::now() < deadline, "no telemetry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = gw.running.events.subscribe();

    // Bureau staff may look, not test; unknown nodes are named.
    assert_eq!(gw.start("n01", "bureau").await.0, 403);
    let (status, body) = gw.start("n99", "duty_a").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("n99"));

    let (status, body) = gw.start("n01", "duty_a").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    assert_eq!(gw.start("n01", "duty_a").await.0, 409, "one test at a time");
    let result = gw.result(id).await;
    eprintln!("self-test: {result}");

    assert_eq!(result["mode"], "command");
    assert_eq!(result["requested_by"], "duty_a");
    for ch in ["rc1", "t1"] {
        let c = channel(&result, ch);
        assert_eq!(c["passed"], true, "{c}");
        let latency = c["latency_ms"].as_u64().unwrap();
        assert!(latency < 5_000, "{ch}: {latency} ms");
        assert!(c["reason"].is_null());
    }
    assert_eq!(channel(&result, "rc1")["value"], 800);
    let rc2 = channel(&result, "rc2");
    assert_eq!(rc2["passed"], false);
    assert_eq!(rc2["reason"], "传感器开路，无法注入测试信号");
    assert_eq!(
        result["result"], "failed",
        "a faulted channel fails the test"
    );
    assert_eq!(result["result_label"], "未通过");

    // The test raised nothing: only the CT fault from before stands.
    let alarms = gw
        .running
        .store
        .alarms(AlarmFilter::All, 100)
        .await
        .unwrap();
    let causes: Vec<_> = alarms
        .iter()
        .map(|a| (a.channel.as_str(), a.cause.as_str()))
        .collect();
    assert_eq!(causes, vec![("rc2", "fault")], "{alarms:?}");
    while let Ok(ev) = events.try_recv() {
        if let GatewayEvent::AlarmRaised { alarm, .. } = ev {
            panic!("the self-test raised an alarm: {alarm:?}");
        }
    }

    // The real rules are as they were: a real 620 mA is a real alarm.
    node.rc1.store(620, std::sync::atomic::Ordering::Relaxed);
    let ev = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(GatewayEvent::AlarmRaised { alarm, .. }) = events.recv().await {
                if alarm.row.channel == "rc1" {
                    return alarm;
                }
            }
        }
    })
    .await
    .expect("a real alarm after the test");
    assert_eq!(
        (ev.row.cause.as_str(), ev.row.level.as_str()),
        ("residual_current_high", "alarm")
    );

    // The record lists it, newest first.
    let (status, list) = gw
        .call(
            reqwest::Method::GET,
            "/api/v1/selftests?site=home_a&node=n01",
            "bureau",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], id);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_test_of_an_offline_node_fails_at_once_saying_so() {
    let gw = gateway().await;
    let (status, body) = gw.start("n02", "duty_a").await;
    assert_eq!(status, 202, "{body}");
    let result = gw.result(body["id"].as_i64().unwrap()).await;
    assert_eq!(result["result"], "failed");
    assert_eq!(
        result["finished_at"], result["started_at"],
        "no waiting for a node that is not there"
    );
    // Nothing was ever heard from n02, so no channel is known: the
    // record says why.
    assert!(result["channels"].as_array().unwrap().is_empty());
    assert_eq!(result["reason"], "节点离线，无法自检");
    gw.running.shutdown().await;
}
