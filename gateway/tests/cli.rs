//! The `gateway` binary: `check-config` reports every problem and exits 2;
//! `run` on embedded defaults serves its API, ingests over its in-process
//! broker, and stops cleanly on SIGTERM.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[mqtt]\nbrokr = 1\n[[sites]]\nid = \"A\"\n[[sites.nodes]]\nid = \"n 1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "3 problem(s)",
        "mqtt.brokr: unknown key",
        "sites[0].id: must match",
        "sites[0].nodes[0].id: must match",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/gateway.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check-config")
        .arg(good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Anonymous logins are off unless asked for, and `check-config` warns
/// (exit 0) while they are on.
#[test]
fn check_config_warns_while_anonymous_logins_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let nodes = "[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n";
    assert!(
        !gateway::config::Config::default()
            .mqtt
            .anonymous_config_nodes
    );
    assert_eq!(check(nodes), "");
    let on = check(&format!("[mqtt]\nanonymous_config_nodes = true\n{nodes}"));
    assert!(
        on.contains("warning: mqtt.anonymous_config_nodes: on:"),
        "{on}"
    );
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingests_on_embedded_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"\n[mqtt]\nembedded_listen = \"127.0.0.1:{mqtt}\"\nanonymous_config_nodes = true\n\
             [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(http, "/healthz").is_none_or(|b| !b.contains("\"status\":\"ok\"")) {
        assert!(Instant::now() < deadline, "gateway did not become healthy");
        assert!(child.try_wait().unwrap().is_none(), "gateway exited early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A node publishes over the in-process broker.
    let node = gateway::demo::SimNode {
        site: wire::SiteId::new("home_a").unwrap(),
        node: wire::NodeId::new("n01").unwrap(),
        boot: 1,
        channels: vec![gateway::demo::SimChannel {
            id: "rc1",
            quantity: wire::Quantity::ResidualCurrent,
            profile: gateway::demo::Profile::Steady {
                base: 700,
                noise: 0,
            },
        }],
        period: Duration::from_millis(50),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let sim = tokio::spawn(node.run(
        std::net::SocketAddr::from(([127, 0, 0, 1], mqtt)),
        stop.clone(),
    ));
    // A duty officer created with the CLI logs in over the API.
    let add = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["user", "add", "--config"])
        .arg(&config)
        .args([
            "--login",
            "xiaoli",
            "--name",
            "值班员小李",
            "--role",
            "duty",
            "--sites",
            "home_a",
        ])
        .env("GATEWAY_NEW_PASSWORD", "night-shift-2026")
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let client = reqwest::Client::new();
    let login = client
        .post(format!("http://127.0.0.1:{http}/api/v1/login"))
        .header("content-type", "application/json")
        .body(r#"{"login":"xiaoli","password":"night-shift-2026"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let login: serde_json::Value = serde_json::from_str(&login).unwrap();
    let token = login["token"].as_str().expect("a token").to_string();
    let tickets = || {
        let req = client
            .get(format!("http://127.0.0.1:{http}/api/v1/tickets"))
            .header("authorization", format!("Bearer {token}"));
        async move { req.send().await.ok()?.text().await.ok() }
    };
    while tickets().await.is_none_or(|b| !b.contains("YH")) {
        assert!(
            Instant::now() < deadline,
            "no ticket from the simulated node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = sim.await;

    // SIGHUP (`systemctl reload`) rereads certificate files; with no TLS
    // listener configured it must not end the process (its default action).
    Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    let hup_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP ended the gateway"
        );
        if http_get(http, "/healthz").is_some_and(|b| b.contains("\"status\":\"ok\"")) {
            break;
        }
        assert!(Instant::now() < hup_deadline, "unhealthy after SIGHUP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = common::sigterm_and_wait(&mut child, Duration::from_secs(15));
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(
        log.contains("pipeline drained") && log.contains("gateway stopped"),
        "{log}"
    );
    assert!(log.contains("SIGHUP"), "the SIGHUP is logged: {log}");
}

/// An installer registers a node from the command line and gets its
/// provisioning artefact: the file decodes as the firmware reads it, with
/// the credentials just issued and the channels' sensors and setpoints; a
/// sensor the node has no input for is refused with the reason, and the
/// node stays registered so the artefact can be made again on rotation.
#[test]
fn node_add_writes_the_artefact_the_node_boots_from() {
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
    let gateway = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let artefact = dir.path().join("n07.fprv");
    let out = gateway(&[
        "node",
        "add",
        "--site",
        "home_a",
        "--id",
        "n07",
        "--building",
        "1号楼",
        "--floor",
        "2层",
        "--room",
        "201",
        "--panel",
        "AL-2",
        "--channel",
        "rc1:residual_current:ct=1000",
        "--channel",
        "t1:temperature:ntc",
        "--artefact",
        artefact.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("密码: "))
        .expect("the password is shown once")
        .to_string();
    assert!(stdout.contains("FN1:HOME.A/N07:"), "{stdout}");
    let p = wire::provision::decode(&std::fs::read(&artefact).unwrap()).unwrap();
    assert_eq!(
        (
            p.site.as_str(),
            p.node.as_str(),
            p.username.as_str(),
            p.password.as_str()
        ),
        ("home_a", "n07", "home_a.n07", password.as_str())
    );
    assert_eq!(
        (p.broker.host.as_str(), p.broker.port),
        ("192.168.1.10", 1883)
    );
    assert_eq!(p.channels.len(), 2);
    assert_eq!(
        p.channels[0].sensor,
        wire::provision::Sensor::Ct { ratio: 1000 }
    );
    assert_eq!(
        p.channels[0].set.alarm,
        Some(500),
        "the defaults' setpoints"
    );

    let bad = dir.path().join("n08.fprv");
    let out = gateway(&[
        "node",
        "add",
        "--site",
        "home_a",
        "--id",
        "n08",
        "--building",
        "1号楼",
        "--floor",
        "3层",
        "--room",
        "301",
        "--panel",
        "AL-3",
        "--channel",
        "t1:temperature:pt100",
        "--artefact",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pt100") && err.contains("node rotate"),
        "{err}"
    );
    assert!(!bad.exists());
}
