//! The sensor node on QEMU `mps2-an386` (Cortex-M4F): the `firmware`
//! library's [`NodeApp`] over the CMSDK APB UART0, which QEMU bridges to an
//! MQTT broker (`-serial tcp:HOST:PORT,reconnect=1`), with simulated
//! sensors ([`firmware::sim`]) behind the real ADS1115 driver.
//!
//! Peripherals, driven by their registers (QEMU `hw/arm/mps2.c`, ARM
//! AN386 / CMSDK TRM):
//! - UART0 `0x4000_4000` (MQTT stream) and UART1 `0x4000_5000` (log):
//!   DATA +0x00, STATE +0x04 (bit 0 TX full, bit 1 RX full), CTRL +0x08
//!   (bit 0 TX enable, bit 1 RX enable), BAUDDIV +0x10;
//! - FPGA IO LEDs `0x4002_8000` bit 0: the local sounder/LED;
//! - SysTick from the 25 MHz core clock: a 1 ms tick.
//!
//! Provisioning: the node reads its artefact ([`wire::provision`]: site,
//! node, broker, client id, credentials, channel map, setpoints) from
//! [`PROVISION_ADDR`] in the code SSRAM, above the image (`memory.x` ends
//! the image's region there), where QEMU puts it with
//! `-device loader,file=ARTEFACT,addr=0x00300000,force-raw=on`. Missing or
//! invalid: the reason goes to UART1 and the node halts — there are no
//! built-in defaults. The broker address is logged only: UART0 is already
//! joined to the broker.
//!
//! Boot counter: [`BootCounter`] over two 4 KiB "NOR flash" sectors at
//! [`BOOT_FLASH_ADDR`], RAM that this image treats with NOR rules (a write
//! clears bits, an erase sets 0xFF). QEMU has no persistent flash on this
//! machine, so the sectors persist only if the runner saves them (monitor
//! `pmemsave 0x00380000 8192 FILE`) and loads them at the next start with
//! another `-device loader`; the end-to-end test does. If the counter
//! cannot be advanced the node runs with `boot` 0, which the counter never
//! hands out, and logs why.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::fmt::Write as _;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use firmware::app::NodeApp;
use firmware::board::Board;
use firmware::boot::BootCounter;
use firmware::provision::{NodeSetup, SetupError};
use firmware::sampling::Schedule;
use firmware::sim::{Scenario, SimBus};
use panic_halt as _;

/// Where the provisioning artefact is (code SSRAM, above the image).
const PROVISION_ADDR: usize = 0x0030_0000;
/// The boot counter's two sectors (code SSRAM, above the artefact).
const BOOT_FLASH_ADDR: usize = 0x0038_0000;
const BOOT_SECTOR: usize = 4096;
const FW: &str = env!("CARGO_PKG_VERSION");
/// Sampling period.
const PERIOD_MS: u64 = 500;
/// Offline buffer: records (telemetry rounds and events).
const OUTBOX: usize = 48;
const CORE_HZ: u32 = 25_000_000;

const UART0: usize = 0x4000_4000;
const UART1: usize = 0x4000_5000;
const FPGAIO_LED: usize = 0x4002_8000;

static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since boot, widened to 64 bits across wraps of the tick.
struct Clock {
    last: u32,
    high: u64,
}

impl Clock {
    fn now(&mut self) -> u64 {
        let t = TICKS.load(Ordering::Relaxed);
        if t < self.last {
            self.high += 1 << 32;
        }
        self.last = t;
        self.high | u64::from(t)
    }
}

/// A CMSDK APB UART.
struct Uart {
    base: usize,
}

impl Uart {
    fn new(base: usize) -> Self {
        // SAFETY: `base` is a CMSDK UART of this machine; BAUDDIV must be
        // at least 16, then TX and RX are enabled.
        unsafe {
            write_volatile((base + 0x10) as *mut u32, 16);
            write_volatile((base + 0x08) as *mut u32, 0b11);
        }
        Uart { base }
    }

    fn state(&self) -> u32 {
        // SAFETY: STATE register of this UART.
        unsafe { read_volatile((self.base + 0x04) as *const u32) }
    }

    fn put(&mut self, b: u8) {
        while self.state() & 1 != 0 {}
        // SAFETY: DATA register of this UART.
        unsafe { write_volatile(self.base as *mut u32, u32::from(b)) }
    }

    fn get(&mut self) -> u8 {
        while self.state() & 2 == 0 {}
        // SAFETY: DATA register of this UART.
        unsafe { read_volatile(self.base as *const u32) as u8 }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.get();
        let mut n = 1;
        while n < buf.len() && self.state() & 2 != 0 {
            buf[n] = self.get();
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.state() & 2 != 0)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            self.put(b);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            self.put(b);
        }
        Ok(())
    }
}

/// The sounder/LED on FPGA IO LED 0. Only ever a warning output: nothing
/// here can switch power.
struct Sounder;

impl embedded_hal::digital::ErrorType for Sounder {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Sounder {
    fn set_low(&mut self) -> Result<(), Infallible> {
        // SAFETY: FPGA IO LED register of this machine.
        unsafe { write_volatile(FPGAIO_LED as *mut u32, 0) }
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        // SAFETY: FPGA IO LED register of this machine.
        unsafe { write_volatile(FPGAIO_LED as *mut u32, 1) }
        Ok(())
    }
}

/// Two sectors of RAM at [`BOOT_FLASH_ADDR`] with NOR flash rules.
struct RamNor;

impl ErrorType for RamNor {
    type Error = NorFlashErrorKind;
}

impl RamNor {
    fn check(offset: u32, len: usize) -> Result<usize, NorFlashErrorKind> {
        let o = offset as usize;
        match o.checked_add(len) {
            Some(end) if end <= 2 * BOOT_SECTOR => Ok(BOOT_FLASH_ADDR + o),
            _ => Err(NorFlashErrorKind::OutOfBounds),
        }
    }
}

impl ReadNorFlash for RamNor {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = Self::check(offset, bytes.len())?;
        for (i, b) in bytes.iter_mut().enumerate() {
            // SAFETY: inside the counter's sectors, RAM of this machine.
            *b = unsafe { read_volatile((at + i) as *const u8) };
        }
        Ok(())
    }
    fn capacity(&self) -> usize {
        2 * BOOT_SECTOR
    }
}

impl NorFlash for RamNor {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = BOOT_SECTOR;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let at = Self::check(from, to.saturating_sub(from) as usize)?;
        for i in 0..to.saturating_sub(from) as usize {
            // SAFETY: inside the counter's sectors.
            unsafe { write_volatile((at + i) as *mut u8, 0xFF) };
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = Self::check(offset, bytes.len())?;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: inside the counter's sectors. NOR: clears bits only.
            unsafe {
                let p = (at + i) as *mut u8;
                write_volatile(p, read_volatile(p) & b);
            }
        }
        Ok(())
    }
}

/// The artefact at [`PROVISION_ADDR`], set up for boot `boot`.
fn provision(boot: u32) -> Result<NodeSetup, SetupError> {
    let mut header = [0u8; wire::provision::HEADER_LEN];
    for (i, b) in header.iter_mut().enumerate() {
        // SAFETY: code SSRAM of this machine, above the image.
        *b = unsafe { read_volatile((PROVISION_ADDR + i) as *const u8) };
    }
    let len = wire::provision::frame_len(&header)?;
    // SAFETY: `len` is at most `wire::provision::MAX_LEN` (2 KiB), inside
    // the code SSRAM between the artefact's and the counter's addresses;
    // nothing writes there while the slice lives.
    let blob = unsafe { core::slice::from_raw_parts(PROVISION_ADDR as *const u8, len) };
    firmware::provision::load(blob, boot)
}

/// A setpoint in the log: its value, or `none`.
struct Setpoint(Option<i32>);

impl core::fmt::Display for Setpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}

/// Stops here for good (no identity, no peripherals): waits for interrupts.
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| halt());
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(CORE_HZ / 1000 - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let mut log = Uart::new(UART1);
    let mut uart = Uart::new(UART0);
    // Check the artefact before spending a boot number on it.
    if let Err(e) = provision(0) {
        let _ = writeln!(
            log,
            "fire-node {FW}: no valid provisioning artefact at {PROVISION_ADDR:#010x}: {e}; halted"
        );
        halt();
    }
    let boot = match BootCounter::new(RamNor, 0).and_then(|mut c| c.increment()) {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(log, "fire-node: {e}; running as boot 0");
            0
        }
    };
    let setup = match provision(boot) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(log, "fire-node: provisioning artefact: {e}; halted");
            halt();
        }
    };
    let setup: &'static NodeSetup =
        cortex_m::singleton!(: NodeSetup = setup).unwrap_or_else(|| halt());
    let app: &'static mut NodeApp<'static, Sounder, OUTBOX> = cortex_m::singleton!(
        : NodeApp<'static, Sounder, OUTBOX> =
            NodeApp::new(setup.identity.clone(), FW, setup.strings.session_config(10), Sounder)
    )
    .unwrap_or_else(|| halt());
    for c in &setup.channels {
        if let Err(e) = app.add_channel_rule(c.id.clone(), c.q, c.rule) {
            let _ = writeln!(log, "fire-node: channel {}: {e}; halted", c.id);
            halt();
        }
    }
    let mut board = Board::with_config(SimBus::new(Scenario::DEFAULT), setup.board);
    let mut clock = Clock { last: 0, high: 0 };
    let mut schedule = Schedule::new(PERIOD_MS, 0);
    let id = &setup.identity;
    let _ = writeln!(
        log,
        "fire-node {FW}: {}.{} boot {boot}, label {}, broker {}:{} as {} (client id {}), {} channels",
        id.site,
        id.node,
        wire::provision::label(&id.site, &id.node),
        setup.broker.host,
        setup.broker.port,
        setup.strings.username,
        setup.strings.client_id,
        setup.channels.len()
    );

    let (mut connected, mut sounding, mut testing, mut cmds) = (0, false, false, 0);
    loop {
        let now = clock.now();
        if schedule.due(now) {
            board.bus().set_time(now);
            let m = board.sample();
            app.sample(now, 0, &m);
            if app.local().sounding() != sounding {
                sounding = app.local().sounding();
                let _ = writeln!(
                    log,
                    "t={now} sounder {}",
                    if sounding { "on" } else { "off" }
                );
            }
        }
        if app.selftest_active() != testing {
            testing = app.selftest_active();
            let _ = writeln!(
                log,
                "t={now} self-test {}",
                if testing { "started" } else { "ended" }
            );
        }
        app.poll(&mut uart, now);
        let st = app.stats();
        if st.cmds != cmds {
            cmds = st.cmds;
            if let Some((c, outcome)) = app.last_cmd() {
                match (outcome, &c.ch) {
                    (Err(e), _) => {
                        let _ = writeln!(log, "t={now} cmd {} {}: refused: {e}", c.id, c.op);
                    }
                    // An accepted config: the setpoints now in force (RAM only).
                    (Ok(()), Some(ch)) => {
                        let t = app.local().rule(ch).and_then(|r| r.threshold);
                        let _ = writeln!(
                            log,
                            "t={now} cmd {} {}: ok, {ch} pre_alarm {} alarm {} hysteresis {}",
                            c.id,
                            c.op,
                            Setpoint(t.and_then(|t| t.pre_alarm)),
                            Setpoint(t.and_then(|t| t.alarm)),
                            Setpoint(t.map(|t| t.hysteresis))
                        );
                    }
                    (Ok(()), None) => {
                        let _ = writeln!(log, "t={now} cmd {} {}: ok", c.id, c.op);
                    }
                }
            }
        }
        if st.connected != connected {
            connected = st.connected;
            let _ = writeln!(
                log,
                "t={now} connected #{connected}, backlog {}",
                app.outbox().len()
            );
        }
    }
}
