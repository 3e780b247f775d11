//! Metrics sink benchmark (`cargo bench -p gateway --bench sink`): prints
//! one JSON line.
//!
//! - `encode_lines_per_sec`: the line-protocol encoder on one core, lines of
//!   realistic shape (eight quantities, 100 sites × 20 nodes, two channels)
//!   appended to a reused buffer, best of 5 runs of 2 M lines.
//! - `gzip_mb_per_sec`: gzip (fastest level) of a 5000-line batch, one core.
//! - `spool_lines_per_sec`: lines appended to the disk spool and made
//!   durable (write + fdatasync, group commit) in a temporary directory on
//!   this machine's disk, 10-line records, with the fsync p50/p99.

use gateway::metrics::Metrics;
use gateway::sink::spool::{Record, Spool, SpoolConfig};
use gateway::sink::{encode_line_into, gzip};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const QUANTITIES: [&str; 8] = [
    "residual_current",
    "temperature",
    "arc",
    "current",
    "voltage",
    "water_pressure",
    "water_level",
    "loop_current",
];

fn encode_run(n: u64, out: &mut String) -> f64 {
    let sites: Vec<String> = (0..100).map(|i| format!("home_{i:03}")).collect();
    let nodes: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
    let t0 = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        out.clear();
        let k = i as usize;
        encode_line_into(
            out,
            QUANTITIES[k % 8],
            &sites[(k / 8) % 100],
            &nodes[(k / 800) % 20],
            ["rc1", "t1"][k & 1],
            (i % 1000) as i32 - 20,
            1_764_000_000_000 + i,
        );
        bytes += black_box(out.len());
    }
    black_box(bytes);
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    // Encoding.
    let mut out = String::with_capacity(128);
    let n = 2_000_000;
    let best = (0..5)
        .map(|_| encode_run(n, &mut out))
        .fold(0.0f64, f64::max);
    let mut sample = String::new();
    encode_line_into(
        &mut sample,
        "residual_current",
        "home_001",
        "n07",
        "rc1",
        312,
        1_764_000_000_123,
    );

    // Gzip of one batch.
    let mut batch = String::new();
    for i in 0..5000u64 {
        if i > 0 {
            batch.push('\n');
        }
        encode_line_into(
            &mut batch,
            QUANTITIES[(i % 8) as usize],
            "home_001",
            "n07",
            "rc1",
            (i % 700) as i32,
            1_764_000_000_000 + i * 1000,
        );
    }
    let t0 = Instant::now();
    let mut z = 0;
    let rounds = 50;
    for _ in 0..rounds {
        z = black_box(gzip(batch.as_bytes())).len();
    }
    let gzip_mb_s = (batch.len() * rounds) as f64 / 1e6 / t0.elapsed().as_secs_f64();

    // Spool: durable appends.
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::default());
    let (spool, _) = Spool::open(
        SpoolConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 4 << 30,
            segment_bytes: 64 << 20,
            batch_lines: u64::MAX,
        },
        metrics.clone(),
        |_| {},
    )
    .expect("spool");
    let mut text = String::new();
    for i in 0..10u64 {
        if i > 0 {
            text.push('\n');
        }
        encode_line_into(
            &mut text,
            QUANTITIES[i as usize % 8],
            "home_001",
            "n07",
            "rc1",
            312,
            1_764_000_000_000,
        );
    }
    let records = 200_000u32;
    let durable = spool.durable();
    let t0 = Instant::now();
    let mut ticket = 0;
    for seq in 0..records {
        ticket = spool.append(&Record {
            source: b"home_001/n07",
            boot: 1,
            seq,
            lines: 10,
            text: text.as_bytes(),
        });
    }
    while *durable.borrow() < ticket {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let spool_s = t0.elapsed().as_secs_f64();
    spool.close();

    println!(
        "{{\"bench\":\"sink\",\"encode_lines_per_sec\":{:.0},\"line_bytes\":{},\"gzip_mb_per_sec\":{:.1},\"gzip_ratio\":{:.1},\"spool_lines_per_sec\":{:.0},\"spool_mb_per_sec\":{:.1},\"fsyncs\":{},\"fsync_p50_us\":{},\"fsync_p99_us\":{}}}",
        best,
        sample.len(),
        gzip_mb_s,
        batch.len() as f64 / z as f64,
        f64::from(records) * 10.0 / spool_s,
        metrics.spool_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6 / spool_s,
        metrics.spool_fsync.count(),
        metrics.spool_fsync.quantile_us(0.5),
        metrics.spool_fsync.quantile_us(0.99),
    );
}
