//! Metrics sink (时序数据库写入): every accepted reading as InfluxDB line
//! protocol, POSTed to an InfluxDB v2 compatible `/api/v2/write`.
//!
//! The encoder is a pure function tested against exact strings. The writer
//! keeps an explicit in-memory backlog: lines wait there until the TSDB has
//! acknowledged them; a failed write is retried with backoff and jitter, so an
//! outage of the TSDB loses nothing while the backlog has room. When it is
//! full the oldest lines are dropped and counted
//! (`gateway_sink_lines_dropped_total`). On shutdown the writer flushes
//! what it holds, within a deadline.

use crate::config::SinkConfig;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Escapes a measurement name: commas and spaces.
fn escape_measurement(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escapes a tag key or value: commas, equals signs and spaces.
fn escape_tag(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
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
    escape_measurement(&mut out, quantity);
    for (k, v) in [("site", site), ("node", node), ("ch", ch)] {
        out.push(',');
        escape_tag(&mut out, k);
        out.push('=');
        escape_tag(&mut out, v);
    }
    let ts_ns = u128::from(ts_ms) * 1_000_000;
    let _ = write!(out, " value={value}i {ts_ns}");
    out
}

#[derive(Default)]
struct Backlog {
    lines: VecDeque<String>,
    /// Position of `lines[0]` in the stream of all lines ever queued, so a
    /// batch in flight is removed exactly even if older lines were dropped
    /// for space meanwhile.
    front: u64,
}

/// The producer side of the sink, cheap to clone.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Shared>,
}

struct Shared {
    backlog: Mutex<Backlog>,
    notify: Notify,
    max_backlog: usize,
    batch_size: usize,
    metrics: Arc<Metrics>,
}

impl Sink {
    /// Queues lines for writing. Never blocks; past `max_backlog` the oldest
    /// lines are dropped and counted.
    pub fn push(&self, lines: impl IntoIterator<Item = String>) {
        let s = &self.inner;
        let (len, dropped) = {
            let Ok(mut b) = s.backlog.lock() else { return };
            b.lines.extend(lines);
            let mut dropped = 0u64;
            while b.lines.len() > s.max_backlog {
                b.lines.pop_front();
                b.front += 1;
                dropped += 1;
            }
            (b.lines.len(), dropped)
        };
        if dropped > 0 {
            s.metrics
                .sink_lines_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(dropped, "sink backlog full: oldest lines dropped");
        }
        s.metrics.sink_backlog.store(len as i64, Ordering::Relaxed);
        if len >= s.batch_size {
            s.notify.notify_one();
        }
    }
}

/// Outcome of one write request.
enum WriteResult {
    Written,
    /// The TSDB refused the batch as malformed; retrying cannot help.
    Refused(String),
    /// Unreachable, overloaded or failing: retry later.
    Retry(String),
}

/// Starts the writer task; returns the producer handle and the task.
pub fn start(
    config: SinkConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (Sink, tokio::task::JoinHandle<()>) {
    let inner = Arc::new(Shared {
        backlog: Mutex::new(Backlog::default()),
        notify: Notify::new(),
        max_backlog: config.max_backlog,
        batch_size: config.batch_size,
        metrics,
    });
    let sink = Sink {
        inner: inner.clone(),
    };
    let task = tokio::spawn(writer(config, inner, shutdown));
    (sink, task)
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
    body: String,
) -> WriteResult {
    let mut req = client
        .post(url)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => WriteResult::Written,
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let msg = format!("{status}: {}", text.chars().take(300).collect::<String>());
            // 400/413/422: this batch will never be accepted. 401/403/404:
            // misconfiguration an operator can fix, so keep the data and retry.
            if matches!(status.as_u16(), 400 | 413 | 422) {
                WriteResult::Refused(msg)
            } else {
                WriteResult::Retry(msg)
            }
        }
        Err(e) => WriteResult::Retry(e.to_string()),
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

async fn writer(config: SinkConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sink: cannot build HTTP client; metrics sink disabled");
            return;
        }
    };
    let url = write_url(&config);
    let interval = Duration::from_millis(config.flush_interval_ms);
    let mut failures = 0u32;
    let mut stopping = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut more = false;
    loop {
        if !stopping && !more {
            let wait = if failures > 0 {
                backoff(failures - 1, config.retry_max_ms, jitter_seed())
            } else {
                interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    stopping = true;
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                }
                _ = shared.notify.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Take a batch from the front without removing it: it leaves the
        // backlog only once the TSDB has acknowledged it.
        let (start, batch): (u64, Vec<String>) = match shared.backlog.lock() {
            Ok(b) => (
                b.front,
                b.lines.iter().take(config.batch_size).cloned().collect(),
            ),
            Err(_) => return,
        };
        more = false;
        if batch.is_empty() {
            if stopping {
                return;
            }
            continue;
        }
        let n = batch.len();
        let body = batch.join("\n");
        let result = match deadline {
            Some(d) => {
                match tokio::time::timeout_at(d, post(&client, &url, config.token.as_deref(), body))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => WriteResult::Retry("shutdown deadline".into()),
                }
            }
            None => post(&client, &url, config.token.as_deref(), body).await,
        };
        let remove = match result {
            WriteResult::Written => {
                failures = 0;
                shared
                    .metrics
                    .sink_lines_written
                    .fetch_add(n as u64, Ordering::Relaxed);
                true
            }
            WriteResult::Refused(msg) => {
                failures = 0;
                shared
                    .metrics
                    .sink_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .metrics
                    .sink_lines_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!(lines = n, error = %msg, "sink: TSDB refused a batch; dropped");
                true
            }
            WriteResult::Retry(msg) => {
                failures = failures.saturating_add(1);
                shared
                    .metrics
                    .sink_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lines = n, attempt = failures, error = %msg, "sink: write failed; will retry");
                false
            }
        };
        if remove {
            if let Ok(mut b) = shared.backlog.lock() {
                let end = start + n as u64;
                let k = (end.saturating_sub(b.front) as usize).min(b.lines.len());
                b.lines.drain(..k);
                b.front += k as u64;
                more = b.lines.len() >= config.batch_size;
                shared
                    .metrics
                    .sink_backlog
                    .store(b.lines.len() as i64, Ordering::Relaxed);
            }
        }
        if stopping && (deadline.is_some_and(|d| tokio::time::Instant::now() >= d) || !remove) {
            let left = shared.backlog.lock().map(|b| b.lines.len()).unwrap_or(0);
            if left > 0 {
                tracing::error!(
                    lines = left,
                    "sink: shutdown with lines not written to the TSDB"
                );
            }
            return;
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
    fn backlog_drops_oldest_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let sink = Sink {
            inner: Arc::new(Shared {
                backlog: Mutex::new(Backlog::default()),
                notify: Notify::new(),
                max_backlog: 3,
                batch_size: 10,
                metrics: metrics.clone(),
            }),
        };
        sink.push((0..5).map(|i| i.to_string()));
        let lines: Vec<_> = sink
            .inner
            .backlog
            .lock()
            .unwrap()
            .lines
            .iter()
            .cloned()
            .collect();
        assert_eq!(lines, ["2", "3", "4"]);
        assert_eq!(metrics.sink_lines_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.sink_backlog.load(Ordering::Relaxed), 3);
    }
}
