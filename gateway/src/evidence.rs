//! Evidence files (整改佐证: photos of the fix, signed acceptance sheets),
//! stored once by SHA-256 under `{data_dir}/evidence/`. Only the media
//! types a phone or scanner produces are accepted, and the bytes must look
//! like what they claim to be.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest evidence file, in bytes (a phone photo fits comfortably).
pub const MAX_BYTES: usize = 10 * 1024 * 1024;

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

/// Stores `bytes` under their hash (once); returns the hash.
pub async fn store(data_dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let h = hash(bytes);
    let p = path(data_dir, &h);
    if tokio::fs::try_exists(&p).await.unwrap_or(false) {
        return Ok(h);
    }
    if let Some(dir) = p.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    // Write then rename, so a crash never leaves a half file under the hash.
    let tmp = p.with_extension("part");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &p).await?;
    Ok(h)
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
