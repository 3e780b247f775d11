//! What the rules' transitions are called in the store: the causes of
//! alarms the gateway raises itself, the supply channel, and the kind and
//! cause of a rule alarm, a rate alarm or a fault.

use rules::{Direction, FaultKind};
use wire::{ChannelStatus, Quantity};

/// Cause of node-level offline alarms.
pub const CAUSE_OFFLINE: &str = "offline";
/// Cause of node-level supply failures (主电故障).
pub const CAUSE_SUPPLY: &str = "supply";
/// Cause of site-level uplink loss.
pub const CAUSE_UPLINK: &str = "uplink";
/// Cause of channel faults.
pub const CAUSE_FAULT: &str = "fault";
/// Cause of a detector's own alarm judgement (探测器自身报警), reported in an
/// `event` (a node's local rule, or a Modbus device's alarm bit).
pub const CAUSE_DEVICE_ALARM: &str = "device_alarm";
/// Cause of a loop whose learned natural leakage is itself a hazard
/// (线路绝缘老化嫌疑).
pub const CAUSE_INSULATION: &str = "insulation_suspect";
/// Cause of the duty desk's notice that a node's `(boot, seq)` sequence
/// restarted where the de-duplication window could not follow it (board
/// swap, boot counter fallen back, a confirmed leap): raised and settled at
/// once.
pub const CAUSE_SEQ_RESTART: &str = "seq_restart";
/// Cause of the duty desk's notice that a channel reports another quantity
/// while an alarm stands on it: its readings are refused until the alarm
/// is reset. Raised and settled at once.
pub const CAUSE_QUANTITY_CHANGED: &str = "quantity_changed";
/// Channel id a node uses in an `event` to report its own power supply.
pub use crate::domain::ids::SUPPLY_CHANNEL;

/// Which desk an alarm belongs to (GB 14287.1 keeps electrical-fire
/// warnings apart from fire alarms, and faults apart from both).
pub fn alarm_kind(q: Quantity) -> &'static str {
    match q {
        Quantity::ResidualCurrent
        | Quantity::Temperature
        | Quantity::Arc
        | Quantity::Current
        | Quantity::Voltage => "electrical_fire",
        Quantity::WaterPressure | Quantity::WaterLevel | Quantity::LoopCurrent => "fire_facility",
    }
}

/// The threshold cause name of a rule on a quantity: `residual_current_high`.
pub fn threshold_cause(q: Quantity, d: Direction) -> String {
    let dir = match d {
        Direction::High => "high",
        Direction::Low => "low",
    };
    format!("{}_{dir}", q.as_str())
}

/// The rate-of-rise cause name: `temperature_rise`.
pub fn rate_cause(q: Quantity) -> String {
    format!("{}_rise", q.as_str())
}

pub(super) fn fault_kind(s: ChannelStatus) -> Option<FaultKind> {
    match s {
        ChannelStatus::Ok => None,
        ChannelStatus::Open => Some(FaultKind::Open),
        ChannelStatus::Short => Some(FaultKind::Short),
        ChannelStatus::Range => Some(FaultKind::Range),
        ChannelStatus::Fault => Some(FaultKind::Fault),
    }
}
