//! MQTT over TLS on the gate (issue 15): a real `gateway run` with
//! `[mqtt.tls]`, its node CA made by `gateway ca init` and node
//! certificates issued by `gateway node rotate --cert`, against the real
//! Mosquitto clients (`mosquitto_pub`/`mosquitto_sub`, OpenSSL) and a rustls
//! client: node certificates accepted and held to their topics; a foreign
//! CA, an expired certificate, a revoked node's, another node's identity
//! refused and counted by reason; a password login over TLS; certificate
//! files replaced on disk taken by new handshakes while sessions stay up.

mod common;

use common::gw::{free_port, Gw};
use common::tls::TestCa;
use rumqttc::mqttbytes::v4::{Connect, Login};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn need(tool: &str) {
    let found = Command::new(tool).arg("--help").output().is_ok();
    assert!(
        found,
        "{tool} is missing: apt-get install -y mosquitto-clients (this test needs the real client)"
    );
}

/// A gateway with `[mqtt.tls]` on a free port, its node CA made, and
/// nodes n01 and n02 of the file given certificates (and passwords).
struct TlsGw {
    gw: Gw,
    tls_port: u16,
    server_ca: PathBuf,
    /// Where the server certificate and key live (replaced by the reload test).
    server_cert: PathBuf,
    server_key: PathBuf,
    data: PathBuf,
    certs: PathBuf,
    n01_password: String,
    _scratch: tempfile::TempDir,
}

fn gateway(cmd: &[&str], config: &Path, rest: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(cmd)
        .arg("--config")
        .arg(config)
        .args(rest)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_server(dir: &Path, ca: &TestCa) -> (PathBuf, PathBuf) {
    let server = ca.server(&["localhost"]);
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    // Replaced in one step each, as a deploy tool would.
    for (path, text) in [(&key, &server.key_pem), (&cert, &server.cert_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

fn start(plain: bool) -> TlsGw {
    let tls_port = free_port();
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = scratch_dir.path().to_path_buf();
    let ca = TestCa::new("gate test server CA");
    let server_ca = ca.write(&scratch, "server-ca.pem");
    let (server_cert, server_key) = write_server(&scratch, &ca);
    // The data dir Gw::prepare uses: {dir}/data; known only after prepare,
    // so the section is written with a placeholder and patched.
    let extra = format!(
        "plain = {plain}\n[mqtt.tls]\nlisten = \"127.0.0.1:{tls_port}\"\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"@DATA@/ca/ca.pem\"\n",
        server_cert.display(),
        server_key.display()
    );
    let gw = Gw::prepare(&extra);
    let data = gw.dir.path().join("data");
    let text = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace("@DATA@", &data.display().to_string());
    std::fs::write(&gw.config, text).unwrap();

    let init = ok(&gateway(&["ca", "init"], &gw.config, &[]));
    assert!(
        init.contains("ca.pem") && init.contains("SHA-256"),
        "{init}"
    );
    // A second init refuses to overwrite the CA.
    assert!(!gateway(&["ca", "init"], &gw.config, &[]).status.success());

    let certs = scratch.join("certs");
    let mut n01_password = String::new();
    for node in ["n01", "n02"] {
        let out = ok(&gateway(
            &["node", "rotate"],
            &gw.config,
            &[
                "--site",
                "home_a",
                "--id",
                node,
                "--cert",
                certs.to_str().unwrap(),
            ],
        ));
        assert!(out.contains(&format!("home_a.{node}.crt")), "{out}");
        if node == "n01" {
            n01_password = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("密码:"))
                .unwrap()
                .trim()
                .to_string();
        }
    }
    let gw = gw.start(None);
    TlsGw {
        gw,
        tls_port,
        server_ca,
        server_cert,
        server_key,
        data,
        certs,
        n01_password,
        _scratch: scratch_dir,
    }
}

impl TlsGw {
    fn cert(&self, node: &str) -> (PathBuf, PathBuf) {
        (
            self.certs.join(format!("home_a.{node}.crt")),
            self.certs.join(format!("home_a.{node}.key")),
        )
    }

    /// `mosquitto_pub` over TLS: `client` = (cert, key) or (user, password).
    fn publish(&self, client_id: &str, topic: &str, auth: &[&str]) -> Output {
        Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &self.tls_port.to_string()])
            .arg("--cafile")
            .arg(&self.server_ca)
            .args(["-i", client_id, "-t", topic, "-q", "1", "-m", "{}"])
            .args(auth)
            .output()
            .unwrap()
    }

    fn with_cert(&self, node: &str) -> Vec<String> {
        let (c, k) = self.cert(node);
        vec![
            "--cert".into(),
            c.display().to_string(),
            "--key".into(),
            k.display().to_string(),
        ]
    }

    fn refused(&self, reason: &str) -> u64 {
        self.gw.metric(&format!(
            "gateway_mqtt_gate_tls_refused_total{{reason=\"{reason}\"}}"
        ))
    }

    fn wait_refused(&self, reason: &str, n: u64) {
        let series = format!("gateway_mqtt_gate_tls_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(
            self.gw.wait_metric(&series, n, Duration::from_secs(10)),
            n,
            "{series}"
        );
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stderr(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn node_certificates_over_tls_with_the_real_mosquitto_clients() {
    need("mosquitto_pub");
    need("mosquitto_sub");
    let mut t = start(false);
    let n01 = t.with_cert("n01");
    let n02 = t.with_cert("n02");

    // The plain listener is off.
    assert!(std::net::TcpStream::connect(t.gw.mqtt).is_err());

    // A node certificate: accepted, no password.
    let o = t.publish("home_a.n01", "fire/v1/home_a/n01/status", &args(&n01));
    assert!(o.status.success(), "{}", stderr(&o));
    // Held to its own topics: a publish under another node's is dropped
    // and counted, a subscription to another node's commands refused.
    let denied = "gateway_mqtt_acl_denied_total{action=\"publish\"}";
    let before = t.gw.metric(denied);
    let o = t.publish("home_a.n01", "fire/v1/home_a/n02/status", &args(&n01));
    assert!(o.status.success(), "{}", stderr(&o));
    t.gw.wait_metric(denied, before + 1, Duration::from_secs(10));
    let sub = |topic: &str, auth: &[String]| {
        Command::new("mosquitto_sub")
            .args(["-h", "localhost", "-p", &t.tls_port.to_string()])
            .arg("--cafile")
            .arg(&t.server_ca)
            .args(["-i", "home_a.n01", "-t", topic, "-W", "2", "-C", "1"])
            .args(auth)
            .output()
            .unwrap()
    };
    let o = sub("fire/v1/home_a/n02/cmd", &n01);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("denied"),
        "{}",
        stderr(&o)
    );
    let o = sub("fire/v1/home_a/n01/cmd", &n01);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("denied"),
        "{}",
        stderr(&o)
    );

    // Another node's certificate cannot speak for n01.
    let o = t.publish("home_a.n01", "fire/v1/home_a/n01/status", &args(&n02));
    assert!(!o.status.success(), "{}", stderr(&o));
    t.wait_refused("identity", 1);

    // A password login over TLS, no client certificate.
    let pw = t.n01_password.clone();
    let o = t.publish(
        "home_a.n01",
        "fire/v1/home_a/n01/status",
        &["-u", "home_a.n01", "-P", &pw],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = t.publish(
        "home_a.n01",
        "fire/v1/home_a/n01/status",
        &["-u", "home_a.n01", "-P", "wrong"],
    );
    assert!(!o.status.success(), "{}", stderr(&o));

    // A certificate of another CA, with the right name: the handshake fails.
    let foreign = TestCa::new("someone else's CA");
    let forged = foreign.client("home_a.n01");
    let dir = t.certs.join("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("n01.crt"), &forged.cert_pem).unwrap();
    std::fs::write(dir.join("n01.key"), &forged.key_pem).unwrap();
    let auth = [
        "--cert".to_string(),
        dir.join("n01.crt").display().to_string(),
        "--key".to_string(),
        dir.join("n01.key").display().to_string(),
    ];
    let o = t.publish("home_a.n01", "fire/v1/home_a/n01/status", &args(&auth));
    assert!(!o.status.success(), "{}", stderr(&o));
    t.wait_refused("unknown_ca", 1);

    // An expired certificate of the gateway's own CA.
    let ca = gateway::commissioning::ca::load(&t.data).unwrap();
    let long_ago = gateway::domain::time::now_ms() / 1000 - 400 * 86_400;
    let expired = ca.issue("home_a", "n01", 30, long_ago).unwrap();
    std::fs::write(dir.join("old.crt"), &expired.cert_pem).unwrap();
    std::fs::write(dir.join("old.key"), &expired.key_pem).unwrap();
    let auth = [
        "--cert".to_string(),
        dir.join("old.crt").display().to_string(),
        "--key".to_string(),
        dir.join("old.key").display().to_string(),
    ];
    let o = t.publish("home_a.n01", "fire/v1/home_a/n01/status", &args(&auth));
    assert!(!o.status.success(), "{}", stderr(&o));
    t.wait_refused("expired", 1);

    // A valid certificate of the CA the registry does not know (not
    // issued through `node add|rotate --cert`): refused.
    let stray = ca
        .issue("home_a", "n01", 30, gateway::domain::time::now_ms() / 1000)
        .unwrap();
    std::fs::write(dir.join("stray.crt"), &stray.cert_pem).unwrap();
    std::fs::write(dir.join("stray.key"), &stray.key_pem).unwrap();
    let auth = [
        "--cert".to_string(),
        dir.join("stray.crt").display().to_string(),
        "--key".to_string(),
        dir.join("stray.key").display().to_string(),
    ];
    let o = t.publish("home_a.n01", "fire/v1/home_a/n01/status", &args(&auth));
    assert!(!o.status.success(), "{}", stderr(&o));
    t.wait_refused("unknown_certificate", 1);

    // Revoking n02 ends its certificate: its live session is closed and
    // the next handshake refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, k) = t.cert("n02");
    let mut live = rt
        .block_on(mqtt_tls(
            t.tls_port,
            &t.server_ca,
            Some((&c, &k)),
            "home_a.n02",
            None,
        ))
        .expect("n02 logs in with its certificate");
    let revoked_before = t.gw.closed("revoked");
    ok(&gateway(
        &["node", "revoke"],
        &t.gw.config,
        &["--site", "home_a", "--id", "n02"],
    ));
    rt.block_on(async {
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), live.read(&mut b))
            .await
            .expect("the revoked node's connection is closed");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    });
    t.gw.wait_closed("revoked", revoked_before + 1);
    let o = t.publish("home_a.n02", "fire/v1/home_a/n02/status", &args(&n02));
    assert!(!o.status.success(), "{}", stderr(&o));
    t.wait_refused("revoked", 1);

    assert!(t.refused("bad_certificate") == 0);
    t.gw.assert_alive();
}

/// A TLS client (rustls) that trusts `ca` and logs in: the stream after a
/// CONNACK 0, or the CONNACK code / error.
async fn mqtt_tls(
    port: u16,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some((c, k)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut c = Connect::new(client_id);
    c.keep_alive = 60;
    c.login = login.map(|(u, p)| Login::new(u, p));
    let mut out = bytes::BytesMut::new();
    c.write(&mut out).unwrap();
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.map_err(|e| e.to_string())?;
    if ack[0] != 0x20 || ack[3] != 0 {
        return Err(format!("CONNACK {ack:?}"));
    }
    Ok(s)
}

/// A PINGREQ answered: the session is up.
async fn ping(s: &mut tokio_rustls::client::TlsStream<TcpStream>) -> bool {
    if s.write_all(&[0xc0, 0]).await.is_err() {
        return false;
    }
    let mut b = [0u8; 2];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await,
        Ok(Ok(_)) if b == [0xd0, 0]
    )
}

#[test]
fn a_certificate_replaced_on_disk_is_used_by_new_handshakes_and_sessions_stay_up() {
    let t = start(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pw = t.n01_password.clone();
    let mut session = rt
        .block_on(mqtt_tls(
            t.tls_port,
            &t.server_ca,
            None,
            "home_a.n01",
            Some(("home_a.n01", &pw)),
        ))
        .expect("password login over TLS");
    assert!(rt.block_on(ping(&mut session)));

    // A new server certificate from another CA, written over the files.
    let new_ca = TestCa::new("the renewed server CA");
    let new_ca_file = new_ca.write(t.server_cert.parent().unwrap(), "new-ca.pem");
    let (c, k) = write_server(t.server_cert.parent().unwrap(), &new_ca);
    assert_eq!((c, k), (t.server_cert.clone(), t.server_key.clone()));

    // New handshakes present it (the watcher polls the files every 2 s).
    let (c2, k2) = t.cert("n02");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = rt.block_on(mqtt_tls(
            t.tls_port,
            &new_ca_file,
            Some((&c2, &k2)),
            "home_a.n02",
            None,
        ));
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never took the new certificate: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // …and no longer the old one.
    let old = rt.block_on(mqtt_tls(
        t.tls_port,
        &t.server_ca,
        None,
        "home_a.n01",
        Some(("home_a.n01", &pw)),
    ));
    assert!(old.is_err(), "the old certificate is still presented");
    // The session established before the reload is still up.
    assert!(rt.block_on(ping(&mut session)), "the session was dropped");
    assert!(t.gw.metric("gateway_mqtt_gate_tls_reloads_total{result=\"ok\"}") >= 1);
    // The plain listener is still there beside TLS (mqtt.plain = true).
    assert!(std::net::TcpStream::connect(t.gw.mqtt).is_ok());
}

/// `node_certificates` on both backends: issuing records the fingerprint,
/// a second certificate replaces the first, revoking the node moves it to
/// the refused ones.
async fn certificates_recorded(db: common::db::TestDb) {
    let store = gateway::store::Store::open(&db.url).await.unwrap();
    let config = gateway::config::Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"甲\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    let data = db.dir.path().join("data");
    gateway::commissioning::ca::init(&data, gateway::domain::time::now_ms() / 1000).unwrap();
    let actor = gateway::commissioning::registry::Actor {
        name: "cli:test",
        role: "admin",
    };
    let now = gateway::domain::time::now_ms();
    let issue = || {
        gateway::commissioning::ca::issue_for_node(
            &store, &config, &data, "home_a", "n01", 30, actor, now,
        )
    };
    let first = issue().await.unwrap();
    let second = issue().await.unwrap();
    let reg = store.registry().await.unwrap();
    assert_eq!(reg.certificates.len(), 1);
    assert_eq!(reg.certificates[0].sha256, second.sha256);
    assert_eq!(reg.certificates[0].username, "home_a.n01");
    assert!(reg.certificates[0].not_after > now);
    let access = gateway::ingest::gate::Access::build(&config, &reg, None, false);
    assert!(access.certs.contains_key(&second.sha256));
    assert!(!access.certs.contains_key(&first.sha256));
    assert!(matches!(
        gateway::commissioning::ca::issue_for_node(
            &store, &config, &data, "home_a", "n09", 30, actor, now
        )
        .await,
        Err(gateway::commissioning::ca::CaError::Registry(_))
    ));

    gateway::commissioning::registry::revoke(&store, &config, "home_a", "n01", actor, now)
        .await
        .unwrap();
    let reg = store.registry().await.unwrap();
    let access = gateway::ingest::gate::Access::build(&config, &reg, None, false);
    assert!(access.revoked_certs.contains(&second.sha256));
    assert!(access.certs.is_empty());
    // A revoked node is issued nothing more.
    assert!(issue().await.is_err());
    store.close().await;
}

#[tokio::test]
async fn certificates_recorded_sqlite() {
    certificates_recorded(common::db::TestDb::sqlite()).await;
}

#[tokio::test]
async fn certificates_recorded_postgres() {
    certificates_recorded(common::db::TestDb::postgres().await).await;
}
