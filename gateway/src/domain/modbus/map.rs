//! Register maps (寄存器映射表): what a device model's registers mean, as
//! data. One TOML file per model; the gateway ships maps for the devices in
//! DOMAIN.md §4 (`gateway/modbus-maps/`) and loads more from a directory.
//!
//! Pure: parsing and validation (every problem at once, each with its path),
//! planning of merged read requests, decoding of register words into wire
//! readings, and the inverse encoding the simulator serves. No I/O.
//!
//! A map file:
//!
//! ```toml
//! model = "acrel_asj"              # how devices in the gateway config name it
//! name = "Acrel ASJ-style residual-current relay"
//!
//! [[channels]]
//! id = "rc1"                       # the wire channel id ([a-z0-9_]{1,16})
//! quantity = "residual_current"    # the wire quantity: the value is in its integer unit
//! function = "holding"             # holding | input | coil | discrete
//! address = 0x0000                 # 0-based protocol address
//! type = "u16"                     # u16 | i16 | u32 | i32 | f32 | bool (coil, discrete)
//! order = "ABCD"                   # ABCD | CDAB | BADC | DCBA (16-bit: BA.. swaps the bytes)
//! scale = 1.0                      # wire value = raw × scale + offset, rounded
//! offset = 0.0
//! sentinels = [{ raw = 0xE5E5, status = "short" }, { raw = 0xFAFA, status = "open" }]
//!
//! [[status]]                       # a bit that means something about a channel or the device
//! function = "holding"
//! address = 0x001B
//! bit = 2                          # 0 = least significant
//! meaning = "open"                 # pre_alarm | alarm | open | short | fault | supply
//! channel = "rc1"                  # every meaning but `supply` names a channel
//! ```
//!
//! The types are here; `parse` reads and validates a file, `plan` merges
//! the reads, `decode` turns words into readings and `encode` is the
//! simulator's inverse.

mod decode;
mod encode;
mod parse;
mod plan;
#[cfg(test)]
mod tests;

pub use decode::{convert, decode, Block, Decoded, Flag, Reading};
pub use encode::{raw_for_value, words_for_raw};
pub use parse::parse_map;
pub use plan::{plan, ReadRequest};

use std::fmt;
use wire::{ChannelId, ChannelStatus, Quantity};

/// Most registers one read (function 3 or 4) may ask for.
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Most coils or discrete inputs one read (function 1 or 2) may ask for.
pub const MAX_BITS_PER_READ: u16 = 2000;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// Coils, read with function 1.
    Coil,
    /// Discrete inputs, function 2.
    Discrete,
    /// Holding registers, function 3.
    Holding,
    /// Input registers, function 4.
    Input,
}

impl Function {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "coil" => Function::Coil,
            "discrete" => Function::Discrete,
            "holding" => Function::Holding,
            "input" => Function::Input,
            _ => return None,
        })
    }

    /// Name in map files and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Function::Coil => "coil",
            Function::Discrete => "discrete",
            Function::Holding => "holding",
            Function::Input => "input",
        }
    }

    /// Whether this table holds single bits (coils, discrete inputs).
    pub const fn is_bits(self) -> bool {
        matches!(self, Function::Coil | Function::Discrete)
    }

    /// The most items one read of this table may ask for.
    pub const fn max_per_read(self) -> u16 {
        if self.is_bits() {
            MAX_BITS_PER_READ
        } else {
            MAX_REGISTERS_PER_READ
        }
    }
}

/// How the raw value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
    /// A coil or discrete input: 0 or 1.
    Bool,
}

impl ValueType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "u16" => ValueType::U16,
            "i16" => ValueType::I16,
            "u32" => ValueType::U32,
            "i32" => ValueType::I32,
            "f32" => ValueType::F32,
            "bool" => ValueType::Bool,
            _ => return None,
        })
    }

    /// Registers (or bits) the value spans.
    pub const fn width(self) -> u16 {
        match self {
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            _ => 1,
        }
    }
}

/// Word and byte order of a value, named by where the bytes of the
/// big-endian value `A B C D` (A most significant) appear on the wire.
/// For 16-bit values only the byte order counts: `ABCD`/`CDAB` = `A B`,
/// `BADC`/`DCBA` = `B A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// Big-endian words, high word first (the Modbus default).
    Abcd,
    /// High word last (common "word swap").
    Cdab,
    /// Bytes swapped within each word, high word first.
    Badc,
    /// Fully little-endian.
    Dcba,
}

impl WordOrder {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ABCD" => WordOrder::Abcd,
            "CDAB" => WordOrder::Cdab,
            "BADC" => WordOrder::Badc,
            "DCBA" => WordOrder::Dcba,
            _ => return None,
        })
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
}

/// What a status bit means when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Meaning {
    /// The device's own pre-alarm (预警) on the channel.
    PreAlarm,
    /// The device's own alarm (报警) on the channel.
    Alarm,
    /// The channel's sensor is open (CT break, probe broken).
    Open,
    /// The channel's sensor is short-circuited.
    Short,
    /// Any other fault of the channel's sensor.
    Fault,
    /// The device's own power supply failed (主电故障).
    Supply,
}

impl Meaning {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pre_alarm" => Meaning::PreAlarm,
            "alarm" => Meaning::Alarm,
            "open" => Meaning::Open,
            "short" => Meaning::Short,
            "fault" => Meaning::Fault,
            "supply" => Meaning::Supply,
            _ => return None,
        })
    }

    /// Name in map files and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Meaning::PreAlarm => "pre_alarm",
            Meaning::Alarm => "alarm",
            Meaning::Open => "open",
            Meaning::Short => "short",
            Meaning::Fault => "fault",
            Meaning::Supply => "supply",
        }
    }

    /// The channel status a set bit gives, for sensor-fault meanings.
    pub const fn channel_status(self) -> Option<ChannelStatus> {
        match self {
            Meaning::Open => Some(ChannelStatus::Open),
            Meaning::Short => Some(ChannelStatus::Short),
            Meaning::Fault => Some(ChannelStatus::Fault),
            _ => None,
        }
    }
}

/// A raw value that is not a measurement but a fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentinel {
    /// The raw value as read (the registers' unsigned value, before scaling).
    pub raw: u32,
    pub status: ChannelStatus,
}

/// One measured channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub id: ChannelId,
    pub quantity: Quantity,
    pub function: Function,
    pub address: u16,
    pub value_type: ValueType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub sentinels: Vec<Sentinel>,
}

/// One status bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusBit {
    pub function: Function,
    pub address: u16,
    /// Bit within the register (0 = least significant); 0 for coils and discrete inputs.
    pub bit: u8,
    pub meaning: Meaning,
    /// The channel it is about; `None` for device-level meanings (`supply`).
    pub channel: Option<ChannelId>,
}

/// A validated register map.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    /// Identifier used by the configuration (`map = "acrel_asj"`).
    pub model: String,
    /// Human-readable name.
    pub name: String,
    pub channels: Vec<ChannelSpec>,
    pub status: Vec<StatusBit>,
}

/// One problem in a map file, with its path (`channels[2].type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for MapIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The maps built into the gateway, as `(file name, TOML)`.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "acrel_asj.toml",
        include_str!("../../../modbus-maps/acrel_asj.toml"),
    ),
    (
        "aim_r100.toml",
        include_str!("../../../modbus-maps/aim_r100.toml"),
    ),
    (
        "temp_module.toml",
        include_str!("../../../modbus-maps/temp_module.toml"),
    ),
    (
        "transmitter_4_20.toml",
        include_str!("../../../modbus-maps/transmitter_4_20.toml"),
    ),
];

/// A shipped map by model name. The shipped maps are tested to parse.
pub fn shipped(model: &str) -> Option<RegisterMap> {
    SHIPPED
        .iter()
        .filter_map(|(_, text)| parse_map(text).ok())
        .find(|m| m.model == model)
}
