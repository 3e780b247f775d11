//! The pipeline with a metrics sink: a message is acknowledged only once
//! its lines are durable in the disk spool, acks keep arrival order (also
//! for messages without lines), and spooled messages found at start-up are
//! recognised when the broker redelivers them.

use gateway::alarms::pipeline::Pipeline;
use gateway::config::{Config, SinkConfig};
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
use gateway::store::Store;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const NOW: u64 = 1_790_000_000_000;

fn config(dir: &std::path::Path) -> (Config, SinkConfig) {
    let mut c =
        Config::from_toml("[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n").unwrap();
    c.storage.data_dir = dir.to_path_buf();
    // Nothing listens there: lines stay in the spool.
    let sink = SinkConfig {
        url: "http://127.0.0.1:9".into(),
        flush_interval_ms: 50,
        timeout_ms: 200,
        retry_max_ms: 500,
        ..Default::default()
    };
    c.sink = Some(sink.clone());
    (c, sink)
}

type Log = Arc<Mutex<Vec<(u32, u64)>>>;

/// A message whose ack records `(seq, durable watermark at ack time)`.
fn msg(topic: &str, payload: String, seq: u32, log: &Log, sink: &gateway::sink::Sink) -> Inbound {
    let log = log.clone();
    let durable = sink.durable();
    Inbound {
        topic: topic.into(),
        payload: payload.into_bytes().into(),
        arrived_ms: NOW,
        ack: Some(Box::new(move || {
            let d = *durable.borrow();
            log.lock().unwrap().push((seq, d));
        })),
    }
}

fn telemetry(seq: u32) -> String {
    format!(
        r#"{{"boot":1,"seq":{seq},"ts":{},"ch":[{{"id":"rc1","q":"residual_current","v":100,"s":"ok"}},{{"id":"t1","q":"temperature","v":250,"s":"ok"}}]}}"#,
        NOW - 60_000 + u64::from(seq)
    )
}

async fn run_pipeline(
    dir: &std::path::Path,
    messages: impl FnOnce(&gateway::sink::Sink) -> Vec<Inbound>,
) -> (Arc<Metrics>, usize) {
    run_pipeline_with(dir, true, messages).await
}

/// [`run_pipeline`]; `spooling` false runs the pipeline without its sink
/// (what a kill between the commit and the spool append leaves: committed
/// messages whose lines the spool never got).
async fn run_pipeline_with(
    dir: &std::path::Path,
    spooling: bool,
    messages: impl FnOnce(&gateway::sink::Sink) -> Vec<Inbound>,
) -> (Arc<Metrics>, usize) {
    let (config, sink_config) = config(dir);
    let store = Store::open(&format!("sqlite://{}", dir.join("g.db").display()))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let (sink, task, spooled) =
        gateway::sink::start(sink_config, dir, metrics.clone(), stop.clone());
    let (events, _) = tokio::sync::broadcast::channel(16);
    let msgs = messages(&sink);
    let n = msgs.len();
    let mut p = Pipeline::new(
        Arc::new(config),
        store,
        spooling.then_some(sink),
        metrics.clone(),
        events,
    );
    if spooling {
        p.mark_spooled(spooled);
    }
    p.start(NOW, "test").await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(100);
    let (_cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(1);
    let pipeline = tokio::spawn(p.run(rx, cmd_rx));
    for m in msgs {
        tx.send(m).await.unwrap();
    }
    let m = metrics.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while m.messages_acked.load(Ordering::Relaxed) < n as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks did not come: {} of {n} acked, {} counted",
            m.messages_acked.load(Ordering::Relaxed),
            m.ack_delay.count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(tx);
    pipeline.await.unwrap();
    // Every line is durable (all acks fired): no need to wait for the
    // writer's shutdown deadline against a TSDB that is not there.
    stop.cancel();
    task.abort();
    (metrics, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_the_spool_and_keep_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Default::default();
    let (metrics, n) = run_pipeline(dir.path(), |sink| {
        let mut v = Vec::new();
        for seq in 0..200u32 {
            v.push(msg(
                "fire/v1/home_a/n01/telemetry",
                telemetry(seq),
                seq,
                &log,
                sink,
            ));
            if seq % 50 == 7 {
                // No lines: a status message rides the same watermark.
                v.push(msg(
                    "fire/v1/home_a/n01/status",
                    r#"{"state":"online","fw":"1.0","boot":1}"#.into(),
                    10_000 + seq,
                    &log,
                    sink,
                ));
            }
        }
        v
    })
    .await;
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), n);
    // Arrival order.
    let order: Vec<u32> = log.iter().map(|(s, _)| *s).collect();
    let mut want = Vec::new();
    for seq in 0..200u32 {
        want.push(seq);
        if seq % 50 == 7 {
            want.push(10_000 + seq);
        }
    }
    assert_eq!(order, want);
    // Telemetry seq k is record k+1: durable before its ack went out.
    for (seq, durable) in &log {
        if *seq < 10_000 {
            assert!(
                *durable > u64::from(*seq),
                "seq {seq} acked at watermark {durable}"
            );
        }
    }
    assert_eq!(metrics.spool_lines_appended.load(Ordering::Relaxed), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_messages_are_duplicates_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Default::default();
    run_pipeline(dir.path(), |sink| {
        (0..20u32)
            .map(|seq| {
                msg(
                    "fire/v1/home_a/n01/telemetry",
                    telemetry(seq),
                    seq,
                    &log,
                    sink,
                )
            })
            .collect()
    })
    .await;
    // A new process: the same 20 messages redelivered, then 5 new ones.
    let log2: Log = Default::default();
    let (metrics, _) = run_pipeline(dir.path(), |sink| {
        (0..25u32)
            .map(|seq| {
                msg(
                    "fire/v1/home_a/n01/telemetry",
                    telemetry(seq),
                    seq,
                    &log2,
                    sink,
                )
            })
            .collect()
    })
    .await;
    assert_eq!(metrics.dropped("duplicate"), 20);
    assert_eq!(metrics.spool_lines_appended.load(Ordering::Relaxed), 10);
    assert_eq!(
        metrics.sink_backlog.load(Ordering::Relaxed),
        50,
        "the first run's 40 lines and the new 10 wait in the spool"
    );
}

/// The window is committed with the batch, the lines reach the spool just
/// after: a `kill -9` between the two must not turn the broker's
/// redelivery into a dropped duplicate whose readings never reach the TSDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_messages_missing_from_the_spool_are_spooled_on_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Default::default();
    let seqs = |range: std::ops::Range<u32>, log: &Log, sink: &gateway::sink::Sink| {
        range
            .map(|seq| {
                msg(
                    "fire/v1/home_a/n01/telemetry",
                    telemetry(seq),
                    seq,
                    log,
                    sink,
                )
            })
            .collect::<Vec<_>>()
    };
    // Committed (window saved), lines never spooled: 0..20.
    run_pipeline_with(dir.path(), false, |sink| seqs(0..20, &log, sink)).await;
    // Restarted: 10..20 redelivered (their acks were cut off), then 20..25.
    let (metrics, _) = run_pipeline(dir.path(), |sink| seqs(10..25, &log, sink)).await;
    assert_eq!(
        metrics.spool_lines_appended.load(Ordering::Relaxed),
        30,
        "the 10 redelivered messages' lines and the 5 new ones"
    );
    assert_eq!(
        metrics.dropped("duplicate"),
        10,
        "judged before: not judged again"
    );
    // Restarted again: everything redelivered once more; now the spool
    // holds them all, so nothing is written twice.
    let (metrics, _) = run_pipeline(dir.path(), |sink| seqs(0..25, &log, sink)).await;
    assert_eq!(
        metrics.spool_lines_appended.load(Ordering::Relaxed),
        20,
        "0..10 were never spooled"
    );
    assert_eq!(metrics.dropped("duplicate"), 25);
    let (metrics, _) = run_pipeline(dir.path(), |sink| seqs(0..25, &log, sink)).await;
    assert_eq!(metrics.spool_lines_appended.load(Ordering::Relaxed), 0);
}
