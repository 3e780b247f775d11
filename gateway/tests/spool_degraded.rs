//! The metrics sink never holds alarms: a spool on a file system that fills
//! up drops its oldest segments, then new lines (counted by reason), while
//! the durable watermark goes on advancing and the sink is marked degraded
//! until writes succeed again; a spool that cannot be opened at start-up is
//! set aside and a fresh one started, and without any spool the sink runs
//! degraded instead of stopping the gateway.
//!
//! The disk-full test mounts a small tmpfs, so it needs root (CI runs the
//! suite as root). It fails, never skips, when it cannot mount.

use gateway::config::SinkConfig;
use gateway::metrics::Metrics;
use gateway::sink::spool::{Record, Spool, SpoolConfig};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8): {e}; this test needs it (and root)"));
        assert!(
            out.status.success(),
            "`mount -t tmpfs -o size={size} tmpfs {}` failed ({}): {}\n\
             this test needs root to mount a small file system that fills up \
             (CI runs ./scripts/test as root); it is not skipped",
            dir.path().display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a failed assertion may leave the spool's files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Four lines of ~250 bytes: a record of about 1 KiB.
fn text(n: u32) -> String {
    (0..4)
        .map(|ch| {
            format!(
                "residual_current,site=home_a,node=n01,ch=c{ch} value={n}i {n}{:0>220}",
                0
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn push(sp: &Spool, n: u32) -> u64 {
    let text = text(n);
    sp.append(&Record {
        source: b"home_a/n01",
        boot: 1,
        seq: n,
        lines: 4,
        text: text.as_bytes(),
    })
}

/// Waits (on the watch channel, with a timeout) for `ticket` to be durable.
async fn durable(rx: &mut watch::Receiver<u64>, ticket: u64) {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|d| *d >= ticket))
        .await
        .unwrap_or_else(|_| panic!("durable watermark stuck below ticket {ticket}"))
        .expect("spool gone");
}

/// Delivers everything durable; the record numbers read, in order.
fn drain(sp: &Spool) -> Vec<u32> {
    let mut got = Vec::new();
    while let Some(b) = sp.read_batch(100).expect("read_batch") {
        let body = String::from_utf8(b.body.clone()).expect("utf-8");
        for line in body.split('\n').filter(|l| l.contains(",ch=c0 ")) {
            let v = line.split("value=").nth(1).expect("value");
            got.push(v.split('i').next().expect("i").parse().expect("number"));
        }
        // On a full disk the cursor may not be written; the delivered
        // segments are deleted all the same, which makes room.
        if let Err(e) = sp.commit(&b) {
            assert!(gateway::sink::spool::is_disk_full(&e), "commit: {e}");
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_drops_oldest_then_new_lines_never_holds_acks_and_recovers() {
    let fs = Tmpfs::mount("256k");
    let metrics = Arc::new(Metrics::default());
    let (sp, _) = Spool::open(
        SpoolConfig {
            dir: fs.path().join("spool"),
            // The configured bound is far away: the file system is the limit.
            max_bytes: 1 << 30,
            segment_bytes: 16 * 1024,
            batch_lines: 1000,
        },
        metrics.clone(),
        |_| {},
    )
    .expect("open");
    let mut rx = sp.durable();

    // 1. The spool alone fills the disk (~600 KiB into 256 KiB): the oldest
    // segments go, new lines are all kept, every ticket becomes durable.
    let mut n = 0u32;
    for _ in 0..600 {
        let t = push(&sp, n);
        n += 1;
        durable(&mut rx, t).await;
    }
    let evicted = metrics.sink_dropped("disk_full");
    assert!(evicted > 0, "the disk never filled up");
    assert_eq!(evicted % 4, 0, "whole records");
    assert_eq!(metrics.sink_dropped("io_error"), 0);
    assert_eq!(metrics.sink_degraded(), None, "room was made every time");
    let kept = drain(&sp);
    let first = (evicted / 4) as u32;
    assert_eq!(kept, (first..n).collect::<Vec<_>>(), "the newest, in order");

    // 2. Something else fills the disk: nothing of ours is left to drop, so
    // new lines are dropped and counted, and the watermark goes on.
    let mut ballast = std::fs::File::create(fs.path().join("ballast")).expect("ballast");
    let chunk = vec![0xA5u8; 4096];
    let full = loop {
        if let Err(e) = ballast.write_all(&chunk).and_then(|_| ballast.sync_data()) {
            break e;
        }
    };
    assert!(gateway::sink::spool::is_disk_full(&full), "{full}");
    // Each new record either fits (in the last page's slack, or in room
    // made by giving up a segment of records written meanwhile: oldest
    // first, as the spool's bound does) or is dropped; every dropped line
    // is counted, whichever it was. (Exactly which records go depends on
    // how the flusher groups appends, which depends on timing.)
    let dropped_before = metrics.sink_dropped("disk_full");
    let mut pushed_while_full = Vec::new();
    for _ in 0..200 {
        let t = push(&sp, n);
        durable(&mut rx, t).await;
        pushed_while_full.push(n);
        n += 1;
        if metrics.sink_dropped("disk_full") - dropped_before >= 40 {
            break;
        }
    }
    let dropped_full = metrics.sink_dropped("disk_full") - dropped_before;
    assert!(dropped_full >= 40, "new lines were never dropped");
    assert_eq!(dropped_full % 4, 0, "whole records");
    let reason = metrics
        .sink_degraded()
        .expect("degraded while the disk is full");
    assert!(reason.starts_with("disk_full: "), "{reason}");
    assert!(metrics.spool_errors.load(Ordering::Relaxed) >= 1);
    let text = metrics.render();
    assert!(text.contains("\ngateway_sink_degraded 1\n"), "{text}");
    assert!(
        text.contains(&format!(
            "gateway_sink_lines_dropped_total{{reason=\"disk_full\"}} {}\n",
            evicted + dropped_full
        )),
        "{text}"
    );

    // 3. Space is freed: the next appends are written, the sink recovers
    // on its own and what it wrote is delivered.
    drop(ballast);
    std::fs::remove_file(fs.path().join("ballast")).expect("rm ballast");
    let mut after = Vec::new();
    for _ in 0..10 {
        let t = push(&sp, n);
        after.push(n);
        n += 1;
        durable(&mut rx, t).await;
    }
    assert_eq!(metrics.sink_degraded(), None, "recovered");
    assert_eq!(metrics.sink_dropped("disk_full"), evicted + dropped_full);
    assert!(metrics.render().contains("\ngateway_sink_degraded 0\n"));
    // What was kept of the records pushed while full, in order, then the
    // ones after: every record either delivered once or counted dropped.
    let got = drain(&sp);
    let (kept, rest) = got.split_at(got.len() - after.len());
    assert_eq!(
        rest,
        after.as_slice(),
        "the records after recovery, in order"
    );
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "in order, once each: {kept:?}"
    );
    assert!(
        kept.iter().all(|r| pushed_while_full.contains(r)),
        "{kept:?}"
    );
    assert_eq!(
        (kept.len() as u64) * 4 + dropped_full,
        pushed_while_full.len() as u64 * 4,
        "every line pushed while full is delivered or counted dropped"
    );
    assert_eq!(sp.backlog_lines(), 0);
    sp.close();
}

fn sink_config() -> SinkConfig {
    SinkConfig {
        // Nothing listens there: lines stay in the spool.
        url: "http://127.0.0.1:9".into(),
        ..Default::default()
    }
}

fn broken_spools(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("spool.broken-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_that_cannot_be_opened_is_set_aside_and_a_fresh_one_started() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("spool");
    // A previous run left a record, and a "segment" that is a directory:
    // reading it fails (EISDIR), so the spool cannot be opened.
    {
        let metrics = Arc::new(Metrics::default());
        let cfg = SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
            segment_bytes: 1 << 16,
            batch_lines: 10,
        };
        let (sp, _) = Spool::open(cfg, metrics, |_| {}).expect("open");
        let t = push(&sp, 7);
        durable(&mut sp.durable(), t).await;
        sp.close();
    }
    std::fs::create_dir(dir.join(gateway::sink::spool::segment_name(0x99))).expect("mkdir");
    let cfg = SpoolConfig {
        dir: dir.clone(),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        batch_lines: 10,
    };
    assert!(
        Spool::open(cfg, Arc::new(Metrics::default()), |_| {}).is_err(),
        "the broken spool must really fail to open"
    );

    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let (sink, task, spooled) =
        gateway::sink::start(sink_config(), data.path(), metrics.clone(), stop.clone());
    assert!(!sink.is_unavailable());
    assert_eq!(metrics.spool_set_aside.load(Ordering::Relaxed), 1);
    assert!(metrics
        .render()
        .contains("\ngateway_spool_set_aside_total 1\n"));
    assert_eq!(metrics.sink_degraded(), None);
    // The set-aside spool's records are not delivered, so they are not
    // marked as seen either.
    assert!(spooled.is_empty(), "{spooled:?}");
    let aside = broken_spools(data.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0]
        .join(gateway::sink::spool::segment_name(0x99))
        .is_dir());
    assert!(aside[0]
        .join(gateway::sink::spool::segment_name(0))
        .is_file());
    // The fresh spool works.
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("fresh spool")
        .filter_map(|e| {
            gateway::sink::spool::parse_segment_name(&e.ok()?.file_name().to_string_lossy())
        })
        .collect();
    assert_eq!(segments, [0]);
    let t = sink.push(
        "home_a/n01",
        1,
        1,
        1,
        "temperature,site=home_a,node=n01,ch=t1 value=250i 1",
    );
    durable(&mut sink.durable(), t).await;
    assert_eq!(metrics.sink_lines_dropped.load(Ordering::Relaxed), 0);
    stop.cancel();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_spool_the_sink_runs_degraded_and_acks_go_on() {
    let data = tempfile::tempdir().expect("tempdir");
    // The data directory is a file: `{data_dir}/spool` can neither be
    // created nor set aside.
    let not_a_dir = data.path().join("data");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let (sink, task, spooled) =
        gateway::sink::start(sink_config(), &not_a_dir, metrics.clone(), stop.clone());
    assert!(sink.is_unavailable());
    assert!(spooled.is_empty());
    let reason = metrics.sink_degraded().expect("degraded");
    assert!(
        reason.starts_with("io_error: spool unavailable: "),
        "{reason}"
    );
    let mut rx = sink.durable();
    for seq in 1..=5u32 {
        let t = sink.push("home_a/n01", 1, seq, 3, "a 1\nb 2\nc 3");
        assert_eq!(t, u64::from(seq));
        assert_eq!(sink.appended(), t);
        // Durable (given up) at once: the ack is not held.
        assert!(*rx.borrow_and_update() >= t);
    }
    assert_eq!(metrics.sink_dropped("io_error"), 15);
    let text = metrics.render();
    assert!(text.contains("\ngateway_sink_degraded 1\n"), "{text}");
    assert!(text.contains("gateway_sink_lines_dropped_total{reason=\"io_error\"} 15\n"));
    assert_eq!(metrics.spool_set_aside.load(Ordering::Relaxed), 0);
    stop.cancel();
    let _ = task.await;
}
