//! Temperature from an NTC thermistor in a divider, to 0.1 °C.
//!
//! Wiring: `V_ref — R_fixed — input — NTC — GND`, so
//! `R_ntc = R_fixed × V / (V_ref − V)`. The resistance is turned into a
//! temperature by linear interpolation in a table (10 kΩ at 25 °C,
//! B = 3950, every 5 °C from −40 to 150 °C; within 0.3 °C of the
//! B-parameter equation). An input near `V_ref` is an open circuit
//! (`open`), one near 0 V a short (`short`); a resistance outside the
//! table is `range`.

use super::Measurement;
use wire::ChannelStatus;

/// `(temperature in 0.1 °C, resistance in Ω)` of a 10 kΩ B3950 NTC,
/// resistance falling with temperature.
pub const TABLE_10K_3950: [(i32, u32); 39] = [
    (-400, 401860),
    (-350, 281577),
    (-300, 200204),
    (-250, 144317),
    (-200, 105385),
    (-150, 77898),
    (-100, 58246),
    (-50, 44026),
    (0, 33621),
    (50, 25925),
    (100, 20175),
    (150, 15837),
    (200, 12535),
    (250, 10000),
    (300, 8037),
    (350, 6506),
    (400, 5301),
    (450, 4348),
    (500, 3588),
    (550, 2978),
    (600, 2486),
    (650, 2086),
    (700, 1760),
    (750, 1492),
    (800, 1270),
    (850, 1087),
    (900, 934),
    (950, 805),
    (1000, 698),
    (1050, 606),
    (1100, 529),
    (1150, 463),
    (1200, 407),
    (1250, 359),
    (1300, 317),
    (1350, 281),
    (1400, 250),
    (1450, 223),
    (1500, 200),
];

/// How an NTC channel is wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtcConfig {
    /// Divider supply in µV.
    pub vref_uv: i32,
    /// Fixed resistor in Ω.
    pub r_fixed_ohm: u32,
    /// Input within this many µV of `vref_uv` is `open`.
    pub open_margin_uv: i32,
    /// Input below this many µV is `short`.
    pub short_below_uv: i32,
}

/// The NTC's resistance in Ω from the divider voltage, if the divider is
/// neither open nor shorted.
pub fn resistance_ohm(cfg: &NtcConfig, v_uv: i32) -> Result<u32, ChannelStatus> {
    if v_uv >= cfg.vref_uv.saturating_sub(cfg.open_margin_uv) {
        return Err(ChannelStatus::Open);
    }
    if v_uv < cfg.short_below_uv {
        return Err(ChannelStatus::Short);
    }
    let num = i64::from(cfg.r_fixed_ohm) * i64::from(v_uv);
    let den = i64::from(cfg.vref_uv) - i64::from(v_uv);
    if den <= 0 {
        return Err(ChannelStatus::Open);
    }
    Ok((num / den).clamp(0, i64::from(u32::MAX)) as u32)
}

/// Temperature in 0.1 °C for a resistance in Ω, or `range` outside the table.
pub fn temperature_from_ohm(r: u32) -> Result<i32, ChannelStatus> {
    let t = &TABLE_10K_3950;
    let (first, last) = (t[0], t[t.len() - 1]);
    if r > first.1 || r < last.1 {
        return Err(ChannelStatus::Range);
    }
    for w in t.windows(2) {
        let ((t0, r0), (t1, r1)) = (w[0], w[1]);
        if r <= r0 && r >= r1 {
            let span = i64::from(r0 - r1);
            let off = i64::from(r0 - r);
            let dt = i64::from(t1 - t0);
            // Round to the nearest 0.1 °C.
            return Ok(t0 + ((off * dt + span / 2) / span) as i32);
        }
    }
    Err(ChannelStatus::Range)
}

/// Temperature measurement from the divider voltage in µV.
pub fn temperature(cfg: &NtcConfig, v_uv: i32) -> Measurement {
    match resistance_ohm(cfg, v_uv).and_then(temperature_from_ohm) {
        Ok(t) => Measurement::ok(t),
        Err(s) => Measurement::fault(0, s),
    }
}
