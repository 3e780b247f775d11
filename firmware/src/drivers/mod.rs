//! Sensor drivers over `embedded-hal` 1.0 traits, and the conversions from
//! raw signals to the contract's integer units with a channel status.
//!
//! embedded-hal 1.0 has no ADC trait, so analogue inputs come through an
//! external converter on I²C: [`ads1115`]. The conversions are pure
//! functions over microvolts, so they are tested without hardware:
//! - [`ct`]: residual current from a zero-sequence CT (RMS over a window,
//!   burden and ratio scaling to mA, CT-break detection);
//! - [`ntc`]: temperature from an NTC divider (table, 0.1 °C, open/short);
//! - [`loop_current`]: 4–20 mA transmitters scaled to kPa or mm, with NAMUR
//!   NE43 fault detection.

pub mod ads1115;
pub mod ct;
pub mod loop_current;
pub mod ntc;

use wire::ChannelStatus;

/// A measured value in its wire unit and the channel status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// Value in the quantity's integer unit (0 when the status is not `ok`
    /// and no meaningful value exists).
    pub v: i32,
    /// Channel status for the wire.
    pub s: ChannelStatus,
}

impl Measurement {
    /// A good value.
    pub const fn ok(v: i32) -> Self {
        Measurement {
            v,
            s: ChannelStatus::Ok,
        }
    }

    /// A faulted channel with status `s` and the value seen.
    pub const fn fault(v: i32, s: ChannelStatus) -> Self {
        Measurement { v, s }
    }
}

/// Integer square root (floor) of a `u64`.
pub fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton's method from an over-estimate; converges without floats.
    let mut x = 1u64 << (64 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}
