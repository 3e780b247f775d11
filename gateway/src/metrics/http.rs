//! The HTTP listener's limits, counted (`api::limits` enforces them).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// The HTTP limits' counters on `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub connections: AtomicI64,
    pub refused_total: AtomicU64,
    pub refused_per_peer: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub bodies_refused: AtomicU64,
    /// Evidence uploads refused for a quota (per ticket or in all).
    pub evidence_quota_refused: AtomicU64,
    /// HTTPS: handshakes that failed (a client not trusting the
    /// certificate, not speaking TLS).
    pub tls_handshakes_failed: AtomicU64,
    /// HTTPS: handshakes not finished within the header-read timeout.
    pub tls_handshakes_timed_out: AtomicU64,
    /// HTTPS: the listener's reloadable configuration, for its reload
    /// counts on `/metrics` (set once at start when `[http.tls]` is).
    pub https: std::sync::OnceLock<Arc<crate::tls::server::Reloadable>>,
}

impl Counters {
    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP gateway_http_connections HTTP connections open.\n# TYPE gateway_http_connections gauge\ngateway_http_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gateway_http_connections_refused_total HTTP connections closed at once: too many open in all, or from one address.\n# TYPE gateway_http_connections_refused_total counter\ngateway_http_connections_refused_total{{reason=\"total\"}} {}\ngateway_http_connections_refused_total{{reason=\"per_peer\"}} {}",
            get(&self.refused_total),
            get(&self.refused_per_peer)
        );
        let _ = writeln!(
            out,
            "# HELP gateway_http_tls_handshakes_failed_total HTTPS connections closed before a request: the TLS handshake failed or did not finish in time.\n# TYPE gateway_http_tls_handshakes_failed_total counter\ngateway_http_tls_handshakes_failed_total{{reason=\"error\"}} {}\ngateway_http_tls_handshakes_failed_total{{reason=\"timeout\"}} {}",
            get(&self.tls_handshakes_failed),
            get(&self.tls_handshakes_timed_out)
        );
        if let Some(https) = self.https.get() {
            let _ = writeln!(
                out,
                "# HELP gateway_http_tls_reloads_total HTTPS certificate reloads: taken (new connections use it) or failed (the previous one stays in force).\n# TYPE gateway_http_tls_reloads_total counter\ngateway_http_tls_reloads_total{{result=\"ok\"}} {}\ngateway_http_tls_reloads_total{{result=\"failed\"}} {}",
                https.reloads(),
                https.failures()
            );
        }
        for (name, help, v) in [
            (
                "gateway_http_header_timeouts_total",
                "HTTP connections closed because a request head did not arrive in time (slow or idle clients).",
                &self.header_timeouts,
            ),
            (
                "gateway_http_bodies_refused_total",
                "HTTP requests refused with 413: a body over the route's limit.",
                &self.bodies_refused,
            ),
            (
                "gateway_evidence_quota_refused_total",
                "Evidence uploads refused: the ticket's or the gateway's evidence quota is used up.",
                &self.evidence_quota_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(v)
            );
        }
    }
}
