//! Evidence files (整改佐证: photos of the fix, signed acceptance sheets),
//! stored once by SHA-256 under `{data_dir}/evidence/`. Only the media
//! types a phone or scanner produces are accepted, and the bytes must look
//! like what they claim to be.
//!
//! Limits (issue 14): only the roles of the closed loop attach evidence
//! ([`may_attach`]); a ticket holds at most [`MAX_ENTRIES_PER_TICKET`]
//! entries, [`MAX_FILES_PER_TICKET`] files and [`MAX_BYTES_PER_TICKET`]
//! bytes, and all files together at most `http.evidence_quota_mib`
//! ([`check_quota`], pure). A file is written to a temporary name,
//! fsynced, renamed, and its directory fsynced; a file already under a
//! hash is read back and hashed before it is trusted ([`store`]), and
//! again before it is served ([`read_verified`]).

use crate::domain::ticket::Role;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest evidence file, in bytes (a phone photo fits comfortably).
pub const MAX_BYTES: usize = 10 * 1024 * 1024;

/// Evidence entries (notes and files) on one ticket.
pub const MAX_ENTRIES_PER_TICKET: u64 = 200;

/// Files on one ticket.
pub const MAX_FILES_PER_TICKET: u64 = 50;

/// Bytes of files on one ticket.
pub const MAX_BYTES_PER_TICKET: u64 = 200 * 1024 * 1024;

/// Whether `role` may attach evidence: the roles that act on tickets in
/// the closed loop (值班员 registers, 机构负责人 rectifies, 民政局监管
/// reviews and accepts). Administrators and installers act on no ticket.
pub fn may_attach(role: Role) -> bool {
    matches!(role, Role::Duty | Role::SiteManager | Role::Inspector)
}

/// What evidence a ticket, and the gateway in all, already hold (the
/// store counts it).
pub use crate::domain::ticket::EvidenceUsage as Usage;

/// Which quota an upload would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    TicketEntries,
    TicketFiles,
    TicketBytes,
    Total,
}

impl QuotaExceeded {
    /// The refusal for people (简体中文).
    pub fn message(self) -> &'static str {
        match self {
            QuotaExceeded::TicketEntries => "本工单的佐证条目已达上限（200 条）",
            QuotaExceeded::TicketFiles => "本工单的佐证文件已达上限（50 个）",
            QuotaExceeded::TicketBytes => "本工单的佐证文件总量已达上限（200 MiB）",
            QuotaExceeded::Total => "网关的佐证文件存储空间已满，请联系管理员",
        }
    }
}

/// Whether one more entry fits: a note (`file` = `None`), or a file of
/// `size` bytes that is `new` to the store (an identical file already
/// stored costs no space in all).
pub fn check_quota(
    usage: Usage,
    file: Option<(u64, bool)>,
    total_quota: u64,
) -> Result<(), QuotaExceeded> {
    if usage.entries >= MAX_ENTRIES_PER_TICKET {
        return Err(QuotaExceeded::TicketEntries);
    }
    let Some((size, new)) = file else {
        return Ok(());
    };
    if usage.files >= MAX_FILES_PER_TICKET {
        return Err(QuotaExceeded::TicketFiles);
    }
    if usage.bytes.saturating_add(size) > MAX_BYTES_PER_TICKET {
        return Err(QuotaExceeded::TicketBytes);
    }
    if new && usage.total_bytes.saturating_add(size) > total_quota {
        return Err(QuotaExceeded::Total);
    }
    Ok(())
}

/// The media types accepted as evidence files.
pub const MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "application/pdf"];

/// The media type the bytes really are, if it is one we accept and it
/// matches the declared one.
pub fn sniff(declared: &str, bytes: &[u8]) -> Option<&'static str> {
    let actual = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        "image/png"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if bytes.starts_with(b"%PDF-") {
        "application/pdf"
    } else {
        return None;
    };
    let declared = declared.split(';').next().unwrap_or("").trim();
    (declared == actual).then_some(actual)
}

/// The hex SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a file with `hash` lives.
pub fn path(data_dir: &Path, hash: &str) -> PathBuf {
    data_dir
        .join("evidence")
        .join(&hash[..2.min(hash.len())])
        .join(hash)
}

/// Stores `bytes` under their hash (once); returns the hash. A file
/// already there is trusted only if it hashes to its name; otherwise
/// (torn by a crash before this fix, damaged, planted) it is replaced.
pub async fn store(data_dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let h = hash(bytes);
    let p = path(data_dir, &h);
    let owned = bytes.to_vec();
    let name = h.clone();
    tokio::task::spawn_blocking(move || store_blocking(&p, &name, &owned))
        .await
        .map_err(std::io::Error::other)??;
    Ok(h)
}

fn store_blocking(p: &Path, h: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::read(p) {
        Ok(existing) if hash(&existing) == h => return Ok(()),
        Ok(_) => {
            tracing::warn!(path = %p.display(), "evidence file does not match its hash; replaced")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = p
        .parent()
        .ok_or_else(|| std::io::Error::other("evidence path without a directory"))?;
    std::fs::create_dir_all(dir)?;
    // Write, fsync, then rename: a crash never leaves a half file under the
    // hash, and the name never points at data still in the page cache.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = p.with_extension(format!("part-{}-{n}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)?;
        // The rename itself is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The file stored under `hash`, if it is there and still hashes to its
/// name (`Ok(None)` otherwise: missing or damaged).
pub async fn read_verified(data_dir: &Path, hash_hex: &str) -> std::io::Result<Option<Vec<u8>>> {
    match tokio::fs::read(path(data_dir, hash_hex)).await {
        Ok(bytes) if hash(&bytes) == hash_hex => Ok(Some(bytes)),
        Ok(_) => {
            tracing::error!(
                hash = hash_hex,
                "evidence file does not match its hash; not served"
            );
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `s` is a hex SHA-256 (so it is safe as a file name).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_photos_and_documents_pass() {
        assert_eq!(
            sniff("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]),
            Some("image/jpeg")
        );
        assert_eq!(
            sniff(
                "image/png",
                &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0]
            ),
            Some("image/png")
        );
        assert_eq!(
            sniff("application/pdf", b"%PDF-1.7 ..."),
            Some("application/pdf")
        );
        assert_eq!(
            sniff("image/webp", b"RIFF\0\0\0\0WEBPVP8 "),
            Some("image/webp")
        );
        assert_eq!(
            sniff("image/png", &[0xFF, 0xD8, 0xFF]),
            None,
            "declared png, is jpeg"
        );
        assert_eq!(sniff("text/html", b"<html>"), None);
        assert_eq!(sniff("image/jpeg", b""), None);
        assert!(is_hash(&hash(b"x")));
        assert!(!is_hash("../../etc/passwd"));
        assert!(!is_hash(&"A".repeat(64)));
    }

    #[test]
    fn only_the_closed_loop_roles_attach_evidence() {
        assert!(may_attach(Role::Duty));
        assert!(may_attach(Role::SiteManager));
        assert!(may_attach(Role::Inspector));
        assert!(!may_attach(Role::Admin));
        assert!(!may_attach(Role::Installer));
    }

    #[test]
    fn quotas_per_ticket_and_in_all() {
        const MIB: u64 = 1024 * 1024;
        let fresh = Usage::default();
        assert_eq!(check_quota(fresh, None, MIB), Ok(()));
        assert_eq!(check_quota(fresh, Some((MIB, true)), MIB), Ok(()));
        assert_eq!(
            check_quota(fresh, Some((MIB + 1, true)), MIB),
            Err(QuotaExceeded::Total)
        );
        // A file already stored elsewhere costs nothing in all.
        let full = Usage {
            total_bytes: MIB,
            ..fresh
        };
        assert_eq!(check_quota(full, Some((10, false)), MIB), Ok(()));
        assert_eq!(
            check_quota(full, Some((10, true)), MIB),
            Err(QuotaExceeded::Total)
        );
        let many = Usage {
            entries: MAX_ENTRIES_PER_TICKET,
            ..fresh
        };
        assert_eq!(
            check_quota(many, None, MIB),
            Err(QuotaExceeded::TicketEntries)
        );
        let files = Usage {
            entries: 60,
            files: MAX_FILES_PER_TICKET,
            ..fresh
        };
        assert_eq!(check_quota(files, None, MIB), Ok(()), "a note still fits");
        assert_eq!(
            check_quota(files, Some((1, true)), u64::MAX),
            Err(QuotaExceeded::TicketFiles)
        );
        let heavy = Usage {
            entries: 3,
            files: 3,
            bytes: MAX_BYTES_PER_TICKET - 5,
            total_bytes: 0,
        };
        assert_eq!(check_quota(heavy, Some((5, true)), u64::MAX), Ok(()));
        assert_eq!(
            check_quota(heavy, Some((6, false)), u64::MAX),
            Err(QuotaExceeded::TicketBytes)
        );
    }

    #[tokio::test]
    async fn a_damaged_file_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let photo = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        let h = store(dir.path(), &photo).await.unwrap();
        assert_eq!(read_verified(dir.path(), &h).await.unwrap().unwrap(), photo);
        // Torn (or planted) under the right name: not served, and replaced
        // by the next upload of the real bytes.
        std::fs::write(path(dir.path(), &h), &photo[..3]).unwrap();
        assert_eq!(read_verified(dir.path(), &h).await.unwrap(), None);
        assert_eq!(store(dir.path(), &photo).await.unwrap(), h);
        assert_eq!(std::fs::read(path(dir.path(), &h)).unwrap(), photo);
        // No temporary file left behind.
        let left: Vec<_> = std::fs::read_dir(path(dir.path(), &h).parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1);
        assert_eq!(
            read_verified(dir.path(), &hash(b"other")).await.unwrap(),
            None
        );
    }

    #[test]
    fn the_accepted_media_types_are_the_listed_ones() {
        let samples: [(&str, &[u8]); 4] = [
            ("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]),
            (
                "image/png",
                &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
            ),
            ("image/webp", b"RIFF\0\0\0\0WEBPVP8 "),
            ("application/pdf", b"%PDF-1.7"),
        ];
        let accepted: Vec<&str> = samples.iter().filter_map(|(m, b)| sniff(m, b)).collect();
        assert_eq!(accepted, MEDIA_TYPES);
    }
}
