//! TLS (传输层加密) for the gateway's outgoing connections: the notification
//! channels (企业微信/钉钉/飞书 robots, webhook, SMS), the metrics sink and
//! PostgreSQL.
//!
//! One TLS stack, rustls with the `ring` provider (ARCHITECTURE.md,
//! "Dependencies": measured against aws-lc-rs), and one trust decision:
//! the system's trust store (Debian `ca-certificates`, `/etc/ssl/certs`,
//! read by `rustls-native-certs`) plus an optional extra CA file from
//! `[tls] extra_ca_file`. There is no option that turns verification off:
//! a server whose certificate does not chain to one of those CAs, or does
//! not name the host, is refused, and the error says so.
//!
//! Design: everything that decides what the gateway trusts lives here, so
//! the listeners that come later (MQTT over TLS, HTTPS console) add their
//! server side beside it rather than a second notion of trust.

pub mod server;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `[tls]`: what the gateway trusts when it connects out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// A PEM file of CA certificates trusted beside the system's store: a
    /// private CA of the bureau's TSDB, PostgreSQL or SMS gateway. Every
    /// certificate in it must parse; `check-config` reads it.
    pub extra_ca_file: Option<PathBuf>,
}

/// What went wrong setting up TLS (never at connection time: see [`HttpError`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate file: {reason}")]
    Pem { path: String, reason: String },
    #[error("{path}: no CERTIFICATE block in the file")]
    NoCertificate { path: String },
    #[error("{path}: certificate {index} does not parse as an X.509 CA certificate ({reason})")]
    BadCertificate {
        path: String,
        index: usize,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every TLS connection the gateway makes.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file of certificates: at least one, every block parsed.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certs)
}

/// Reads a PEM file of CA certificates, each checked as a trust anchor.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs = read_certificates(path)?;
    for (i, cert) in certs.iter().enumerate() {
        if let Err(e) = RootCertStore::empty().add(cert.clone()) {
            let reason = match e {
                rustls::Error::InvalidCertificate(c) => format!("{c:?}"),
                other => other.to_string(),
            };
            return Err(TlsError::BadCertificate {
                path: shown,
                index: i + 1,
                reason,
            });
        }
    }
    Ok(certs)
}

/// The CAs the gateway trusts, and where they came from.
pub struct Roots {
    pub store: RootCertStore,
    /// Certificates taken from the system's store.
    pub system: usize,
    /// Certificates taken from `extra_ca_file`.
    pub extra: usize,
    /// What could not be read in the system's store (logged, not fatal).
    pub system_errors: Vec<String>,
}

/// The system's trust store plus the configured extra CA file.
pub fn roots(config: &TlsConfig) -> Result<Roots, TlsError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let mut system_errors: Vec<String> = native.errors.iter().map(|e| e.to_string()).collect();
    let (system, rejected) = store.add_parsable_certificates(native.certs);
    if rejected > 0 {
        system_errors.push(format!(
            "{rejected} certificates of the system store are not usable as CAs"
        ));
    }
    let mut extra = 0;
    if let Some(path) = &config.extra_ca_file {
        for cert in read_ca_file(path)? {
            store.add(cert)?;
            extra += 1;
        }
    }
    Ok(Roots {
        store,
        system,
        extra,
        system_errors,
    })
}

/// The rustls client configuration of every outgoing connection: ring,
/// TLS 1.2 and 1.3, the server verified against [`roots`] (chain and host
/// name, by rustls' WebPKI verifier).
pub fn client_config(config: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let roots = roots(config)?;
    for e in &roots.system_errors {
        tracing::warn!(error = %e, "system trust store");
    }
    if roots.store.is_empty() {
        tracing::warn!(
            "no trusted CA: the system store is empty (apt-get install -y ca-certificates) and \
             tls.extra_ca_file is not set; https connections will fail"
        );
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.store)
        .with_no_client_auth())
}

/// Adds what TLS needs to a PostgreSQL URL, or says why it is refused.
///
/// `sslmode` may be `verify-full` (TLS, the server's certificate and name
/// checked against the system store plus `sslrootcert`, or else
/// `[tls] extra_ca_file`) or `disable` (no TLS: a local socket or
/// loopback). Without `sslmode` the URL gets `sslmode=disable`, the
/// behaviour of earlier builds, rather than libpq's `prefer`, which would
/// use TLS without checking the server. The modes that encrypt without
/// verifying (`allow`, `prefer`, `require`, `verify-ca`) are refused.
pub fn postgres_url(url: &str, extra_ca_file: Option<&Path>) -> Result<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key))
            .map(|(_, v)| v)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    match param("sslmode") {
        None => Ok(format!("{url}{sep}sslmode=disable")),
        Some("disable") => Ok(url.to_string()),
        Some("verify-full") => match (param("sslrootcert"), extra_ca_file) {
            (None, Some(ca)) => Ok(format!(
                "{url}&sslrootcert={}",
                crate::domain::text::percent_encode(&ca.display().to_string())
            )),
            _ => Ok(url.to_string()),
        },
        Some(mode) => Err(format!(
            "sslmode={mode} does not verify the server's certificate and name; \
             use sslmode=verify-full (or sslmode=disable on a local socket or loopback)"
        )),
    }
}

/// The `sslrootcert` of a PostgreSQL URL, percent-decoded.
pub fn postgres_root_cert(url: &str) -> Option<PathBuf> {
    let query = url.split_once('?')?.1;
    let v = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sslrootcert="))?;
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], v.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'%'));
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest answer read from a notification vendor or the TSDB.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The HTTP(S) client of the notifier and the metrics sink: pooled
/// connections, `http://` and `https://` URLs, the TLS of [`client_config`],
/// one timeout for a whole request and its answer. Its shape follows
/// reqwest's (`post(url).header(..).body(..).send()`), which it replaced on
/// these paths (ARCHITECTURE.md says why).
#[derive(Clone)]
pub struct HttpClient {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client trusting the system store plus `[tls] extra_ca_file`.
    pub fn new(config: &TlsConfig, timeout: Duration) -> Result<HttpClient, TlsError> {
        Ok(HttpClient::with_tls(client_config(config)?, timeout))
    }

    /// [`HttpClient::new`]; when the extra CA file cannot be used (it
    /// passed `check-config` but changed since), the error is logged and
    /// the client trusts the system store alone: still verifying, so a
    /// server only that CA vouches for fails visibly, per request.
    pub fn new_or_system(config: &TlsConfig, timeout: Duration, user: &str) -> HttpClient {
        match client_config(config) {
            Ok(tls) => HttpClient::with_tls(tls, timeout),
            Err(e) => {
                tracing::error!(
                    error = %e, user,
                    "tls.extra_ca_file cannot be used; trusting the system store only"
                );
                let tls = client_config(&TlsConfig::default()).unwrap_or_else(|_| {
                    ClientConfig::builder_with_provider(provider())
                        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                });
                HttpClient::with_tls(tls, timeout)
            }
        }
    }

    /// A client on a given rustls configuration.
    pub fn with_tls(tls: ClientConfig, timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(https);
        HttpClient { inner, timeout }
    }

    /// A POST to `url`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(hyper::Method::POST, url)
    }

    /// A request with any method (`rabbitmq-sync`: GET, PUT, DELETE).
    pub fn request(&self, method: hyper::Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

/// A request being put together ([`HttpClient::post`]).
pub struct RequestBuilder {
    client: HttpClient,
    method: hyper::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl RequestBuilder {
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> RequestBuilder {
        self.headers
            .push((name.as_ref().to_string(), value.as_ref().to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> RequestBuilder {
        self.body = body.into();
        self
    }

    /// Sends the request and reads the whole answer (at most 1 MiB),
    /// within the client's timeout.
    pub async fn send(self) -> Result<Response, HttpError> {
        let origin = origin(&self.url);
        let timeout = self.client.timeout;
        let fail = |detail: String, certificate: bool| HttpError {
            origin: origin.clone(),
            detail,
            certificate,
        };
        let uri: hyper::Uri = self
            .url
            .parse()
            .map_err(|e| fail(format!("bad URL: {e}"), false))?;
        let mut req = hyper::Request::builder().method(self.method).uri(uri);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(self.body))
            .map_err(|e| fail(format!("bad request: {e}"), false))?;
        let exchange = async {
            let resp = self.client.inner.request(req).await.map_err(|e| {
                let certificate = certificate_error(&e);
                let detail = match &certificate {
                    Some(c) => format!(
                        "TLS: the server's certificate is not accepted: {c} \
                         (trusted: the system store and tls.extra_ca_file)"
                    ),
                    None => chain(&e),
                };
                fail(detail, certificate.is_some())
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the answer: {e}"), false))?
                .to_bytes();
            Ok(Response { status, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(fail(
                format!("no answer within {} ms", timeout.as_millis()),
                false,
            )),
        }
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Response {
    status: hyper::StatusCode,
    body: Bytes,
}

impl Response {
    pub fn status(&self) -> hyper::StatusCode {
        self.status
    }

    pub async fn bytes(self) -> Result<Bytes, HttpError> {
        Ok(self.body)
    }

    pub async fn text(self) -> Result<String, HttpError> {
        Ok(String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// A request that got no answer. Its text names the server by scheme, host
/// and port only: the path and query of a robot URL carry its key.
#[derive(Debug, Clone)]
pub struct HttpError {
    origin: String,
    detail: String,
    certificate: bool,
}

impl HttpError {
    /// The server's certificate was not accepted (untrusted CA, wrong
    /// name, expired…).
    pub fn is_certificate(&self) -> bool {
        self.certificate
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.detail)
    }
}

impl std::error::Error for HttpError {}

/// `scheme://host:port` of a URL, without user, path or query.
fn origin(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => {
            let scheme = u.scheme_str().unwrap_or("http");
            let host = u.host().unwrap_or("?");
            match u.port_u16() {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            }
        }
        Err(_) => "(bad URL)".to_string(),
    }
}

/// The rustls certificate error inside a connection error, if that is
/// what it was.
pub fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // tokio-rustls wraps the rustls error in an io::Error, which the
        // connector may wrap in another; io::Error::source() skips them.
        let mut inner: &(dyn std::error::Error + 'static) = err;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        let tls = inner.downcast_ref::<rustls::Error>();
        if let Some(
            t
            @ (rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)),
        ) = tls
        {
            return Some(t.to_string());
        }
        cur = err.source();
    }
    None
}

/// An error and its causes, `a: b: c`, without repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_verify_or_stay_plain() {
        let ca = Path::new("/etc/fire gateway/ca.pem");
        assert_eq!(
            postgres_url("postgres://u@db/fire", None).unwrap(),
            "postgres://u@db/fire?sslmode=disable"
        );
        assert_eq!(
            postgres_url("postgres://u@db/fire?application_name=g", Some(ca)).unwrap(),
            "postgres://u@db/fire?application_name=g&sslmode=disable"
        );
        assert_eq!(
            postgres_url("postgres://u@db/fire?sslmode=verify-full", Some(ca)).unwrap(),
            "postgres://u@db/fire?sslmode=verify-full&sslrootcert=%2Fetc%2Ffire%20gateway%2Fca.pem"
        );
        assert_eq!(
            postgres_url(
                "postgres://u@db/fire?sslmode=verify-full&sslrootcert=/a.pem",
                Some(ca)
            )
            .unwrap(),
            "postgres://u@db/fire?sslmode=verify-full&sslrootcert=/a.pem"
        );
        for mode in ["allow", "prefer", "require", "verify-ca"] {
            let e = postgres_url(&format!("postgres://db/f?sslmode={mode}"), None).unwrap_err();
            assert!(
                e.starts_with(&format!("sslmode={mode} does not verify")),
                "{e}"
            );
        }
        assert_eq!(
            postgres_root_cert("postgres://db/f?sslmode=verify-full&sslrootcert=%2Fa%20b.pem"),
            Some(PathBuf::from("/a b.pem"))
        );
    }

    #[test]
    fn errors_name_the_server_not_the_robot_key() {
        assert_eq!(
            origin("https://oapi.dingtalk.com/robot/send?access_token=SECRET"),
            "https://oapi.dingtalk.com"
        );
        assert_eq!(
            origin("http://user:pw@127.0.0.1:8428/api/v2/write"),
            "http://127.0.0.1:8428"
        );
    }

    #[test]
    fn an_extra_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        assert!(matches!(
            read_ca_file(&p),
            Err(TlsError::NoCertificate { .. })
        ));
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file(&p).unwrap_err();
        assert!(
            matches!(e, TlsError::BadCertificate { index: 1, .. }),
            "{e}"
        );
        assert!(matches!(
            read_ca_file(&dir.path().join("missing.pem")),
            Err(TlsError::Read { .. })
        ));
    }
}
