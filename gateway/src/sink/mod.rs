//! Metrics sink (时序数据库写入): every accepted reading as InfluxDB line
//! protocol, POSTed (gzip) to an InfluxDB v2 compatible `/api/v2/write`.
//!
//! The encoder is a pure function tested against exact strings. Lines go
//! first to the disk spool ([`crate::sink::spool`]): a message's lines are durable
//! there before the message is acknowledged to the broker, and leave the
//! spool only once the TSDB has acknowledged them. The writer task sends
//! batches of `batch_size` lines as soon as they are durable, and whatever
//! is waiting every `flush_interval_ms`; a failed write is retried with
//! backoff and jitter, the batch staying in the spool, so a TSDB outage of
//! hours loses nothing while the spool has room. When the spool is full its
//! oldest segment is dropped and counted (`gateway_sink_lines_dropped_total`).
//! On shutdown the writer delivers what it can within a deadline; the rest
//! stays in the spool for the next start.
//!
//! The sink never stops alarms: a spool that cannot be opened at start-up
//! is set aside and a fresh one started, and if even that fails the sink
//! runs degraded, without a spool (its lines counted as dropped, its
//! messages acknowledged at once); a spool that cannot write at run time
//! drops the lines it could not write and recovers on its own
//! (see [`crate::sink::spool`]).

use crate::config::SinkConfig;
use crate::metrics::Metrics;
use crate::sink::spool::{Record, Spool, SpoolConfig};
use crate::tls::{HttpClient, TlsConfig};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use writer::writer;

mod line;
pub mod spool;
mod writer;

pub use line::{encode_line, encode_line_into};
pub use writer::{backoff, gzip, percent_encode};

/// The producer side of the sink, cheap to clone.
#[derive(Clone)]
pub struct Sink {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Spool(Spool),
    /// No spool could be opened: lines are dropped and counted, tickets
    /// durable at once.
    Unavailable(Arc<Unavailable>),
}

struct Unavailable {
    /// Tickets handed out; sent on `durable` as soon as handed out.
    appended: std::sync::Mutex<u64>,
    durable: watch::Sender<u64>,
    /// The `reason` label of the dropped lines.
    reason: &'static str,
    metrics: Arc<Metrics>,
}

/// Messages found in the spool at start-up, per source (`site/node`): the
/// last [`crate::domain::sequence::WINDOW`] `(boot, seq)` of each, oldest first. The
/// pipeline marks them seen, so the broker's redelivery of a message whose
/// acknowledgement a crash cut off is recognised as a duplicate.
pub type Spooled = Vec<(String, VecDeque<(u32, u32)>)>;

impl Sink {
    /// Appends one message's lines (`lines` of them, joined by `\n` in
    /// `text`) to the spool; returns its ticket (see [`Sink::durable`]).
    pub fn push(&self, source: &str, boot: u32, seq: u32, lines: u32, text: &str) -> u64 {
        match &self.inner {
            Inner::Spool(spool) => spool.append(&Record {
                source: source.as_bytes(),
                boot,
                seq,
                lines,
                text: text.as_bytes(),
            }),
            Inner::Unavailable(u) => {
                let mut appended = u.appended.lock().unwrap_or_else(|e| e.into_inner());
                *appended += 1;
                u.metrics.drop_sink_lines(u.reason, u64::from(lines));
                u.durable.send_replace(*appended);
                *appended
            }
        }
    }

    /// Tickets handed out so far: a message handled now is durable once
    /// [`Sink::durable`] reaches this.
    pub fn appended(&self) -> u64 {
        match &self.inner {
            Inner::Spool(spool) => spool.appended(),
            Inner::Unavailable(u) => *u.appended.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The highest ticket made durable on disk (or given up: lines the
    /// spool could not write are dropped and counted, and the watermark
    /// goes on past them, so acknowledgements never wait on the sink).
    pub fn durable(&self) -> watch::Receiver<u64> {
        match &self.inner {
            Inner::Spool(spool) => spool.durable(),
            Inner::Unavailable(u) => u.durable.subscribe(),
        }
    }

    /// Whether the sink runs without a spool (none could be opened).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.inner, Inner::Unavailable(_))
    }
}

/// The last [`crate::domain::sequence::WINDOW`] `(boot, seq)` of every source found in
/// the spool, while it is scanned.
#[derive(Default)]
struct SeenInSpool {
    seen: HashMap<Vec<u8>, VecDeque<(u32, u32)>>,
    order: Vec<Vec<u8>>,
}

impl SeenInSpool {
    fn add(&mut self, r: &Record<'_>) {
        let q = self.seen.entry(r.source.to_vec()).or_insert_with(|| {
            self.order.push(r.source.to_vec());
            VecDeque::new()
        });
        if q.len() == crate::domain::sequence::WINDOW as usize {
            q.pop_front();
        }
        q.push_back((r.boot, r.seq));
    }

    fn into_spooled(mut self) -> Spooled {
        self.order
            .into_iter()
            .filter_map(|k| {
                let q = self.seen.remove(&k)?;
                Some((String::from_utf8_lossy(&k).into_owned(), q))
            })
            .collect()
    }
}

/// Opens the spool; one that cannot be opened is set aside
/// (`{dir}.broken-{unix_ms}`) and a fresh one opened in its place.
fn open_spool(
    cfg: SpoolConfig,
    metrics: &Arc<Metrics>,
    seen: &mut SeenInSpool,
) -> std::io::Result<(Spool, crate::sink::spool::Recovery)> {
    let e = match Spool::open(cfg.clone(), metrics.clone(), |r| seen.add(r)) {
        Ok(opened) => return Ok(opened),
        Err(e) => e,
    };
    // Its records will not be delivered: redeliveries of them are new.
    *seen = SeenInSpool::default();
    let aside =
        crate::sink::spool::set_aside(&cfg.dir, crate::domain::time::now_ms()).map_err(|e2| {
            std::io::Error::new(e2.kind(), format!("{e}; and it cannot be set aside: {e2}"))
        })?;
    metrics.spool_set_aside.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        dir = %cfg.dir.display(),
        aside = %aside.display(),
        error = %e,
        "spool: cannot be opened; set aside (its undelivered lines stay there, not sent), starting a fresh one"
    );
    Spool::open(cfg, metrics.clone(), |r| seen.add(r))
}

/// Opens the spool under `{data_dir}/spool` (recovering what a previous run
/// left) and starts the writer task; returns the producer handle, the task,
/// and the messages found in the spool.
///
/// Never fails: a spool that cannot be opened is set aside and a fresh one
/// started; without any spool the sink runs degraded
/// (`gateway_sink_degraded`), dropping and counting its lines, so the
/// gateway and its alarms still run.
pub fn start(
    config: SinkConfig,
    data_dir: &Path,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (Sink, tokio::task::JoinHandle<()>, Spooled) {
    start_with_tls(config, &TlsConfig::default(), data_dir, metrics, shutdown)
}

/// [`start`], an `https://` TSDB verified against the system store plus
/// `[tls] extra_ca_file`.
pub fn start_with_tls(
    config: SinkConfig,
    tls: &TlsConfig,
    data_dir: &Path,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (Sink, tokio::task::JoinHandle<()>, Spooled) {
    let client = HttpClient::new_or_system(tls, Duration::from_millis(config.timeout_ms), "sink");
    let cfg = SpoolConfig {
        dir: data_dir.join("spool"),
        max_bytes: config.spool_max_bytes,
        segment_bytes: config.spool_segment_bytes,
        batch_lines: config.batch_size as u64,
    };
    let dir = cfg.dir.clone();
    let mut seen = SeenInSpool::default();
    let (spool, recovery) = match open_spool(cfg, &metrics, &mut seen) {
        Ok(opened) => opened,
        Err(e) => {
            let reason = crate::sink::spool::drop_reason(&e);
            tracing::error!(
                dir = %dir.display(),
                error = %e,
                "spool: no spool can be opened; metrics sink degraded: its lines are dropped (counted) until a restart, alarms go on"
            );
            metrics.set_sink_degraded(Some(format!("{reason}: spool unavailable: {e}")));
            let (durable, _) = watch::channel(0u64);
            let sink = Sink {
                inner: Inner::Unavailable(Arc::new(Unavailable {
                    appended: std::sync::Mutex::new(0),
                    durable,
                    reason,
                    metrics,
                })),
            };
            return (sink, tokio::spawn(async {}), Vec::new());
        }
    };
    if recovery.segments > 0 {
        tracing::info!(
            segments = recovery.segments,
            bytes = recovery.bytes,
            lines = recovery.lines,
            torn = recovery.torn,
            "spool recovered: undelivered lines will be written first"
        );
    }
    let sink = Sink {
        inner: Inner::Spool(spool.clone()),
    };
    let task = tokio::spawn(writer(config, client, spool, metrics, shutdown));
    (sink, task, seen.into_spooled())
}
