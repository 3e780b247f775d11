//! Modbus devices end to end: in-process Modbus TCP, RTU-over-TCP and
//! RTU-on-a-serial-port (a pseudo-terminal) servers serve the shipped maps, the gateway (`gateway::app::start`)
//! polls them, and what the duty desk would see is read from the store,
//! the event stream and `/metrics`: a sentinel is a fault ticket, not an
//! alarm; a value past the setpoint (with the device's own alarm bit) is an
//! alarm with its hazard ticket; exception codes, bad frames and short
//! answers are counted; a device that stops answering is one node-offline
//! alarm, not one per channel, and clears when it is back.
//!
//! Waiting is on the gateway's event stream with a deadline, never on a
//! fixed sleep; every server binds 127.0.0.1:0.

use gateway::alarms::events::GatewayEvent;
use gateway::config::Config;
use gateway::ingest::modbus::map::{shipped, Function};
use gateway::ingest::modbus::sim::{serve_tcp, Behaviour, Simulator};
use gateway::store::{AlarmFilter, AlarmRow, TicketOutcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

const SITE: &str = "home_a";

fn map(model: &str) -> Arc<gateway::ingest::modbus::map::RegisterMap> {
    Arc::new(shipped(model).unwrap())
}

async fn tcp_simulator(sim: &Simulator, stop: &CancellationToken) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_tcp(l, sim.clone(), stop.clone()));
    addr
}

async fn rtu_over_tcp_simulator(sim: &Simulator, stop: &CancellationToken) -> SocketAddr {
    use tokio_modbus::server::rtu_over_tcp::{accept_tcp_connection, Server};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sim = sim.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let on_connected = |stream, addr| {
            let sim = sim.clone();
            async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(sim.clone()))) }
        };
        let _ = Server::new(l)
            .serve_until(&on_connected, |_| {}, async move { stop.cancelled().await })
            .await;
    });
    addr
}

/// A "device" that answers every request with `garbage(request)`.
async fn garbage_server(garbage: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 300];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&garbage(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn start(devices: &str, nodes: &[&str], dir: &tempfile::TempDir) -> gateway::app::Running {
    let mut text =
        format!("offline_after_secs = 30\n[[sites]]\nid = \"{SITE}\"\nname = \"阳光养老院\"\n");
    for n in nodes {
        text += &format!("[[sites.nodes]]\nid = \"{n}\"\nlocation = \"配电室 {n}\"\n");
    }
    text += devices;
    let mut config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.embedded_listen =
        SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.client_id = "modbus-test".into();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    gateway::app::start(config, http).await.unwrap()
}

/// A connection polling fast, giving up quickly: two failed polls = offline.
fn connection(kind: &str, addr: SocketAddr, devices: &[(u8, &str, &str, &str)]) -> String {
    let mut s = format!(
        "[[modbus.connections]]\nkind = \"{kind}\"\naddress = \"{addr}\"\ntimeout_ms = 500\nretries = 1\nbackoff_ms = 10\noffline_after_failures = 2\n"
    );
    for (unit, map, node, extra) in devices {
        s += &format!(
            "[[modbus.connections.devices]]\nunit = {unit}\nmap = \"{map}\"\nsite = \"{SITE}\"\nnode = \"{node}\"\ninterval_ms = 200\n{extra}\n"
        );
    }
    s
}

/// The gateway's event stream, with what has been seen so far: devices
/// are polled concurrently, so events come in any order.
struct Watch {
    rx: broadcast::Receiver<GatewayEvent>,
    seen: Vec<GatewayEvent>,
}

impl Watch {
    /// Subscribes, then takes what the store already holds: the pollers
    /// start with the gateway, so an alarm may be raised before we listen.
    async fn new(running: &gateway::app::Running) -> Watch {
        let rx = running.events.subscribe();
        let mut seen = Vec::new();
        for row in running.store.alarms(AlarmFilter::All, 1000).await.unwrap() {
            let ticket =
                match row.ticket_id {
                    Some(id) => running.store.ticket(id).await.unwrap().map(|(t, _, _)| {
                        TicketOutcome::Opened {
                            id,
                            number: t.number,
                        }
                    }),
                    None => None,
                };
            seen.push(GatewayEvent::AlarmRaised {
                alarm: gateway::alarms::events::AlarmView::from(row),
                ticket,
            });
        }
        Watch { rx, seen }
    }
}

fn alarm_row(ev: &GatewayEvent) -> Option<&AlarmRow> {
    match ev {
        GatewayEvent::AlarmRaised { alarm, .. } | GatewayEvent::AlarmUpdated { alarm } => {
            Some(&alarm.row)
        }
        GatewayEvent::TicketUpdated { .. } => None,
    }
}

/// Waits for a raised or updated alarm matching `f`, seen before or
/// arriving within 30 s (generous: CI runs every test at once on 2 cores).
async fn wait_for(
    w: &mut Watch,
    what: &str,
    f: impl Fn(&GatewayEvent, &AlarmRow) -> bool,
) -> GatewayEvent {
    let matches = |ev: &GatewayEvent| alarm_row(ev).is_some_and(|a| f(ev, a));
    if let Some(ev) = w.seen.iter().find(|ev| matches(ev)) {
        return ev.clone();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, w.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within 30 s: {what}"))
            .unwrap();
        w.seen.push(ev.clone());
        if matches(&ev) {
            return ev;
        }
    }
}

fn raised(ev: &GatewayEvent) -> bool {
    matches!(ev, GatewayEvent::AlarmRaised { .. })
}

fn ticket_number(ev: &GatewayEvent) -> String {
    match ev {
        GatewayEvent::AlarmRaised {
            ticket: Some(TicketOutcome::Opened { number, .. }),
            ..
        } => number.clone(),
        other => panic!("no ticket opened: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_devices_sentinels_alarm_bits_exceptions_and_a_device_that_stops_answering() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sim = Simulator::new();
    // m01: a 12-loop monitor; loop 2's probe is broken (0xFAFA), loop 3's
    // shorted (0xE5E5), loop 12 has no probe and is skipped.
    sim.add(1, map("aim_r100"));
    for i in 1..=12 {
        sim.set(1, &format!("rc{i}"), 100 + i);
    }
    sim.set_raw(1, "rc2", 0xFAFA);
    sim.set_raw(1, "rc3", 0xE5E5);
    sim.set_raw(1, "rc12", 0xFAFA);
    // m02: a relay reading 620 mA with its own alarm bit set.
    sim.add(2, map("acrel_asj"));
    sim.set(2, "rc1", 620);
    sim.set_bit(2, Function::Holding, 0x001B, 1, true);
    // m03: answers every read with exception 6 (server device busy).
    sim.add(3, map("temp_module"));
    sim.set_behaviour(3, Behaviour::Exception(ExceptionCode::ServerDeviceBusy));
    // m04: a transmitter in good order, until it stops answering.
    sim.add(4, map("transmitter_4_20"));
    sim.set(4, "lc1", 12_000);
    sim.set(4, "p1", 350);
    sim.set(4, "l1", 2500);
    // m05: answers one register short.
    sim.add(5, map("temp_module"));
    sim.set_behaviour(5, Behaviour::Short);
    let addr = tcp_simulator(&sim, &stop).await;
    let devices = connection(
        "tcp",
        addr,
        &[
            (1, "aim_r100", "m01", "skip = [\"rc12\"]"),
            (2, "acrel_asj", "m02", "channels = { rc1 = \"kitchen\" }"),
            (3, "temp_module", "m03", ""),
            (4, "transmitter_4_20", "m04", ""),
            (5, "temp_module", "m05", ""),
        ],
    );
    let running = start(&devices, &["m01", "m02", "m03", "m04", "m05"], &dir).await;
    let mut events = Watch::new(&running).await;

    // Sentinels: 设备故障 with a GZ ticket, never an electrical-fire alarm.
    for ch in ["rc2", "rc3"] {
        let ev = wait_for(&mut events, "sentinel fault", |ev, a| {
            raised(ev) && a.node == "m01" && a.channel == ch
        })
        .await;
        let GatewayEvent::AlarmRaised { alarm, .. } = &ev else {
            unreachable!()
        };
        assert_eq!(
            (alarm.row.kind.as_str(), alarm.row.cause.as_str()),
            ("fault", "fault")
        );
        assert!(ticket_number(&ev).starts_with("GZ"), "{ev:?}");
    }
    // Over the setpoint: 报警 with its hazard ticket, on the renamed channel.
    let ev = wait_for(&mut events, "residual-current alarm", |ev, a| {
        raised(ev) && a.node == "m02"
    })
    .await;
    let GatewayEvent::AlarmRaised { alarm, .. } = &ev else {
        unreachable!()
    };
    assert_eq!(alarm.row.channel, "kitchen");
    assert_eq!(alarm.row.kind, "electrical_fire");
    assert_eq!(alarm.row.level, "alarm");
    assert_eq!(alarm.row.value, Some(620));
    assert!(ticket_number(&ev).starts_with("YH"), "{ev:?}");
    // A device that refuses every read: one offline alarm.
    wait_for(&mut events, "m03 offline", |ev, a| {
        raised(ev) && a.node == "m03" && a.cause == "offline"
    })
    .await;
    assert!(running.metrics.modbus.exceptions(SITE, "m03", 6) >= 2);
    // A device answering too little: counted, and offline.
    wait_for(&mut events, "m05 offline", |ev, a| {
        raised(ev) && a.node == "m05" && a.cause == "offline"
    })
    .await;
    assert!(running.metrics.modbus.errors(SITE, "m05", "short_response") >= 2);

    // m04 stops answering: one node alarm, then it clears when it is back.
    assert!(running.metrics.modbus.polls(SITE, "m04") >= 1);
    sim.set_behaviour(4, Behaviour::Silent);
    wait_for(&mut events, "m04 offline", |ev, a| {
        raised(ev) && a.node == "m04" && a.cause == "offline"
    })
    .await;
    assert!(running.metrics.modbus.errors(SITE, "m04", "timeout") >= 2);
    assert_eq!(running.metrics.modbus.state(SITE, "m04"), 2);
    sim.set_behaviour(4, Behaviour::Answer);
    wait_for(&mut events, "m04 back", |ev, a| {
        !raised(ev) && a.node == "m04" && a.cause == "offline" && a.state == "cleared"
    })
    .await;

    let alarms = running.store.alarms(AlarmFilter::All, 100).await.unwrap();
    let of = |node: &str| -> Vec<(String, String)> {
        let mut v: Vec<_> = alarms
            .iter()
            .filter(|a| a.node == node)
            .map(|a| (a.channel.clone(), a.cause.clone()))
            .collect();
        v.sort();
        v
    };
    let f = |c: &str, cause: &str| (c.to_string(), cause.to_string());
    assert_eq!(of("m01"), vec![f("rc2", "fault"), f("rc3", "fault")]);
    assert_eq!(of("m02"), vec![f("kitchen", "residual_current_high")]);
    assert_eq!(
        of("m03"),
        vec![f("", "offline")],
        "one alarm, not one per channel"
    );
    assert_eq!(
        of("m04"),
        vec![f("", "offline")],
        "one alarm, not one per channel"
    );

    let text = gateway::metrics::Metrics::render(&running.metrics);
    for line in [
        "gateway_modbus_exceptions_total{site=\"home_a\",node=\"m03\",code=\"6\"}",
        "gateway_modbus_errors_total{site=\"home_a\",node=\"m04\",kind=\"timeout\"}",
        "gateway_modbus_device_state{site=\"home_a\",node=\"m01\"} 0",
        "gateway_modbus_device_state{site=\"home_a\",node=\"m03\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    running.shutdown().await;
    stop.cancel();
}

/// RTU frames with a bad CRC, again and again: never a valid frame.
fn bad_crc(req: &[u8]) -> Vec<u8> {
    let unit = req.first().copied().unwrap_or(1);
    [unit, 0x03, 0x02, 0x00, 0x64, 0xAA, 0xAA].repeat(10)
}

/// Modbus TCP answers with the right transaction id and a protocol id that is not Modbus.
fn bad_mbap(req: &[u8]) -> Vec<u8> {
    let (t0, t1, unit) = (
        req.first().copied().unwrap_or(0),
        req.get(1).copied().unwrap_or(0),
        req.get(6).copied().unwrap_or(1),
    );
    vec![t0, t1, 0xBE, 0xEF, 0x00, 0x05, unit, 0x03, 0x02, 0x00, 0x64]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_is_polled_and_garbage_is_counted_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sim = Simulator::new();
    sim.add(7, map("aim_r100"));
    for i in 1..=12 {
        sim.set(7, &format!("rc{i}"), 150);
    }
    sim.set(7, "rc5", 640);
    let rtu = rtu_over_tcp_simulator(&sim, &stop).await;
    let crc = garbage_server(bad_crc).await;
    let mbap = garbage_server(bad_mbap).await;
    let devices = [
        connection("rtu_over_tcp", rtu, &[(7, "aim_r100", "r01", "")]),
        connection("rtu_over_tcp", crc, &[(1, "acrel_asj", "g01", "")]),
        connection("tcp", mbap, &[(1, "acrel_asj", "g02", "")]),
    ]
    .concat();
    let running = start(&devices, &["r01", "g01", "g02"], &dir).await;
    let mut events = Watch::new(&running).await;

    let ev = wait_for(&mut events, "alarm over RTU", |ev, a| {
        raised(ev) && a.node == "r01"
    })
    .await;
    let GatewayEvent::AlarmRaised { alarm, .. } = &ev else {
        unreachable!()
    };
    assert_eq!(
        (alarm.row.channel.as_str(), alarm.row.value),
        ("rc5", Some(640))
    );
    for node in ["g01", "g02"] {
        wait_for(&mut events, "garbage device offline", |ev, a| {
            raised(ev) && a.node == node && a.cause == "offline"
        })
        .await;
        assert!(
            running.metrics.modbus.errors(SITE, node, "frame") >= 1,
            "{node}: {}",
            running.metrics.render()
        );
    }
    assert_eq!(running.metrics.modbus.state(SITE, "r01"), 0);
    assert!(running.metrics.modbus.polls(SITE, "r01") >= 1);
    let alarms = running.store.alarms(AlarmFilter::All, 100).await.unwrap();
    assert_eq!(alarms.iter().filter(|a| a.node == "g01").count(), 1);
    assert_eq!(alarms.iter().filter(|a| a.node == "g02").count(), 1);
    running.shutdown().await;
    stop.cancel();
}

/// A simulated RS-485 bus behind a serial port: the test holds the
/// pseudo-terminal's master side (served by tokio-modbus's RTU server) and
/// gives the gateway the slave's path, which it opens like `/dev/ttyUSB0`.
/// Returns the path and the slave handle, kept open so the master side does
/// not read end-of-file before the gateway opens it.
fn serial_simulator(
    sim: &Simulator,
    stop: &CancellationToken,
) -> (String, tokio_serial::SerialStream) {
    use tokio_serial::SerialPort;
    let (master, slave) = tokio_serial::SerialStream::pair().expect("pseudo-terminal pair");
    let path = slave.name().expect("pseudo-terminal path");
    let sim = sim.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let server = tokio_modbus::server::rtu::Server::new(master);
        let _ = server
            .serve_until(sim, async move { stop.cancelled().await })
            .await;
    });
    (path, slave)
}

/// Modbus RTU on a serial port: two devices on one bus, each with its unit
/// id, polled through tokio-serial; a third unit id that nobody answers is
/// timeouts and one offline alarm, while the others keep being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_on_a_serial_port_polls_every_unit_on_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sim = Simulator::new();
    sim.add(3, map("aim_r100"));
    for i in 1..=12 {
        sim.set(3, &format!("rc{i}"), 120);
    }
    sim.set(3, "rc4", 660);
    sim.add(4, map("transmitter_4_20"));
    sim.set(4, "lc1", 12_000);
    sim.set(4, "p1", 350);
    sim.set(4, "l1", 2500);
    // s05: a relay whose own setpoint is lower than the gateway's: it
    // reads 260 mA (under the 300 mA 预警) with its alarm bit set.
    sim.add(5, map("acrel_asj"));
    sim.set(5, "rc1", 260);
    sim.set_bit(5, Function::Holding, 0x001B, 1, true);
    let (path, _slave) = serial_simulator(&sim, &stop);
    let mut devices = format!(
        "[[modbus.connections]]\nkind = \"rtu\"\npath = \"{path}\"\nbaud = 19200\nparity = \"even\"\ntimeout_ms = 300\nretries = 1\nbackoff_ms = 10\noffline_after_failures = 2\n"
    );
    for (unit, model, node) in [
        (3, "aim_r100", "s03"),
        (4, "transmitter_4_20", "s04"),
        (5, "acrel_asj", "s05"),
        (9, "acrel_asj", "s09"),
    ] {
        devices += &format!(
            "[[modbus.connections.devices]]\nunit = {unit}\nmap = \"{model}\"\nsite = \"{SITE}\"\nnode = \"{node}\"\ninterval_ms = 200\n"
        );
    }
    let running = start(&devices, &["s03", "s04", "s05", "s09"], &dir).await;
    let mut events = Watch::new(&running).await;

    let ev = wait_for(&mut events, "alarm over the serial port", |ev, a| {
        raised(ev) && a.node == "s03"
    })
    .await;
    let GatewayEvent::AlarmRaised { alarm, .. } = &ev else {
        unreachable!()
    };
    assert_eq!(
        (alarm.row.channel.as_str(), alarm.row.value),
        ("rc4", Some(660))
    );
    assert!(ticket_number(&ev).starts_with("YH"), "{ev:?}");
    // The detector's own alarm reaches the duty desk with its ticket, though
    // the gateway's setpoint is not crossed; it clears with the bit.
    let ev = wait_for(&mut events, "the device's own alarm", |ev, a| {
        raised(ev) && a.node == "s05"
    })
    .await;
    let GatewayEvent::AlarmRaised { alarm, .. } = &ev else {
        unreachable!()
    };
    assert_eq!(
        (
            alarm.row.cause.as_str(),
            alarm.row.level.as_str(),
            alarm.row.value
        ),
        ("device_alarm", "alarm", Some(260))
    );
    assert!(ticket_number(&ev).starts_with("YH"), "{ev:?}");
    sim.set_bit(5, Function::Holding, 0x001B, 1, false);
    wait_for(&mut events, "the device's alarm cleared", |ev, a| {
        !raised(ev) && a.node == "s05" && a.state == "cleared"
    })
    .await;
    wait_for(
        &mut events,
        "the unit nobody answers is offline",
        |ev, a| raised(ev) && a.node == "s09" && a.cause == "offline",
    )
    .await;
    assert!(running.metrics.modbus.errors(SITE, "s09", "timeout") >= 2);
    // The bus keeps working for the units that answer.
    let before = running.metrics.modbus.polls(SITE, "s04");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.metrics.modbus.polls(SITE, "s04") < before + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "s04 no longer polled:\n{}",
            running.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running.metrics.modbus.state(SITE, "s03"), 0);
    assert_eq!(running.metrics.modbus.state(SITE, "s04"), 0);
    let alarms = running.store.alarms(AlarmFilter::All, 100).await.unwrap();
    let mut got: Vec<_> = alarms
        .iter()
        .map(|a| (a.node.as_str(), a.channel.as_str(), a.cause.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("s03", "rc4", "residual_current_high"),
            ("s05", "rc1", "device_alarm"),
            ("s09", "", "offline")
        ]
    );
    running.shutdown().await;
    stop.cancel();
}

/// Starts a self-test of node `k01` over the API as an installer; returns
/// (HTTP client, base URL, token, self-test id).
async fn start_key_test(running: &gateway::app::Running) -> (reqwest::Client, String, String, i64) {
    use gateway::tickets::Role;
    let now = gateway::domain::time::now_ms();
    let sites = vec![SITE.to_string()];
    running
        .store
        .add_user(
            "wang",
            "王工",
            Role::Installer,
            Some(&sites),
            "a-long-password",
            now,
        )
        .await
        .unwrap();
    let token = running
        .store
        .login("wang", "a-long-password", now)
        .await
        .unwrap()
        .unwrap()
        .0;
    // Polled, so the detector is up and its channel known.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.metrics.modbus.polls(SITE, "k01") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.http_addr);
    let r = http
        .post(format!("{base}/api/v1/sites/{SITE}/nodes/k01/selftest"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"]
        .as_i64()
        .unwrap();
    (http, base, token, id)
}

/// Polls a self-test until it is over (30 s at most).
async fn key_test_result(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: i64,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body: serde_json::Value = serde_json::from_str(
            &http
                .get(format!("{base}/api/v1/selftests/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        if body["result"] != "running" {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Modbus detector has no command topic: its self-test opens a window in
/// which the installer presses the detector's own test key (自检键); the
/// alarm bit it raises comes back as the channel's test alarm — a result,
/// never an alarm record or a ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_detector_is_self_tested_with_its_test_key() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sim = Simulator::new();
    sim.add(2, map("acrel_asj"));
    sim.set(2, "rc1", 120);
    let addr = tcp_simulator(&sim, &stop).await;
    let devices = connection("tcp", addr, &[(2, "acrel_asj", "k01", "")]);
    let running = start(&devices, &["k01"], &dir).await;
    let (http, base, token, id) = start_key_test(&running).await;
    // The installer presses the test key: the alarm bit comes on, then off.
    sim.set_bit(2, Function::Holding, 0x001B, 1, true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.set_bit(2, Function::Holding, 0x001B, 1, false);
    let result = key_test_result(&http, &base, &token, id).await;
    assert_eq!(result["mode"], "test_key");
    assert_eq!(result["result"], "passed", "{result}");
    let rc1 = &result["channels"][0];
    assert_eq!(
        (rc1["channel"].as_str(), rc1["judged_by"].as_str()),
        (Some("rc1"), Some("device"))
    );
    let alarms = running.store.alarms(AlarmFilter::All, 10).await.unwrap();
    assert!(alarms.is_empty(), "a test is not an alarm: {alarms:?}");
    running.shutdown().await;
    stop.cancel();
}

/// A detector alarm that comes on during a self-test and is still on when
/// the window closes is not lost: it is raised then as the real alarm it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_alarm_still_on_after_the_test_window_is_a_real_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sim = Simulator::new();
    sim.add(2, map("acrel_asj"));
    sim.set(2, "rc1", 120);
    let addr = tcp_simulator(&sim, &stop).await;
    let devices = connection("tcp", addr, &[(2, "acrel_asj", "k01", "")])
        + "[commissioning]\nselftest_window_secs = 5\n";
    let running = start(&devices, &["k01"], &dir).await;
    let mut events = Watch::new(&running).await;
    let (http, base, token, id) = start_key_test(&running).await;
    sim.set_bit(2, Function::Holding, 0x001B, 1, true);
    let result = key_test_result(&http, &base, &token, id).await;
    assert_eq!(result["channels"][0]["passed"], true, "{result}");
    let ev = wait_for(&mut events, "the standing device alarm", |ev, a| {
        raised(ev) && a.node == "k01" && a.cause == "device_alarm"
    })
    .await;
    assert!(ticket_number(&ev).starts_with("YH"), "{ev:?}");
    running.shutdown().await;
    stop.cancel();
}
