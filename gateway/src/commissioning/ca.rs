//! The gateway as a small CA for its nodes (节点证书): `gateway ca init`
//! makes a CA certificate and key under the data directory; `gateway node
//! add|rotate --cert DIR` issues a node a client certificate whose CN is
//! `{site}.{node}`, for the node's cellular module to present on the
//! gate's TLS port (8883) instead of a password.
//!
//! Files: `{storage.data_dir}/ca/ca.pem` (the CA certificate: what nodes'
//! modems and `[mqtt.tls] client_ca_file` trust) and
//! `{storage.data_dir}/ca/ca.key` (its private key, 0600, never leaves the
//! machine). The CA is ECDSA P-256 (rcgen on ring, the only stack here);
//! so are node keys — every cellular module with TLS 1.2 offers
//! ECDHE-ECDSA suites.
//!
//! Design: the CA's subject is fixed ([`CA_NAME`]), so the issuer a node
//! certificate names is rebuilt from the key alone (rcgen without an X.509
//! parser); `ca.pem` is checked to carry that key. Each issued certificate
//! is recorded in the registry by its SHA-256 (table `node_certificates`),
//! which is what the gate checks at every handshake: revoking the node, or
//! issuing it a new certificate, ends the old one without a CRL.

use crate::commissioning::registry::{Actor, RegError};
use crate::store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::{Path, PathBuf};

/// The CA certificate's common name (and organisation).
pub const CA_NAME: &str = "fire-gateway node CA";
/// The CA's validity, in days.
pub const CA_DAYS: u64 = 20 * 365;
/// A node certificate's validity by default, in days.
pub const NODE_DAYS: u32 = 3 * 365;
/// The longest node certificate validity accepted, in days.
pub const MAX_NODE_DAYS: u32 = 20 * 365;

/// `{data_dir}/ca/ca.pem`: the node CA's certificate.
pub fn ca_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ca").join("ca.pem")
}

/// `{data_dir}/ca/ca.key`: the node CA's private key (0600).
pub fn ca_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ca").join("ca.key")
}

/// `storage.data_dir` of a configuration file, parsed but not validated:
/// `[mqtt.tls] client_ca_file` may already name the CA `init` makes.
pub fn data_dir_of(config: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let c: crate::config::Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    Ok(c.storage.data_dir)
}

/// What went wrong (for the operator, 简体中文).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "节点 CA 已存在（{0}），不会覆盖；如确需重建，请先移走该目录（已签发的节点证书将全部失效）"
    )]
    Exists(String),
    #[error("节点 CA 不存在（{0}）：请先运行 gateway ca init")]
    Missing(String),
    #[error("无法读写 {path}：{source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("节点 CA 文件无效：{0}")]
    Invalid(String),
    #[error("证书有效期 {0} 天无效（1–{MAX_NODE_DAYS}）")]
    Days(u32),
    #[error("生成证书失败：{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("无法生成随机数：{0}")]
    Random(String),
    #[error(transparent)]
    Registry(#[from] RegError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Seconds since the epoch as a certificate time.
fn at(secs: u64) -> Result<time::OffsetDateTime, CaError> {
    let secs = i64::try_from(secs).map_err(|_| CaError::Invalid("time out of range".into()))?;
    ::time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| CaError::Invalid(format!("time out of range: {e}")))
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CaError::Random(e.to_string()))?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and of full length
    Ok(SerialNumber::from_slice(&b))
}

/// The CA's parameters: the subject is fixed, so that the issuer of node
/// certificates can be rebuilt from the key.
fn ca_params(not_before: u64, not_after: u64) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "fire-gateway");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(not_before)?;
    p.not_after = at(not_after)?;
    Ok(p)
}

/// A CA made by [`init`].
#[derive(Debug)]
pub struct CaInfo {
    pub cert_path: PathBuf,
    /// SHA-256 of the CA certificate's DER, hex.
    pub fingerprint: String,
}

/// Makes the node CA under `data_dir` (refused if one exists). `now`:
/// seconds since the epoch.
pub fn init(data_dir: &Path, now: u64) -> Result<CaInfo, CaError> {
    let cert_path = ca_cert_path(data_dir);
    let key_path = ca_key_path(data_dir);
    if cert_path.exists() || key_path.exists() {
        return Err(CaError::Exists(cert_path.display().to_string()));
    }
    let dir = cert_path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = KeyPair::generate()?;
    let mut params = ca_params(now.saturating_sub(3600), now + CA_DAYS * 86_400)?;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key)?;
    // The key first, created new and owner-only: a second `init` racing
    // this one fails here rather than overwriting.
    write_new(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_new(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(CaInfo {
        cert_path,
        fingerprint: crate::ingest::gate::tls::fingerprint(cert.der()),
    })
}

/// Creates `path` (never over an existing file); `private`: mode 0600.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CaError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(io(path))
}

/// The node CA, loaded to issue certificates.
pub struct Ca {
    key: KeyPair,
    issuer: rcgen::Certificate,
    /// `ca.pem`'s text, for the node's files.
    pub cert_pem: String,
}

/// Loads the CA of `data_dir`: its key, and its certificate checked to
/// carry that key.
pub fn load(data_dir: &Path) -> Result<Ca, CaError> {
    let cert_path = ca_cert_path(data_dir);
    let key_path = ca_key_path(data_dir);
    if !cert_path.exists() || !key_path.exists() {
        return Err(CaError::Missing(cert_path.display().to_string()));
    }
    let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| CaError::Invalid(format!("{}: {e}", key_path.display())))?;
    let der = crate::tls::read_ca_file(&cert_path)
        .map_err(|e| CaError::Invalid(e.to_string()))?
        .remove(0);
    let spki = key.public_key_der();
    if !der.windows(spki.len()).any(|w| w == spki.as_slice()) {
        return Err(CaError::Invalid(format!(
            "{} 与 {} 不是一对",
            cert_path.display(),
            key_path.display()
        )));
    }
    // Only its subject and key matter to the certificates it signs.
    let issuer = ca_params(0, 1)?.self_signed(&key)?;
    Ok(Ca {
        key,
        issuer,
        cert_pem,
    })
}

/// A node certificate as issued: shown (and written) once, its key never stored.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// `{site}.{node}`: the certificate's CN and the node's MQTT client id.
    pub username: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the certificate's DER, hex: how the registry knows it.
    pub sha256: String,
    /// Serial, hex.
    pub serial: String,
    /// Valid until, seconds since the epoch.
    pub not_after: u64,
}

impl NodeCert {
    /// What the store records of it.
    pub fn issued(&self) -> crate::store::registry::CertIssued<'_> {
        crate::store::registry::CertIssued {
            sha256: &self.sha256,
            serial: &self.serial,
            not_after_secs: self.not_after,
        }
    }
}

impl Ca {
    /// Issues `{site}.{node}` a client certificate valid `days` from `now`
    /// (seconds since the epoch), on a new key.
    pub fn issue(&self, site: &str, node: &str, days: u32, now: u64) -> Result<NodeCert, CaError> {
        if days == 0 || days > MAX_NODE_DAYS {
            return Err(CaError::Days(days));
        }
        let username = crate::domain::ids::node_username(site, node);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, username.as_str());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        let serial_hex = serial
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        p.serial_number = Some(serial);
        let not_after = now + u64::from(days) * 86_400;
        // An hour's slack for a module whose clock is a little behind.
        p.not_before = at(now.saturating_sub(3600))?;
        p.not_after = at(not_after)?;
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        Ok(NodeCert {
            username,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            sha256: crate::ingest::gate::tls::fingerprint(cert.der()),
            serial: serial_hex,
            not_after,
        })
    }
}

/// Issues a node (registered, or of the file; not revoked) a certificate
/// and records it, so the gate accepts it and no longer the node's
/// previous one. `now`: ms since the epoch.
#[allow(clippy::too_many_arguments)]
pub async fn issue_for_node(
    store: &Store,
    base: &crate::config::Config,
    data_dir: &Path,
    site: &str,
    node: &str,
    days: u32,
    actor: Actor<'_>,
    now: u64,
) -> Result<NodeCert, CaError> {
    let reg = store.registry().await.map_err(RegError::from)?;
    match reg.nodes.iter().find(|n| n.site == site && n.id == node) {
        Some(n) if n.revoked_at.is_some() => {
            return Err(RegError::Revoked(site.into(), node.into()).into())
        }
        Some(_) => {}
        None if base.node(site, node).is_some() => {}
        None => return Err(RegError::UnknownNode(site.into(), node.into()).into()),
    }
    let username = crate::domain::ids::node_username(site, node);
    if reg
        .credentials
        .iter()
        .any(|c| c.username == username && c.revoked_at.is_some())
    {
        return Err(RegError::Revoked(site.into(), node.into()).into());
    }
    let ca = load(data_dir)?;
    let cert = ca.issue(site, node, days, now / 1000)?;
    store
        .set_node_certificate(site, node, cert.issued(), actor, now)
        .await
        .map_err(RegError::from)?;
    Ok(cert)
}

/// Writes a node's certificate files into `dir`: `{site}.{node}.crt`,
/// `{site}.{node}.key` (0600) and `ca.pem` — what the node's cellular
/// module is loaded with. Returns the paths written.
pub fn write_node_files(
    dir: &Path,
    ca_pem: &str,
    cert: &NodeCert,
) -> Result<Vec<PathBuf>, CaError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let crt = dir.join(format!("{}.crt", cert.username));
    let key = dir.join(format!("{}.key", cert.username));
    let ca = dir.join("ca.pem");
    crate::commissioning::artefact::write_private(&key, cert.key_pem.as_bytes())
        .map_err(io(&key))?;
    std::fs::write(&crt, &cert.cert_pem).map_err(io(&crt))?;
    std::fs::write(&ca, ca_pem).map_err(io(&ca))?;
    Ok(vec![crt, key, ca])
}

/// What `--cert` needs, checked before a node's credentials change: the
/// CA, and a validity within bounds.
pub fn precheck(data_dir: &Path, days: u32) -> Result<(), CaError> {
    if days == 0 || days > MAX_NODE_DAYS {
        return Err(CaError::Days(days));
    }
    load(data_dir).map(|_| ())
}

/// `gateway ca init -c FILE`: what to print, or the message (简体中文).
pub fn cli_init(config: &Path, now: u64) -> Result<String, String> {
    let data_dir = data_dir_of(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let info = init(&data_dir, now).map_err(|e| format!("失败：{e}"))?;
    Ok(format!(
        "节点 CA 已建立：{}\nCA 证书指纹 SHA-256：{}\n\
         在 [mqtt.tls] 中设置 client_ca_file = \"{}\" 以接受节点证书；私钥 {} 仅本机保存（0600）\n",
        info.cert_path.display(),
        info.fingerprint,
        info.cert_path.display(),
        ca_key_path(&data_dir).display()
    ))
}

/// `node add|rotate --cert DIR`: issues the certificate, writes the
/// module's files; what to print, or the message (简体中文).
#[allow(clippy::too_many_arguments)]
pub async fn cli_issue(
    store: &Store,
    config: &crate::config::Config,
    site: &str,
    node: &str,
    days: u32,
    dir: &Path,
    actor: Actor<'_>,
    now: u64,
) -> Result<String, String> {
    let data_dir = &config.storage.data_dir;
    let failed = |e: CaError| format!("节点证书未签发：{e}");
    let cert = issue_for_node(store, config, data_dir, site, node, days, actor, now)
        .await
        .map_err(failed)?;
    let ca_path = ca_cert_path(data_dir);
    let ca = std::fs::read_to_string(&ca_path)
        .map_err(io(&ca_path))
        .map_err(failed)?;
    let paths = write_node_files(dir, &ca, &cert).map_err(failed)?;
    let mut out = format!(
        "节点证书已签发（CN {}，有效 {days} 天，指纹 SHA-256 {}），该节点此前的证书立即作废；\
         文件（私钥只在此一次，写入节点的通信模组后请删除）：\n",
        cert.username, cert.sha256
    );
    for p in paths {
        out.push_str(&format!("  {}\n", p.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite_and_issues_chaining_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_780_000_000;
        let info = init(dir.path(), now).unwrap();
        assert_eq!(info.cert_path, ca_cert_path(dir.path()));
        assert_eq!(info.fingerprint.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ca_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(init(dir.path(), now), Err(CaError::Exists(_))));

        let ca = load(dir.path()).unwrap();
        let a = ca.issue("home_a", "n01", 30, now).unwrap();
        let b = ca.issue("home_a", "n01", 30, now).unwrap();
        assert_eq!(a.username, "home_a.n01");
        assert_ne!(a.sha256, b.sha256);
        assert_ne!(a.serial, b.serial);
        assert!(matches!(
            ca.issue("home_a", "n01", 0, now),
            Err(CaError::Days(0))
        ));

        // The certificate chains to ca.pem for a client-auth verifier.
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, UnixTime};
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in crate::tls::read_ca_file(&ca_cert_path(dir.path())).unwrap() {
                r.add(c).unwrap();
            }
            std::sync::Arc::new(r)
        };
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots,
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        let der = CertificateDer::from_pem_slice(a.cert_pem.as_bytes()).unwrap();
        let t = |s: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        assert!(v.verify_client_cert(&der, &[], t(now + 60)).is_ok());
        assert!(
            v.verify_client_cert(&der, &[], t(now + 31 * 86_400))
                .is_err(),
            "expired after 30 days"
        );
        assert_eq!(crate::ingest::gate::tls::fingerprint(&der), a.sha256);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        init(one.path(), 1_780_000_000).unwrap();
        init(two.path(), 1_780_000_000).unwrap();
        std::fs::copy(ca_key_path(two.path()), ca_key_path(one.path())).unwrap();
        assert!(matches!(load(one.path()), Err(CaError::Invalid(_))));
        assert!(matches!(
            load(&one.path().join("nowhere")),
            Err(CaError::Missing(_))
        ));
    }
}
