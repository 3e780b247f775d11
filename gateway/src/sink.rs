//! Metrics sink (时序数据库写入): every accepted reading as InfluxDB line
//! protocol, POSTed (gzip) to an InfluxDB v2 compatible `/api/v2/write`.
//!
//! The encoder is a pure function tested against exact strings. Lines go
//! first to the disk spool ([`crate::spool`]): a message's lines are durable
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
//! (see [`crate::spool`]).

use crate::config::SinkConfig;
use crate::metrics::Metrics;
use crate::spool::{Batch, Record, Spool, SpoolConfig};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Whether a measurement name needs escaping: commas, spaces, backslashes.
fn needs_escape_measurement(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b' ' | b'\\'))
}

/// Whether a tag key or value needs escaping: also equals signs.
fn needs_escape_tag(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b'=' | b' ' | b'\\'))
}

/// Escapes a measurement name: commas and spaces.
fn escape_measurement(out: &mut String, s: &str) {
    if !needs_escape_measurement(s) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escapes a tag key or value: commas, equals signs and spaces.
fn escape_tag(out: &mut String, s: &str) {
    if !needs_escape_tag(s) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends the decimal digits of `v`.
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends one reading as a line of InfluxDB line protocol (no newline):
/// `{quantity},site={site},node={node},ch={ch} value={v}i {ts_ns}`.
pub fn encode_line_into(
    out: &mut String,
    quantity: &str,
    site: &str,
    node: &str,
    ch: &str,
    value: i32,
    ts_ms: u64,
) {
    escape_measurement(out, quantity);
    out.push_str(",site=");
    escape_tag(out, site);
    out.push_str(",node=");
    escape_tag(out, node);
    out.push_str(",ch=");
    escape_tag(out, ch);
    out.push_str(" value=");
    if value < 0 {
        out.push('-');
    }
    push_u64(out, u64::from(value.unsigned_abs()));
    out.push_str("i ");
    // Nanoseconds = the milliseconds followed by six zeros (exact, and no
    // u128 arithmetic on the hot path).
    push_u64(out, ts_ms);
    if ts_ms != 0 {
        out.push_str("000000");
    }
}

/// One reading as a line of InfluxDB line protocol:
/// `{quantity},site={site},node={node},ch={ch} value={v}i {ts_ns}`.
pub fn encode_line(
    quantity: &str,
    site: &str,
    node: &str,
    ch: &str,
    value: i32,
    ts_ms: u64,
) -> String {
    let mut out = String::with_capacity(80);
    encode_line_into(&mut out, quantity, site, node, ch, value, ts_ms);
    out
}

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
/// last [`crate::dedup::WINDOW`] `(boot, seq)` of each, oldest first. The
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

/// The last [`crate::dedup::WINDOW`] `(boot, seq)` of every source found in
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
        if q.len() == crate::dedup::WINDOW as usize {
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
) -> std::io::Result<(Spool, crate::spool::Recovery)> {
    let e = match Spool::open(cfg.clone(), metrics.clone(), |r| seen.add(r)) {
        Ok(opened) => return Ok(opened),
        Err(e) => e,
    };
    // Its records will not be delivered: redeliveries of them are new.
    *seen = SeenInSpool::default();
    let aside = crate::spool::set_aside(&cfg.dir, crate::time::now_ms()).map_err(|e2| {
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

/// Outcome of one write request.
enum WriteResult {
    Written,
    /// The TSDB refused the batch as malformed; retrying cannot help.
    Refused(String),
    /// Unreachable, overloaded or failing: retry later.
    Retry(String),
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
            let reason = crate::spool::drop_reason(&e);
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
    let task = tokio::spawn(writer(config, spool, metrics, shutdown));
    (sink, task, seen.into_spooled())
}

/// Percent-encodes a URL query value (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn write_url(c: &SinkConfig) -> String {
    let enc = percent_encode;
    format!(
        "{}/api/v2/write?org={}&bucket={}&precision=ns",
        c.url.trim_end_matches('/'),
        enc(&c.org),
        enc(&c.bucket)
    )
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    gzip: bool,
    body: Vec<u8>,
) -> WriteResult {
    let mut req = client
        .post(url)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body);
    if gzip {
        req = req.header("Content-Encoding", "gzip");
    }
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => WriteResult::Written,
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            let msg = format!("{status}: {}", crate::redact::text(&text));
            // 400/413/422: this batch will never be accepted. 401/403/404:
            // misconfiguration an operator can fix, so keep the data and retry.
            if matches!(status.as_u16(), 400 | 413 | 422) {
                WriteResult::Refused(msg)
            } else {
                WriteResult::Retry(msg)
            }
        }
        Err(e) => {
            WriteResult::Retry(crate::redact::text(&e.without_url().to_string()).into_owned())
        }
    }
}

/// Backoff for attempt `n` (0-based): 0.5 s doubling up to `max_ms`, with ±25 % jitter.
pub fn backoff(n: u32, max_ms: u64, jitter_seed: u64) -> Duration {
    let base = 500u64.saturating_mul(1 << n.min(16)).min(max_ms.max(1));
    let spread = base / 2;
    let jitter = if spread == 0 { 0 } else { jitter_seed % spread };
    Duration::from_millis(base - spread / 2 + jitter)
}

fn jitter_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // SplitMix64 of the clock's nanoseconds.
    let mut z = t.as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Gzip at the fastest level: line protocol compresses ~10× even so, and
/// the CPU goes to ingest.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 6 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Runs blocking spool I/O off the async threads.
async fn blocking<T: Send + 'static>(
    spool: &Spool,
    f: impl FnOnce(&Spool) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || f(&spool)).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

async fn writer(
    config: SinkConfig,
    spool: Spool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sink: cannot build HTTP client; lines stay in the spool");
            return;
        }
    };
    let url = write_url(&config);
    let batch_lines = config.batch_size as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(config.flush_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Batching by count (a batch's worth durable) and by age (the tick).
        let mut drain_all = deadline.is_some();
        if deadline.is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = spool.readable() => {}
                _ = tick.tick() => drain_all = true,
            }
        }
        if deadline.is_none() && shutdown.is_cancelled() {
            deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
            drain_all = true;
            // Everything the pipeline appended goes to disk first.
            let _ = blocking(&spool, |s| {
                s.close();
                Ok(())
            })
            .await;
        }
        loop {
            if !drain_all && spool.unread_lines() < batch_lines {
                break;
            }
            let batch = match blocking(&spool, move |s| s.read_batch(batch_lines)).await {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "sink: cannot read the spool");
                    break;
                }
            };
            if !deliver(
                &config,
                &client,
                &url,
                &batch,
                &metrics,
                &shutdown,
                &mut deadline,
            )
            .await
            {
                let left = spool.backlog_lines();
                tracing::warn!(
                    lines = left,
                    "sink: stopped with lines not yet written; they stay in the spool for the next start"
                );
                return;
            }
            if let Err(e) = blocking(&spool, move |s| s.commit(&batch)).await {
                tracing::error!(error = %e, "sink: cannot record delivery in the spool; the batch may be written again after a restart");
            }
        }
        if deadline.is_some() {
            return;
        }
    }
}

/// Writes one batch, retrying with backoff until the TSDB takes or refuses
/// it. `false` if the shutdown deadline passed first.
async fn deliver(
    config: &SinkConfig,
    client: &reqwest::Client,
    url: &str,
    batch: &Batch,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    deadline: &mut Option<tokio::time::Instant>,
) -> bool {
    if batch.lines == 0 {
        return true;
    }
    let body = if config.gzip {
        gzip(&batch.body)
    } else {
        batch.body.clone()
    };
    let mut failures = 0u32;
    loop {
        let attempt = post(
            client,
            url,
            config.token.as_deref(),
            config.gzip,
            body.clone(),
        );
        let result = match *deadline {
            Some(d) => match tokio::time::timeout_at(d, attempt).await {
                Ok(r) => r,
                Err(_) => return false,
            },
            None => attempt.await,
        };
        match result {
            WriteResult::Written => {
                metrics
                    .sink_lines_written
                    .fetch_add(batch.lines, Ordering::Relaxed);
                return true;
            }
            WriteResult::Refused(msg) => {
                metrics.sink_write_errors.fetch_add(1, Ordering::Relaxed);
                metrics.drop_sink_lines("refused", batch.lines);
                tracing::error!(lines = batch.lines, error = %msg, "sink: TSDB refused a batch; dropped");
                return true;
            }
            WriteResult::Retry(msg) => {
                failures = failures.saturating_add(1);
                metrics.sink_write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lines = batch.lines, attempt = failures, error = %msg, "sink: write failed; will retry");
                let wait = backoff(failures - 1, config.retry_max_ms, jitter_seed());
                match *deadline {
                    Some(d) => {
                        if tokio::time::Instant::now() + wait >= d {
                            return false;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                // Keep trying until the shutdown deadline.
                                *deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_matches_design_md_exactly() {
        assert_eq!(
            encode_line(
                "residual_current",
                "home_a",
                "n01",
                "rc1",
                312,
                1_764_000_000_123
            ),
            "residual_current,site=home_a,node=n01,ch=rc1 value=312i 1764000000123000000"
        );
        assert_eq!(
            encode_line("temperature", "s", "n", "t1", -45, 0),
            "temperature,site=s,node=n,ch=t1 value=-45i 0"
        );
        assert_eq!(
            encode_line("current", "s", "n", "c", i32::MIN, u64::MAX),
            format!(
                "current,site=s,node=n,ch=c value=-2147483648i {}",
                u128::from(u64::MAX) * 1_000_000
            )
        );
    }

    #[test]
    fn escapes_spaces_commas_and_equals() {
        assert_eq!(
            encode_line("my meas,x", "a b", "c,d", "e=f", 1, 1),
            r"my\ meas\,x,site=a\ b,node=c\,d,ch=e\=f value=1i 1000000"
        );
        assert_eq!(
            encode_line("m", r"back\slash", "n", "c", 1, 1),
            r"m,site=back\\slash,node=n,ch=c value=1i 1000000"
        );
    }

    #[test]
    fn url_encodes_org_and_bucket() {
        let c = SinkConfig {
            url: "http://h:8086/".into(),
            org: "民政 局".into(),
            bucket: "a&b".into(),
            ..Default::default()
        };
        assert_eq!(
            write_url(&c),
            "http://h:8086/api/v2/write?org=%E6%B0%91%E6%94%BF%20%E5%B1%80&bucket=a%26b&precision=ns"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert!((375..625).contains(&(backoff(0, 30_000, 0).as_millis() as u64)));
        assert!((375..625).contains(&(backoff(0, 30_000, u64::MAX).as_millis() as u64)));
        assert!(backoff(3, 30_000, 7) > backoff(1, 30_000, 7));
        for seed in [0, 1, 12345, u64::MAX] {
            let b = backoff(40, 30_000, seed).as_millis() as u64;
            assert!((22_500..=37_500).contains(&b), "{b}");
            let b = backoff(40, 1000, seed).as_millis() as u64;
            assert!((750..=1250).contains(&b), "{b}");
        }
    }

    #[test]
    fn fast_path_matches_the_general_formatting() {
        let mut seed = 7u64;
        for _ in 0..10_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (seed >> 17) as i32;
            let ts = seed >> (seed % 64);
            assert_eq!(
                encode_line("q", "s", "n", "c", v, ts),
                format!(
                    "q,site=s,node=n,ch=c value={v}i {}",
                    u128::from(ts) * 1_000_000
                )
            );
        }
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let body = b"residual_current,site=home_a,node=n01,ch=rc1 value=312i 1764000000123000000";
        let z = gzip(body);
        assert_eq!(&z[..2], &[0x1f, 0x8b], "gzip magic");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
