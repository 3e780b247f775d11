//! A three-node RabbitMQ cluster on one machine, and haproxy in front of it,
//! for the high-availability tests (issue 16).
//!
//! Each cluster has its own temporary directory, its own Erlang port mapper
//! (`epmd` on a free port, so neither the system's epmd nor another test's
//! cluster is touched), its own Erlang cookie, node names and free loopback
//! ports (AMQP, MQTT, management, Erlang distribution). The nodes read
//! `deploy/cluster/rabbitmq/rabbitmq.conf` and `enabled_plugins` with only
//! the listener and node-name lines replaced, so the tests check the shipped
//! configuration. Nothing here depends on the `rabbitmq-server` system
//! service that the Debian package installs.
//!
//! The harness's administrator is RabbitMQ's default `guest`, which the
//! shipped configuration allows from loopback only.

use crate::{free_port, require};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Where Debian's package puts the scripts that run a node as the caller
/// (`/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user).
const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// How long a node (or the whole cluster) may take to start: the suite runs
/// on 2 cores and three Erlang VMs start side by side.
const START_WITHIN: Duration = Duration::from_secs(180);

/// The management API's administrator (RabbitMQ's default, loopback only).
pub const ADMIN: (&str, &str) = ("guest", "guest");

fn shipped(file: &str) -> String {
    let path = format!(
        "{}/../deploy/cluster/rabbitmq/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One RabbitMQ node of a [`RabbitCluster`].
pub struct RabbitNode {
    /// Erlang node name, e.g. `fire40123n1@localhost`.
    pub name: String,
    pub amqp_port: u16,
    pub mqtt_port: u16,
    pub mgmt_port: u16,
    pub dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RabbitNode {
    pub fn mqtt_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.mqtt_port))
    }

    /// An MQTT 3.1.1 CONNECT as the administrator (clean session), answered
    /// with CONNACK 0 within 5 s: the node serves MQTT logins.
    fn mqtt_login(port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let field = |v: &str| {
            let mut out = (v.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(v.as_bytes());
            out
        };
        let mut body = field("MQTT");
        body.extend([4u8, 0xC2, 0, 30]);
        body.extend(field("harness-ready"));
        body.extend(field(ADMIN.0));
        body.extend(field(ADMIN.1));
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        let mut ack = [0u8; 4];
        let ok = s.write_all(&packet).is_ok()
            && s.read_exact(&mut ack).is_ok()
            && ack == [0x20, 0x02, 0x00, 0x00];
        let _ = s.write_all(&[0xE0, 0x00]);
        ok
    }

    /// The management API's base address, `http://127.0.0.1:{port}`.
    pub fn mgmt_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.mgmt_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The id of the process the node was started as (its Erlang VM runs
    /// in a descendant).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The node's console log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }
}

/// Three RabbitMQ nodes clustered by the shipped configuration.
pub struct RabbitCluster {
    dir: TempDir,
    epmd: Option<Child>,
    epmd_port: u16,
    pub nodes: Vec<RabbitNode>,
}

impl RabbitCluster {
    /// Starts three nodes and waits until each runs and sees the other two.
    pub fn start() -> RabbitCluster {
        let server = Path::new(RABBIT_BIN).join("rabbitmq-server");
        if !server.is_file() {
            panic!(
                "RabbitMQ is not installed ({} missing): run `apt-get install -y rabbitmq-server` (./scripts/test installs it)",
                server.display()
            );
        }
        let epmd_bin = require("epmd", "erlang-base");
        let dir = tempfile::tempdir().expect("temp dir");
        // One cookie for the three nodes (and the CLI tools): Erlang reads it
        // from $HOME/.erlang.cookie and refuses it unless only its owner can
        // read it.
        let cookie = dir.path().join(".erlang.cookie");
        let cookie_text: String = format!(
            "FIRE{}{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        std::fs::write(&cookie, cookie_text).expect("cookie");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        std::fs::write(
            dir.path().join("enabled_plugins"),
            shipped("enabled_plugins"),
        )
        .expect("enabled_plugins");

        let epmd_port = free_port();
        let mut epmd = Command::new(epmd_bin)
            .arg("-port")
            .arg(epmd_port.to_string())
            .arg("-address")
            .arg("127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn epmd");
        let log = dir.path().join("epmd.log");
        crate::wait_listening_pub(epmd_port, &mut epmd, "epmd", &log);

        let names: Vec<String> = (1..=3)
            .map(|i| format!("fire{epmd_port}n{i}@localhost"))
            .collect();
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let node_dir = dir.path().join(format!("n{}", i + 1));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.push(RabbitNode {
                name: name.clone(),
                amqp_port: free_port(),
                mqtt_port: free_port(),
                mgmt_port: free_port(),
                dist_port: free_port(),
                dir: node_dir,
                child: None,
            });
        }
        let template = shipped("rabbitmq.conf");
        for n in &nodes {
            std::fs::write(n.dir.join("rabbitmq.conf"), node_conf(&template, n, &names))
                .expect("rabbitmq.conf");
        }
        let mut cluster = RabbitCluster {
            dir,
            epmd: Some(epmd),
            epmd_port,
            nodes,
        };
        // One node at a time, as the deploy README says: the MQTT plugin's
        // client-id tracking forms its Raft group when a node boots, and
        // nodes booting together may each form their own or leave one whose
        // CONNECTs hang for good (rabbitmq_mqtt's `mqtt_node:start` calls
        // its parallel-boot handling "best effort"; a clean-clone CI run
        // met it). A node that boots into a running cluster joins the group.
        let deadline = Instant::now() + START_WITHIN;
        for i in 0..3 {
            let mut tries = 0;
            loop {
                cluster.spawn(i);
                match cluster.wait_ready(i, deadline) {
                    Ok(()) => break,
                    // A first boot that ends by itself (once in a CI run,
                    // exit status 0, cause not kept): said, then once more
                    // on fresh ports and an empty data directory.
                    Err(why) if tries < 1 => {
                        tries += 1;
                        eprintln!("{why}\n-- starting it again on fresh ports and data");
                        cluster.fresh(i);
                    }
                    Err(why) => panic!("{why}"),
                }
            }
        }
        cluster
    }

    /// Node `i`, stopped, on new ports with an empty data directory.
    fn fresh(&mut self, i: usize) {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let n = &mut self.nodes[i];
        n.child = None;
        n.amqp_port = free_port();
        n.mqtt_port = free_port();
        n.mgmt_port = free_port();
        n.dist_port = free_port();
        let _ = std::fs::remove_dir_all(n.dir.join("mnesia"));
        std::fs::write(
            n.dir.join("rabbitmq.conf"),
            node_conf(&shipped("rabbitmq.conf"), n, &names),
        )
        .expect("rabbitmq.conf");
    }

    fn spawn(&mut self, i: usize) {
        let home = self.dir.path().to_path_buf();
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "{} already running", n.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("console.log"))
            .expect("log");
        let child = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_NODENAME", &n.name)
            .env("RABBITMQ_DIST_PORT", n.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", n.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", n.dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", n.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", home.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", n.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", n.dir.join("log"))
            .env("RABBITMQ_PID_FILE", n.dir.join("pid"))
            // Two schedulers without busy-waiting: three nodes share a
            // 2-core machine with the gateway under test. Erlang
            // distribution on loopback only.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group: the wrapper script, the Erlang VM and
            // its helpers are stopped together.
            .process_group(0)
            .spawn()
            .expect("spawn rabbitmq-server");
        n.child = Some(child);
    }

    /// Waits until node `i` listens for MQTT and its management API lists
    /// all three nodes running (only those that are started, when some
    /// were stopped on purpose).
    /// `Err` with the node's log if it exited meanwhile.
    fn wait_ready(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        let expected: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.name.clone())
            .collect();
        loop {
            let n = &mut self.nodes[i];
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    n.child = None;
                    return Err(format!("{} exited with {status}:\n{}", n.name, n.log()));
                }
            }
            let mqtt_up = TcpStream::connect(("127.0.0.1", n.mqtt_port)).is_ok();
            if mqtt_up {
                if let Ok((200, body)) = http(n.mgmt_port, "GET", "/api/nodes", None) {
                    if let Ok(serde_json::Value::Array(list)) =
                        serde_json::from_str::<serde_json::Value>(&body)
                    {
                        let running = |name: &str| {
                            list.iter().any(|v| {
                                v["name"].as_str() == Some(name)
                                    && v["running"].as_bool() == Some(true)
                            })
                        };
                        // Running and clustered is not yet serving MQTT:
                        // its client-id tracking (a Raft group over the
                        // nodes) may still be forming, and a CONNECT then
                        // hangs. Ready once a login is answered.
                        if expected.iter().all(|e| running(e))
                            && RabbitNode::mqtt_login(n.mqtt_port)
                        {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready (MQTT up: {mqtt_up}, cluster of {expected:?}) within {START_WITHIN:?}:\n{}",
                    n.name,
                    n.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops node `i` the way an operator would (SIGTERM: the node leaves
    /// cleanly; its quorum-queue replicas elect new leaders elsewhere).
    pub fn stop_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    kill_group(&mut c);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The wrapper's helpers (erl_child_setup, inet_gethost) go too.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", c.id()))
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Starts node `i` again on its own data and waits until it has rejoined.
    pub fn start_node(&mut self, i: usize) {
        self.spawn(i);
        if let Err(why) = self.wait_ready(i, Instant::now() + START_WITHIN) {
            panic!("{why}");
        }
    }

    /// Waits until the queue at management path `queue`
    /// (`/api/queues/%2F/{name}`) has `n` consumers; panics saying `what`
    /// did not happen, with the queue, after `within`.
    pub async fn wait_consumers(&self, queue: &str, n: u64, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        loop {
            let (_, q) = self.mgmt(0, "GET", queue, None);
            let q: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
            if q["consumers"].as_u64() == Some(n) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {q}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request to node `i`'s management API as the administrator; the
    /// status code and body.
    pub fn mgmt(&self, i: usize, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.nodes[i].mgmt_port, method, path, body)
            .unwrap_or_else(|e| panic!("management API of {}: {e}", self.nodes[i].name))
    }

    /// The first running node's index.
    pub fn running(&self) -> usize {
        self.nodes
            .iter()
            .position(|n| n.child.is_some())
            .expect("a running node")
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // The data goes with the temporary directory: no need for a clean
        // shutdown, and SIGKILL keeps a failed test's teardown short.
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                kill_group(&mut c);
            }
        }
        if let Some(mut e) = self.epmd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }
}

fn kill_group(c: &mut Child) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{}", c.id()))
        .stderr(Stdio::null())
        .status();
    let _ = c.kill();
    let _ = c.wait();
}

/// The shipped configuration with loopback listeners and this cluster's
/// node names.
fn node_conf(template: &str, n: &RabbitNode, names: &[String]) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match key {
            "listeners.tcp.1" => format!("{key} = 127.0.0.1:{}", n.amqp_port),
            "mqtt.listeners.tcp.1" => format!("{key} = 127.0.0.1:{}", n.mqtt_port),
            "management.tcp.port" => {
                format!("{key} = {}\nmanagement.tcp.ip = 127.0.0.1", n.mgmt_port)
            }
            k if k.starts_with("cluster_formation.classic_config.nodes.") => {
                let idx: usize = k
                    .rsplit('.')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("node index");
                format!("{key} = {}", names[idx - 1])
            }
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// A minimal blocking HTTP/1.1 request to the management API on loopback,
/// authenticated as [`ADMIN`]; the status code and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    // "guest:guest" in base64.
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:.200}"))?;
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// haproxy with `deploy/cluster/haproxy/haproxy.cfg`, its listeners and
/// back-end servers moved to loopback ports.
pub struct Haproxy {
    pub fronts: Fronts,
    /// The CA that issued the TLS frontend's certificate (PEM).
    pub ca_pem: String,
    dir: TempDir,
    child: Option<Child>,
}

/// The shipped haproxy configuration.
pub fn shipped_haproxy_cfg() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cluster/haproxy/haproxy.cfg"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The loopback ports haproxy's frontends listen on in a test.
#[derive(Debug, Clone, Copy)]
pub struct Fronts {
    pub mqtt: u16,
    /// MQTT over TLS (haproxy's certificate: [`HAPROXY_CERT`]).
    pub mqtts: u16,
    pub amqp: u16,
    pub http: u16,
}

impl Fronts {
    pub fn free() -> Fronts {
        Fronts {
            mqtt: free_port(),
            mqtts: free_port(),
            amqp: free_port(),
            http: free_port(),
        }
    }
}

/// Where the shipped haproxy.cfg keeps the MQTT-over-TLS certificate.
pub const HAPROXY_CERT: &str = "/etc/haproxy/certs/fire-mqtt.pem";

/// A certificate for haproxy's TLS frontend, for 127.0.0.1 and localhost,
/// from a CA made here: the PEM file haproxy reads (chain and key) written
/// in `dir`, and the CA's PEM for clients to trust.
pub fn haproxy_tls(dir: &Path) -> (std::path::PathBuf, String) {
    let ca = crate::mosquitto_tls::TestCa::new("haproxy test CA");
    let (chain, key) = ca.loopback_server();
    let path = dir.join("fire-mqtt.pem");
    std::fs::write(&path, format!("{chain}{key}")).expect("haproxy certificate");
    (path, ca.pem())
}

/// The shipped haproxy configuration with its `bind` lines on `fronts`'
/// loopback ports (the TLS one with `cert`) and each `server NAME ADDR` line pointing at `servers`'
/// address for NAME; the rest as shipped.
pub fn haproxy_cfg(fronts: &Fronts, cert: &Path, servers: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in shipped_haproxy_cfg().lines() {
        let t = line.trim_start();
        if !line.starts_with(' ') && !line.starts_with('\t') && !t.is_empty() {
            section = t.to_string();
        }
        let mut words = t.split_whitespace();
        let first = words.next().unwrap_or("");
        let replaced = match first {
            "bind" if section == "frontend mqtt" => format!("    bind 127.0.0.1:{}", fronts.mqtt),
            "bind" if section == "frontend amqp" => format!("    bind 127.0.0.1:{}", fronts.amqp),
            // The shipped options (`ssl crt …`), the test's certificate.
            "bind" if section == "frontend mqtts" => {
                let _addr = words.next();
                let options: Vec<String> = words
                    .map(|w| match w {
                        HAPROXY_CERT => cert.display().to_string(),
                        w => w.to_string(),
                    })
                    .collect();
                format!("    bind 127.0.0.1:{} {}", fronts.mqtts, options.join(" "))
            }
            "bind" if section == "frontend http" => format!("    bind 127.0.0.1:{}", fronts.http),
            // Any other listener (PostgreSQL's): a free loopback port.
            "bind" => format!("    bind 127.0.0.1:{}", free_port()),
            // Sized for production; a test's file-descriptor limit may be
            // lower than twice that.
            "maxconn" if section == "global" => "    maxconn 1000".to_string(),
            "server" => {
                let name = words.next().unwrap_or("");
                let _addr = words.next();
                let rest: Vec<&str> = words.collect();
                match servers.iter().find(|(n, _)| n == name) {
                    Some((_, addr)) => format!("    server {name} {addr} {}", rest.join(" ")),
                    None => line.to_string(),
                }
            }
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

impl RabbitCluster {
    /// haproxy's `server` lines for the three brokers: `mqN` at their MQTT
    /// listeners, `mqN-amqp` at their AMQP listeners.
    pub fn haproxy_servers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out.push((format!("mq{}", i + 1), n.mqtt_addr().to_string()));
            out.push((
                format!("mq{}-amqp", i + 1),
                format!("127.0.0.1:{}", n.amqp_port),
            ));
        }
        out
    }
}

/// `haproxy -c -f FILE`: whether the configuration is valid, and what haproxy said.
pub fn haproxy_check(cfg: &str) -> (bool, String) {
    let bin = require("haproxy", "haproxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let out = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy -c");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

impl Haproxy {
    /// Starts haproxy in the foreground with the shipped configuration in
    /// front of `cluster`'s brokers, on free loopback ports, its TLS
    /// frontend with a certificate from a CA made here.
    pub fn in_front_of(cluster: &RabbitCluster) -> Haproxy {
        let bin = require("haproxy", "haproxy");
        let dir = tempfile::tempdir().expect("temp dir");
        let fronts = Fronts::free();
        let (cert, ca_pem) = haproxy_tls(dir.path());
        let cfg = haproxy_cfg(&fronts, &cert, &cluster.haproxy_servers());
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("cfg");
        let log_path = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        crate::wait_listening_pub(fronts.mqtt, &mut child, "haproxy", &log_path);
        Haproxy {
            fronts,
            ca_pem,
            dir,
            child: Some(child),
        }
    }

    pub fn mqtt_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.fronts.mqtt))
    }

    /// The MQTT-over-TLS frontend.
    pub fn mqtts_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.fronts.mqtts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
