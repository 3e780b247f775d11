//! Small leaks (issue 14, item 9), each attacked: an unknown MQTT username
//! is refused as slowly as a wrong password; `/metrics` (its labels name
//! sites) is not served to the LAN; a ticket step's text fields have
//! length limits; the provisioning artefact (it holds the node's password)
//! is written 0600; `gateway demo` refuses a real installation's data
//! directory. (A record of another site answering 404 like a missing one:
//! `http.rs`, `every_path_keeps_to_the_callers_jurisdiction`.)

use gateway::config::Config;
use gateway::ingest::gate::Access;
use gateway::store::{AlarmInput, AlarmKey, TicketSpec};
use gateway::tickets::Role;
use rumqttc::mqttbytes::v4::Connect;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// The median time of `f` over `n` runs.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn an_unknown_mqtt_username_costs_what_a_wrong_password_does() {
    let mut access = Access::default();
    access.nodes.insert(
        "home_a.n01".into(),
        (
            "home_a".into(),
            "n01".into(),
            gateway::commissioning::credentials::hash("the-right-password").unwrap(),
        ),
    );
    let connect = |user: &str, password: &str| {
        let mut c = Connect::new(user);
        c.set_login(user, password);
        c
    };
    let unknown = connect("home_a.n99", "a-guessed-password");
    let wrong = connect("home_a.n01", "a-guessed-password");
    let right = connect("home_a.n01", "the-right-password");
    assert_eq!(
        access.authenticate(&unknown).unwrap_err(),
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(
        access.authenticate(&wrong).unwrap_err(),
        ConnectReturnCode::BadUserNamePassword
    );
    assert!(access.authenticate(&right).is_ok());
    // Interleaved rounds, so that a burst of load elsewhere hits both.
    let (mut t_unknown, mut t_wrong) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        t_unknown.push(median(41, || {
            let _ = access.authenticate(&unknown);
        }));
        t_wrong.push(median(41, || {
            let _ = access.authenticate(&wrong);
        }));
    }
    t_unknown.sort();
    t_wrong.sort();
    let (u, w) = (t_unknown[2], t_wrong[2]);
    // Without the dummy check an unknown username is a map lookup: a
    // hundred times faster than the 101 PBKDF2 rounds of a wrong password.
    let ratio = u.as_secs_f64() / w.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown username {u:?}, wrong password {w:?}"
    );
}

fn gateway_config(dir: &std::path::Path) -> Config {
    let mut config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.to_path_buf();
    config.mqtt.embedded_listen =
        SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config
}

/// An address of this machine that is not loopback, as a LAN peer would
/// come from.
fn lan_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the route.
    probe
        .connect("192.0.2.1:9")
        .expect("this test needs a non-loopback network interface");
    let ip = probe.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "this test needs a non-loopback address, found {ip}"
    );
    ip
}

async fn get(from: Option<std::net::IpAddr>, url: &str) -> (u16, String) {
    let mut client = reqwest::Client::builder();
    if let Some(ip) = from {
        client = client.local_address(ip);
    }
    let resp = client.build().unwrap().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_served_to_the_lan() {
    // Default: the API listens on every address; /metrics answers loopback only.
    let dir = tempfile::tempdir().unwrap();
    let api = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = api.local_addr().unwrap().port();
    let running = gateway::app::start(gateway_config(dir.path()), api)
        .await
        .unwrap();
    let lan = lan_address();
    let (status, body) = get(None, &format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("gateway_messages_received_total"), "{body}");
    let (status, body) = get(Some(lan), &format!("http://{lan}:{port}/metrics")).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("gateway_"), "{body}");
    // The API itself still answers the LAN.
    assert_eq!(
        get(Some(lan), &format!("http://{lan}:{port}/healthz"))
            .await
            .0,
        200
    );
    running.shutdown().await;

    // `http.metrics_listen`: /metrics only there.
    let dir = tempfile::tempdir().unwrap();
    let mut config = gateway_config(dir.path());
    config.http.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, api).await.unwrap();
    let metrics = running.metrics_addr.expect("a metrics listener");
    assert!(metrics.ip().is_loopback());
    let (status, _) = get(None, &format!("http://{}/metrics", running.http_addr)).await;
    assert_eq!(status, 404);
    let (status, body) = get(None, &format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("gateway_logins_total"), "{body}");
    // Nothing else is served there.
    assert_eq!(
        get(None, &format!("http://{metrics}/api/v1/alarms"))
            .await
            .0,
        404
    );
    running.shutdown().await;
}

#[test]
fn metrics_visibility_is_decided_by_listener_and_peer() {
    use gateway::api::metrics_visible;
    use std::net::IpAddr;
    let v4 = |a, b, c, d| Some(IpAddr::from([a, b, c, d]));
    assert!(metrics_visible(false, v4(127, 0, 0, 1)));
    assert!(metrics_visible(false, v4(127, 8, 0, 3)));
    assert!(metrics_visible(false, Some("::1".parse().unwrap())));
    assert!(metrics_visible(
        false,
        Some("::ffff:127.0.0.1".parse().unwrap())
    ));
    assert!(!metrics_visible(false, v4(192, 168, 1, 20)));
    assert!(!metrics_visible(
        false,
        Some("::ffff:10.0.0.1".parse().unwrap())
    ));
    assert!(!metrics_visible(false, Some("fd00::2".parse().unwrap())));
    assert!(!metrics_visible(true, v4(127, 0, 0, 1)));
    assert!(metrics_visible(false, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_text_fields_have_length_limits() {
    let dir = tempfile::tempdir().unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(gateway_config(dir.path()), http)
        .await
        .unwrap();
    let now = gateway::domain::time::now_ms();
    let store = &running.store;
    store
        .add_user(
            "wang",
            "王主任",
            Role::SiteManager,
            None,
            "a-long-password",
            now,
        )
        .await
        .unwrap();
    let input = AlarmInput {
        key: AlarmKey {
            site: "home_a".into(),
            node: "n01".into(),
            channel: "rc1".into(),
            cause: "residual_current_high".into(),
        },
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(620),
        setpoint: Some(500),
        at: now,
        suppressed: false,
    };
    let spec = TicketSpec {
        source: "sensor_alarm",
        category: "electrical_fire",
        grade: "major",
        prefix: "YH",
        title: "剩余电流超限".into(),
        location: String::new(),
        reopen_window_ms: 0,
    };
    let (alarm, _) = store.raise(&input, Some(&spec)).await.unwrap();
    let ticket = alarm.ticket_id.unwrap();
    let (token, _) = store
        .login("wang", "a-long-password", now)
        .await
        .unwrap()
        .unwrap();
    let url = format!(
        "http://{}/api/v1/tickets/{ticket}/transitions",
        running.http_addr
    );
    let post = |body: serde_json::Value| {
        let req = reqwest::Client::new()
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, v)
        }
    };
    let plan = |measures: String, person: String| {
        serde_json::json!({"step": {"action": "start_rectification", "plan": {
            "responsible_unit": "后勤部", "responsible_person": person, "measures": measures,
            "funds": "5000元", "deadline": now + 86_400_000, "contingency_plan": "断电挂牌"}}})
    };
    for (body, field) in [
        (
            serde_json::json!({"step": {"action": "list", "supervisor": "督".repeat(1_000),
                "document_no": "民消督〔2026〕1号", "deadline": now + 86_400_000}}),
            "督办单位最多 100 个字符",
        ),
        (
            plan("换".repeat(2001), "王工".into()),
            "整改措施最多 2000 个字符",
        ),
        (
            plan("换线".into(), "x".repeat(101)),
            "责任人最多 100 个字符",
        ),
    ] {
        let (status, v) = post(body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("too_long")),
            "{v}"
        );
        assert_eq!(v["message"], field);
    }
    // Nothing was recorded; within the limits the same steps go on to the
    // state machine (here: not yet registered, so refused there).
    let (_, events, _) = store.ticket(ticket).await.unwrap().unwrap();
    let before = events.len();
    let (status, v) = post(plan("换".repeat(2000), "王工".into())).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(store.ticket(ticket).await.unwrap().unwrap().1.len(), before);
    running.shutdown().await;
}

#[cfg(unix)]
#[test]
fn the_provisioning_artefact_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[mqtt]\nembedded_listen = \"192.168.1.10:1883\"\n\
             [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // An older artefact left world-readable at the same path.
    let artefact = dir.path().join("n07.fprv");
    std::fs::write(&artefact, b"old").unwrap();
    std::fs::set_permissions(&artefact, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["node", "add", "--site", "home_a", "--id", "n07"])
        .args(["--building", "1号楼", "--floor", "2层", "--room", "201"])
        .args([
            "--panel",
            "AL-2",
            "--channel",
            "rc1:residual_current:ct=1000",
        ])
        .arg("--artefact")
        .arg(&artefact)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&artefact).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let p = wire::provision::decode(&std::fs::read(&artefact).unwrap()).unwrap();
    assert_eq!(p.username.as_str(), "home_a.n07");
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

fn demo(data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["demo", "--http", "127.0.0.1:0", "--duration-secs", "1"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_demo_refuses_a_real_installations_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[[sites]]\nid = \"home_a\"\n",
            data.display()
        ),
    )
    .unwrap();
    // A real installation: its database and its administrator.
    let add = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["user", "add", "--login", "root", "--name", "管理员"])
        .args(["--role", "admin", "--sites", "*", "--config"])
        .arg(&config)
        .env("GATEWAY_NEW_PASSWORD", "a-long-password")
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let db = std::fs::read(data.join("gateway.db")).unwrap();
    let out = demo(&data);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("不是演示模式创建的数据库"), "{err}");
    // Untouched: no demo accounts (published passwords), no marker.
    assert_eq!(std::fs::read(data.join("gateway.db")).unwrap(), db);
    assert!(!data.join(gateway::demo::DEMO_MARKER).exists());
    let list = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["user", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let users = String::from_utf8_lossy(&list.stdout);
    assert!(
        users.contains("root") && !users.contains("zhiban"),
        "{users}"
    );

    // A fresh directory is the demo's, and stays usable by the demo.
    let fresh = dir.path().join("demo");
    for run in 0..2 {
        let out = demo(&fresh);
        assert!(out.status.success(), "run {run}: {out:?}");
    }
    assert!(fresh.join(gateway::demo::DEMO_MARKER).exists());
}
