//! The node's analogue front end as built: which converter input carries
//! which sensor, and how raw conversions become the four channels' values.
//!
//! Two ADS1115 on one I²C bus:
//! - 0x48 AIN0−AIN1 (±256 mV): zero-sequence CT, 1000:1, 20 Ω burden,
//!   64-sample window → `rc1` residual current, mA;
//! - 0x48 AIN2 (±4.096 V): 10 kΩ B3950 NTC under 10 kΩ from 3.3 V → `t1`
//!   temperature, 0.1 °C;
//! - 0x48 AIN3 (±4.096 V): 150 Ω shunt, 4–20 mA = 0–1000 kPa → `p1`
//!   fire-water pressure;
//! - 0x49 AIN0 (±4.096 V): 150 Ω shunt, 4–20 mA = 0–5000 mm → `l1` tank
//!   level.
//!
//! A bus error makes the channel `fault`; it never stops the other channels.

use crate::drivers::ads1115::{Ads1115, Gain, Mux, DEFAULT_ADDRESS};
use crate::drivers::ct::{self, CtConfig};
use crate::drivers::loop_current::{self, LoopConfig};
use crate::drivers::ntc::{self, NtcConfig};
use crate::drivers::Measurement;
use embedded_hal::i2c::I2c;
use wire::{ChannelStatus, Quantity};

/// The second converter's address (ADDR pin to VDD).
pub const SECOND_ADDRESS: u8 = 0x49;
/// Samples in one CT window (two mains cycles at the simulated rate).
pub const CT_WINDOW: usize = 64;

/// The CT channel's wiring.
pub const CT: CtConfig = CtConfig {
    ratio: 1000,
    burden_mohm: 20_000,
    open_dc_uv: 100_000,
    clip_uv: 255_000,
};
/// The CT input's gain.
pub const CT_GAIN: Gain = Gain::Fs256;
/// The NTC divider.
pub const NTC: NtcConfig = NtcConfig {
    vref_uv: 3_300_000,
    r_fixed_ohm: 10_000,
    open_margin_uv: 20_000,
    short_below_uv: 5_000,
};
/// Fire-water pressure transmitter.
pub const PRESSURE: LoopConfig = LoopConfig {
    shunt_mohm: 150_000,
    lo: 0,
    hi: 1_000,
};
/// Tank level transmitter.
pub const LEVEL: LoopConfig = LoopConfig {
    shunt_mohm: 150_000,
    lo: 0,
    hi: 5_000,
};
/// Gain of the voltage inputs.
pub const V_GAIN: Gain = Gain::Fs4096;

/// The channels in sampling order: `(id, quantity)`.
pub const CHANNELS: [(&str, Quantity); 4] = [
    ("rc1", Quantity::ResidualCurrent),
    ("t1", Quantity::Temperature),
    ("p1", Quantity::WaterPressure),
    ("l1", Quantity::WaterLevel),
];

/// What kind of sensor each input of the board takes, in [`CHANNELS`]
/// order: the CT input, the NTC input, two 4–20 mA inputs.
pub const INPUTS: [InputKind; 4] = [
    InputKind::Ct,
    InputKind::Ntc,
    InputKind::Loop,
    InputKind::Loop,
];

/// The kind of front end behind one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// CT burden on a differential input.
    Ct,
    /// NTC divider.
    Ntc,
    /// 150 Ω shunt of a 4–20 mA loop.
    Loop,
}

/// What the provisioning artefact may change of the front end: the CT's
/// ratio and the transmitters' ranges. Wiring (burden, shunts, divider) is
/// fixed by the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardConfig {
    /// The CT input.
    pub ct: CtConfig,
    /// The first 4–20 mA input (`p1` as built).
    pub loop1: LoopConfig,
    /// The second 4–20 mA input (`l1` as built).
    pub loop2: LoopConfig,
}

impl BoardConfig {
    /// The board as built: [`CT`], [`PRESSURE`], [`LEVEL`].
    pub const DEFAULT: BoardConfig = BoardConfig {
        ct: CT,
        loop1: PRESSURE,
        loop2: LEVEL,
    };
}

/// The front end over an I²C bus.
pub struct Board<I> {
    i2c: I,
    cfg: BoardConfig,
}

impl<I: I2c> Board<I> {
    /// The board on `i2c`, as built ([`BoardConfig::DEFAULT`]).
    pub fn new(i2c: I) -> Self {
        Self::with_config(i2c, BoardConfig::DEFAULT)
    }

    /// The board on `i2c` with `cfg` (from the provisioning artefact).
    pub fn with_config(i2c: I, cfg: BoardConfig) -> Self {
        Board { i2c, cfg }
    }

    /// The bus (e.g. to advance a simulation).
    pub fn bus(&mut self) -> &mut I {
        &mut self.i2c
    }

    fn single(&mut self, addr: u8, mux: Mux) -> Option<i32> {
        let mut adc = Ads1115::new(&mut self.i2c, addr);
        adc.read_single(mux, V_GAIN).ok().map(|r| V_GAIN.to_uv(r))
    }

    /// One round: a measurement per channel of [`CHANNELS`].
    pub fn sample(&mut self) -> [Measurement; 4] {
        let bus_fault = Measurement::fault(0, ChannelStatus::Fault);
        let mut raw = [0i16; CT_WINDOW];
        let rc = {
            let mut adc = Ads1115::new(&mut self.i2c, DEFAULT_ADDRESS);
            match adc.read_window(Mux::Diff01, CT_GAIN, &mut raw) {
                Ok(()) => {
                    let mut uv = [0i32; CT_WINDOW];
                    for (u, r) in uv.iter_mut().zip(raw.iter()) {
                        *u = CT_GAIN.to_uv(*r);
                    }
                    ct::residual_current(&self.cfg.ct, &uv)
                }
                Err(_) => bus_fault,
            }
        };
        let t = self
            .single(DEFAULT_ADDRESS, Mux::Single(2))
            .map_or(bus_fault, |v| ntc::temperature(&NTC, v));
        let p = self
            .single(DEFAULT_ADDRESS, Mux::Single(3))
            .map_or(bus_fault, |v| loop_current::measure(&self.cfg.loop1, v));
        let l = self
            .single(SECOND_ADDRESS, Mux::Single(0))
            .map_or(bus_fault, |v| loop_current::measure(&self.cfg.loop2, v));
        [rc, t, p, l]
    }
}
