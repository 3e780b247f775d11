//! A real `gateway run` process for attack tests (its RSS is its own, read
//! from `/proc`), and a raw MQTT client that can send what a real client
//! library never would.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A spawned gateway binary on free loopback ports; killed when dropped.
pub struct Gw {
    pub child: Option<Child>,
    pub http: u16,
    pub mqtt: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// One site `home_a` with nodes `n01` (no credentials) and `n02`, the
/// gateway's client id `fire-gateway`, `extra` appended under `[mqtt]`.
pub fn config_text(http: u16, mqtt: u16, data: &Path, mqtt_extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"\n\
         [mqtt]\nembedded_listen = \"127.0.0.1:{mqtt}\"\nclient_id = \"fire-gateway\"\n{mqtt_extra}\n\
         [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n",
        data.display()
    )
}

impl Gw {
    /// Writes the configuration; nothing runs yet.
    pub fn prepare(mqtt_extra: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let (http, mqtt) = (free_port(), free_port());
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            config_text(http, mqtt, &dir.path().join("data"), mqtt_extra),
        )
        .unwrap();
        Gw {
            child: None,
            http,
            mqtt: SocketAddr::from(([127, 0, 0, 1], mqtt)),
            dir,
            config,
        }
    }

    /// `gateway node rotate` for a node of the file: its new password.
    pub fn rotate(&self, node: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["node", "rotate", "--config"])
            .arg(&self.config)
            .args(["--site", "home_a", "--id", node])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("密码:"))
            .unwrap_or_else(|| panic!("no password in {text}"))
            .trim()
            .to_string()
    }

    /// Starts `gateway run` (under `prlimit` with `nofile`, if given), logs
    /// to `gateway.log` in its directory, and waits for `/healthz`.
    pub fn start(mut self, nofile: Option<u32>) -> Gw {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg(env!("CARGO_BIN_EXE_gateway"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_gateway")),
        };
        self.child = Some(
            cmd.arg("run")
                .arg("--config")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .get("/healthz")
            .is_none_or(|b| !b.contains("\"status\":\"ok\""))
        {
            assert!(Instant::now() < deadline, "gateway did not become healthy");
            assert!(self.running(), "gateway exited early:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The process is still running (no panic took it down) and healthy.
    pub fn assert_alive(&mut self) {
        assert!(self.running(), "the gateway died:\n{}", self.log());
        assert!(
            self.get("/healthz")
                .is_some_and(|b| b.contains("\"status\":\"ok\"")),
            "the gateway is not healthy"
        );
        assert!(!self.log().contains("panicked"), "{}", self.log());
    }

    /// A plain GET of `path` on the HTTP API: the whole answer.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
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

    /// A series of `/metrics`, e.g. `gateway_mqtt_gate_closed_total{reason="idle"}`.
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.get("/metrics").expect("/metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|v| v.strip_prefix(' '))
                    .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            })
            .unwrap_or_else(|| panic!("no series {series} in /metrics"))
    }

    /// Closed connections counted for `reason`.
    pub fn closed(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "gateway_mqtt_gate_closed_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Polls until exactly `n` connections were closed for `reason` (the
    /// count moves just after the socket closes), and not more.
    pub fn wait_closed(&self, reason: &str, n: u64) {
        let series = format!("gateway_mqtt_gate_closed_total{{reason=\"{reason}\"}}");
        assert_eq!(
            self.wait_metric(&series, n, Duration::from_secs(10)),
            n,
            "{series}"
        );
    }

    /// Polls `/metrics` until `series` reaches `at_least`.
    pub fn wait_metric(&self, series: &str, at_least: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(series);
            if v >= at_least {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{series} = {v}, wanted at least {at_least}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the gateway process, KiB (`/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!(
            "/proc/{}/status",
            self.child.as_ref().unwrap().id()
        ))
        .unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------ raw MQTT

/// An MQTT frame: `byte1`, the remaining length encoded, `body`.
pub fn packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed MQTT string of raw bytes (which need not be UTF-8).
pub fn mqtt_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A v3.1.1 CONNECT: client id, optional username/password, keep-alive,
/// clean session off.
pub fn connect(client_id: &[u8], login: Option<(&[u8], &[u8])>, keep_alive: u16) -> Vec<u8> {
    let mut body = mqtt_bytes(b"MQTT");
    body.push(4);
    body.push(if login.is_some() { 0xc0 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(&mqtt_bytes(client_id));
    if let Some((u, p)) = login {
        body.extend_from_slice(&mqtt_bytes(u));
        body.extend_from_slice(&mqtt_bytes(p));
    }
    packet(0x10, &body)
}

/// A PUBLISH of raw topic bytes at `qos` with packet id `pkid`.
pub fn publish(topic: &[u8], qos: u8, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = mqtt_bytes(topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// A contract telemetry payload with one residual-current reading.
pub fn telemetry(seq: u32, milliamps: i64) -> Vec<u8> {
    format!(
        r#"{{"boot":1,"seq":{seq},"ts":0,"ch":[{{"id":"rc1","q":"residual_current","v":{milliamps},"s":"ok"}}]}}"#
    )
    .into_bytes()
}

/// A raw TCP connection to the gate.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `to`, from the loopback address `from` if given.
    pub async fn connect(to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<Raw> {
        let s = match from {
            Some(ip) => {
                let sock = TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(to).await?
            }
            None => TcpStream::connect(to).await?,
        };
        s.set_nodelay(true)?;
        Ok(Raw { s, buf: Vec::new() })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// The next whole packet (byte1, body), `None` when the gate closed the
    /// connection. Fails after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.buf.len() >= 2 {
                let mut len = 0usize;
                let mut i = 1;
                let mut whole = None;
                while i < self.buf.len() && i <= 4 {
                    len |= usize::from(self.buf[i] & 0x7f) << (7 * (i - 1));
                    if self.buf[i] & 0x80 == 0 {
                        whole = Some(i + 1);
                        break;
                    }
                    i += 1;
                }
                if let Some(h) = whole {
                    if self.buf.len() >= h + len {
                        let body = self.buf[h..h + len].to_vec();
                        let b1 = self.buf[0];
                        self.buf.drain(..h + len);
                        return Some((b1, body));
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => panic!("nothing from the gate within {within:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the gate closes the connection; the packets it sent
    /// first. Fails if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while let Some(p) = self.next(within).await {
            got.push(p);
        }
        got
    }

    /// CONNECTs and expects CONNACK 0.
    pub async fn login(
        to: SocketAddr,
        from: Option<IpAddr>,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Raw {
        let mut r = Raw::connect(to, from).await.unwrap();
        r.send(&connect(
            client_id.as_bytes(),
            login.map(|(u, p)| (u.as_bytes(), p.as_bytes())),
            30,
        ))
        .await
        .unwrap();
        // CONNACK, accepted (with or without a session present).
        let ack = r.next(Duration::from_secs(10)).await;
        assert!(
            matches!(&ack, Some((0x20, b)) if b.len() == 2 && b[1] == 0),
            "CONNACK for {client_id}: {ack:?}"
        );
        r
    }
}
