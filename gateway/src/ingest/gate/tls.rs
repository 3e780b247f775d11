//! MQTT over TLS on the gate (`[mqtt.tls]`, port 8883): the listener's
//! configuration, how its certificates are turned into a rustls server
//! configuration, and how a failed handshake is counted.
//!
//! The server certificate and key come from PEM files and are reloaded on
//! change or `SIGHUP` ([`crate::tls::server::Reloadable`]); sessions
//! established keep theirs. With `client_ca_file` (the node CA of
//! `gateway ca init`) the gate asks for a client certificate but does not
//! require one: a node with a certificate chaining to that CA logs in
//! without a password, a node without one logs in with its password as on
//! the plain port. A certificate is only as good as the registry says: the
//! gate knows a node's certificate by the SHA-256 of its DER recorded when
//! `gateway node add|rotate --cert` issued it, so a revoked node's
//! certificate, or one superseded by a rotation, is refused at the next
//! handshake, and the live connection it holds is closed ([`super::access`]).
//! No CRL is needed.

use crate::tls::server::{builder, Material};
use crate::tls::{provider, TlsError};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use serde::Deserialize;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// `[mqtt.tls]`: the gate's TLS listener (embedded broker only).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GateTls {
    /// Where the TLS listener listens (default `0.0.0.0:8883`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM: the gateway's server certificate, then its intermediates. Its
    /// name (SAN) is the host name the nodes' modems connect to.
    pub cert_file: PathBuf,
    /// PEM: its private key.
    pub key_file: PathBuf,
    /// PEM: the CA of node certificates (`{storage.data_dir}/ca/ca.pem`
    /// after `gateway ca init`). Unset: no client certificates, every node
    /// logs in with its password.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8883))
}

impl GateTls {
    /// The files, as the reloading server side reads them.
    pub fn files(&self) -> crate::tls::server::ServerFiles {
        crate::tls::server::ServerFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
        }
    }

    /// Problems `check-config` reports: the files must read and build a
    /// configuration (the certificate and key belonging together).
    pub fn issues(&self) -> Vec<String> {
        match self.files().read().and_then(|m| server_config(&m)) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }
}

/// The gate's server configuration from its files: client certificates
/// asked for (not required) when a client CA is given.
pub fn server_config(m: &Material) -> Result<ServerConfig, TlsError> {
    let verifier = match &m.client_cas {
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca.clone())?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    builder(m, verifier)
}

/// The SHA-256 of a certificate's DER, lower-case hex: how the registry
/// knows a node's certificate.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn warned(toml: &str) -> bool {
        Config::from_toml(toml)
            .unwrap()
            .warnings()
            .iter()
            .any(|(path, _)| path == "mqtt.embedded_listen")
    }

    #[test]
    fn plain_mqtt_on_a_non_loopback_address_is_warned_about() {
        assert!(!warned(""), "the default listens on 127.0.0.1");
        assert!(warned("[mqtt]\nembedded_listen = \"0.0.0.0:1883\"\n"));
        assert!(warned("[mqtt]\nembedded_listen = \"192.168.1.10:1883\"\n"));
        assert!(!warned(
            "[mqtt]\nbroker = \"external\"\nembedded_listen = \"0.0.0.0:1883\"\n"
        ));
    }

    #[test]
    fn tls_files_are_checked_and_plain_off_needs_tls() {
        let e = Config::from_toml(
            "[mqtt.tls]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n",
        )
        .unwrap_err();
        assert!(e.0.iter().any(|i| i.path == "mqtt.tls"), "{e:?}");
        let e = Config::from_toml("[mqtt]\nplain = false\n").unwrap_err();
        assert!(e.0.iter().any(|i| i.path == "mqtt.plain"), "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gw.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let c = Config::from_toml(&format!(
            "[mqtt]\nembedded_listen = \"0.0.0.0:1883\"\nplain = false\n\
             [mqtt.tls]\ncert_file = \"{0}/c.pem\"\nkey_file = \"{0}/k.pem\"\n",
            dir.path().display()
        ))
        .unwrap();
        let tls = c.mqtt.tls.as_ref().unwrap();
        assert_eq!(tls.listen, SocketAddr::from(([0, 0, 0, 0], 8883)));
        assert!(tls.client_ca_file.is_none());
        assert!(
            !c.warnings()
                .iter()
                .any(|(p, _)| p == "mqtt.embedded_listen"),
            "plain is off: nothing in the clear"
        );
    }

    #[test]
    fn handshake_failures_are_counted_by_their_reason() {
        use std::io::{Error, ErrorKind};
        let wrap = |e: rustls::Error| Error::new(ErrorKind::InvalidData, e);
        let cert = |c| wrap(rustls::Error::InvalidCertificate(c));
        assert_eq!(
            TlsRefused::of_handshake(&cert(CertificateError::UnknownIssuer)),
            TlsRefused::UnknownCa
        );
        assert_eq!(
            TlsRefused::of_handshake(&cert(CertificateError::Expired)),
            TlsRefused::Expired
        );
        assert_eq!(
            TlsRefused::of_handshake(&cert(CertificateError::BadSignature)),
            TlsRefused::BadCertificate
        );
        assert_eq!(
            TlsRefused::of_handshake(&wrap(rustls::Error::HandshakeNotComplete)),
            TlsRefused::Handshake
        );
        assert_eq!(
            TlsRefused::of_handshake(&Error::from(ErrorKind::UnexpectedEof)),
            TlsRefused::Handshake
        );
        let m = TlsMetrics::default();
        m.refused(TlsRefused::Revoked);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("gateway_mqtt_gate_tls_refused_total{reason=\"revoked\"} 1"));
        assert!(out.contains("gateway_mqtt_gate_tls_reloads_total{result=\"failed\"} 0"));
    }
}
