//! 4–20 mA transmitters (fire-water pressure in kPa, tank level in mm)
//! read as the voltage across a shunt, with NAMUR NE43 loop health.
//!
//! `I[µA] = V[µV] × 1000 / R_shunt[mΩ]`; the value is scaled linearly from
//! 4 mA = `lo` to 20 mA = `hi`. NE43: a loop current outside 3.6–21.0 mA is
//! a sensor fault, never a process alarm: at or below `OPEN_BELOW_UA` the
//! loop is broken (`open`), above `SHORT_ABOVE_UA` it is shorted (`short`),
//! otherwise `fault`. The saturation bands 3.6–3.8 mA and 20.5–21.0 mA say
//! the process is beyond the transmitter's span: `range`, value clamped.

use super::Measurement;
use wire::ChannelStatus;

/// NE43 lower limit of a healthy loop, µA.
pub const NE43_LOW_UA: i32 = 3_600;
/// NE43 upper limit of a healthy loop, µA.
pub const NE43_HIGH_UA: i32 = 21_000;
/// Lower end of the measuring band, µA.
pub const MEASURE_LOW_UA: i32 = 3_800;
/// Upper end of the measuring band, µA.
pub const MEASURE_HIGH_UA: i32 = 20_500;
/// At or below this the loop is open (wire break), µA.
pub const OPEN_BELOW_UA: i32 = 500;
/// Above this the loop is shorted, µA.
pub const SHORT_ABOVE_UA: i32 = 23_000;

/// How a 4–20 mA channel is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopConfig {
    /// Shunt resistor in mΩ.
    pub shunt_mohm: u32,
    /// Value at 4 mA, in the quantity's wire unit.
    pub lo: i32,
    /// Value at 20 mA, in the quantity's wire unit.
    pub hi: i32,
}

/// Loop current in µA from the shunt voltage in µV.
pub fn loop_ua(cfg: &LoopConfig, v_uv: i32) -> i32 {
    if cfg.shunt_mohm == 0 {
        return 0;
    }
    (i64::from(v_uv) * 1000 / i64::from(cfg.shunt_mohm)).clamp(i32::MIN as i64, i32::MAX as i64)
        as i32
}

/// Linear scaling of a loop current in µA to `lo..hi`.
pub fn scale(cfg: &LoopConfig, ua: i32) -> i32 {
    let span = i64::from(cfg.hi) - i64::from(cfg.lo);
    let v = i64::from(cfg.lo) + (i64::from(ua) - 4_000) * span / 16_000;
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// The measurement for a loop current in µA.
pub fn measure_ua(cfg: &LoopConfig, ua: i32) -> Measurement {
    if ua <= OPEN_BELOW_UA {
        Measurement::fault(0, ChannelStatus::Open)
    } else if ua > SHORT_ABOVE_UA {
        Measurement::fault(0, ChannelStatus::Short)
    } else if !(NE43_LOW_UA..=NE43_HIGH_UA).contains(&ua) {
        Measurement::fault(0, ChannelStatus::Fault)
    } else if ua < MEASURE_LOW_UA {
        Measurement::fault(scale(cfg, 4_000), ChannelStatus::Range)
    } else if ua > MEASURE_HIGH_UA {
        Measurement::fault(scale(cfg, 20_000), ChannelStatus::Range)
    } else {
        Measurement::ok(scale(cfg, ua).clamp(cfg.lo.min(cfg.hi), cfg.lo.max(cfg.hi)))
    }
}

/// The measurement for a shunt voltage in µV.
pub fn measure(cfg: &LoopConfig, v_uv: i32) -> Measurement {
    measure_ua(cfg, loop_ua(cfg, v_uv))
}
