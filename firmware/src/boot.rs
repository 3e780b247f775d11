//! The boot counter, persisted in NOR flash through `embedded-storage`.
//!
//! The wire contract identifies a message by `(site, node, boot, seq)` and
//! `seq` restarts at 0 on every boot, so a node that rebooted with the same
//! `boot` would have its new messages taken for duplicates of old ones.
//! [`BootCounter::increment`] persists the new number *before* returning
//! it, so a number handed out is never handed out again, whatever moment
//! the power is cut.
//!
//! Layout, wear-friendly: two erase sectors at `base` and
//! `base + ERASE_SIZE`. A record is 8 bytes, the count `n` and `!n`, both
//! little endian; a record is valid only if both halves agree, so a torn
//! write (power cut mid-record: the unwritten bytes stay `0xFF`) or garbage
//! is never taken for a count (a torn record that does read valid carries
//! the full new value, which is fine: it is larger). Each boot appends one
//! record after the last used slot of the sector holding the largest count;
//! when that sector is full the other sector is erased, gets the new record
//! in its first slot, and only then is the full one erased. The count is the
//! largest valid record in either sector, so a cut during any erase leaves
//! the largest count in place. A 4 KiB sector holds 512 boots per erase.

use core::fmt;
use embedded_storage::nor_flash::NorFlash;

/// Bytes of one record: the count and its complement.
pub const RECORD: usize = 8;

/// Why the counter could not be read or advanced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError<E> {
    /// The flash's geometry does not fit: `base` not sector-aligned, two
    /// sectors do not fit, or read/write sizes do not divide 8 bytes.
    Geometry,
    /// The counter is at `u32::MAX`.
    Exhausted,
    /// A written record did not read back.
    Verify,
    /// The flash failed.
    Flash(E),
}

impl<E: fmt::Debug> fmt::Display for BootError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Geometry => f.write_str("boot counter: flash geometry does not fit"),
            BootError::Exhausted => f.write_str("boot counter exhausted"),
            BootError::Verify => f.write_str("boot counter: record did not read back"),
            BootError::Flash(e) => write!(f, "boot counter: flash error {e:?}"),
        }
    }
}

/// What one sector holds.
#[derive(Clone, Copy, Debug, Default)]
struct Scan {
    /// Largest valid count.
    max: Option<u32>,
    /// First slot after the last used one, if any is left.
    free: Option<u32>,
}

/// The node's restart counter over two sectors of a NOR flash.
pub struct BootCounter<F> {
    flash: F,
    base: u32,
}

impl<F: NorFlash> BootCounter<F> {
    /// The counter in the two sectors at `base` of `flash`.
    // `is_multiple_of` is Rust 1.87; the workspace supports 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    pub fn new(flash: F, base: u32) -> Result<Self, BootError<F::Error>> {
        let sector = F::ERASE_SIZE;
        let fits = sector >= 2 * RECORD
            && sector % RECORD == 0
            && RECORD % F::WRITE_SIZE == 0
            && RECORD % F::READ_SIZE == 0
            && (base as usize) % sector == 0
            && (base as usize)
                .checked_add(2 * sector)
                .is_some_and(|end| end <= flash.capacity());
        if !fits {
            return Err(BootError::Geometry);
        }
        Ok(BootCounter { flash, base })
    }

    /// The flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn sector_start(&self, s: u32) -> u32 {
        self.base + s * F::ERASE_SIZE as u32
    }

    fn slots() -> u32 {
        (F::ERASE_SIZE / RECORD) as u32
    }

    fn scan(&mut self, s: u32) -> Result<Scan, BootError<F::Error>> {
        let mut out = Scan::default();
        let mut last_used = None;
        for slot in 0..Self::slots() {
            let mut r = [0u8; RECORD];
            self.flash
                .read(self.sector_start(s) + slot * RECORD as u32, &mut r)
                .map_err(BootError::Flash)?;
            if r == [0xFF; RECORD] {
                continue;
            }
            last_used = Some(slot);
            let n = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let check = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            if check == !n {
                out.max = Some(out.max.map_or(n, |m| m.max(n)));
            }
        }
        out.free = match last_used {
            None => Some(0),
            Some(l) if l + 1 < Self::slots() => Some(l + 1),
            Some(_) => None,
        };
        Ok(out)
    }

    fn scan_both(&mut self) -> Result<[Scan; 2], BootError<F::Error>> {
        Ok([self.scan(0)?, self.scan(1)?])
    }

    /// The last persisted count: 0 on a fresh (or unreadable) counter.
    pub fn current(&mut self) -> Result<u32, BootError<F::Error>> {
        let [a, b] = self.scan_both()?;
        Ok(a.max.max(b.max).unwrap_or(0))
    }

    fn write(&mut self, s: u32, slot: u32, n: u32) -> Result<(), BootError<F::Error>> {
        let mut r = [0u8; RECORD];
        r[..4].copy_from_slice(&n.to_le_bytes());
        r[4..].copy_from_slice(&(!n).to_le_bytes());
        let at = self.sector_start(s) + slot * RECORD as u32;
        self.flash.write(at, &r).map_err(BootError::Flash)?;
        let mut back = [0u8; RECORD];
        self.flash.read(at, &mut back).map_err(BootError::Flash)?;
        if back != r {
            return Err(BootError::Verify);
        }
        Ok(())
    }

    fn erase(&mut self, s: u32) -> Result<(), BootError<F::Error>> {
        let from = self.sector_start(s);
        self.flash
            .erase(from, from + F::ERASE_SIZE as u32)
            .map_err(BootError::Flash)
    }

    /// Persists the next count and returns it: 1 on the first boot of a
    /// fresh counter. Only a count that is in flash is returned.
    pub fn increment(&mut self) -> Result<u32, BootError<F::Error>> {
        let scans = self.scan_both()?;
        let cur = scans[0].max.max(scans[1].max);
        let next = match cur {
            None => 1,
            Some(n) => n.checked_add(1).ok_or(BootError::Exhausted)?,
        };
        // The sector holding the largest count; sector 0 on a fresh counter.
        let active = if scans[1].max.is_some() && scans[1].max == cur {
            1
        } else {
            0
        };
        if let Some(slot) = scans[active as usize].free {
            self.write(active, slot, next)?;
        } else {
            let other = 1 - active;
            self.erase(other)?;
            self.write(other, 0, next)?;
            self.erase(active)?;
        }
        Ok(next)
    }
}
