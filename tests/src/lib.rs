//! Harness for end-to-end tests against real processes.
//!
//! Each test starts its own servers (Mosquitto with `deploy/mosquitto/`'s
//! configuration, VictoriaMetrics) on free loopback ports in its own
//! temporary directory, and stops them when dropped. A missing server binary
//! is a loud failure naming the install command — never a silent skip.

pub mod mosquitto_tls;
pub mod rabbitmq;

use gateway::config::{BrokerMode, Config, NodeConfig, SiteConfig};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Finds a server binary or fails naming how to install it.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path).chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed: run `apt-get install -y {package}` (./scripts/test installs it)"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Waits until something accepts connections on `port`, or the process exits.
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{what} did not listen on {port} within 20 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_listening`] for the harness modules beside this one.
pub(crate) fn wait_listening_pub(port: u16, child: &mut Child, what: &str, log: &Path) {
    wait_listening(port, child, what, log)
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Who Mosquitto runs as after dropping root: its data files must be theirs.
fn mosquitto_owner() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("mosquitto:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A Mosquitto broker with the deployment's configuration.
pub struct Mosquitto {
    pub port: u16,
    dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto with `deploy/mosquitto/mosquitto.conf`, users
    /// `(name, password)` and the given ACL text.
    pub fn start(users: &[(&str, &str)], acl: &str) -> Mosquitto {
        let passwd_tool = require("mosquitto_passwd", "mosquitto");
        Mosquitto::start_with(
            |passwd| {
                std::fs::write(passwd, "").expect("passwd");
                for (user, pass) in users {
                    let st = Command::new(&passwd_tool)
                        .arg("-b")
                        .arg(passwd)
                        .arg(user)
                        .arg(pass)
                        .status()
                        .expect("mosquitto_passwd");
                    assert!(st.success(), "mosquitto_passwd failed for {user}");
                }
            },
            acl,
        )
    }

    /// Starts Mosquitto with a password file made elsewhere (e.g. exported
    /// by the gateway) and the given ACL text.
    pub fn start_with_files(passwd: &str, acl: &str) -> Mosquitto {
        Mosquitto::start_with(|path| std::fs::write(path, passwd).expect("passwd"), acl)
    }

    /// Replaces the password and ACL files and makes Mosquitto reload them
    /// (SIGHUP). Mosquitto reloads asynchronously and does not log it at the
    /// shipped log levels: callers wait for the effect they expect.
    pub fn reload_files(&self, passwd: &str, acl: &str) {
        std::fs::write(self.dir.path().join("passwd"), passwd).expect("passwd");
        std::fs::write(self.dir.path().join("acl"), acl).expect("acl");
        let pid = self.pid().expect("mosquitto is running");
        let st = Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .expect("kill -HUP");
        assert!(st.success(), "kill -HUP {pid}");
    }

    fn start_with(write_passwd: impl FnOnce(&Path), acl: &str) -> Mosquitto {
        require("mosquitto", "mosquitto");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let passwd = dir.path().join("passwd");
        write_passwd(&passwd);
        let acl_path = dir.path().join("acl");
        std::fs::write(&acl_path, acl).expect("acl");

        let shipped = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/mosquitto/mosquitto.conf"
        );
        let text = std::fs::read_to_string(shipped).expect("deploy/mosquitto/mosquitto.conf");
        let mut conf = String::new();
        for line in text.lines() {
            let replaced = match line.split_whitespace().next() {
                Some("persistence_location") => format!("persistence_location {}/", data.display()),
                Some("password_file") => format!("password_file {}", passwd.display()),
                Some("acl_file") => format!("acl_file {}", acl_path.display()),
                Some("listener") => format!("listener {port} 127.0.0.1"),
                _ => line.to_string(),
            };
            conf.push_str(&replaced);
            conf.push('\n');
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        if is_root() {
            // Mosquitto drops root to its own user; it must own its data.
            if let Some((uid, gid)) = mosquitto_owner() {
                for p in [dir.path(), &data, &passwd, &acl_path, &conf_path] {
                    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
                }
            }
        }
        let mut m = Mosquitto {
            port,
            dir,
            conf: conf_path,
            child: None,
        };
        m.start_again();
        m
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts the broker (again) on the same port, data and configuration.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = require("mosquitto", "mosquitto");
        let log_path = self.dir.path().join("mosquitto.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        wait_listening(self.port, &mut child, "mosquitto", &log_path);
        self.child = Some(child);
    }

    /// Stops the broker with SIGTERM (it saves its persistence database).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A VictoriaMetrics single-node server (accepts InfluxDB's `/api/v2/write`).
pub struct VictoriaMetrics {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    tls: Option<VmTls>,
}

/// VictoriaMetrics serving https (`-tls`): its certificate and key, and
/// the CA the test's own queries trust.
pub struct VmTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        Self::start_on(free_port())
    }

    /// Starts a fresh server (empty storage) on `port`.
    pub fn start_on(port: u16) -> VictoriaMetrics {
        Self::start_with(port, None)
    }

    /// Starts a fresh server serving only https
    /// (`-tls -tlsCertFile -tlsKeyFile`) on a free port.
    pub fn start_tls(tls: VmTls) -> VictoriaMetrics {
        Self::start_with(free_port(), Some(tls))
    }

    fn start_with(port: u16, tls: Option<VmTls>) -> VictoriaMetrics {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vm = VictoriaMetrics {
            port,
            dir,
            child: None,
            tls,
        };
        vm.start_again();
        vm
    }

    /// A POST to this server (https trusting the test's CA, or http).
    async fn post_text(&self, path: &str, content_type: &str, body: String) -> String {
        let url = format!("{}{path}", self.url());
        match &self.tls {
            Some(t) => {
                let tls = gateway::tls::TlsConfig {
                    extra_ca_file: Some(t.ca_file.clone()),
                };
                gateway::tls::HttpClient::new(&tls, Duration::from_secs(10))
                    .expect("https client")
                    .post(&url)
                    .header("Content-Type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}"))
                    .text()
                    .await
                    .expect("body")
            }
            None => reqwest::Client::new()
                .post(url)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .text()
                .await
                .expect("body"),
        }
    }

    /// Starts the server (again) on the same port and storage.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = require("victoria-metrics", "victoria-metrics");
        let log_path = self.dir.path().join("vm.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log");
        let mut child = Command::new(bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .args(self.tls.iter().flat_map(|t| {
                [
                    "-tls".to_string(),
                    format!("-tlsCertFile={}", t.cert_file.display()),
                    format!("-tlsKeyFile={}", t.key_file.display()),
                ]
            }))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn victoria-metrics");
        wait_listening(self.port, &mut child, "victoria-metrics", &log_path);
        self.child = Some(child);
    }

    /// Stops the server with SIGTERM (it flushes its data to disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Every series matching `selector`, as `/api/v1/export` JSON lines.
    pub async fn export(&self, selector: &str) -> Vec<serde_json::Value> {
        let body = self
            .post_text(
                "/api/v1/export",
                "application/x-www-form-urlencoded",
                format!("match[]={}", gateway::sink::percent_encode(selector)),
            )
            .await;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("export line"))
            .collect()
    }

    /// Every raw sample of the series matching `selector`, duplicates
    /// included: `((metric name, site, node, ch), timestamp ms, value)`.
    pub async fn samples(&self, selector: &str) -> Vec<(Series, u64, i64)> {
        // Make everything ingested so far searchable.
        match &self.tls {
            Some(_) => {
                self.post_text("/internal/force_flush", "text/plain", String::new())
                    .await;
            }
            None => {
                let _ = reqwest::get(format!("{}/internal/force_flush", self.url())).await;
            }
        }
        let mut out = Vec::new();
        for s in self.export(selector).await {
            let m = &s["metric"];
            let label = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            let series = (label("__name__"), label("site"), label("node"), label("ch"));
            let values = s["values"].as_array().cloned().unwrap_or_default();
            let stamps = s["timestamps"].as_array().cloned().unwrap_or_default();
            for (v, t) in values.iter().zip(stamps.iter()) {
                out.push((
                    series.clone(),
                    t.as_u64().unwrap_or(0),
                    v.as_f64().unwrap_or(f64::NAN) as i64,
                ));
            }
        }
        out.sort();
        out
    }

    /// Polls [`VictoriaMetrics::samples`] until at least `n` samples are
    /// searchable (VictoriaMetrics makes new data searchable within a
    /// second or so), or `within` passes; returns the last answer.
    pub async fn samples_at_least(
        &self,
        selector: &str,
        n: usize,
        within: Duration,
    ) -> Vec<(Series, u64, i64)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.samples(selector).await;
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A series in VictoriaMetrics: metric name, site, node, channel.
pub type Series = (String, String, String, String);

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gateway's MQTT credentials in tests.
pub const GATEWAY_USER: (&str, &str) = ("fire-gateway", "gw-secret");

/// A gateway configuration against an external broker on `port`, with
/// sites `home_a` (nodes n01, n02) and `home_b` (n01), data in `dir`.
pub fn gateway_config(broker_port: u16, dir: &Path) -> Config {
    let node = |id: &str| NodeConfig {
        id: id.into(),
        location: format!("{id} 配电箱"),
        ..Default::default()
    };
    let mut c = Config::default();
    c.storage.data_dir = dir.to_path_buf();
    c.mqtt.broker = BrokerMode::External;
    c.mqtt.host = "127.0.0.1".into();
    c.mqtt.port = broker_port;
    c.mqtt.client_id = "fire-gateway-test".into();
    c.mqtt.username = Some(GATEWAY_USER.0.into());
    c.mqtt.password = Some(GATEWAY_USER.1.into());
    c.mqtt.keep_alive_secs = 5;
    c.sites = vec![
        SiteConfig {
            id: "home_a".into(),
            name: "阳光养老院".into(),
            rules: Default::default(),
            nodes: vec![node("n01"), node("n02")],
        },
        SiteConfig {
            id: "home_b".into(),
            name: "福星敬老院".into(),
            rules: Default::default(),
            nodes: vec![node("n01")],
        },
    ];
    c
}

/// Node credentials for every configured node: `(username, password)`.
pub fn node_users(c: &Config) -> Vec<(String, String)> {
    c.sites
        .iter()
        .flat_map(|s| {
            s.nodes
                .iter()
                .map(move |n| gateway::ingest::mosquitto::node_username(&s.id, &n.id))
        })
        .map(|u| {
            let p = format!("pw-{u}");
            (u, p)
        })
        .collect()
}

/// Starts Mosquitto with the gateway's and every node's credentials and the
/// generated ACL, plus `extra` users and ACL text.
pub fn mosquitto_for(c: &Config, extra_users: &[(&str, &str)], extra_acl: &str) -> Mosquitto {
    let nodes = node_users(c);
    let mut users: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    users.push(GATEWAY_USER);
    users.extend_from_slice(extra_users);
    let acl = format!(
        "{}\n{extra_acl}\n",
        gateway::ingest::mosquitto::acl(c, GATEWAY_USER.0)
    );
    Mosquitto::start(&users, &acl)
}

/// Starts an in-process gateway with its HTTP API on a free port.
pub async fn start_gateway(c: Config) -> gateway::app::Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    gateway::app::start(c, listener)
        .await
        .unwrap_or_else(|e| panic!("gateway start: {e}"))
}

/// An MQTT client playing a node (or a hostile peer): persistent session,
/// fixed client id, QoS 1. Counts PUBACKs received.
pub struct MqttPeer {
    pub client: AsyncClient,
    pub acked: Arc<AtomicU64>,
    driver: tokio::task::JoinHandle<()>,
}

impl MqttPeer {
    /// Connects as `user` with client id `client_id`; with `will`, registers
    /// the node's Last Will on `will` (a status topic).
    pub async fn connect(
        broker: SocketAddr,
        client_id: &str,
        user: (&str, &str),
        will: Option<String>,
    ) -> MqttPeer {
        let mut o = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_credentials(user.0, user.1)
            .set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        if let Some(topic) = will {
            o.set_last_will(LastWill::new(
                topic,
                wire::encode_vec(&wire::Status::offline()).unwrap_or_default(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(o, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let counter = acked.clone();
        let driver = tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(if a.code == rumqttc::ConnectReturnCode::Success {
                                Ok(())
                            } else {
                                Err(format!("{:?}", a.code))
                            });
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Err(e.to_string()));
                            break;
                        }
                        // Broker restart: keep polling, rumqttc reconnects and
                        // resends what was not acknowledged.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("MQTT peer {client_id} could not connect: {other:?}"),
        }
        MqttPeer {
            client,
            acked,
            driver,
        }
    }

    /// Publishes with QoS 1.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish queued");
    }

    /// Waits until `n` publishes in all have been acknowledged by the broker.
    pub async fn wait_acked(&self, n: u64, within: Duration) {
        let acked = self.acked.clone();
        wait_until(within, &format!("{n} PUBACKs"), || {
            acked.load(Ordering::SeqCst) >= n
        })
        .await;
    }

    /// Drops the connection without DISCONNECT, as a node losing power
    /// would: the broker then publishes the Last Will.
    pub fn cut(self) {
        self.driver.abort();
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.driver).await;
    }
}

/// Waits until `cond` holds, checking every 10 ms; fails naming `what`.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A telemetry payload.
pub fn telemetry(
    boot: u32,
    seq: u32,
    ts: u64,
    readings: &[(&str, wire::Quantity, i32, wire::ChannelStatus)],
) -> Vec<u8> {
    let mut t = wire::Telemetry {
        boot,
        seq,
        ts,
        ch: Default::default(),
    };
    for (id, q, v, s) in readings {
        let r = wire::Reading {
            id: wire::ChannelId::new(id).expect("channel id"),
            q: *q,
            v: *v,
            s: *s,
        };
        t.ch.push(r).expect("channel count");
    }
    wire::encode_vec(&t).expect("encode")
}

/// GETs a JSON document from the gateway's API, with a bearer token
/// (`None` for the public paths such as `/healthz`).
pub async fn get_json(base: SocketAddr, token: Option<&str>, path: &str) -> serde_json::Value {
    let mut req = reqwest::Client::new().get(format!("http://{base}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

/// Creates an administrator (every site) in the gateway's store and logs
/// it in: a bearer token for the API.
pub async fn admin_token(gw: &gateway::app::Running) -> String {
    let now = gateway::domain::time::now_ms();
    let store = &gw.store;
    match store
        .add_user(
            "e2e-admin",
            "测试管理员",
            gateway::tickets::Role::Admin,
            None,
            "e2e-admin-password",
            now,
        )
        .await
    {
        Ok(_) | Err(gateway::store::UserError::Exists) => {}
        Err(e) => panic!("cannot create the test user: {e}"),
    }
    store
        .login("e2e-admin", "e2e-admin-password", now)
        .await
        .expect("login")
        .expect("credentials")
        .0
}

/// GETs `/metrics` text.
pub async fn get_text(base: SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{base}{path}"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// A gateway running in-process against a Mosquitto of its own.
pub struct Stack {
    pub broker: Mosquitto,
    pub config: Config,
    pub gw: gateway::app::Running,
    /// The gateway's data directory, removed when the stack is dropped.
    pub dir: TempDir,
    /// A bearer token of an administrator covering every site.
    pub token: String,
}

/// Starts Mosquitto (the gateway's and every node's credentials, the
/// generated ACL, plus `extra_users` and `extra_acl`) and a gateway
/// configured by [`gateway_config`] and then `configure`, and waits until
/// the gateway has connected.
pub async fn stack(
    extra_users: &[(&str, &str)],
    extra_acl: &str,
    configure: impl FnOnce(&mut Config),
) -> Stack {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = mosquitto_for(&gateway_config(0, dir.path()), extra_users, extra_acl);
    let mut config = gateway_config(broker.port, dir.path());
    configure(&mut config);
    let gw = start_gateway(config.clone()).await;
    let metrics = gw.metrics.clone();
    wait_until(
        Duration::from_secs(20),
        "the gateway connected to Mosquitto",
        || metrics.mqtt_connections.load(Ordering::Relaxed) > 0,
    )
    .await;
    let token = admin_token(&gw).await;
    Stack {
        broker,
        config,
        gw,
        dir,
        token,
    }
}

/// The gateway binary running as a child process, so a test can `kill -9`
/// it. `bin` is the binary's path (`env!("CARGO_BIN_EXE_gateway-under-test")`
/// in this crate's tests).
pub struct GatewayProcess {
    pub http: SocketAddr,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts `gateway run --config CONFIG`; its HTTP API listens on `http`.
    pub fn spawn(bin: &Path, config: &Path, http: SocketAddr, log: &Path) -> GatewayProcess {
        let mut g = GatewayProcess {
            http,
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
        };
        g.start_again();
        g
    }

    /// Starts the binary (again) with the same configuration.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the gateway binary");
        wait_listening(self.http.port(), &mut child, "gateway", &self.log);
        self.child = Some(child);
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the orderly shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A value from the gateway's `/metrics` (the first line starting with
    /// `name ` or `name{…} `); `None` if not there or not reachable.
    /// Waits until the log has `line`; panics with the log after `within`.
    pub async fn wait_log(&self, line: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.log().contains(line) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {line:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Freezes the process (SIGSTOP): it runs no code, its sockets stay
    /// open — a machine that hangs, as far as its peers can tell.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("the gateway is running");
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {pid}");
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric_value(&text, name)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The value of the first sample named `name` (labels included, e.g.
/// `x{quantile="0.5"}`) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A configuration file for the gateway binary matching
/// [`gateway_config`]: external broker on `broker_port`, HTTP on
/// `http_port`, data in `dir`, plus `extra` TOML appended (a `[sink]`).
pub fn gateway_toml(broker_port: u16, http_port: u16, dir: &Path, extra: &str) -> String {
    let c = gateway_config(broker_port, dir);
    let mut t = format!(
        "offline_after_secs = 600\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [storage]\ndata_dir = \"{}\"\n\n\
         [mqtt]\nbroker = \"external\"\nhost = \"127.0.0.1\"\nport = {broker_port}\n\
         client_id = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nkeep_alive_secs = 5\n\n{extra}\n",
        dir.display(),
        c.mqtt.client_id,
        GATEWAY_USER.0,
        GATEWAY_USER.1,
    );
    for s in &c.sites {
        t.push_str(&format!(
            "\n[[sites]]\nid = \"{}\"\nname = \"{}\"\n",
            s.id, s.name
        ));
        for n in &s.nodes {
            t.push_str(&format!(
                "[[sites.nodes]]\nid = \"{}\"\nlocation = \"{}\"\n",
                n.id, n.location
            ));
        }
    }
    t
}

/// A throwaway PostgreSQL server for the gateway's store, like the one the
/// store's tests start (`gateway/tests/common/db.rs`): `initdb` into a temp
/// directory, a free port on 127.0.0.1, run as the `postgres` user when we
/// are root. A watchdog in its own process group stops the server and
/// removes the directory when this process ends, however it ends.
///
/// `durable`: the server's default `fsync` and `synchronous_commit` (a
/// benchmark's setting); otherwise both off, as the tests run it.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    data: PathBuf,
    pg_ctl: PathBuf,
    root: bool,
    watchdog: Option<(Child, std::process::ChildStdin)>,
    /// The `-c` options it was started with, to start it again alike.
    durability: String,
}

impl Postgres {
    pub fn start(durable: bool) -> Postgres {
        let bin = postgres_bin_dir();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("e2e-pg")
            .tempdir()
            .expect("temp dir")
            .keep();
        let data = dir.join("data");
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown {} to postgres", dir.display());
        }
        let out = as_pg_user(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg_ctl = bin.join("pg_ctl");
        let stop = format!(
            "cat >/dev/null; {} '{}' -D '{}' stop -m immediate >/dev/null 2>&1; rm -rf '{}'",
            if root { "runuser -u postgres --" } else { "" },
            pg_ctl.display(),
            data.display(),
            dir.display()
        );
        let mut watchdog = {
            use std::os::unix::process::CommandExt;
            Command::new("sh")
                .args(["-c", &stop])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start the PostgreSQL watchdog")
        };
        let stdin = watchdog.stdin.take().expect("watchdog stdin");
        let log = dir.join("server.log");
        let durability = if durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200{durability}",
                dir.display()
            );
            let started = as_pg_user(&pg_ctl, root)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run pg_ctl");
            if started.success() {
                return Postgres {
                    port,
                    dir,
                    data,
                    pg_ctl,
                    root,
                    durability: durability.to_string(),
                    watchdog: Some((watchdog, stdin)),
                };
            }
        }
        panic!(
            "PostgreSQL did not start; its log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: a crash, as
    /// far as the clients can tell).
    pub fn stop(&mut self) {
        let ok = as_pg_user(&self.pg_ctl, self.root)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "pg_ctl stop");
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200{}",
            self.port,
            self.dir.display(),
            self.durability
        );
        let ok = as_pg_user(&self.pg_ctl, self.root)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "PostgreSQL did not start again; its log: {}",
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// The `postgres` database on this server, as the gateway's `database_url`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id and those of its children (backends,
    /// writers), while it runs.
    pub fn pids(&self) -> Vec<u32> {
        let Some(main) = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let mut out = vec![main];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(main) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.pg_ctl, self.root)
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Closing the pipe lets the watchdog remove the directory.
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: \
             install them with `apt-get install postgresql` (scripts/test does)"
        )
    })
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root), else as ourselves.
fn as_pg_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Follows the gateway's event stream (`/api/v1/events`) as the duty desk
/// does, with `token`: everything received so far, as text (SSE lines,
/// with the transfer's chunk sizes in between), in a shared buffer.
pub async fn follow_events(addr: SocketAddr, token: &str) -> Arc<std::sync::Mutex<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("event stream at {addr}: {e}"));
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}

/// A cluster replica's configuration file (issue 16): PostgreSQL at `db`,
/// commands through the broker's MQTT on `mqtt`, partitions over AMQP on
/// `amqp` (both with `login`), the sink to VictoriaMetrics at `vm`, and
/// `sites` with their nodes.
pub struct ReplicaToml<'a> {
    pub name: &'a str,
    pub http: u16,
    pub dir: &'a Path,
    pub db: &'a str,
    pub mqtt: u16,
    pub amqp: u16,
    pub login: (&'a str, &'a str),
    /// VictoriaMetrics for the sink, or none.
    pub vm: Option<&'a str>,
    pub sites: &'a [(String, Vec<String>)],
}

impl ReplicaToml<'_> {
    pub fn text(&self) -> String {
        let (u, p) = self.login;
        let mut t = format!(
            "offline_after_secs = 600\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [storage]\ndata_dir = \"{dir}\"\ndatabase_url = \"{db}\"\n\n\
             [mqtt]\nbroker = \"external\"\nhost = \"127.0.0.1\"\nport = {mqtt}\n\
             client_id = \"fire-gateway-{name}\"\nusername = \"{u}\"\npassword = \"{p}\"\nkeep_alive_secs = 5\n\n\
             [cluster]\namqp_url = \"amqp://{u}:{p}@127.0.0.1:{amqp}/%2f\"\nreplica = \"{name}\"\nprefetch = 1000\n",
            http = self.http,
            dir = self.dir.display(),
            db = self.db,
            mqtt = self.mqtt,
            amqp = self.amqp,
            name = self.name,
        );
        if let Some(vm) = self.vm {
            t.push_str(&format!(
                "\n[sink]\nurl = \"{vm}\"\nbatch_size = 5000\nflush_interval_ms = 100\ntimeout_ms = 2000\nretry_max_ms = 1000\n"
            ));
        }
        for (site, nodes) in self.sites {
            t.push_str(&format!(
                "\n[[sites]]\nid = \"{site}\"\nname = \"{site} 养老院\"\n"
            ));
            for n in nodes {
                t.push_str(&format!(
                    "[[sites.nodes]]\nid = \"{n}\"\nlocation = \"{n} 配电箱\"\n"
                ));
            }
        }
        t
    }
}
