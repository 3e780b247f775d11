//! Mosquitto with the deployment's TLS listeners (`deploy/mosquitto/tls.conf`
//! after `mosquitto.conf`), and MQTT clients over TLS: a node proving itself
//! with a certificate, or a password client trusting the test's CA.

use super::{free_port, is_root, mosquitto_owner, Mosquitto};
use rumqttc::tokio_rustls::rustls;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority made by a test (rcgen, ring).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `sans` with common name `cn`: (chain PEM, key PEM).
    pub fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A node's client certificate: CN `{site}.{node}`.
    pub fn node(&self, cn: &str) -> (String, String) {
        self.issue(cn, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl TestCa {
    /// A server certificate for 127.0.0.1 and localhost: (chain PEM, key PEM).
    pub fn loopback_server(&self) -> (String, String) {
        self.issue(
            "127.0.0.1",
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

/// The broker's TLS files: its certificate and key, and the node CA
/// (the cert listener's `cafile`).
pub struct BrokerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub node_ca_file: PathBuf,
}

/// Where the TLS listeners listen.
#[derive(Debug, Clone, Copy)]
pub struct TlsPorts {
    /// 8883 of the shipped file: nodes with certificates.
    pub cert: u16,
    /// 8884: password logins over TLS.
    pub password: u16,
}

impl Mosquitto {
    /// Starts Mosquitto with `mosquitto.conf` then `tls.conf` of
    /// `deploy/mosquitto/`, users `(name, password)` and the ACL text; the
    /// plain listener on [`Mosquitto::port`], the TLS ones on [`TlsPorts`].
    pub fn start_tls(users: &[(&str, &str)], acl: &str, tls: &BrokerTls) -> (Mosquitto, TlsPorts) {
        let passwd_tool = super::require("mosquitto_passwd", "mosquitto");
        super::require("mosquitto", "mosquitto");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").expect("passwd");
        for (user, pass) in users {
            let st = std::process::Command::new(&passwd_tool)
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(pass)
                .status()
                .expect("mosquitto_passwd");
            assert!(st.success(), "mosquitto_passwd failed for {user}");
        }
        let acl_path = dir.path().join("acl");
        std::fs::write(&acl_path, acl).expect("acl");
        // The broker's files are copied in: Mosquitto, having dropped root,
        // must be able to read them.
        let copy = |from: &Path, name: &str| {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).expect("copy a TLS file");
            to
        };
        let (cert, key, ca) = (
            copy(&tls.cert_file, "broker.pem"),
            copy(&tls.key_file, "broker.key"),
            copy(&tls.node_ca_file, "ca.pem"),
        );
        let ports = TlsPorts {
            cert: free_port(),
            password: free_port(),
        };
        let plain = free_port();
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/mosquitto/");
        let mut conf = String::new();
        for file in ["mosquitto.conf", "tls.conf"] {
            let text = std::fs::read_to_string(format!("{shipped}{file}"))
                .unwrap_or_else(|e| panic!("deploy/mosquitto/{file}: {e}"));
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let replaced = match (words.next(), words.next()) {
                    (Some("persistence_location"), _) => {
                        format!("persistence_location {}/", data.display())
                    }
                    (Some("password_file"), _) => format!("password_file {}", passwd.display()),
                    (Some("acl_file"), _) => format!("acl_file {}", acl_path.display()),
                    (Some("certfile"), _) => format!("certfile {}", cert.display()),
                    (Some("keyfile"), _) => format!("keyfile {}", key.display()),
                    (Some("cafile"), _) => format!("cafile {}", ca.display()),
                    (Some("listener"), Some("1883")) => format!("listener {plain} 127.0.0.1"),
                    (Some("listener"), Some("8883")) => {
                        format!("listener {} 127.0.0.1", ports.cert)
                    }
                    (Some("listener"), Some("8884")) => {
                        format!("listener {} 127.0.0.1", ports.password)
                    }
                    (Some("listener"), other) => panic!("unexpected listener {other:?} in {file}"),
                    _ => line.to_string(),
                };
                conf.push_str(&replaced);
                conf.push('\n');
            }
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        if is_root() {
            if let Some((uid, gid)) = mosquitto_owner() {
                for p in [
                    dir.path(),
                    &data,
                    &passwd,
                    &acl_path,
                    &conf_path,
                    &cert,
                    &key,
                    &ca,
                ] {
                    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
                }
            }
        }
        let mut m = Mosquitto {
            port: plain,
            dir,
            conf: conf_path,
            child: None,
        };
        m.start_again();
        (m, ports)
    }
}

/// A rustls client configuration (ring) trusting `ca_pem`, with a client
/// certificate when `identity` gives one (chain PEM, key PEM).
pub fn client_tls(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate PEM"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key PEM"),
            )
            .expect("client certificate and key"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// An MQTT connection over TLS to `broker` (host name `host`, checked
/// against the broker's certificate), with a password login when `user`
/// gives one. `Ok`: the connected client (its event loop driven in the
/// background); `Err`: why the broker or the handshake refused it.
pub async fn connect_tls(
    broker: SocketAddr,
    host: &str,
    client_id: &str,
    user: Option<(&str, &str)>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<AsyncClient, String> {
    let mut o = MqttOptions::new(client_id, host, broker.port());
    o.set_clean_session(true)
        .set_keep_alive(Duration::from_secs(5))
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return if a.code == rumqttc::ConnectReturnCode::Success {
                        Ok(())
                    } else {
                        Err(format!("CONNACK {:?}", a.code))
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no CONNACK within 10 s".into()));
    first?;
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    Ok(client)
}

/// Publishes with QoS 1.
pub async fn publish(client: &AsyncClient, topic: &str, payload: Vec<u8>) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("publish queued");
}
