//! The MQTT gate's counters and gauges (`ingest::gate` counts into them).

use rustls::CertificateError;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Why a connection was closed. Each is a label value of
/// `gateway_mqtt_gate_closed_total{reason=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The global connection cap was reached.
    Connections,
    /// The peer's address had its share of connections.
    ConnectionsPerAddress,
    /// Too many connections without a CONNECT, over all peers.
    HalfOpen,
    /// …from the peer's address.
    HalfOpenPerAddress,
    /// No CONNECT within the timeout (slowloris before CONNECT).
    ConnectTimeout,
    /// Silent past 1.5 × its keep-alive (slowloris after CONNECT).
    Idle,
    /// Not MQTT 3.1.1: bad framing, a packet over the limit, the first
    /// packet not CONNECT, a second CONNECT, an unparsable packet,
    /// U+0000, a zero-length or wildcard topic.
    Malformed,
    /// CONNACK 1: not MQTT 3.1.1 (an MQTT 5 CONNECT).
    ProtocolVersion,
    /// CONNACK 4 or 5: credentials, client id, Last Will.
    Refused,
    /// Too many refused QoS 2 publishes left without their PUBREL.
    Qos2Unreleased,
    /// The node's credential was revoked or rotated.
    Revoked,
    /// The TLS handshake failed (port 8883; why, in
    /// `gateway_mqtt_gate_tls_refused_total`).
    Tls,
}

impl Closed {
    pub const ALL: [Closed; 12] = [
        Closed::Connections,
        Closed::ConnectionsPerAddress,
        Closed::HalfOpen,
        Closed::HalfOpenPerAddress,
        Closed::ConnectTimeout,
        Closed::Idle,
        Closed::Malformed,
        Closed::ProtocolVersion,
        Closed::Refused,
        Closed::Qos2Unreleased,
        Closed::Revoked,
        Closed::Tls,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::Connections => "max_connections",
            Closed::ConnectionsPerAddress => "max_connections_per_address",
            Closed::HalfOpen => "max_half_open",
            Closed::HalfOpenPerAddress => "max_half_open_per_address",
            Closed::ConnectTimeout => "connect_timeout",
            Closed::Idle => "idle",
            Closed::Malformed => "malformed",
            Closed::ProtocolVersion => "protocol_version",
            Closed::Refused => "refused",
            Closed::Qos2Unreleased => "qos2_unreleased",
            Closed::Revoked => "revoked",
            Closed::Tls => "tls",
        }
    }
}

/// The gate's counters and gauges, rendered into `/metrics`.
#[derive(Debug, Default)]
pub struct GateMetrics {
    closed: [AtomicU64; Closed::ALL.len()],
    /// Connections open now, and of them without CONNECT yet.
    pub open: AtomicU64,
    pub half_open: AtomicU64,
    /// Refusal log lines left out (a flood of refusals).
    pub log_suppressed: AtomicU64,
    /// The TLS listener's (port 8883).
    pub tls: TlsMetrics,
}

impl GateMetrics {
    pub fn closed(&self, why: Closed) {
        if let Some(i) = Closed::ALL.iter().position(|c| *c == why) {
            self.closed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn closed_count(&self, why: Closed) -> u64 {
        Closed::ALL
            .iter()
            .position(|c| *c == why)
            .map_or(0, |i| self.closed[i].load(Ordering::Relaxed))
    }

    /// The Prometheus text of these series.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_gate_closed_total Connections the embedded broker's gate closed or refused, by reason.\n# TYPE gateway_mqtt_gate_closed_total counter"
        );
        for (c, n) in Closed::ALL.iter().zip(&self.closed) {
            let _ = writeln!(
                out,
                "gateway_mqtt_gate_closed_total{{reason=\"{}\"}} {}",
                c.label(),
                n.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "gateway_mqtt_gate_connections",
                "Connections open at the gate.",
                &self.open,
            ),
            (
                "gateway_mqtt_gate_half_open",
                "Connections at the gate that have not sent CONNECT yet.",
                &self.half_open,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_gate_log_suppressed_total Refusals at the gate not logged (once a minute per login, a bounded number of lines a minute).\n# TYPE gateway_mqtt_gate_log_suppressed_total counter\ngateway_mqtt_gate_log_suppressed_total {}",
            self.log_suppressed.load(Ordering::Relaxed)
        );
        self.tls.render(out);
    }
}

/// Why a TLS client was refused. Each is a label value of
/// `gateway_mqtt_gate_tls_refused_total{reason=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRefused {
    /// The handshake failed for another reason (not TLS, no common
    /// version or cipher suite, cut off, too slow).
    Handshake,
    /// The client certificate does not chain to the node CA.
    UnknownCa,
    /// The client certificate has expired (or is not valid yet).
    Expired,
    /// The client certificate is otherwise unusable.
    BadCertificate,
    /// A certificate of a revoked node.
    Revoked,
    /// A certificate of the node CA the registry does not know: superseded
    /// by `node rotate --cert`, or not issued by this gateway.
    UnknownCertificate,
    /// The CONNECT names another node than the certificate (client id or
    /// username).
    Identity,
}

impl TlsRefused {
    pub const ALL: [TlsRefused; 7] = [
        TlsRefused::Handshake,
        TlsRefused::UnknownCa,
        TlsRefused::Expired,
        TlsRefused::BadCertificate,
        TlsRefused::Revoked,
        TlsRefused::UnknownCertificate,
        TlsRefused::Identity,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsRefused::Handshake => "handshake",
            TlsRefused::UnknownCa => "unknown_ca",
            TlsRefused::Expired => "expired",
            TlsRefused::BadCertificate => "bad_certificate",
            TlsRefused::Revoked => "revoked",
            TlsRefused::UnknownCertificate => "unknown_certificate",
            TlsRefused::Identity => "identity",
        }
    }

    /// How a failed server-side handshake is counted.
    pub fn of_handshake(e: &std::io::Error) -> TlsRefused {
        let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return TlsRefused::Handshake;
        };
        match r {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsRefused::Expired,
                CertificateError::UnknownIssuer => TlsRefused::UnknownCa,
                _ => TlsRefused::BadCertificate,
            },
            _ => TlsRefused::Handshake,
        }
    }
}

/// The TLS listener's counters, rendered with the gate's.
#[derive(Default)]
pub struct TlsMetrics {
    refused: [AtomicU64; TlsRefused::ALL.len()],
    /// Handshakes completed, and of them with a client certificate.
    pub handshakes: AtomicU64,
    pub client_certificates: AtomicU64,
    /// The reloading configuration, once the listener is up: its reload
    /// and failure counts are exposed.
    pub config: OnceLock<Arc<crate::tls::server::Reloadable>>,
}

impl std::fmt::Debug for TlsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMetrics")
            .field("refused", &self.refused)
            .field("handshakes", &self.handshakes)
            .finish_non_exhaustive()
    }
}

impl TlsMetrics {
    pub fn refused(&self, why: TlsRefused) {
        if let Some(i) = TlsRefused::ALL.iter().position(|c| *c == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn refused_count(&self, why: TlsRefused) -> u64 {
        TlsRefused::ALL
            .iter()
            .position(|c| *c == why)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// The Prometheus text of these series.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_gate_tls_refused_total TLS clients the gate refused (port 8883), by reason.\n# TYPE gateway_mqtt_gate_tls_refused_total counter"
        );
        for (i, why) in TlsRefused::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "gateway_mqtt_gate_tls_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                self.refused[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_gate_tls_handshakes_total TLS handshakes completed on the gate, and of them with a node certificate.\n# TYPE gateway_mqtt_gate_tls_handshakes_total counter"
        );
        let all = self.handshakes.load(Ordering::Relaxed);
        let certs = self.client_certificates.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "gateway_mqtt_gate_tls_handshakes_total{{client_cert=\"no\"}} {}\ngateway_mqtt_gate_tls_handshakes_total{{client_cert=\"yes\"}} {certs}",
            all.saturating_sub(certs)
        );
        let (reloads, failures) = self
            .config
            .get()
            .map_or((0, 0), |r| (r.reloads(), r.failures()));
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_gate_tls_reloads_total Reloads of the gate's certificate files: done, and failed (the previous files stay in force).\n# TYPE gateway_mqtt_gate_tls_reloads_total counter\ngateway_mqtt_gate_tls_reloads_total{{result=\"ok\"}} {reloads}\ngateway_mqtt_gate_tls_reloads_total{{result=\"failed\"}} {failures}"
        );
    }
}
