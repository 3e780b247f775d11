//! Registration end to end, on a whole gateway with its embedded broker:
//! an installer registers a site and a node through the API, the node logs
//! in with the credentials it was given and its telemetry raises an alarm;
//! a publish under another node's topic is dropped and counted, a foreign
//! subscription refused; wrong passwords are refused; a rotation or a
//! revocation closes the live connection and the old password no longer
//! logs in. Waiting is on events, PUBACKs and counters, with deadlines.

use gateway::alarms::events::GatewayEvent;
use gateway::config::Config;
use gateway::tickets::Role;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const PASSWORD: &str = "registration-test-pw";
const WITHIN: Duration = Duration::from_secs(15);

struct Gw {
    running: gateway::app::Running,
    broker: SocketAddr,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"2号楼厨房配电箱\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "registration-test".into();
    // The node of the file without credentials logs in as itself.
    config.mqtt.anonymous_config_nodes = true;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let now = gateway::domain::time::now_ms();
    for (login, role, sites) in [
        ("installer_c", Role::Installer, vec!["home_c".to_string()]),
        ("duty_a", Role::Duty, vec!["home_a".to_string()]),
    ] {
        running
            .store
            .add_user(login, login, role, Some(&sites), PASSWORD, now)
            .await
            .unwrap();
    }
    let base = format!("http://{}", running.http_addr);
    Gw {
        running,
        broker,
        base,
        _dir: dir,
    }
}

impl Gw {
    async fn token(&self, login: &str) -> String {
        let r: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/login", self.base))
            .header("content-type", "application/json")
            .body(json!({ "login": login, "password": PASSWORD }).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        r["token"].as_str().unwrap().to_string()
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let c = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => c.get(url),
            _ => c.post(url),
        };
        let req = req.header("authorization", format!("Bearer {token}"));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn node_body(id: &str, floor: &str) -> Value {
    json!({
        "id": id,
        "location": { "building": "1号楼", "floor": floor, "room": "201", "panel": "AL-2" },
        "channels": [
            { "id": "rc1", "quantity": "residual_current", "ct_ratio": 1000 },
            { "id": "t1", "quantity": "temperature", "sensor": "ntc" }
        ]
    })
}

/// Connects and waits for the CONNACK: the live event loop, or the error.
async fn connect(
    broker: SocketAddr,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut o = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(o, 10);
    let first = tokio::time::timeout(WITHIN, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("no CONNACK within the deadline");
    first.map(|()| (client, events))
}

fn refused_with(r: Result<(AsyncClient, EventLoop), ConnectionError>, code: ConnectReturnCode) {
    match r {
        Err(ConnectionError::ConnectionRefused(c)) => assert_eq!(c, code),
        Err(e) => panic!("expected a refusal with {code:?}, got {e}"),
        Ok(_) => panic!("expected a refusal with {code:?}, got a connection"),
    }
}

/// Publishes QoS 1 and waits for the PUBACK.
async fn publish(client: &AsyncClient, events: &mut EventLoop, topic: &str, payload: Value) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
        .await
        .unwrap();
    tokio::time::timeout(WITHIN, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("MQTT: {e}"),
            }
        }
    })
    .await
    .expect("no PUBACK within the deadline");
}

fn telemetry(seq: u32, milliamps: i64) -> Value {
    json!({ "boot": 1, "seq": seq, "ts": 0,
            "ch": [{ "id": "rc1", "q": "residual_current", "v": milliamps, "s": "ok" }] })
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_node_speaks_only_for_itself_until_revoked() {
    let gw = start().await;
    let metrics = gw.running.metrics.clone();
    let installer = gw.token("installer_c").await;
    let duty = gw.token("duty_a").await;

    // Only installers (and administrators) register, within their sites.
    let (s, _) = gw
        .call(
            &duty,
            "POST",
            "/api/v1/sites",
            Some(json!({ "id": "home_c", "name": "康宁养老院" })),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites",
            Some(json!({ "id": "home_d", "name": "别处" })),
        )
        .await;
    assert_eq!(s, 403, "home_d is outside the installer's sites");
    let (s, body) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites",
            Some(json!({ "id": "home_c", "name": "康宁养老院" })),
        )
        .await;
    assert_eq!(s, 201, "{body}");

    // Bad input: a clear 400 naming the field; a duplicate id a 409.
    let (s, body) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites/home_c/nodes",
            Some(node_body("n07", "2\t层")),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("楼层"), "{body}");
    let (s, body) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites/home_c/nodes",
            Some(node_body("n07", "2层")),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let username = body["credentials"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    let password = body["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(username, "home_c.n07");
    let (s, body) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites/home_c/nodes",
            Some(node_body("n07", "2层")),
        )
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("duplicate")),
        "{body}"
    );
    let (s, body) = gw
        .call(&installer, "GET", "/api/v1/sites/home_c/nodes", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(body[0]["credential"], "active", "{body}");
    assert!(
        body.to_string().find(&password).is_none(),
        "the password is shown once only"
    );
    // The new site and node are in force for everyone at once.
    let (_, sites) = gw.call(&installer, "GET", "/api/v1/sites", None).await;
    assert_eq!(sites[0]["nodes"][0]["id"], "n07", "{sites}");

    // Wrong password, wrong client id, no credentials at all: refused.
    refused_with(
        connect(gw.broker, &username, Some((&username, "not-the-password"))).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    refused_with(
        connect(gw.broker, "someone-else", Some((&username, &password))).await,
        ConnectReturnCode::NotAuthorized,
    );
    assert_eq!(metrics.mqtt_acl_denied_connect.load(Ordering::Relaxed), 2);

    // With its credentials: its telemetry reaches the alarm path.
    let mut events = gw.running.events.subscribe();
    let (client, mut ev) = connect(gw.broker, &username, Some((&username, &password)))
        .await
        .expect("the node logs in with its credentials");
    publish(
        &client,
        &mut ev,
        "fire/v1/home_c/n07/telemetry",
        telemetry(1, 650),
    )
    .await;
    let raised = tokio::time::timeout(WITHIN, async {
        loop {
            if let Ok(GatewayEvent::AlarmRaised { alarm, .. }) = events.recv().await {
                return alarm;
            }
        }
    })
    .await
    .expect("an alarm for the registered node");
    assert_eq!(
        (raised.row.site.as_str(), raised.row.node.as_str()),
        ("home_c", "n07")
    );
    assert_eq!(metrics.messages_received.load(Ordering::Relaxed), 1);

    // Under another node's topic: acknowledged, dropped, counted, never ingested.
    publish(
        &client,
        &mut ev,
        "fire/v1/home_a/n01/telemetry",
        telemetry(1, 900),
    )
    .await;
    until("the refused publish to be counted", || {
        metrics.mqtt_acl_denied_publish.load(Ordering::Relaxed) == 1
    })
    .await;
    publish(
        &client,
        &mut ev,
        "fire/v1/home_c/n07/telemetry",
        telemetry(2, 660),
    )
    .await;
    until("the next own message", || {
        metrics.messages_received.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(
        metrics.messages_received.load(Ordering::Relaxed),
        2,
        "the foreign publish never reached the gateway"
    );
    let text = metrics.render();
    assert!(
        text.contains("gateway_mqtt_acl_denied_total{action=\"publish\"} 1"),
        "{text}"
    );

    // Subscribing to another node's commands: SUBACK failure.
    client
        .subscribe("fire/v1/home_a/n01/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = tokio::time::timeout(WITHIN, async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(a))) = ev.poll().await {
                return a.return_codes;
            }
        }
    })
    .await
    .expect("a SUBACK");
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
    assert_eq!(metrics.mqtt_acl_denied_subscribe.load(Ordering::Relaxed), 1);

    // Rotation closes the live connection; only the new password logs in.
    let (s, rotated) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites/home_c/nodes/n07/credentials",
            None,
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    let closed = tokio::time::timeout(WITHIN, async {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the rotated-away connection stays open");
    refused_with(
        connect(gw.broker, &username, Some((&username, &password))).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    let new_password = rotated["password"].as_str().unwrap();
    let (_client, mut ev) = connect(gw.broker, &username, Some((&username, new_password)))
        .await
        .expect("the new password logs in");

    // Revocation closes it too, and the broker refuses the node from then on.
    let (s, _) = gw
        .call(
            &installer,
            "POST",
            "/api/v1/sites/home_c/nodes/n07/revoke",
            None,
        )
        .await;
    assert_eq!(s, 204);
    let closed = tokio::time::timeout(WITHIN, async {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the revoked node's connection stays open");
    refused_with(
        connect(gw.broker, &username, Some((&username, new_password))).await,
        ConnectReturnCode::NotAuthorized,
    );
    let (_, sites) = gw.call(&installer, "GET", "/api/v1/sites", None).await;
    assert_eq!(
        sites[0]["nodes"],
        json!([]),
        "revoked nodes leave the configuration in force"
    );

    // A node of the file without credentials still logs in anonymously
    // (mqtt.anonymous_config_nodes), but only as itself: under its client
    // id `{site}.{node}`, never another (issue 14), and only for its topics.
    refused_with(
        connect(gw.broker, "home_a-n01", None).await,
        ConnectReturnCode::NotAuthorized,
    );
    let (anon, mut aev) = connect(gw.broker, "home_a.n01", None).await.unwrap();
    publish(
        &anon,
        &mut aev,
        "fire/v1/home_a/n01/telemetry",
        telemetry(1, 100),
    )
    .await;
    publish(
        &anon,
        &mut aev,
        "fire/v1/home_c/n07/telemetry",
        telemetry(3, 100),
    )
    .await;
    until("the anonymous foreign publish to be counted", || {
        metrics.mqtt_acl_denied_publish.load(Ordering::Relaxed) == 2
    })
    .await;
    gw.running.shutdown().await;
}

/// A registration made by another process (the CLI, with the gateway
/// running) is seen within a few seconds through the registry's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_by_another_process_is_picked_up() {
    let gw = start().await;
    let other = gateway::store::Store::open(&format!(
        "sqlite://{}",
        gw._dir.path().join("gateway.db").display()
    ))
    .await
    .unwrap();
    let base = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    let actor = gateway::commissioning::registry::Actor {
        name: "cli:test",
        role: "admin",
    };
    let node = gateway::commissioning::registry::NewNode {
        site: "home_a".into(),
        id: "n05".into(),
        location: gateway::commissioning::registry::Location {
            building: "3号楼".into(),
            floor: "1层".into(),
            room: "配电室".into(),
            panel: "AP-1".into(),
        },
        channels: vec![gateway::commissioning::registry::ChannelSpec::parse(
            "t1:temperature:pt100",
        )
        .unwrap()],
    };
    let mut live = gw.running.live.subscribe();
    let (_, issued) = gateway::commissioning::registry::add_node(&other, &base, &node, actor, 1)
        .await
        .unwrap();
    tokio::time::timeout(WITHIN, async {
        while live.borrow_and_update().node("home_a", "n05").is_none() {
            live.changed().await.unwrap();
        }
    })
    .await
    .expect("the registry poll never brought the CLI's node in force");
    let (client, mut ev) = connect(
        gw.broker,
        &issued.username,
        Some((&issued.username, &issued.password)),
    )
    .await
    .expect("the CLI's node logs in");
    publish(
        &client,
        &mut ev,
        "fire/v1/home_a/n05/status",
        json!({"state": "online", "fw": "0.1.0", "boot": 1}),
    )
    .await;
    other.close().await;
    gw.running.shutdown().await;
}
