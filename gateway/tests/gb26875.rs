//! GB/T 26875.3 northbound against a simulated monitoring centre
//! (消防远程监控中心). The centre decodes with its own code written from
//! the standard (frame layout, checksum, little-endian fields), not with
//! the gateway's codec.
//!
//! Real sockets and real time: a paused tokio clock auto-advances while a
//! task waits on a loopback socket, so confirms would race the resend
//! timer. The resend interval is configured down to 1 s instead (the
//! default, 10 s × 3, is checked on the configuration).

mod common;

use gateway::config::Config;
use gateway::northbound::gb26875::config::CentreConfig;
use gateway::northbound::gb26875::frame::TimeLabel;
use gateway::northbound::gb26875::link::{Downstream, Link};
use gateway::northbound::gb26875::metrics::LinkCounters;
use gateway::northbound::gb26875::outbox::Outbox;
use gateway::northbound::gb26875::unit::DataUnit;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(15);
const SITE_ADDR: [u8; 6] = [0x38, 0x5B, 0x01, 0x00, 0x00, 0x00];
const CENTRE_ADDR: [u8; 6] = [0x79, 0x03, 0x00, 0x00, 0x00, 0x00];

// ---- The centre's own codec, from the standard -------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rx {
    serial: u16,
    command: u8,
    source: [u8; 6],
    destination: [u8; 6],
    data: Vec<u8>,
}

/// One frame off the front of `buf`: `None` for more bytes, `Err(serial)`
/// for a frame with a bad checksum or end marker.
fn take(buf: &mut Vec<u8>) -> Option<Result<Rx, u16>> {
    let start = buf.windows(2).position(|w| w == [0x40, 0x40])?;
    buf.drain(..start);
    if buf.len() < 27 {
        return None;
    }
    let len = usize::from(buf[24]) | usize::from(buf[25]) << 8;
    assert!(len <= 1024, "the gateway sent a unit of {len} bytes");
    if buf.len() < len + 30 {
        return None;
    }
    let f: Vec<u8> = buf.drain(..len + 30).collect();
    let serial = u16::from(f[2]) | u16::from(f[3]) << 8;
    let sum = f[2..27 + len].iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
    if f[len + 28..] != [0x23, 0x23] || sum != u32::from(f[27 + len]) {
        return Some(Err(serial));
    }
    let six = |at: usize| -> [u8; 6] { f[at..at + 6].try_into().unwrap() };
    Some(Ok(Rx {
        serial,
        command: f[26],
        source: six(12),
        destination: six(18),
        data: f[27..27 + len].to_vec(),
    }))
}

/// A frame from the centre to the site.
fn build(serial: u16, command: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x40, 0x40];
    f.extend_from_slice(&serial.to_le_bytes());
    f.extend_from_slice(&[1, 1]);
    f.extend_from_slice(&[35, 58, 9, 26, 9, 12]);
    f.extend_from_slice(&CENTRE_ADDR);
    f.extend_from_slice(&SITE_ADDR);
    f.extend_from_slice(&(data.len() as u16).to_le_bytes());
    f.push(command);
    f.extend_from_slice(data);
    let sum = f[2..].iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
    f.push(sum as u8);
    f.extend_from_slice(&[0x23, 0x23]);
    f
}

/// The simulated centre: every frame it reads goes to the test (with the
/// connection's number); the test writes through `send`.
struct Centre {
    addr: String,
    rx: mpsc::UnboundedReceiver<(u32, Result<Rx, u16>)>,
    writer: Arc<tokio::sync::Mutex<Option<OwnedWriteHalf>>>,
    accepted: Arc<Mutex<u32>>,
}

impl Centre {
    async fn start() -> Centre {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Arc::new(tokio::sync::Mutex::new(None));
        let accepted = Arc::new(Mutex::new(0));
        let (w, a) = (writer.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut a = a.lock().unwrap();
                    *a += 1;
                    *a
                };
                let (mut r, wr) = s.into_split();
                *w.lock().await = Some(wr);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 512];
                    loop {
                        match r.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                let _ = tx.send((n, Err(u16::MAX)));
                                return;
                            }
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                        while let Some(f) = take(&mut buf) {
                            let _ = tx.send((n, f));
                        }
                    }
                });
            }
        });
        Centre {
            addr,
            rx,
            writer,
            accepted,
        }
    }

    async fn send(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().await;
        w.as_mut().unwrap().write_all(bytes).await.unwrap();
    }

    /// Writes one byte at a time (a frame split across many reads).
    async fn send_split(&self, bytes: &[u8]) {
        for b in bytes {
            self.send(std::slice::from_ref(b)).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The next frame (skipping heartbeats), with its connection number.
    async fn next(&mut self) -> (u32, Result<Rx, u16>) {
        loop {
            let got = tokio::time::timeout(WITHIN, self.rx.recv())
                .await
                .expect("the centre heard nothing")
                .unwrap();
            match &got.1 {
                Ok(f) if f.command == 2 && f.data.is_empty() => continue,
                _ => return got,
            }
        }
    }

    async fn next_data(&mut self) -> (u32, Rx) {
        loop {
            match self.next().await {
                (n, Ok(f)) => return (n, f),
                (_, Err(u16::MAX)) => continue, // a connection closed
                (_, Err(s)) => panic!("bad frame from the gateway (serial {s})"),
            }
        }
    }
}

// ---- The link under test ---------------------------------------------------

#[derive(Default)]
struct Desk {
    commands: Mutex<Vec<u8>>,
}

impl Downstream for Desk {
    fn read(
        &self,
        _site: &str,
        kind: u8,
        _objects: &[Vec<u8>],
    ) -> futures_util::future::BoxFuture<'_, Option<DataUnit>> {
        Box::pin(async move {
            (kind == 81).then(|| {
                DataUnit::DeviceState(vec![gateway::northbound::gb26875::unit::Timed {
                    object: 0x01,
                    time: TimeLabel::default(),
                }])
            })
        })
    }
    fn command(&self, _site: &str, unit: &DataUnit, _t: TimeLabel) {
        self.commands.lock().unwrap().push(unit.kind());
    }
}

fn unit(n: u8) -> Vec<u8> {
    // A type-21 unit whose state byte numbers it.
    vec![21, 1, n, 1, 2, 3, 4, 5, 26]
}

fn centre_config(addr: &str) -> CentreConfig {
    CentreConfig {
        name: "city".into(),
        address: addr.into(),
        heartbeat_secs: 0,
        resend_after_secs: 1,
        resend_times: 3,
        reconnect_secs: 1,
        ..CentreConfig::default()
    }
}

fn link(
    store: &gateway::store::Store,
    addr: &str,
    desk: Arc<Desk>,
) -> (Link, Outbox, Arc<LinkCounters>, Arc<tokio::sync::Notify>) {
    let outbox = Outbox::new(store.clone(), "city", "home_a", 1000);
    let counters = Arc::new(LinkCounters::default());
    let (up, _) = tokio::sync::watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());
    let link = Link {
        centre: Arc::new(centre_config(addr)),
        site: "home_a".into(),
        source: SITE_ADDR,
        destination: CENTRE_ADDR,
        outbox: outbox.clone(),
        counters: counters.clone(),
        wake: wake.clone(),
        downstream: desk,
        up,
    };
    (link, outbox, counters, wake)
}

#[test]
fn the_default_resend_is_10_s_three_times() {
    let c = CentreConfig::default();
    assert_eq!((c.resend_after_secs, c.resend_times), (10, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_denies_silence_reconnect_order_split_coalesce_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
    let store = gateway::store::Store::open(&url).await.unwrap();
    let mut centre = Centre::start().await;
    let desk = Arc::new(Desk::default());
    let (l, outbox, counters, wake) = link(&store, &centre.addr, desk.clone());
    for n in 1..=2 {
        outbox
            .push(&format!("u{n}"), None, &unit(n), false, 0)
            .await
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let task = tokio::spawn(l.run(cancel.clone()));

    // 1. Confirmed.
    let (c1, f) = centre.next_data().await;
    assert_eq!(f.command, 2);
    assert_eq!(f.source, SITE_ADDR);
    assert_eq!(f.destination, CENTRE_ADDR);
    assert_eq!(f.data, unit(1));
    centre.send(&build(f.serial, 3, &[])).await;

    // 2. Denied (as if it came corrupted): sent again, correct, same number.
    let (_, f) = centre.next_data().await;
    assert_eq!(f.data, unit(2));
    centre.send(&build(f.serial, 6, &[])).await;
    let (_, again) = centre.next_data().await;
    assert_eq!(again.data, unit(2));
    assert_eq!(again.serial, f.serial);
    centre.send(&build(f.serial, 3, &[])).await;

    // 3. A frame with a bad checksum from the centre is denied with its number.
    let mut bad = build(77, 2, &[90, 1, 35, 58, 9, 26, 9, 12]);
    let at = bad.len() - 3;
    bad[at] ^= 0xFF;
    centre.send(&bad).await;
    let (_, deny) = centre.next_data().await;
    assert_eq!((deny.command, deny.serial), (6, 77));

    // 4. Silence: 1 send + 3 resends one second apart, then the link is
    //    dropped; units queue meanwhile and arrive in order on reconnect.
    for n in 3..=4 {
        outbox
            .push(&format!("u{n}"), None, &unit(n), true, 0)
            .await
            .unwrap();
    }
    wake.notify_one();
    let started = tokio::time::Instant::now();
    let mut copies = 0;
    let serial3;
    loop {
        let (n, f) = centre.next_data().await;
        assert_eq!(n, c1, "the gateway reconnected before giving up");
        assert_eq!(f.data, unit(3));
        copies += 1;
        if copies == 4 {
            serial3 = f.serial;
            break;
        }
    }
    let spent = started.elapsed();
    assert!(
        spent >= Duration::from_millis(2900),
        "resends too fast: {spent:?}"
    );
    outbox.push("u5", None, &unit(5), false, 0).await.unwrap();
    // The gateway closes and reconnects; the same head comes first.
    let (c2, f) = centre.next_data().await;
    assert!(c2 > c1, "not a new connection");
    assert_eq!(f.data, unit(3));
    assert_ne!(f.serial, serial3);
    assert_eq!(counters.disconnects.load(Ordering::Relaxed), 1);
    assert_eq!(counters.retried.load(Ordering::Relaxed), 1 + 3);
    // Its confirm split byte by byte across reads.
    centre.send_split(&build(f.serial, 3, &[])).await;
    let (_, f4) = centre.next_data().await;
    assert_eq!(f4.data, unit(4));
    // Coalesced: a read request, a time sync and the confirm in one write.
    let mut three = build(500, 4, &[81, 1, 0]);
    three.extend_from_slice(&build(501, 1, &[90, 1, 35, 58, 9, 26, 9, 12]));
    three.extend_from_slice(&build(f4.serial, 3, &[]));
    centre.send(&three).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (_, f) = centre.next_data().await;
        seen.push((f.command, f.serial, f.data));
    }
    assert!(
        seen.contains(&(5, 500, vec![21, 1, 1, 0, 0, 0, 0, 0, 0])),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(c, s, _)| (*c, *s) == (3, 501)),
        "{seen:?}"
    );
    let f5 = seen.iter().find(|(c, _, _)| *c == 2).unwrap();
    assert_eq!(f5.2, unit(5));
    assert_eq!(desk.commands.lock().unwrap().as_slice(), &[90]);
    let serial5 = f5.1;
    centre.send(&build(serial5, 3, &[])).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while outbox.depth().await.unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "u5 never confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counters.confirmed.load(Ordering::Relaxed), 5);
    assert_eq!(counters.denied.load(Ordering::Relaxed), 1);
    assert_eq!(counters.refused.load(Ordering::Relaxed), 1);

    // 5. A restart: the unconfirmed unit survives in the store and goes
    //    first on the next process's link.
    outbox.push("u6", None, &unit(6), true, 0).await.unwrap();
    wake.notify_one();
    let (_, f6) = centre.next_data().await;
    assert_eq!(f6.data, unit(6));
    cancel.cancel();
    task.await.unwrap();
    store.close().await;
    let store = gateway::store::Store::open(&url).await.unwrap();
    let (l, outbox, _, _) = link(&store, &centre.addr, desk);
    assert_eq!(outbox.depth().await.unwrap(), 1);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(l.run(cancel.clone()));
    let (_, f) = centre.next_data().await;
    assert_eq!(f.data, unit(6));
    centre.send(&build(f.serial, 3, &[])).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while outbox.depth().await.unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "u6 never confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(*centre.accepted.lock().unwrap() >= 3);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_published_over_mqtt_reaches_the_centre_as_a_component_state_within_10_s() {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let mut centre = Centre::start().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = std::net::SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    let mut config = Config::from_toml(&format!(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"一楼配电箱\"\n\
         [[sites.nodes.channels]]\nid = \"rc1\"\nquantity = \"residual_current\"\nlocation = \"照明回路\"\n\
         [[northbound.gb26875]]\nname = \"city\"\naddress = \"{}\"\n\
         destination_address = \"790300000000\"\nheartbeat_secs = 0\nreadings_every_secs = 0\n\
         sites = {{ home_a = \"385B01000000\" }}\n",
        centre.addr
    ))
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.anonymous_config_nodes = true;
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "gb26875-test".into();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();

    // At connect: the device state (type 21), normal.
    let (_, f) = centre.next_data().await;
    assert_eq!((f.command, f.data[0], f.data[2]), (2, 21, 0x01), "{f:?}");
    centre.send(&build(f.serial, 3, &[])).await;

    let mut o = MqttOptions::new("home_a.n01", "127.0.0.1", broker.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (node, mut el) = AsyncClient::new(o, 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let published = tokio::time::Instant::now();
    node.publish(
        "fire/v1/home_a/n01/telemetry",
        QoS::AtLeastOnce,
        false,
        r#"{"boot":1,"seq":1,"ts":0,"ch":[{"id":"rc1","q":"residual_current","v":900,"s":"ok"}]}"#,
    )
    .await
    .unwrap();
    let component = loop {
        let (_, f) = tokio::time::timeout(Duration::from_secs(10), centre.next_data())
            .await
            .expect("no component state within 10 s");
        centre.send(&build(f.serial, 3, &[])).await;
        if f.data.first() == Some(&2) {
            break f;
        }
    };
    assert!(published.elapsed() < Duration::from_secs(10));
    let d = &component.data;
    assert_eq!(d[1], 1, "one object");
    let o = &d[2..];
    assert_eq!(o[0], 1, "系统类型 火灾报警系统");
    assert_eq!(o[2], 17, "部件类型 剩余电流式电气火灾监控探测器");
    assert_eq!(
        u32::from_le_bytes([o[3], o[4], o[5], o[6]]),
        1001,
        "node 1 channel 1"
    );
    let state = u16::from_le_bytes([o[7], o[8]]);
    assert_eq!(state, 0b11, "正常运行 + 火警: {state:#06x}");
    // 一楼配电箱 照明回路 in GB 18030.
    assert_eq!(&o[9..13], &[0xD2, 0xBB, 0xC2, 0xA5]);
    let metrics = running.metrics.render();
    assert!(
        metrics.contains("gateway_gb26875_link_up{centre=\"city\",site=\"home_a\"} 1"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[test]
fn the_installers_decode_command_prints_the_standards_confirm_frame_in_words() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "gb26875",
            "decode",
            "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("业务流水号 serial   1"), "{text}");
    assert!(text.contains("2012-09-26 09:58:35"), "{text}");
    assert!(text.contains("3 确认"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["gb26875", "decode", "4G"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_configuration_reports_every_bad_centre_entry() {
    let err = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\n\
         [[northbound.gb26875]]\nname = \"city\"\naddress = \"nowhere\"\n\
         destination_address = \"79\"\nresend_after_secs = 0\n\
         sites = { home_b = \"385B01\" }\n",
    )
    .unwrap_err()
    .to_string();
    for path in [
        "northbound.gb26875[0].address",
        "northbound.gb26875[0].destination_address",
        "northbound.gb26875[0].sites.home_b: no such site",
        "northbound.gb26875[0].sites.home_b: must be 12 hex digits",
        "northbound.gb26875[0].resend_after_secs",
    ] {
        assert!(err.contains(path), "{path} missing from {err}");
    }
}

/// 查岗: the duty officer's answer queues a type-24 record with the
/// 查岗应答 bit and is audited with who and how fast; a check left past the
/// centre's window is recorded as missed and can no longer be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duty_check_is_answered_by_a_click_or_recorded_as_missed() {
    use gateway::northbound::gb26875::duty::{AnswerError, DutyDesk};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
    let store = gateway::store::Store::open(&url).await.unwrap();
    let desk = DutyDesk::new(store.clone());
    let outbox = Outbox::new(store.clone(), "city", "home_a", 1000);
    let wake = Arc::new(tokio::sync::Notify::new());
    desk.register_outbox("city", "home_a", outbox.clone(), wake);
    let t0 = 1_800_000_000_000u64;
    // Two checks with a 1-minute window.
    desk.duty_check("city", "home_a", 1, TimeLabel::default(), t0);
    desk.duty_check("city", "home_a", 1, TimeLabel::default(), t0 + 1000);
    let checks = desk.checks(None, t0 + 2000);
    assert_eq!(checks.len(), 2);
    let (second, first) = (checks[0].id, checks[1].id);
    // The first answered 12.5 s after it came.
    let answered = desk.answer(first, "值班员张三", t0 + 12_500).await.unwrap();
    assert_eq!(answered.answered_by.as_deref(), Some("值班员张三"));
    assert_eq!(
        desk.answer(first, "值班员张三", t0 + 13_000).await,
        Err(AnswerError::Answered)
    );
    let head = outbox.head().await.unwrap().expect("the answer is queued");
    // Type 24, one object, 查岗应答 (bit 5), operator 0, then the time label.
    assert_eq!(&head.unit[..4], &[24, 1, 1 << 5, 0]);
    assert_eq!(
        TimeLabel::from_bytes(head.unit[4..10].try_into().unwrap()),
        TimeLabel::from_unix_ms(t0 + 12_500)
    );
    // The second is left past its window.
    assert_eq!(
        desk.answer(second, "值班员张三", t0 + 1000 + 60_001).await,
        Err(AnswerError::Missed)
    );
    assert!(desk.checks(None, t0 + 70_000)[0].missed);
    // The audit trail: asked twice, answered once with who and how fast, missed once.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let audit = store.audit_records().await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
        let asked = actions
            .iter()
            .filter(|a| **a == "gb26875.duty_check")
            .count();
        if asked == 2
            && actions.contains(&"gb26875.duty_check_missed")
            && actions.contains(&"gb26875.duty_check_answered")
        {
            let a = audit
                .iter()
                .find(|r| r.action == "gb26875.duty_check_answered")
                .unwrap();
            assert_eq!(a.actor, "值班员张三");
            assert!(a.details.contains("after_s=12.5"), "{}", a.details);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{actions:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outbox on both backends: one row per subject, in order, a full
/// outbox drops the oldest units that are not fire alarms, never a fire
/// alarm; confirmed units leave the queue; raised-not-cleared alarms listed.
async fn outbox_keeps_order_dedups_and_never_drops_a_fire_alarm(url: &str) {
    let store = gateway::store::Store::open(url).await.unwrap();
    let outbox = Outbox::new(store.clone(), "city", "home_a", 100);
    let other = Outbox::new(store.clone(), "city", "home_b", 100);
    // 3 fire alarms first, then 120 readings.
    for i in 0..3 {
        let (added, dropped) = outbox
            .push(
                &format!("alarm:{i}:alarm"),
                Some(i),
                &unit(i as u8),
                true,
                0,
            )
            .await
            .unwrap();
        assert!(added);
        assert_eq!(dropped, 0);
    }
    assert!(
        !outbox
            .push("alarm:0:alarm", Some(0), &unit(0), true, 0)
            .await
            .unwrap()
            .0
    );
    let mut dropped = 0;
    for i in 0..120 {
        dropped += outbox
            .push(&format!("analog:{i}"), None, &unit(100), false, 0)
            .await
            .unwrap()
            .1;
    }
    assert_eq!(dropped, 23);
    assert_eq!(outbox.depth().await.unwrap(), 100);
    other
        .push("analog:x", None, &unit(7), false, 0)
        .await
        .unwrap();
    // The fire alarms are still first, in order.
    for i in 0..3 {
        let head = outbox.head().await.unwrap().unwrap();
        assert_eq!(head.subject, format!("alarm:{i}:alarm"));
        assert_eq!(head.unit, unit(i as u8));
        outbox.confirm(head.id, 1).await.unwrap();
    }
    assert_eq!(outbox.head().await.unwrap().unwrap().subject, "analog:23");
    assert_eq!(outbox.depth().await.unwrap(), 97);
    assert_eq!(other.depth().await.unwrap(), 1);
    outbox
        .push("alarm:1:clear", Some(1), &unit(1), false, 0)
        .await
        .unwrap();
    let mut open = outbox.raised_not_cleared().await.unwrap();
    open.sort();
    assert_eq!(open, vec![0, 2]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_on_sqlite() {
    let db = common::db::TestDb::sqlite();
    outbox_keeps_order_dedups_and_never_drops_a_fire_alarm(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_on_postgres() {
    let db = common::db::TestDb::postgres().await;
    outbox_keeps_order_dedups_and_never_drops_a_fire_alarm(&db.url).await;
}
