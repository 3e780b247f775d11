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

use std::fmt::Write;

pub use crate::config::GateTls;
pub use crate::tls::server::gate_server_config as server_config;

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

pub use crate::metrics::gate::{TlsMetrics, TlsRefused};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rustls::CertificateError;
    use std::net::SocketAddr;

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
