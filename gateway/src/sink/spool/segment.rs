//! Segment files: names, creating one (magic, `fdatasync`, directory
//! sync), setting a broken spool aside, and what an I/O error means for
//! the lines it carried.

use super::record::SEGMENT_MAGIC;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A segment's file name.
pub fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The id in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

// ---------------------------------------------------------------------------
// I/O part.
// ---------------------------------------------------------------------------

pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether an I/O error means the file system (or the quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The `reason` label of lines dropped because of `e`.
pub fn drop_reason(e: &io::Error) -> &'static str {
    if is_disk_full(e) {
        "disk_full"
    } else {
        "io_error"
    }
}

/// Moves a spool directory that cannot be opened out of the way, to
/// `{dir}.broken-{now_ms}` beside it, so a fresh spool can start and an
/// operator can look at what failed. Returns the new path.
pub fn set_aside(dir: &Path, now_ms: u64) -> io::Result<PathBuf> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".broken-{now_ms}"));
    let aside = dir.with_file_name(name);
    std::fs::rename(dir, &aside)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(aside)
}

pub(super) fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let path = dir.join(segment_name(id));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    if let Err(e) = f.write_all(SEGMENT_MAGIC).and_then(|_| f.sync_data()) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    sync_dir(dir);
    Ok(f)
}
