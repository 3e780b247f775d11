//! The README's first command: `gateway demo` shows an alarm and the hazard
//! ticket it opened within 60 s, on embedded defaults, and stops cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn demo_shows_an_alarm_and_its_ticket_within_60_s() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--duration-secs",
            "90",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut url = None;
    let alarm = loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains("/api/v1/tickets") {
                    url = line
                        .split_whitespace()
                        .find(|w| w.starts_with("http://"))
                        .map(str::to_string);
                }
                if line.contains("【报警】") {
                    break line;
                }
                seen.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no alarm within 60 s ({e}); output so far:\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    assert!(
        alarm.contains("2号楼厨房配电箱") && alarm.contains("剩余电流"),
        "{alarm}"
    );
    assert!(alarm.contains("已自动开具隐患工单 YH"), "{alarm}");
    // The loop hovering at the 300 mA pre-alarm setpoint: one 预警, not a storm.
    let hovering: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("福星敬老院") && l.contains("【预警】"))
        .collect();
    assert_eq!(hovering.len(), 1, "{hovering:#?}");
    let url = url.expect("the demo prints the tickets URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let status = common::sigterm_and_wait(&mut child, Duration::from_secs(15));
    assert!(status.success(), "demo exited with {status}");
}
