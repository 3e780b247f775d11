//! `[http]`: the API listener, its limits, `/metrics` and `[http.tls]`.

use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address of the HTTP API (and of `/metrics` unless `metrics_listen` is set).
    pub listen: SocketAddr,
    /// HTTP connections open at once; more are closed at once (see
    /// `api::limits`; `deploy/systemd` sizes `LimitNOFILE` with it).
    pub max_connections: usize,
    /// HTTP connections open at once from one address.
    pub max_connections_per_peer: usize,
    /// A request head (or the next one on an idle connection) must arrive
    /// in full within this many seconds.
    pub header_read_timeout_secs: u64,
    /// Evidence files kept in all, MiB (each file counted once).
    pub evidence_quota_mib: u64,
    /// How often an open event stream checks that its session still holds
    /// (not expired, logged out, revoked, or its user disabled), seconds,
    /// 1–60; the stream closes when it does not.
    pub session_recheck_secs: u64,
    /// Where `/metrics` is served instead, e.g. `127.0.0.1:9464` beside an
    /// API listening on `0.0.0.0:8080` (its labels name sites and nodes).
    /// Unset: `/metrics` stays on the API listener and answers only
    /// loopback peers (others get 404).
    pub metrics_listen: Option<SocketAddr>,
    /// `[http.tls]`: serve the console and API over HTTPS with this
    /// certificate and key (PEM files, reloaded when they change or on
    /// `SIGHUP`). Unset: plain http. `metrics_listen` stays plain.
    pub tls: Option<crate::tls::server::ServerFiles>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 512,
            max_connections_per_peer: 64,
            header_read_timeout_secs: 10,
            evidence_quota_mib: 4096,
            session_recheck_secs: 60,
            metrics_listen: None,
            tls: None,
        }
    }
}
