//! Residual current (剩余电流) from a zero-sequence current transformer.
//!
//! The CT secondary drives a burden resistor; the ADC samples the burden
//! voltage (differential) over a window covering whole mains cycles. The
//! primary residual current is the RMS of the AC part scaled by the CT
//! ratio and the burden: `I_p[mA] = V_rms[µV] × ratio / R_burden[mΩ]`.
//! Integer maths throughout.
//!
//! CT break (互感器断线): the input has a bias network that holds it near
//! the DC level of the CT winding while the CT is connected; a broken
//! secondary lets the bias pull the input far off, so a DC mean above
//! `open_dc_uv` (in magnitude) is `open`. A window whose samples hit the
//! converter's full scale is `range`.

use super::{isqrt, Measurement};
use wire::ChannelStatus;

/// How a CT channel is wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtConfig {
    /// Turns ratio (primary:secondary), e.g. 1000 for 1000:1.
    pub ratio: u32,
    /// Burden resistor in mΩ.
    pub burden_mohm: u32,
    /// |DC mean| above this (µV) means the CT is disconnected.
    pub open_dc_uv: i32,
    /// |sample| at or above this (µV) means the converter saturated.
    pub clip_uv: i32,
}

/// RMS of the AC part of `samples_uv` (mean removed), in µV, and the DC mean.
pub fn rms_uv(samples_uv: &[i32]) -> (u32, i32) {
    if samples_uv.is_empty() {
        return (0, 0);
    }
    let n = samples_uv.len() as i64;
    let sum: i64 = samples_uv.iter().map(|&s| i64::from(s)).sum();
    let mean = sum / n;
    let var: u64 = samples_uv
        .iter()
        .map(|&s| {
            let d = i64::from(s) - mean;
            (d * d) as u64
        })
        .fold(0u64, u64::saturating_add)
        / n as u64;
    (isqrt(var).min(u64::from(u32::MAX)) as u32, mean as i32)
}

/// The residual current in mA of a sample window, with the channel status.
pub fn residual_current(cfg: &CtConfig, samples_uv: &[i32]) -> Measurement {
    if samples_uv
        .iter()
        .any(|s| s.unsigned_abs() >= cfg.clip_uv.unsigned_abs())
    {
        return Measurement::fault(0, ChannelStatus::Range);
    }
    let (rms, mean) = rms_uv(samples_uv);
    if mean.unsigned_abs() > cfg.open_dc_uv.unsigned_abs() {
        return Measurement::fault(0, ChannelStatus::Open);
    }
    if cfg.burden_mohm == 0 {
        return Measurement::fault(0, ChannelStatus::Fault);
    }
    let ma = u64::from(rms) * u64::from(cfg.ratio) / u64::from(cfg.burden_mohm);
    Measurement::ok(ma.min(i32::MAX as u64) as i32)
}
