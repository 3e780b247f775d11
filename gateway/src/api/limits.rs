//! Resource limits of the HTTP API (资源限制): how many connections, from
//! whom, how long a request's head may take, and how large a body each
//! route takes. The decisions are pure ([`ConnTable`], [`body_limit`]); the
//! accept loop ([`serve`]) and the body middleware ([`limit_body`]) wrap
//! them.
//!
//! - **Connections**: at most `http.max_connections` at once, and at most
//!   `http.max_connections_per_peer` from one address, so one machine on
//!   the LAN holding idle connections cannot lock the duty desk out. A
//!   connection over either cap is closed at once, before a byte is read,
//!   and counted (`gateway_http_connections_refused_total{reason}`).
//! - **Request heads**: hyper's header-read timeout (`http.header_read_timeout_secs`)
//!   closes a connection whose request head has not arrived in full in
//!   time — a slowloris trickling header bytes, or an idle keep-alive
//!   connection — counted in `gateway_http_header_timeouts_total`. A
//!   streaming answer (the event stream) is not reading a head and is not
//!   cut.
//! - **Bodies**: each route takes at most [`body_limit`] bytes; a declared
//!   `Content-Length` over it is refused with 413 before anything is read,
//!   and a chunked body is cut off at the limit (413 as well), counted in
//!   `gateway_http_bodies_refused_total`.
//! - **TLS** (`[http.tls]`, [`serve_tls`]): the handshake runs inside the
//!   connection's slot and within the header-read timeout; failed and
//!   timed-out handshakes are counted
//!   (`gateway_http_tls_handshakes_failed_total{reason}`).

use crate::metrics::inc;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The body of a login: a login name and a password.
pub const LOGIN_BODY_MAX: usize = 4 * 1024;

/// The body of any other JSON request (a ticket step with its 五落实, a
/// node's registration, setpoints, a shift note).
pub const API_BODY_MAX: usize = 64 * 1024;

/// The most a request on `route` (its path template) may send.
pub fn body_limit(route: &str) -> usize {
    match route {
        "/api/v1/login" => LOGIN_BODY_MAX,
        "/api/v1/tickets/{id}/evidence" => crate::tickets::evidence::MAX_BYTES + 1,
        _ => API_BODY_MAX,
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `http.max_connections` are open.
    Total,
    /// `http.max_connections_per_peer` are open from this address.
    PerPeer,
}

/// The open connections, by peer address (pure bookkeeping).
#[derive(Debug)]
pub struct ConnTable {
    max_total: usize,
    max_per_peer: usize,
    total: usize,
    /// Only addresses with connections open: never more entries than `total`.
    per_peer: HashMap<IpAddr, usize>,
}

impl ConnTable {
    pub fn new(max_total: usize, max_per_peer: usize) -> ConnTable {
        ConnTable {
            max_total,
            max_per_peer,
            total: 0,
            per_peer: HashMap::new(),
        }
    }

    /// Takes a connection from `peer`, or says why not.
    pub fn admit(&mut self, peer: IpAddr) -> Result<(), Refused> {
        if self.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = self.per_peer.entry(peer).or_insert(0);
        if *n >= self.max_per_peer {
            return Err(Refused::PerPeer);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `peer` closed.
    pub fn release(&mut self, peer: IpAddr) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Connections open.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Addresses with connections open.
    pub fn peers(&self) -> usize {
        self.per_peer.len()
    }
}

/// The limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::HttpConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            max_connections_per_peer: c.max_connections_per_peer,
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
        }
    }
}

/// The HTTP limits' counters on `/metrics`.
pub use crate::metrics::http::Counters;

/// Refuses a body over its route's [`body_limit`]: at once when its
/// declared length says so, else by cutting it off at the limit (the
/// extractor then answers 413).
pub async fn limit_body(
    axum::extract::State(counters): axum::extract::State<Arc<crate::metrics::Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let limit = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(API_BODY_MAX, |p| body_limit(p.as_str()));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        inc(&counters.http_limits.bodies_refused);
        return too_large(limit);
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        inc(&counters.http_limits.bodies_refused);
    }
    response
}

fn too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(serde_json::json!({
            "error": "too_large",
            "message": format!("请求体过大（此接口最多 {} 字节）", limit),
        })),
    )
        .into_response()
}

/// A connection's place in the table, given back when it closes.
struct Slot {
    table: Arc<Mutex<ConnTable>>,
    peer: IpAddr,
    open: watch::Sender<usize>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.release(self.peer);
        let n = t.total();
        drop(t);
        self.metrics
            .http_limits
            .connections
            .store(n as i64, Ordering::Relaxed);
        self.open.send_replace(n);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`; then asks
/// every connection to finish (answers in progress complete) and waits up
/// to 5 s for them. Each request carries the peer's address as
/// [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    serve_tls(listener, app, limits, None, metrics, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (HTTPS, `[http.tls]`): each
/// connection takes the configuration in force when it is accepted; its
/// handshake runs inside its slot and must finish within the header-read
/// timeout, else the connection is closed and counted
/// (`gateway_http_tls_handshakes_failed_total{reason="timeout"}`). Answers
/// over TLS get HSTS and `Secure` cookies ([`super::tls::harden`]).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<crate::tls::server::Reloadable>>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Mutex::new(ConnTable::new(
        limits.max_connections,
        limits.max_connections_per_peer,
    )));
    let (open, mut open_rx) = watch::channel(0usize);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (EMFILE) or a connection reset before
                // it was taken: not fatal; give the system a moment.
                tracing::warn!(error = %e, "HTTP: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            t.admit(peer.ip()).map(|()| t.total())
        };
        let n = match admitted {
            Ok(n) => n,
            Err(why) => {
                let c = &metrics.http_limits;
                inc(match why {
                    Refused::Total => &c.refused_total,
                    Refused::PerPeer => &c.refused_per_peer,
                });
                tracing::debug!(%peer, ?why, "HTTP connection refused");
                drop(stream);
                continue;
            }
        };
        metrics
            .http_limits
            .connections
            .store(n as i64, Ordering::Relaxed);
        open.send_replace(n);
        let slot = Slot {
            table: table.clone(),
            peer: peer.ip(),
            open: open.clone(),
            metrics: metrics.clone(),
        };
        let _ = stream.set_nodelay(true);
        let secure = tls.is_some();
        let service = tower::ServiceExt::map_request(app.clone(), move |mut req: Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let service = tower::ServiceExt::map_response(service, move |mut resp: Response| {
            if secure {
                super::tls::harden(resp.headers_mut());
            }
            resp
        });
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                serve_connection(
                    TokioIo::new(stream),
                    service,
                    peer,
                    limits,
                    metrics,
                    shutdown,
                )
                .await;
                return;
            };
            // Design: the handshake is bounded like a request head; a
            // client that opens TCP and stalls holds its slot no longer.
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)) => r,
            };
            let c = &metrics.http_limits;
            match handshake {
                Ok(Ok(stream)) => {
                    serve_connection(
                        TokioIo::new(stream),
                        service,
                        peer,
                        limits,
                        metrics,
                        shutdown,
                    )
                    .await
                }
                Ok(Err(e)) => {
                    inc(&c.tls_handshakes_failed);
                    tracing::debug!(%peer, error = %e, "HTTPS: TLS handshake failed");
                }
                Err(_) => {
                    inc(&c.tls_handshakes_timed_out);
                    tracing::debug!(%peer, "HTTPS: TLS handshake not done in time; connection closed");
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), open_rx.wait_for(|n| *n == 0)).await;
}

/// Serves one connection (plain or TLS) until it ends or `shutdown`.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    peer: SocketAddr,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<
            Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            inc(&metrics.http_limits.header_timeouts);
            tracing::debug!(%peer, "HTTP: request head not in time; connection closed");
        } else {
            tracing::trace!(%peer, error = %e, "HTTP connection ended");
        }
    }
}

/// Where to find a [`SocketAddr`] type for handlers taking the peer's address.
pub type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn body_limits_per_route() {
        assert_eq!(body_limit("/api/v1/login"), LOGIN_BODY_MAX);
        assert_eq!(
            body_limit("/api/v1/tickets/{id}/evidence"),
            crate::tickets::evidence::MAX_BYTES + 1
        );
        assert_eq!(body_limit("/api/v1/tickets/{id}/transitions"), API_BODY_MAX);
        assert_eq!(body_limit("/api/v1/sites/{site}/nodes"), API_BODY_MAX);
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let a: IpAddr = [10, 0, 0, 66].into();
        let b: IpAddr = [10, 0, 0, 7].into();
        let mut t = ConnTable::new(5, 3);
        for _ in 0..3 {
            assert_eq!(t.admit(a), Ok(()));
        }
        assert_eq!(t.admit(a), Err(Refused::PerPeer));
        assert_eq!(t.admit(b), Ok(()));
        assert_eq!(t.admit(b), Ok(()));
        assert_eq!(t.admit(b), Err(Refused::Total));
        t.release(a);
        assert_eq!(t.admit(b), Ok(()));
        // Releasing what was never admitted changes nothing.
        t.release([10, 0, 0, 99].into());
        assert_eq!((t.total(), t.peers()), (5, 2));
    }

    proptest! {
        #[test]
        fn the_table_never_exceeds_its_caps_nor_keeps_closed_peers(
            ops in proptest::collection::vec((any::<bool>(), 0u8..6), 0..300)
        ) {
            let mut t = ConnTable::new(7, 3);
            let mut open: Vec<IpAddr> = Vec::new();
            for (connect, p) in ops {
                let ip: IpAddr = [10, 0, 0, p].into();
                if connect {
                    if t.admit(ip).is_ok() {
                        open.push(ip);
                    }
                } else if let Some(i) = open.iter().position(|o| *o == ip) {
                    open.swap_remove(i);
                    t.release(ip);
                }
                prop_assert!(t.total() <= 7);
                prop_assert_eq!(t.total(), open.len());
                prop_assert!(t.peers() <= t.total());
                for ip in &open {
                    prop_assert!(open.iter().filter(|o| *o == ip).count() <= 3);
                }
            }
        }
    }
}
