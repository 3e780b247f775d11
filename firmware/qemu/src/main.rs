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
//! Identity: site, node and password come from `FIRE_NODE_SITE`,
//! `FIRE_NODE_NODE`, `FIRE_NODE_PASSWORD` at build time (defaults
//! `home_a`, `n01`, `pw-home_a.n01`), user and client id `{site}.{node}`.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::fmt::Write as _;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use firmware::app::{NodeApp, NodeStrings};
use firmware::board::{Board, CHANNELS};
use firmware::node::NodeIdentity;
use firmware::sampling::Schedule;
use firmware::sim::{Scenario, SimBus};
use panic_halt as _;

const SITE: &str = match option_env!("FIRE_NODE_SITE") {
    Some(s) => s,
    None => "home_a",
};
const NODE: &str = match option_env!("FIRE_NODE_NODE") {
    Some(s) => s,
    None => "n01",
};
const PASSWORD: &str = match option_env!("FIRE_NODE_PASSWORD") {
    Some(s) => s,
    None => "pw-home_a.n01",
};
/// Restart counter: the image has no persistent storage, so it is fixed.
const BOOT: u32 = 1;
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
    let (Ok(site), Ok(node)) = (wire::SiteId::new(SITE), wire::NodeId::new(NODE)) else {
        let _ = writeln!(log, "fire-node: bad identity");
        halt();
    };
    let identity = NodeIdentity {
        site,
        node,
        boot: BOOT,
    };
    let Some(strings) = NodeStrings::new(&identity, PASSWORD) else {
        let _ = writeln!(log, "fire-node: identity too long");
        halt();
    };
    let strings: &'static NodeStrings =
        cortex_m::singleton!(: NodeStrings = strings).unwrap_or_else(|| halt());
    let app: &'static mut NodeApp<'static, Sounder, OUTBOX> = cortex_m::singleton!(
        : NodeApp<'static, Sounder, OUTBOX> =
            NodeApp::new(identity, FW, strings.session_config(10), Sounder)
    )
    .unwrap_or_else(|| halt());
    for (id, q) in CHANNELS {
        if let Ok(id) = wire::ChannelId::new(id) {
            let _ = app.add_channel(id, q);
        }
    }
    let mut board = Board::new(SimBus::new(Scenario::DEFAULT));
    let mut clock = Clock { last: 0, high: 0 };
    let mut schedule = Schedule::new(PERIOD_MS, 0);
    let _ = writeln!(log, "fire-node {FW}: {SITE}.{NODE} boot {BOOT}");

    let (mut connected, mut sounding) = (0, false);
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
        app.poll(&mut uart, now);
        let st = app.stats();
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
