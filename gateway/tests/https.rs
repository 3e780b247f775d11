//! The console and API over HTTPS (`[http.tls]`, issue 15 item 4), against
//! a whole gateway over real TCP and TLS: answers over https carry HSTS and
//! plain http answers do not; a login works over https; certificate files
//! replaced on disk reach new connections while an open event stream stays
//! up and keeps delivering; a client that opens TCP and never finishes the
//! handshake is cut at the header-read timeout and gives its slot back;
//! a client speaking plain http to the https port gets no answer.
//!
//! The client trusts only the test's CA (rcgen), and checks the server's
//! name (127.0.0.1) as a browser would.

mod common;

use common::tls::{ServerCert, TestCa};
use gateway::config::Config;
use gateway::store::{AlarmInput, AlarmKey};
use gateway::tickets::Role;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

const WITHIN: Duration = Duration::from_secs(10);
const PASSWORD: &str = "https-test-pw";

struct Gw {
    running: gateway::app::Running,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A gateway serving https with a certificate of `ca` for 127.0.0.1
/// (`tls` true), or plain http; `http` is more of `[http]`.
async fn start(ca: &TestCa, tls: bool, http: &str) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("https.pem");
    let key_file = dir.path().join("https.key");
    write_cert(
        &ca.server(&["127.0.0.1", "localhost"]),
        &cert_file,
        &key_file,
    );
    let tls_section = if tls {
        format!(
            "[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        )
    } else {
        String::new()
    };
    let mut config = Config::from_toml(&format!(
        "[http]\n{http}\n{tls_section}[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n"
    ))
    .unwrap();
    assert_eq!(config.http.tls.is_some(), tls);
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.embedded_listen =
        SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.client_id = "https-test".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, listener).await.unwrap();
    running
        .store
        .add_user(
            "duty_a",
            "值班员",
            Role::Duty,
            Some(&["home_a".to_string()]),
            PASSWORD,
            gateway::domain::time::now_ms(),
        )
        .await
        .unwrap();
    let addr = running.http_addr;
    Gw {
        running,
        addr,
        _dir: dir,
        cert_file,
        key_file,
    }
}

fn write_cert(cert: &ServerCert, cert_file: &Path, key_file: &Path) {
    // Key first, then the certificate: the watcher may look in between,
    // and a pair that does not match is refused and retried, never used.
    std::fs::write(key_file, &cert.key_pem).unwrap();
    std::fs::write(cert_file, &cert.cert_pem).unwrap();
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A TCP connection to `to` from address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// A TLS connection trusting only `ca`, checking the name 127.0.0.1.
async fn tls(ca: &TestCa, to: SocketAddr) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der(&ca.cert_pem())))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = connect_from([127, 0, 0, 1], to).await;
    let name = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
    tokio::time::timeout(
        WITHIN,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("the server's certificate is accepted")
}

/// The certificate the server presented on `s`.
fn presented(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Reads until the peer closes; the bytes read. Fails past the deadline.
async fn until_closed(s: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(WITHIN, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close the connection within {WITHIN:?}"),
        }
    }
}

/// An answer: status, head (lower-cased) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn parse(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request over https on its own connection.
async fn https(ca: &TestCa, gw: &Gw, req: &[u8]) -> Answer {
    let mut s = tls(ca, gw.addr).await;
    s.write_all(req).await.unwrap();
    parse(&until_closed(&mut s).await)
}

/// One request over plain http on its own connection.
async fn plain(gw: &Gw, req: &[u8]) -> Answer {
    let mut s = connect_from([127, 0, 0, 1], gw.addr).await;
    s.write_all(req).await.unwrap();
    parse(&until_closed(&mut s).await)
}

async fn login(ca: &TestCa, gw: &Gw) -> String {
    let body = format!("{{\"login\":\"duty_a\",\"password\":\"{PASSWORD}\"}}");
    let a = https(ca, gw, &request("POST", "/api/v1/login", None, &body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

async fn metric(ca: &TestCa, gw: &Gw, line_start: &str) -> u64 {
    let a = https(ca, gw, &request("GET", "/metrics", None, "")).await;
    assert_eq!(a.status, 200);
    a.body
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

async fn raise_alarm(gw: &Gw) -> i64 {
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
    gw.running.store.raise(&input, None).await.unwrap().0.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_carry_hsts_and_plain_http_answers_do_not() {
    let ca = TestCa::new("https test CA");
    let gw = start(&ca, true, "").await;
    let a = https(&ca, &gw, &request("GET", "/healthz", None, "")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.head
            .contains("\r\nstrict-transport-security: max-age=31536000\r\n"),
        "{}",
        a.head
    );
    // The console's page and a login, over https.
    let page = https(&ca, &gw, &request("GET", "/", None, "")).await;
    assert_eq!(page.status, 200);
    assert!(page.head.contains("strict-transport-security"));
    let token = login(&ca, &gw).await;
    let alarms = https(
        &ca,
        &gw,
        &request("GET", "/api/v1/alarms?state=active", Some(&token), ""),
    )
    .await;
    assert_eq!(alarms.status, 200, "{}", alarms.body);
    assert!(alarms.head.contains("strict-transport-security"));
    // No answer sets a cookie today; should one ever, it is Secure.
    for a in [&a, &page, &alarms] {
        for line in a.head.lines().filter(|l| l.starts_with("set-cookie:")) {
            assert!(line.contains("; secure"), "{line}");
        }
    }

    // Plain http to the https port: no answer, the handshake fails, counted.
    let mut s = connect_from([127, 0, 0, 1], gw.addr).await;
    s.write_all(&request("GET", "/healthz", None, ""))
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert_eq!(
        metric(
            &ca,
            &gw,
            "gateway_http_tls_handshakes_failed_total{reason=\"error\"} "
        )
        .await,
        1
    );
    gw.running.shutdown().await;

    // A gateway on plain http (the demo's way): no HSTS.
    let gw = start(&ca, false, "").await;
    let a = plain(&gw, &request("GET", "/healthz", None, "")).await;
    assert_eq!(a.status, 200);
    assert!(!a.head.contains("strict-transport-security"), "{}", a.head);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_reaches_new_connections_and_the_event_stream_stays_up() {
    let ca = TestCa::new("https test CA");
    let gw = start(&ca, true, "").await;
    let token = login(&ca, &gw).await;
    let first = presented(&tls(&ca, gw.addr).await);
    assert_eq!(first, der(&std::fs::read_to_string(&gw.cert_file).unwrap()));

    // The duty desk's event stream, open before the certificate changes.
    let mut sse = tls(&ca, gw.addr).await;
    sse.write_all(
        format!("GET /api/v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(WITHIN, sse.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(String::from_utf8_lossy(&buf[..n])
        .to_ascii_lowercase()
        .contains("strict-transport-security"));

    // A new certificate (a new key too) written over the files.
    let next = ca.server(&["127.0.0.1", "localhost"]);
    write_cert(&next, &gw.cert_file, &gw.key_file);
    let want = der(&next.cert_pem);
    assert_ne!(want, first);
    let deadline = Instant::now() + WITHIN;
    loop {
        if presented(&tls(&ca, gw.addr).await) == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate after {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(presented(&sse), first, "the open stream keeps its session");
    assert!(
        metric(&ca, &gw, "gateway_http_tls_reloads_total{result=\"ok\"} ").await >= 1,
        "the reload is counted"
    );

    // The stream still delivers: an alarm raised now reaches it.
    let alarm = raise_alarm(&gw).await;
    let ack = https(
        &ca,
        &gw,
        &request(
            "POST",
            &format!("/api/v1/alarms/{alarm}/ack"),
            Some(&token),
            "",
        ),
    )
    .await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let mut seen = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while !String::from_utf8_lossy(&seen).contains("alarm_updated") {
        let n = tokio::time::timeout_at(deadline.into(), sse.read(&mut buf))
            .await
            .expect("the event stream carried the acknowledgement")
            .unwrap();
        assert!(n > 0, "the event stream was closed");
        seen.extend_from_slice(&buf[..n]);
    }
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_finishes_is_cut_and_gives_its_slot_back() {
    let ca = TestCa::new("https test CA");
    let gw = start(
        &ca,
        true,
        "header_read_timeout_secs = 1\nmax_connections_per_peer = 1",
    )
    .await;
    // 127.0.0.2 opens TCP and says nothing: it holds the address's only slot…
    let started = Instant::now();
    let mut stalled = connect_from([127, 0, 0, 2], gw.addr).await;
    // …so a second connection from it is refused at once.
    let mut second = connect_from([127, 0, 0, 2], gw.addr).await;
    assert!(until_closed(&mut second).await.is_empty());
    // The stalled one is closed at the timeout, not before.
    assert!(until_closed(&mut stalled).await.is_empty());
    let cut = started.elapsed();
    assert!(cut >= Duration::from_millis(900), "cut too early: {cut:?}");
    assert!(cut < Duration::from_secs(5), "cut too late: {cut:?}");
    assert_eq!(
        metric(
            &ca,
            &gw,
            "gateway_http_tls_handshakes_failed_total{reason=\"timeout\"} "
        )
        .await,
        1
    );
    // The slot is free again: 127.0.0.2 completes a handshake and is served.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der(&ca.cert_pem())))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = connect_from([127, 0, 0, 2], gw.addr).await;
    let name = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(&request("GET", "/healthz", None, ""))
        .await
        .unwrap();
    assert_eq!(parse(&until_closed(&mut s).await).status, 200);
    gw.running.shutdown().await;
}

#[test]
fn check_config_reads_the_https_files() {
    let ca = TestCa::new("https test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    write_cert(&ca.server(&["gw.example"]), &cert_file, &key_file);
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, ca.server(&["x.example"]).key_pem).unwrap();
    let issues = |cert: &Path, key: &Path, extra: &str| -> Vec<(String, String)> {
        let found = match Config::from_toml(&format!(
            "[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
            cert.display(),
            key.display()
        )) {
            Ok(c) => c.validate(),
            Err(gateway::config::ConfigErrors(issues)) => issues,
        };
        found
            .into_iter()
            .filter(|i| i.path.starts_with("http"))
            .map(|i| (i.path, i.message))
            .collect()
    };
    assert_eq!(issues(&cert_file, &key_file, ""), []);
    let mismatch = issues(&cert_file, &other_key, "");
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch[0].0, "http.tls");
    let missing = issues(&dir.path().join("nope.pem"), &key_file, "");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].1.starts_with("cannot read") && missing[0].1.contains("nope.pem"),
        "{missing:?}"
    );
    let client_ca = issues(
        &cert_file,
        &key_file,
        &format!(
            "client_ca_file = \"{}\"\n",
            ca.write(dir.path(), "ca.pem").display()
        ),
    );
    assert_eq!(client_ca.len(), 1, "{client_ca:?}");
    assert_eq!(client_ca[0].0, "http.tls.client_ca_file");
}
