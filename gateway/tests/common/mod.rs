//! Helpers shared by the gateway's integration tests.
#![allow(dead_code)]

pub mod browser;
pub mod db;
pub mod gw;
pub mod node;
pub mod tls;

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Sends SIGTERM and waits for the process to exit; fails after `within`.
pub fn sigterm_and_wait(child: &mut Child, within: Duration) -> ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
