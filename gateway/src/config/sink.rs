//! `[sink]`: the metrics sink to a time-series DB and its disk spool.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Base URL of an InfluxDB v2 compatible server (InfluxDB 2, VictoriaMetrics).
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<String>,
    /// Flush when this many lines are waiting…
    pub batch_size: usize,
    /// …or when the oldest has waited this long.
    pub flush_interval_ms: u64,
    /// Bound on the disk spool (`{data_dir}/spool/`) holding lines until the
    /// TSDB has them; when full, the oldest segment is dropped and its lines
    /// counted (`gateway_sink_lines_dropped_total`).
    pub spool_max_bytes: u64,
    /// Size at which a spool segment file is closed and the next begun;
    /// the unit in which a full spool drops its oldest data.
    pub spool_segment_bytes: u64,
    /// Compress write requests with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Longest wait between retries of a failed write (backoff doubles from 500 ms).
    pub retry_max_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: String::new(),
            org: "fire".into(),
            bucket: "fire".into(),
            token: None,
            batch_size: 5000,
            flush_interval_ms: 1000,
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 64 << 20,
            gzip: true,
            timeout_ms: 10_000,
            retry_max_ms: 30_000,
        }
    }
}
