//! Attacks on the HTTP API's resources, against a whole gateway over real
//! TCP (issue 14, item 8): a slow request head (slowloris) and idle
//! connections are cut at the header-read timeout while the duty desk is
//! served and its event stream stays open; one address cannot take every
//! connection, and the global cap holds; bodies over their route's limit
//! are refused before they are read; evidence is attached only by the
//! roles that act on tickets, within the ticket's and the gateway's
//! quotas, and a damaged file is never served or trusted. Also: the
//! systemd unit's `LimitNOFILE` covers the node count it documents.
//!
//! Clients bind 127.0.0.2, 127.0.0.3… (all loopback on Linux) to be
//! different peers. Waiting is on the socket's own events and counters,
//! with deadlines.

use gateway::config::Config;
use gateway::store::{AlarmInput, AlarmKey, TicketSpec};
use gateway::tickets::Role;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WITHIN: Duration = Duration::from_secs(10);
const PASSWORD: &str = "http-limits-test-pw";

struct Gw {
    running: gateway::app::Running,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

async fn start(http: &str) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&format!(
        "[http]\n{http}\n[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n"
    ))
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.embedded_listen =
        SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.client_id = "http-limits-test".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, listener).await.unwrap();
    let now = gateway::domain::time::now_ms();
    for (login, role, sites) in [
        ("duty_a", Role::Duty, Some(vec!["home_a".to_string()])),
        (
            "installer_a",
            Role::Installer,
            Some(vec!["home_a".to_string()]),
        ),
        ("admin", Role::Admin, None),
    ] {
        running
            .store
            .add_user(login, login, role, sites.as_deref(), PASSWORD, now)
            .await
            .unwrap();
    }
    let addr = running.http_addr;
    Gw { running, addr, dir }
}

/// A TCP connection to `to` from address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Reads until the server closes; the bytes read. Fails past the deadline.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WITHIN, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close the connection within {WITHIN:?}"),
        }
    }
}

/// One request on its own connection (`Connection: close`): status and body.
async fn raw(to: SocketAddr, from: [u8; 4], request: &[u8]) -> (u16, String) {
    let mut s = connect_from(from, to).await;
    s.write_all(request).await.unwrap();
    let bytes = until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").into_bytes()
}

async fn metric(gw: &Gw, line_start: &str) -> u64 {
    let (status, text) = raw(gw.addr, [127, 0, 0, 1], &get("/metrics")).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

async fn token(gw: &Gw, login: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("http://{}/api/v1/login", gw.addr))
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

/// An alarm with its hazard ticket on home_a: (alarm id, ticket id).
async fn alarm_with_ticket(gw: &Gw) -> (i64, i64) {
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
        at: gateway::domain::time::now_ms(),
        suppressed: false,
    };
    let spec = TicketSpec {
        source: "sensor_alarm",
        category: "electrical_fire",
        grade: "general",
        prefix: "YH",
        title: "剩余电流超限".into(),
        location: String::new(),
        reopen_window_ms: 0,
    };
    let (alarm, _) = gw.running.store.raise(&input, Some(&spec)).await.unwrap();
    (alarm.id, alarm.ticket_id.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off_and_the_desk_is_still_served() {
    let gw = start("header_read_timeout_secs = 1").await;
    let (alarm, _) = alarm_with_ticket(&gw).await;
    let duty = token(&gw, "duty_a").await;
    // The duty desk's event stream, open before the attack.
    let mut sse = connect_from([127, 0, 0, 1], gw.addr).await;
    sse.write_all(
        format!("GET /api/v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {duty}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 1024];
    let n = tokio::time::timeout(WITHIN, sse.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );

    // Slowloris: a header line every 200 ms, never the blank line.
    let started = Instant::now();
    let mut slow = connect_from([127, 0, 0, 2], gw.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    // And one that connects and says nothing.
    let mut idle = connect_from([127, 0, 0, 3], gw.addr).await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut buf = [0u8; 256];
    let cut = loop {
        tokio::select! {
            r = slow.read(&mut buf) => match r {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(_) => {} // an error answer on the way out
            },
            _ = tick.tick() => {
                assert!(started.elapsed() < WITHIN, "slowloris still connected after {WITHIN:?}");
                if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break started.elapsed();
                }
                // Meanwhile the desk is served.
                let (status, _) = raw(gw.addr, [127, 0, 0, 1], &get("/healthz")).await;
                assert_eq!(status, 200);
            }
        }
    };
    assert!(
        cut >= Duration::from_millis(900),
        "cut by the header timeout, not before: {cut:?}"
    );
    until_closed(&mut idle).await;
    assert!(metric(&gw, "gateway_http_header_timeouts_total ").await >= 2);

    // The event stream outlived the timeout: an acknowledgement reaches it.
    let (status, _) = raw(
        gw.addr,
        [127, 0, 0, 1],
        format!(
            "POST /api/v1/alarms/{alarm}/ack HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {duty}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while !String::from_utf8_lossy(&seen).contains("alarm_updated") {
        let n = tokio::time::timeout_at(deadline.into(), sse.read(&mut head))
            .await
            .expect("the event stream carried the acknowledgement")
            .unwrap();
        assert!(n > 0, "the event stream was closed");
        seen.extend_from_slice(&head[..n]);
    }
    drop(sse);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let gw =
        start("max_connections = 12\nmax_connections_per_peer = 4\nheader_read_timeout_secs = 60")
            .await;
    // One machine opens 10 idle connections: 4 are kept, 6 closed at once.
    let mut hog = Vec::new();
    for i in 0..10 {
        let mut s = connect_from([127, 0, 0, 2], gw.addr).await;
        if i >= 4 {
            assert!(until_closed(&mut s).await.is_empty(), "connection {i}");
        }
        hog.push(s);
    }
    // The duty desk, on another address, is served.
    let (status, _) = raw(gw.addr, [127, 0, 0, 1], &get("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &gw,
            "gateway_http_connections_refused_total{reason=\"per_peer\"} "
        )
        .await,
        6
    );
    // Many machines: the global cap holds (12, of which the hog's 4).
    let mut crowd = Vec::new();
    let mut refused = 0;
    for host in 3..=6u8 {
        for _ in 0..4 {
            let mut s = connect_from([127, 0, 0, host], gw.addr).await;
            let mut b = [0u8; 1];
            // An admitted connection stays open and silent; a refused one
            // is closed at once. The crowd's last hosts are over the cap.
            if host >= 5 {
                assert_eq!(
                    tokio::time::timeout(WITHIN, s.read(&mut b))
                        .await
                        .unwrap()
                        .unwrap_or(0),
                    0
                );
                refused += 1;
            }
            crowd.push(s);
        }
    }
    assert_eq!(refused, 8);
    // Once the crowd and the hog go, the desk is served again.
    drop(crowd);
    drop(hog);
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut s = connect_from([127, 0, 0, 1], gw.addr).await;
        s.write_all(&get("/healthz")).await.unwrap();
        let answer = until_closed(&mut s).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the desk is never served again");
        tokio::task::yield_now().await;
    }
    assert!(
        metric(
            &gw,
            "gateway_http_connections_refused_total{reason=\"total\"} "
        )
        .await
            >= 8
    );
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_their_route_limit_are_refused_before_they_are_read() {
    let gw = start("").await;
    let (_, ticket) = alarm_with_ticket(&gw).await;
    // A login that declares 5,000 bytes: refused on its head alone (the
    // body is never sent, so an answer proves it was not waited for).
    let (status, body) = raw(
        gw.addr,
        [127, 0, 0, 2],
        b"POST /api/v1/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");
    // The same, chunked, without a declared length: cut off at the limit.
    let mut chunked = b"POST /api/v1/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"3e8\r\n");
        chunked.extend_from_slice(&[b' '; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(gw.addr, [127, 0, 0, 2], &chunked).await.0, 413);
    // A protected JSON route takes 64 KiB, not the 2 MiB default.
    let duty = token(&gw, "duty_a").await;
    let big = json!({ "step": "register", "note": "x".repeat(100 * 1024) }).to_string();
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/tickets/{ticket}/transitions",
            gw.addr
        ))
        .bearer_auth(&duty)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // A small login still works.
    assert!(!token(&gw, "duty_a").await.is_empty());
    assert_eq!(metric(&gw, "gateway_http_bodies_refused_total ").await, 3);
    gw.running.shutdown().await;
}

async fn upload(gw: &Gw, token: &str, ticket: i64, media: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/tickets/{ticket}/evidence",
            gw.addr
        ))
        .bearer_auth(token)
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A JPEG-looking file of `len` bytes, distinct per `n`.
fn photo(n: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0xFF, 0xD8, 0xFF, 0xE0];
    p.extend_from_slice(&n.to_le_bytes());
    p.resize(len, 7);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_only_by_acting_roles_within_quotas() {
    let gw = start("evidence_quota_mib = 1").await;
    let (_, ticket) = alarm_with_ticket(&gw).await;
    let duty = token(&gw, "duty_a").await;
    // Roles that act on no ticket are refused on the request head alone:
    // 10 MiB declared, nothing sent, an answer at once.
    for who in ["installer_a", "admin"] {
        let t = token(&gw, who).await;
        let (status, body) = raw(
            gw.addr,
            [127, 0, 0, 2],
            format!(
                "POST /api/v1/tickets/{ticket}/evidence HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {t}\r\nContent-Type: image/jpeg\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    // The gateway's quota (1 MiB): one 600 KiB photo fits, a second does not;
    // the same photo again costs no space.
    let a = photo(0, 600 * 1024);
    let (status, row) = upload(&gw, &duty, ticket, "image/jpeg", a.clone()).await;
    assert_eq!(status, 200, "{row}");
    let hash = row["content_hash"].as_str().unwrap().to_string();
    let (status, refusal) = upload(&gw, &duty, ticket, "image/jpeg", photo(1, 600 * 1024)).await;
    assert_eq!(
        (status, refusal["error"].as_str()),
        (413, Some("quota_exceeded")),
        "{refusal}"
    );
    assert_eq!(
        upload(&gw, &duty, ticket, "image/jpeg", a.clone()).await.0,
        200
    );
    // The ticket's quota: 50 files; then notes still fit.
    for n in 2..50 {
        let (status, row) = upload(&gw, &duty, ticket, "image/jpeg", photo(n, 100)).await;
        assert_eq!(status, 200, "file {n}: {row}");
    }
    let (status, refusal) = upload(&gw, &duty, ticket, "image/jpeg", photo(99, 100)).await;
    assert_eq!(
        (status, refusal["error"].as_str()),
        (413, Some("quota_exceeded")),
        "{refusal}"
    );
    let note = json!({ "note": "已更换电缆" }).to_string().into_bytes();
    assert_eq!(
        upload(&gw, &duty, ticket, "application/json", note).await.0,
        200
    );
    assert_eq!(
        metric(&gw, "gateway_evidence_quota_refused_total ").await,
        2
    );

    // A damaged file is not served; the next upload of the real bytes
    // replaces it rather than trusting it.
    let data_dir: &Path = gw.dir.path();
    let stored = gateway::tickets::evidence::path(data_dir, &hash);
    std::fs::write(&stored, &a[..1000]).unwrap();
    let fetch = || async {
        let r = reqwest::Client::new()
            .get(format!("http://{}/api/v1/evidence/{hash}", gw.addr))
            .bearer_auth(&duty)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    };
    assert_eq!(fetch().await.0, 404);
    // The ticket is full: the real bytes come again on another ticket.
    let (_, ticket2) = {
        let input = AlarmInput {
            key: AlarmKey {
                site: "home_a".into(),
                node: "n01".into(),
                channel: "t1".into(),
                cause: "temperature_high".into(),
            },
            kind: "electrical_fire",
            level: "alarm",
            quantity: Some("temperature"),
            value: Some(900),
            setpoint: Some(800),
            at: gateway::domain::time::now_ms(),
            suppressed: false,
        };
        let spec = TicketSpec {
            source: "sensor_alarm",
            category: "electrical_fire",
            grade: "general",
            prefix: "YH",
            title: "温度超限".into(),
            location: String::new(),
            reopen_window_ms: 0,
        };
        let (alarm, _) = gw.running.store.raise(&input, Some(&spec)).await.unwrap();
        (alarm.id, alarm.ticket_id.unwrap())
    };
    assert_eq!(
        upload(&gw, &duty, ticket2, "image/jpeg", a.clone()).await.0,
        200
    );
    assert_eq!(fetch().await, (200, a));
    gw.running.shutdown().await;
}

#[test]
fn the_systemd_unit_has_descriptors_for_the_nodes_it_documents() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/fire-gateway.service"),
    )
    .unwrap();
    let number_after = |what: &str| -> u64 {
        let at = unit
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?} in the unit"));
        unit[at + what.len()..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let nodes = number_after("nodes =");
    let http = number_after("http.max_connections =");
    let limit = number_after("LimitNOFILE=");
    assert_eq!(
        http as usize,
        gateway::config::HttpConfig::default().max_connections,
        "the unit's HTTP figure is the default"
    );
    // Three descriptors a node on the embedded broker, the HTTP cap, and
    // room for the database, spool, evidence, clients and logs.
    assert!(nodes >= 1000, "{nodes}");
    assert!(
        limit >= 3 * nodes + http + 256,
        "LimitNOFILE={limit} for {nodes} nodes and {http} HTTP connections"
    );
}
