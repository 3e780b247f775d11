//! The writer task: batches read from the spool as soon as they are
//! durable (or every `flush_interval_ms`), gzip, the HTTP POST to
//! `/api/v2/write`, retry with backoff and jitter, the cursor committed
//! once the TSDB has acknowledged, and the deadline on shutdown.

use crate::config::SinkConfig;
use crate::metrics::Metrics;
use crate::sink::spool::{Batch, Spool};
use crate::tls::HttpClient;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Outcome of one write request.
pub(super) enum WriteResult {
    Written,
    /// The TSDB refused the batch as malformed; retrying cannot help.
    Refused(String),
    /// Unreachable, overloaded or failing: retry later.
    Retry(String),
}

pub use crate::domain::text::percent_encode;

pub(super) fn write_url(c: &SinkConfig) -> String {
    let enc = percent_encode;
    format!(
        "{}/api/v2/write?org={}&bucket={}&precision=ns",
        c.url.trim_end_matches('/'),
        enc(&c.org),
        enc(&c.bucket)
    )
}

pub(super) async fn post(
    client: &HttpClient,
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
        Err(e) => WriteResult::Retry(crate::redact::text(&e.to_string()).into_owned()),
    }
}

/// Backoff for attempt `n` (0-based): 0.5 s doubling up to `max_ms`, with ±25 % jitter.
pub fn backoff(n: u32, max_ms: u64, jitter_seed: u64) -> Duration {
    let base = 500u64.saturating_mul(1 << n.min(16)).min(max_ms.max(1));
    let spread = base / 2;
    let jitter = if spread == 0 { 0 } else { jitter_seed % spread };
    Duration::from_millis(base - spread / 2 + jitter)
}

pub(super) fn jitter_seed() -> u64 {
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
pub(super) async fn blocking<T: Send + 'static>(
    spool: &Spool,
    f: impl FnOnce(&Spool) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || f(&spool)).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

pub(super) async fn writer(
    config: SinkConfig,
    client: HttpClient,
    spool: Spool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
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
pub(super) async fn deliver(
    config: &SinkConfig,
    client: &HttpClient,
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
