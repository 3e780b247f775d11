//! The installer's whole journey (安装调试), through the gateway's API and
//! its embedded broker with per-node credentials: a site from nothing —
//! register a node (credentials once), the node connects with them and
//! backfills a day of readings, the self-test passes with its latency, the
//! gateway (restarted, as after a day) has learned each loop's baseline and
//! recommends setpoints within the bounds, the installer applies one (the
//! node receives it with `config`), the report lists it all, and the site
//! manager signs it off. Bad input on the way: a duplicate node, a
//! malformed location, a node publishing under another node's topic
//! (dropped and counted), a setpoint outside the bounds, a sign-off by the
//! wrong role. The simulated week is a simulated day here
//! (`commissioning.baseline_hours = 24`, the node's readings backdated).

mod common;

use common::node::{spawn, NodeSpec};
use gateway::config::Config;
use gateway::tickets::Role;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

const PASSWORD: &str = "a-long-password";

struct Gw {
    running: gateway::app::Running,
    broker: SocketAddr,
    http: reqwest::Client,
}

async fn start(dir: &std::path::Path) -> Gw {
    let mut config = Config::from_toml(
        "[commissioning]\nselftest_window_secs = 10\nbaseline_hours = 24\n\
         [mqtt]\nanonymous_config_nodes = false\n\
         [[sites]]\nid = \"home_c\"\nname = \"康宁养老院\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.to_path_buf();
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "commissioning-gw".into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Gw {
        running: gateway::app::start(config, listener).await.unwrap(),
        broker,
        http: reqwest::Client::new(),
    }
}

impl Gw {
    async fn token(&self, login: &str, role: Role) -> String {
        let now = gateway::domain::time::now_ms();
        let sites = vec!["home_c".to_string()];
        let _ = self
            .running
            .store
            .add_user(login, login, role, Some(&sites), PASSWORD, now)
            .await;
        self.running
            .store
            .login(login, PASSWORD, now)
            .await
            .unwrap()
            .unwrap()
            .0
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.running.http_addr);
        let mut req = match method {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        }
        .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn text(&self, path: &str, token: &str) -> String {
        self.http
            .get(format!("http://{}{path}", self.running.http_addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls GET `path` until `done(body)`, 30 s at most.
    async fn until(
        &self,
        path: &str,
        token: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.call("GET", path, token, None).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn node_body(id: &str, floor: &str) -> Value {
    json!({
        "id": id,
        "location": { "building": "1号楼", "floor": floor, "room": "201", "panel": "AL-2" },
        "channels": [
            { "id": "rc1", "quantity": "residual_current", "ct_ratio": 1000 },
            { "id": "t1", "quantity": "temperature", "sensor": "ntc" },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_nothing_to_a_signed_commissioning_report() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let installer = gw.token("wang", Role::Installer).await;
    let manager = gw.token("li", Role::SiteManager).await;

    // Register: credentials once; duplicates and malformed locations refused.
    let (status, added) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes",
            &installer,
            Some(node_body("n07", "2层")),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let user = added["credentials"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    let pass = added["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(user, "home_c.n07");
    // The artefact the node boots from comes with them, once.
    use base64::Engine as _;
    let artefact = base64::engine::general_purpose::STANDARD
        .decode(added["artefact_base64"].as_str().expect("an artefact"))
        .unwrap();
    let p = wire::provision::decode(&artefact).unwrap();
    assert_eq!(
        (p.username.as_str(), p.password.as_str(), p.broker.port),
        (user.as_str(), pass.as_str(), gw.broker.port())
    );
    assert_eq!(p.channels.len(), 2);
    assert!(added["label"]
        .as_str()
        .unwrap()
        .starts_with("FN1:HOME.C/N07:"));
    let (status, _) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes",
            &installer,
            Some(node_body("n07", "2层")),
        )
        .await;
    assert_eq!(status, 409, "duplicate node id");
    let (status, body) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes",
            &installer,
            Some(node_body("n08", "")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("楼层"), "{body}");
    let (_, n09) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes",
            &installer,
            Some(node_body("n09", "3层")),
        )
        .await;

    // The node connects with its credentials and backfills a day and more.
    let history_from = gateway::domain::time::now_ms() - 26 * 3_600_000;
    let node = spawn(
        gw.broker,
        NodeSpec {
            site: "home_c",
            node: "n07",
            credentials: Some((&user, &pass)),
            faulted_rc2: false,
            history_from: Some(history_from),
            boot: 1,
        },
    );
    // A node publishing as another: dropped at the broker and counted.
    let intruder = spawn(
        gw.broker,
        NodeSpec {
            site: "home_c",
            node: "n07",
            credentials: Some((
                n09["credentials"]["username"].as_str().unwrap(),
                n09["credentials"]["password"].as_str().unwrap(),
            )),
            faulted_rc2: false,
            history_from: None,
            boot: 9,
        },
    );
    let metrics = gw.running.metrics.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !gateway::metrics::Metrics::render(&metrics).contains("gateway_mqtt_acl_denied_total") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ACL drop counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    intruder.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.acked.load(std::sync::atomic::Ordering::Relaxed) < 170 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backfill not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Self-test: every channel passes, with its path latency.
    let (status, st) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes/n07/selftest",
            &installer,
            None,
        )
        .await;
    assert_eq!(status, 202, "{st}");
    let path = format!("/api/v1/selftests/{}", st["id"]);
    let result = gw
        .until(&path, &installer, "self-test", |b| b["result"] != "running")
        .await;
    assert_eq!(result["result"], "passed", "{result}");
    for c in result["channels"].as_array().unwrap() {
        assert!(c["latency_ms"].as_u64().unwrap() < 5_000, "{c}");
    }
    // Not signed while the baselines are still being learned? The report
    // is ready already (self-test and wiring); signing comes at the end.
    let (status, _) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/commissioning/sign-off",
            &installer,
            Some(json!({ "note": "同意" })),
        )
        .await;
    assert_eq!(status, 403, "only the site manager signs");

    // A day later (the gateway restarted): baselines learned, setpoints recommended.
    node.stop();
    gw.running.shutdown().await;
    let gw = start(dir.path()).await;
    let node = spawn(
        gw.broker,
        NodeSpec {
            site: "home_c",
            node: "n07",
            credentials: Some((&user, &pass)),
            faulted_rc2: false,
            history_from: None,
            boot: 2,
        },
    );
    let learned = gw
        .until(
            "/api/v1/sites/home_c/baselines",
            &installer,
            "baselines",
            |b| {
                b.as_array()
                    .is_some_and(|a| a.len() == 2 && a.iter().all(|c| c["status"] == "learned"))
            },
        )
        .await;
    let rc1 = learned
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "rc1")
        .unwrap()
        .clone();
    let natural = rc1["baseline"]["p95"].as_i64().unwrap();
    let rec_alarm = rc1["recommendation"]["alarm"].as_i64().unwrap();
    assert!((100..=140).contains(&natural), "{rc1}");
    assert!(
        (300..=500).contains(&rec_alarm) && rec_alarm >= 2 * natural,
        "{rc1}"
    );

    // Outside the bounds: refused with the reason. The recommendation: applied.
    let sp_path = "/api/v1/sites/home_c/nodes/n07/channels/rc1/setpoints";
    let (status, body) = gw
        .call(
            "POST",
            sp_path,
            &installer,
            Some(json!({ "pre_alarm": 300, "alarm": 1500 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("1000 mA"),
        "{body}"
    );
    let (status, body) = gw
        .call(
            "POST",
            sp_path,
            &installer,
            Some(json!({
                "pre_alarm": rc1["recommendation"]["pre_alarm"],
                "alarm": rec_alarm,
                "source": "recommendation",
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The node receives it with `config`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cmds = node.commands();
        if let Some(c) = cmds.iter().find(|c| c["op"] == "config") {
            assert_eq!(
                (c["ch"].as_str(), c["alarm"].as_i64()),
                (Some("rc1"), Some(rec_alarm))
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no config command: {cmds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The report lists it all; the site manager signs it off.
    let report = gw
        .until(
            "/api/v1/sites/home_c/commissioning",
            &installer,
            "report",
            |r| r["report"]["selftest_passed"] == 2,
        )
        .await;
    assert_eq!(report["report"]["ready"], false, "n09 never reported");
    let n07 = report["report"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "n07")
        .unwrap();
    assert_eq!(n07["location"], "1号楼 2层 201 配电箱AL-2");
    assert_eq!(n07["installed_by"], "wang");
    let line = n07["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "rc1")
        .unwrap();
    assert_eq!(line["sensor"], "ct=1000");
    assert_eq!(line["wiring"], "正常");
    assert_eq!(line["selftest"]["passed"], true);
    assert_eq!(line["alarm"], rec_alarm);
    assert_eq!(line["setpoints_by"], "wang");
    assert_eq!(line["baseline"]["p95"], natural);
    let (status, signed) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/commissioning/sign-off",
            &manager,
            Some(json!({ "note": "同意验收" })),
        )
        .await;
    // n09 never reported: the site is not ready while a node is silent.
    assert_eq!(status, 409, "{signed}");
    let (status, _) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/nodes/n09/revoke",
            &installer,
            None,
        )
        .await;
    assert_eq!(status, 204, "n09 revoked: it leaves the site");
    let (status, signed) = gw
        .call(
            "POST",
            "/api/v1/sites/home_c/commissioning/sign-off",
            &manager,
            Some(json!({ "note": "同意验收" })),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let page = gw
        .text("/api/v1/sites/home_c/commissioning.html", &manager)
        .await;
    assert!(page.contains("康宁养老院") && page.contains("li") && page.contains("同意验收"));
    assert!(page.contains(signed["report_sha256"].as_str().unwrap()));
    let csv = gw
        .text("/api/v1/sites/home_c/commissioning.csv", &manager)
        .await;
    assert!(csv.contains("n07") && csv.contains("验收签字"), "{csv}");
    let audit = gw.running.store.audit_records().await.unwrap();
    for action in ["node.selftest", "rule.setpoint", "commissioning.sign_off"] {
        assert!(audit.iter().any(|r| r.action == action), "{action} audited");
    }
    node.stop();
    gw.running.shutdown().await;
}
