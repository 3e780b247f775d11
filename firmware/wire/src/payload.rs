//! Payload types of contract v1. Every numeric value is an integer in the
//! quantity's wire unit (see [`Quantity::unit`]); there are no floats on the wire.

use crate::id::{ChannelId, CmdId};
use crate::MAX_CHANNELS;
use core::fmt;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Marker put in deserialisation errors; see `codec`.
pub(crate) const RANGE_MARKER: &str = "wire:range";
pub(crate) const CHANNELS_MARKER: &str = "wire:channels";
pub(crate) const QUANTITY_MARKER: &str = "wire:quantity";
pub(crate) const STATUS_MARKER: &str = "wire:status";

/// Declares a string-valued enum with its wire names, and (de)serialisers
/// that report an unknown name with a stable marker.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $marker:expr, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a wire name.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_wire(v).ok_or_else(|| {
                            E::custom(format_args!("{}: unknown {}", $marker, stringify!($name)))
                        })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

wire_enum!(
    /// What a channel measures, and so its integer unit.
    Quantity, QUANTITY_MARKER, {
        /// 剩余电流 (漏电流), mA.
        ResidualCurrent = "residual_current",
        /// Cable, busbar or breaker temperature, 0.1 °C.
        Temperature = "temperature",
        /// 故障电弧, arcs per second.
        Arc = "arc",
        /// Phase current, mA.
        Current = "current",
        /// Phase voltage, 0.1 V.
        Voltage = "voltage",
        /// 消防管网/消火栓压力, kPa.
        WaterPressure = "water_pressure",
        /// 消防水池/水箱液位, mm.
        WaterLevel = "water_level",
        /// 4–20 mA loop current, µA.
        LoopCurrent = "loop_current",
    }
);

impl Quantity {
    /// The integer unit of this quantity on the wire.
    pub const fn unit(self) -> &'static str {
        match self {
            Quantity::ResidualCurrent | Quantity::Current => "mA",
            Quantity::Temperature => "0.1 °C",
            Quantity::Arc => "arcs/s",
            Quantity::Voltage => "0.1 V",
            Quantity::WaterPressure => "kPa",
            Quantity::WaterLevel => "mm",
            Quantity::LoopCurrent => "µA",
        }
    }
}

wire_enum!(
    /// The sensor's own verdict on a channel. Anything but `ok` is a fault of
    /// the sensor or its wiring, never a fire alarm.
    ChannelStatus, STATUS_MARKER, {
        /// The reading is valid.
        Ok = "ok",
        /// Open circuit (e.g. CT disconnected, probe broken).
        Open = "open",
        /// Short circuit.
        Short = "short",
        /// Out of the sensor's measuring range (e.g. 4–20 mA loop outside 3.6–21.0 mA).
        Range = "range",
        /// Any other sensor fault.
        Fault = "fault",
    }
);

wire_enum!(
    /// Node state in a `status` message.
    NodeState, STATUS_MARKER, {
        /// Birth message, retained.
        Online = "online",
        /// Last Will, or an orderly goodbye.
        Offline = "offline",
    }
);

wire_enum!(
    /// Level of a node-side alarm transition in an `event`.
    EventLevel, STATUS_MARKER, {
        /// Back to normal.
        Normal = "normal",
        /// 预警.
        PreAlarm = "pre_alarm",
        /// 报警.
        Alarm = "alarm",
        /// Sensor fault (设备故障).
        Fault = "fault",
    }
);

wire_enum!(
    /// Operations the gateway may ask of a node.
    CmdOp, STATUS_MARKER, {
        /// Reset latched alarms (an authorised operator action).
        Reset = "reset",
        /// Apply new configuration.
        Config = "config",
        /// Inject a test signal on each channel.
        Selftest = "selftest",
        /// Answer with an ack.
        Ping = "ping",
    }
);

/// A measured value in the quantity's integer unit. Decoding refuses numbers
/// outside `i32` with a typed error instead of wrapping them.
fn deserialize_value<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer within i32")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v)
                .map_err(|_| E::custom(format_args!("{RANGE_MARKER}: {v} is outside i32")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v)
                .map_err(|_| E::custom(format_args!("{RANGE_MARKER}: {v} is outside i32")))
        }
        fn visit_f64<E: de::Error>(self, _v: f64) -> Result<i32, E> {
            Err(E::custom(format_args!(
                "{RANGE_MARKER}: value is not an integer"
            )))
        }
    }
    d.deserialize_i64(V)
}

/// One channel's reading in a telemetry message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// Channel id within the node.
    pub id: ChannelId,
    /// What is measured.
    pub q: Quantity,
    /// Value in the quantity's integer unit.
    #[serde(deserialize_with = "deserialize_value")]
    pub v: i32,
    /// Sensor status.
    pub s: ChannelStatus,
}

/// The channel list of a telemetry message: at most [`MAX_CHANNELS`].
pub type Readings = heapless::Vec<Reading, MAX_CHANNELS>;

fn deserialize_readings<'de, D: Deserializer<'de>>(d: D) -> Result<Readings, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Readings;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_CHANNELS} channel readings")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readings, A::Error> {
            let mut out = Readings::new();
            while let Some(r) = seq.next_element::<Reading>()? {
                if out.push(r).is_err() {
                    return Err(de::Error::custom(format_args!(
                        "{CHANNELS_MARKER}: more than {MAX_CHANNELS} channels"
                    )));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

/// `fire/v1/{site}/{node}/telemetry`: a set of readings sampled together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Node restart counter.
    pub boot: u32,
    /// Message counter within this boot (shared with `event`).
    pub seq: u32,
    /// Milliseconds since the Unix epoch at sampling, or 0 without a wall clock.
    pub ts: u64,
    /// The readings.
    #[serde(deserialize_with = "deserialize_readings")]
    pub ch: Readings,
}

/// `fire/v1/{site}/{node}/status`: retained birth message, or the Last Will.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Online (birth) or offline (will).
    pub state: NodeState,
    /// Firmware version, in the birth message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fw: Option<heapless::String<24>>,
    /// Boot counter, in the birth message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<u32>,
    /// Readings the node dropped from its offline buffer since the last status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u32>,
}

impl Status {
    /// The Last Will every node registers: `{"state":"offline"}`.
    pub const fn offline() -> Self {
        Status {
            state: NodeState::Offline,
            fw: None,
            boot: None,
            dropped: None,
        }
    }
}

/// `fire/v1/{site}/{node}/event`: a node-side alarm transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Node restart counter.
    pub boot: u32,
    /// Message counter within this boot (shared with `telemetry`).
    pub seq: u32,
    /// Milliseconds since the Unix epoch, or 0 without a wall clock.
    pub ts: u64,
    /// The channel the transition is on.
    pub ch: ChannelId,
    /// The level entered.
    pub level: EventLevel,
    /// The value that caused it.
    #[serde(deserialize_with = "deserialize_value")]
    pub v: i32,
}

/// Like [`deserialize_value`], for an optional field: absent or `null` is
/// `None`.
fn deserialize_opt_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or an integer within i32")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<i32>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<i32>, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<i32>, D2::Error> {
            deserialize_value(d).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// `fire/v1/{site}/{node}/cmd`: a command to a node.
///
/// `reset`, `selftest` and `ping` carry only `id` and `op`:
/// `{"id":"c-42","op":"reset"}`. `config` (an additive extension of contract
/// v1) also carries the new setpoints of one channel, in the quantity's wire
/// unit: `{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":300,"alarm":450}`,
/// optionally `"hysteresis":30`. `pre_alarm` absent or `null` means the
/// channel has no pre-alarm level; `hysteresis` absent keeps the channel's.
/// The setpoint fields are absent from the encoding when `None`, so the
/// other ops encode exactly as before. Decoding checks only their shape (an
/// id pattern, integers within `i32`); whether the node accepts them (a
/// `config` with `ch` and `alarm`, for a channel it has, within the
/// standard's limits) is the node's call, answered in the ack. The node
/// keeps the change in RAM only: after a restart it runs its provisioning
/// artefact's setpoints until the gateway sends the ones in force again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cmd {
    /// Echoed in the ack.
    pub id: CmdId,
    /// What to do.
    pub op: CmdOp,
    /// `config`: the channel whose setpoints change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ch: Option<ChannelId>,
    /// `config`: the pre-alarm (预警) setpoint; `None`: no pre-alarm level.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_opt_value"
    )]
    pub pre_alarm: Option<i32>,
    /// `config`: the alarm (报警) setpoint (required by the node).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_opt_value"
    )]
    pub alarm: Option<i32>,
    /// `config`: the return difference (回差); `None` keeps the channel's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_opt_value"
    )]
    pub hysteresis: Option<i32>,
}

impl Cmd {
    /// A command without setpoint fields (`reset`, `selftest`, `ping`).
    pub const fn new(id: CmdId, op: CmdOp) -> Self {
        Cmd {
            id,
            op,
            ch: None,
            pre_alarm: None,
            alarm: None,
            hysteresis: None,
        }
    }

    /// A `config` command: channel `ch` gets these setpoints.
    pub const fn config(
        id: CmdId,
        ch: ChannelId,
        pre_alarm: Option<i32>,
        alarm: i32,
        hysteresis: Option<i32>,
    ) -> Self {
        Cmd {
            id,
            op: CmdOp::Config,
            ch: Some(ch),
            pre_alarm,
            alarm: Some(alarm),
            hysteresis,
        }
    }

    /// Whether any of the `config` fields is present.
    pub const fn has_config_fields(&self) -> bool {
        self.ch.is_some()
            || self.pre_alarm.is_some()
            || self.alarm.is_some()
            || self.hysteresis.is_some()
    }
}

/// `fire/v1/{site}/{node}/cmd/ack`: the node's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdAck {
    /// The command's id.
    pub id: CmdId,
    /// Whether it was carried out.
    pub ok: bool,
}
