//! What a rule is fed: one reading of a channel, with its status, at a caller-supplied time.
//!
//! A reading whose status is a fault (open circuit, short circuit, out of range, other) carries
//! no usable value: rules report the fault and hold their alarm evaluation instead of treating
//! the value as a fire (DOMAIN §3: "a fault is not an alarm").

/// Milliseconds from a monotonic clock. The rules never read a clock: the caller passes `now`.
pub type Millis = u64;

/// A sensor or channel fault (设备故障). Never a fire alarm.
///
/// With the `serde` feature the names are `open`, `short`, `range` and `fault`, the channel
/// status strings of the wire contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum FaultKind {
    /// Open circuit (e.g. a CT or probe disconnected, 4–20 mA loop below 3.6 mA).
    Open,
    /// Short circuit (e.g. a 4–20 mA loop above 21.0 mA).
    Short,
    /// The reading is outside the sensor's measuring range.
    Range,
    /// Any other device fault (timeouts, CRC errors, exception responses).
    Fault,
}

/// Whether a sample's value can be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SampleStatus {
    /// The value is a valid reading.
    #[default]
    Ok,
    /// The channel is faulted; the value must be ignored.
    Fault(FaultKind),
}

/// One reading of a channel, in the channel's integer unit (mA, 0.1 °C, kPa, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Sample {
    /// The reading. Meaningless when `status` is a fault.
    pub value: i32,
    /// Whether the reading can be used.
    pub status: SampleStatus,
}

impl Sample {
    /// A valid reading.
    pub const fn ok(value: i32) -> Self {
        Sample {
            value,
            status: SampleStatus::Ok,
        }
    }

    /// A faulted reading (its value is 0 and is ignored).
    pub const fn fault(kind: FaultKind) -> Self {
        Sample {
            value: 0,
            status: SampleStatus::Fault(kind),
        }
    }
}
