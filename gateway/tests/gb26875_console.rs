//! 查岗 from a simulated 消防远程监控中心 answered by the duty officer's
//! click in the console (headless Chromium over WebDriver), and the
//! 链路故障 note on the duty desk while a centre is unreachable.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages); without them
//! the test fails naming the install command — it never skips.

mod common;

use common::browser::{Browser, Driver};
use gateway::config::Config;
use gateway::tickets::Role;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// The centre's side, from the standard (not the gateway's codec).

/// One frame off `buf`: (serial, command, data); `None` for more bytes.
fn take(buf: &mut Vec<u8>) -> Option<(u16, u8, Vec<u8>)> {
    let start = buf.windows(2).position(|w| w == [0x40, 0x40])?;
    buf.drain(..start);
    if buf.len() < 27 {
        return None;
    }
    let len = usize::from(buf[24]) | usize::from(buf[25]) << 8;
    if buf.len() < len + 30 {
        return None;
    }
    let f: Vec<u8> = buf.drain(..len + 30).collect();
    let sum = f[2..27 + len].iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
    assert_eq!(sum, u32::from(f[27 + len]), "checksum");
    assert_eq!(&f[len + 28..], &[0x23, 0x23]);
    Some((
        u16::from(f[2]) | u16::from(f[3]) << 8,
        f[26],
        f[27..27 + len].to_vec(),
    ))
}

fn build(serial: u16, command: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x40, 0x40];
    f.extend_from_slice(&serial.to_le_bytes());
    f.extend_from_slice(&[1, 1, 0, 0, 12, 1, 1, 26]);
    f.extend_from_slice(&[0x79, 0x03, 0, 0, 0, 0, 0x38, 0x5B, 0x01, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u16).to_le_bytes());
    f.push(command);
    f.extend_from_slice(data);
    let sum = f[2..].iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
    f.push(sum as u8);
    f.extend_from_slice(&[0x23, 0x23]);
    f
}

struct Conn {
    s: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// The next frame that is not a heartbeat.
    async fn next(&mut self) -> (u16, u8, Vec<u8>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(f) = take(&mut self.buf) {
                if !(f.1 == 2 && f.2.is_empty()) {
                    return f;
                }
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout_at(deadline, self.s.read(&mut chunk))
                .await
                .expect("the centre heard nothing within 20 s")
                .unwrap();
            assert!(n > 0, "the gateway closed the link");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

const PASSWORD: &str = "gb26875-console-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duty_check_from_the_centre_is_answered_by_the_duty_officers_click() {
    let driver = Driver::start();
    let centre = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A second centre nobody listens for: its link stays down.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&format!(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\n\
         [[northbound.gb26875]]\nname = \"city\"\naddress = \"{}\"\n\
         destination_address = \"790300000000\"\nheartbeat_secs = 0\nreadings_every_secs = 0\n\
         sites = {{ home_a = \"385B01000000\" }}\n\
         [[northbound.gb26875]]\nname = \"district\"\naddress = \"{gone_addr}\"\n\
         heartbeat_secs = 0\nreadings_every_secs = 0\n\
         sites = {{ home_a = \"385B01000000\" }}\n",
        centre.local_addr().unwrap()
    ))
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.embedded_listen =
        std::net::SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.client_id = "gb26875-console".into();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let now = gateway::domain::time::now_ms();
    running
        .store
        .add_user(
            "duty_a",
            "值班员小李",
            Role::Duty,
            Some(&["home_a".to_string()]),
            PASSWORD,
            now,
        )
        .await
        .unwrap();

    let (s, _) = tokio::time::timeout(Duration::from_secs(20), centre.accept())
        .await
        .expect("the gateway did not connect")
        .unwrap();
    let mut conn = Conn { s, buf: Vec::new() };
    let (serial, command, data) = conn.next().await;
    assert_eq!((command, data[0]), (2, 21), "the device state first");
    conn.s.write_all(&build(serial, 3, &[])).await.unwrap();

    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::open(&driver, profile.path(), 1650).await;
    browser
        .goto(&format!("http://{}/", running.http_addr))
        .await;
    browser.log_in("duty_a", PASSWORD).await;
    let long = Duration::from_secs(20);
    // The unreachable centre shows as 链路故障.
    let note = browser.wait(".gb26875-link-down", long).await;
    assert!(browser.text(&note).await.contains("链路故障"));

    // 查岗: answer within 3 minutes.
    conn.s.write_all(&build(900, 2, &[91, 1, 3])).await.unwrap();
    // Other units (the device state) are confirmed as they come.
    loop {
        let (serial, command, _) = conn.next().await;
        if command == 2 {
            conn.s.write_all(&build(serial, 3, &[])).await.unwrap();
            continue;
        }
        assert_eq!((serial, command), (900, 3), "the 查岗 is confirmed");
        break;
    }
    let asked = Instant::now();
    let button = browser.wait("button.gb26875-answer", long).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser.click(&button).await;
    // The centre gets a type-24 record with 查岗应答 (bit 5).
    let data = loop {
        let (serial, command, data) = conn.next().await;
        assert_eq!(command, 2);
        conn.s.write_all(&build(serial, 3, &[])).await.unwrap();
        if data[0] == 24 {
            break data;
        }
    };
    assert_eq!(&data[..4], &[24, 1, 1 << 5, 0], "{data:?}");
    let answered = asked.elapsed();
    browser.wait(".gb26875-check.done", long).await;
    // Who and how fast, in the audit trail.
    // (The audit record is written beside the answer: wait for it.)
    let deadline = Instant::now() + long;
    let a = loop {
        let audit = running.store.audit_records().await.unwrap();
        if let Some(a) = audit
            .into_iter()
            .find(|r| r.action == "gb26875.duty_check_answered")
        {
            break a;
        }
        assert!(Instant::now() < deadline, "the answer is not audited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(a.actor, "值班员小李");
    let secs: f64 = a
        .details
        .split("after_s=")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {}", a.details));
    assert!(
        secs > 0.0 && secs <= answered.as_secs_f64() + 1.0,
        "{secs} vs {answered:?}"
    );
    browser.close().await;
    running.shutdown().await;
}
