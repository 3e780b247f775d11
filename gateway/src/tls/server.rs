//! The server side of TLS: the listeners the gateway offers over TLS (MQTT
//! on the gate, port 8883; the console and API over HTTPS) take their
//! certificate and key from PEM files, and pick up new files without a
//! restart and without dropping a session.
//!
//! Design: a [`Reloadable`] holds the `rustls::ServerConfig` in force
//! behind a lock; each accepted connection takes the one current at its
//! handshake ([`Reloadable::acceptor`]), so established sessions keep
//! theirs and only new handshakes see a new certificate. [`Reloadable::watch`]
//! rereads the files when their size or modification time changes (checked
//! every [`POLL`]) or when the process gets `SIGHUP`. A file that does not
//! parse (half-written by a deploy tool, a key that does not match) keeps
//! the previous configuration in force, logged and counted, never an
//! outage. Each listener says how a configuration is built from the files
//! ([`Material`] → `ServerConfig`): ALPN for HTTP, optional client
//! certificates for nodes on the gate.

use super::{provider, read_ca_file, read_certificates, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the watcher looks at the files.
pub const POLL: Duration = Duration::from_secs(2);

/// The files of one TLS listener (`[mqtt.tls]`, `[http.tls]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerFiles {
    /// PEM: the server certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: CAs whose client certificates are accepted (the gate: the
    /// node CA of `gateway ca init`). `None`: no client certificates asked.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// What the files held, parsed.
pub struct Material {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The client CAs, when `client_ca_file` is set.
    pub client_cas: Option<Vec<CertificateDer<'static>>>,
}

impl ServerFiles {
    /// Reads and parses the files.
    pub fn read(&self) -> Result<Material, TlsError> {
        let certs = read_certificates(&self.cert_file)?;
        let key_shown = self.key_file.display().to_string();
        let key =
            PrivateKeyDer::from_pem_slice(&read(&self.key_file)?).map_err(|e| TlsError::Pem {
                path: key_shown,
                reason: format!("no usable private key: {e}"),
            })?;
        let client_cas = match &self.client_ca_file {
            Some(p) => Some(read_ca_file(p)?),
            None => None,
        };
        Ok(Material {
            certs,
            key,
            client_cas,
        })
    }

    /// What the watcher compares: each file's length and modification time.
    fn stamp(&self) -> Stamp {
        let mut files = vec![&self.cert_file, &self.key_file];
        files.extend(self.client_ca_file.as_ref());
        files
            .into_iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)))
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The start of every server configuration: ring, TLS 1.2 and 1.3, the
/// certificate chain and key of `m` (checked to belong together). `verifier`
/// decides about client certificates.
pub fn builder(
    m: &Material,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.certs.clone(), m.key.clone_key())?)
}

/// Each file's length and modification time, `None` when unreadable.
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// How a listener turns its files into a configuration.
pub type Make = dyn Fn(&Material) -> Result<ServerConfig, TlsError> + Send + Sync;

/// A listener's TLS configuration, reloaded when its files change.
pub struct Reloadable {
    name: &'static str,
    files: ServerFiles,
    make: Box<Make>,
    current: RwLock<(Arc<ServerConfig>, Stamp)>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl Reloadable {
    /// Reads the files now: a listener does not start on files that do not
    /// work. `name` is the listener's, for logs (`"mqtt"`, `"http"`).
    pub fn load(
        name: &'static str,
        files: ServerFiles,
        make: Box<Make>,
    ) -> Result<Arc<Reloadable>, TlsError> {
        let stamp = files.stamp();
        let config = Arc::new(make(&files.read()?)?);
        Ok(Arc::new(Reloadable {
            name,
            files,
            make,
            current: RwLock::new((config, stamp)),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// An acceptor on the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// The files this listener reads.
    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that failed (the previous configuration stayed in force).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Rereads the files if they changed (`force`: in any case). `Ok(true)`
    /// when a new configuration is in force.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let stamp = self.files.stamp();
        if !force && self.current.read().unwrap_or_else(|e| e.into_inner()).1 == stamp {
            return Ok(false);
        }
        let built = self.files.read().and_then(|m| (self.make)(&m));
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Whatever the outcome, these files have been looked at: a broken
        // file is reported once, not every poll, until it changes again.
        current.1 = stamp;
        match built {
            Ok(config) => {
                current.0 = Arc::new(config);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(listener = self.name, cert = %self.files.cert_file.display(), "tls: certificate reloaded; new handshakes use it, sessions stay up");
                Ok(true)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(listener = self.name, error = %e, "tls: new certificate files do not work; the previous ones stay in force");
                Err(e)
            }
        }
    }

    /// Reloads on file change (polled every [`POLL`]) and on `SIGHUP`,
    /// until `shutdown`.
    pub fn watch(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let force = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => false,
                    _ = hangup => true,
                };
                let _ = self.reload(force);
            }
        })
    }
}

/// The server configuration of the console and API: the certificate and key
/// of `m`, no client certificates, ALPN `http/1.1` (the server speaks
/// HTTP/1.1 only).
pub fn server_config(m: &Material) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = builder(m, rustls::server::WebPkiClientVerifier::no_client_auth())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The gate's server configuration from its files: client certificates
/// asked for (not required) when a client CA is given.
pub fn gate_server_config(m: &Material) -> Result<ServerConfig, TlsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn plain(m: &Material) -> Result<ServerConfig, TlsError> {
        builder(m, rustls::server::WebPkiClientVerifier::no_client_auth())
    }

    fn cert_of(r: &Reloadable) -> Vec<u8> {
        // The certificate the configuration would present.
        let files = r.files().read().unwrap();
        files.certs[0].to_vec()
    }

    #[test]
    fn files_that_change_are_taken_and_broken_ones_keep_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = write_pair(dir.path(), "gw.example");
        let files = ServerFiles {
            cert_file: cert_file.clone(),
            key_file,
            client_ca_file: None,
        };
        let r = Reloadable::load("test", files, Box::new(plain)).unwrap();
        let first = r.config();
        let first_cert = cert_of(&r);
        assert!(!r.reload(false).unwrap(), "nothing changed");
        assert!(Arc::ptr_eq(&first, &r.config()));

        write_pair(dir.path(), "gw2.example");
        assert!(r.reload(false).unwrap());
        assert!(!Arc::ptr_eq(&first, &r.config()));
        assert_ne!(first_cert, cert_of(&r));
        assert_eq!(r.reloads(), 1);

        let before = r.config();
        std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        assert!(r.reload(false).is_err());
        assert!(Arc::ptr_eq(&before, &r.config()), "the old one stays");
        assert_eq!(r.failures(), 1);
        assert!(!r.reload(false).unwrap(), "reported once, not every poll");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, _) = write_pair(dir.path(), "a.example");
        let other = tempfile::tempdir().unwrap();
        let (_, key_file) = write_pair(other.path(), "b.example");
        let files = ServerFiles {
            cert_file,
            key_file,
            client_ca_file: None,
        };
        assert!(Reloadable::load("test", files, Box::new(plain)).is_err());
    }
}
