//! The boot counter against a RAM-backed NOR flash that behaves like one
//! (a write can only clear bits, erase sets a sector to 0xFF) and can lose
//! power in the middle of any write or erase.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use firmware::boot::{BootCounter, BootError, RECORD};

const SECTOR: usize = 64; // 8 records a sector: many sector switches.
const SIZE: usize = 4 * SECTOR;
const BASE: u32 = SECTOR as u32; // not at 0, to catch offset mistakes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PowerCut;

impl NorFlashError for PowerCut {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// NOR flash in RAM. `budget`: bytes that may still be written or erased
/// before the power goes; the operation in progress stops half-way.
struct RamFlash {
    mem: Vec<u8>,
    budget: Option<usize>,
    dead: bool,
}

impl RamFlash {
    fn new() -> Self {
        RamFlash {
            mem: vec![0xFF; SIZE],
            budget: None,
            dead: false,
        }
    }

    fn spend(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => {
                self.dead = true;
                false
            }
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

impl ErrorType for RamFlash {
    type Error = PowerCut;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PowerCut> {
        if self.dead {
            return Err(PowerCut);
        }
        let o = offset as usize;
        bytes.copy_from_slice(&self.mem[o..o + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        SIZE
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), PowerCut> {
        assert_eq!(from as usize % SECTOR, 0);
        assert_eq!(to as usize % SECTOR, 0);
        for i in from..to {
            if self.dead || !self.spend() {
                return Err(PowerCut);
            }
            self.mem[i as usize] = 0xFF;
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PowerCut> {
        assert_eq!(offset as usize % 4, 0);
        assert_eq!(bytes.len() % 4, 0);
        for (i, b) in bytes.iter().enumerate() {
            if self.dead || !self.spend() {
                return Err(PowerCut);
            }
            // NOR: programming clears bits only.
            self.mem[offset as usize + i] &= b;
        }
        Ok(())
    }
}

#[test]
fn counts_from_one_across_many_sector_switches() {
    let mut c = BootCounter::new(RamFlash::new(), BASE).unwrap();
    assert_eq!(c.current(), Ok(0));
    for want in 1..=100 {
        assert_eq!(c.increment(), Ok(want));
        // A reboot reads what was written.
        let flash = c.into_inner();
        c = BootCounter::new(flash, BASE).unwrap();
        assert_eq!(c.current(), Ok(want));
    }
    // Outside the two sectors nothing was touched.
    let flash = c.into_inner();
    assert!(flash.mem[..SECTOR].iter().all(|&b| b == 0xFF));
    assert!(flash.mem[3 * SECTOR..].iter().all(|&b| b == 0xFF));
}

#[test]
fn starts_over_garbage_and_zeros() {
    // RAM that was never flash (QEMU's SSRAM starts zeroed) or noise.
    for fill in [0x00u8, 0x5A] {
        let mut f = RamFlash::new();
        f.mem[BASE as usize..BASE as usize + 2 * SECTOR].fill(fill);
        let mut c = BootCounter::new(f, BASE).unwrap();
        assert_eq!(c.current(), Ok(0));
        assert_eq!(c.increment(), Ok(1));
        assert_eq!(c.increment(), Ok(2));
    }
}

#[test]
fn refuses_a_geometry_that_does_not_fit() {
    assert!(matches!(
        BootCounter::new(RamFlash::new(), 8),
        Err(BootError::Geometry)
    ));
    assert!(matches!(
        BootCounter::new(RamFlash::new(), (3 * SECTOR) as u32),
        Err(BootError::Geometry)
    ));
}

/// Power cut at every byte of every write and erase over 40 boots: a count
/// once returned is never returned again, and counts only go up.
#[test]
fn a_power_cut_anywhere_never_reuses_a_boot_number() {
    // Bytes written and erased by 40 clean boots.
    let total = {
        let mut f = RamFlash::new();
        f.budget = Some(usize::MAX);
        let mut c = BootCounter::new(f, BASE).unwrap();
        for _ in 0..40 {
            c.increment().unwrap();
        }
        usize::MAX - c.into_inner().budget.unwrap()
    };
    for cut in 0..total {
        let mut f = RamFlash::new();
        f.budget = Some(cut);
        let mut returned = Vec::new();
        let mut c = BootCounter::new(f, BASE).unwrap();
        loop {
            match c.increment() {
                Ok(n) => returned.push(n),
                Err(BootError::Flash(PowerCut)) | Err(BootError::Verify) => break,
                Err(e) => panic!("cut {cut}: {e:?}"),
            }
        }
        // Power back: reboots go on from above anything handed out.
        let mut f = c.into_inner();
        f.budget = None;
        f.dead = false;
        let mut c = BootCounter::new(f, BASE).unwrap();
        let last = returned.last().copied().unwrap_or(0);
        let next = c.increment().unwrap();
        assert!(next > last, "cut at byte {cut}: {next} after {last}");
        assert!(next <= last + 2, "cut at byte {cut}: {next} after {last}");
        let after = c.increment().unwrap();
        assert_eq!(after, next + 1, "cut at byte {cut}");
    }
    assert!(total > 40 * RECORD, "{total}");
}
