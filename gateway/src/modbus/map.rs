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

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
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

// ---------------------------------------------------------------------------
// Parsing and validation

/// The file as written: names are strings so that every unknown one is
/// reported with its path, not the first one only.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawMap {
    model: String,
    name: String,
    channels: Vec<RawChannel>,
    status: Vec<RawStatus>,
}

#[derive(Debug, Deserialize)]
struct RawChannel {
    #[serde(default)]
    id: String,
    #[serde(default)]
    quantity: String,
    #[serde(default = "holding")]
    function: String,
    address: Option<i64>,
    #[serde(default = "u16_type", rename = "type")]
    value_type: String,
    #[serde(default = "abcd")]
    order: String,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    #[serde(default)]
    sentinels: Vec<RawSentinel>,
}

#[derive(Debug, Deserialize)]
struct RawSentinel {
    raw: i64,
    status: String,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    #[serde(default = "holding")]
    function: String,
    address: Option<i64>,
    #[serde(default)]
    bit: i64,
    #[serde(default)]
    meaning: String,
    channel: Option<String>,
}

fn holding() -> String {
    "holding".into()
}
fn u16_type() -> String {
    "u16".into()
}
fn abcd() -> String {
    "ABCD".into()
}
fn one() -> f64 {
    1.0
}

/// Parses and validates a map file; `Err` carries every problem.
pub fn parse_map(text: &str) -> Result<RegisterMap, Vec<MapIssue>> {
    let issue = |path: &str, message: String| MapIssue {
        path: path.into(),
        message,
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| vec![issue("", e.to_string().trim().to_string())])?;
    let mut unknown = Vec::new();
    let raw: RawMap = serde_ignored::deserialize(de, |path| {
        unknown.push(issue(
            &crate::config::ignored_path(&path),
            "unknown key".into(),
        ))
    })
    .map_err(|e| vec![issue("", e.to_string().trim().to_string())])?;
    let mut issues = unknown;
    let map = validate(raw, &mut issues);
    if issues.is_empty() {
        Ok(map)
    } else {
        Err(issues)
    }
}

/// An address field: present and within 0..=65535.
fn address(v: Option<i64>, path: String, issues: &mut Vec<MapIssue>) -> u16 {
    match v.map(u16::try_from) {
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            issues.push(MapIssue {
                path,
                message: format!("{} is outside 0..=65535", v.unwrap_or_default()),
            });
            0
        }
        None => {
            issues.push(MapIssue {
                path,
                message: "is required".into(),
            });
            0
        }
    }
}

fn validate(raw: RawMap, issues: &mut Vec<MapIssue>) -> RegisterMap {
    let mut issue = |path: String, message: String| issues.push(MapIssue { path, message });
    if wire::NodeId::new(&raw.model).is_err() {
        issue("model".into(), "must match [a-z0-9_-]{1,32}".into());
    }
    if raw.channels.is_empty() {
        issue("channels".into(), "a map needs at least one channel".into());
    }
    if raw.channels.len() > wire::MAX_CHANNELS {
        issue(
            "channels".into(),
            format!(
                "{} channels; one telemetry message carries at most {}",
                raw.channels.len(),
                wire::MAX_CHANNELS
            ),
        );
    }
    let mut channels = Vec::new();
    let mut ids = HashSet::new();
    // (table, first, past the last, owner): every channel whose table and
    // address parse, for the overlap checks, even if it has other problems.
    let mut spans: Vec<(Function, u32, u32, String)> = Vec::new();
    for (i, c) in raw.channels.iter().enumerate() {
        let p = format!("channels[{i}]");
        let mut local = Vec::new();
        let id = ChannelId::new(&c.id)
            .map_err(|_| local.push((format!("{p}.id"), "must match [a-z0-9_]{1,16}".to_string())));
        if id.is_ok() && !ids.insert(c.id.clone()) {
            local.push((
                format!("{p}.id"),
                format!("duplicate channel id {:?}", c.id),
            ));
        }
        let quantity = Quantity::from_wire(&c.quantity);
        if quantity.is_none() {
            local.push((
                format!("{p}.quantity"),
                format!("unknown quantity {:?}", c.quantity),
            ));
        }
        let function = Function::parse(&c.function);
        if function.is_none() {
            local.push((
                format!("{p}.function"),
                format!(
                    "unknown function {:?} (holding, input, coil, discrete)",
                    c.function
                ),
            ));
        }
        let value_type = ValueType::parse(&c.value_type);
        match (value_type, function) {
            (None, _) => local.push((
                format!("{p}.type"),
                format!(
                    "unknown type {:?} (u16, i16, u32, i32, f32, bool)",
                    c.value_type
                ),
            )),
            (Some(ValueType::Bool), Some(f)) if !f.is_bits() => local.push((
                format!("{p}.type"),
                "bool is for coils and discrete inputs".into(),
            )),
            (Some(t), Some(f)) if f.is_bits() && t != ValueType::Bool => local.push((
                format!("{p}.type"),
                format!("a {} is read as bool", f.as_str()),
            )),
            _ => {}
        }
        let order = WordOrder::parse(&c.order);
        if order.is_none() {
            local.push((
                format!("{p}.order"),
                format!("unknown order {:?} (ABCD, CDAB, BADC, DCBA)", c.order),
            ));
        }
        if c.scale == 0.0 || !c.scale.is_finite() {
            local.push((
                format!("{p}.scale"),
                "must be a finite number other than zero".into(),
            ));
        }
        if !c.offset.is_finite() {
            local.push((format!("{p}.offset"), "must be a finite number".into()));
        }
        let mut addr_issues = Vec::new();
        let addr = address(c.address, format!("{p}.address"), &mut addr_issues);
        local.extend(addr_issues.into_iter().map(|i| (i.path, i.message)));
        let width = value_type.map_or(1, ValueType::width);
        if let (Some(f), Some(_)) = (function, c.address) {
            let a = u32::from(addr);
            spans.push((f, a, a + u32::from(width), p.clone()));
        }
        if u32::from(addr) + u32::from(width) > 65_536 {
            local.push((
                format!("{p}.address"),
                "the value runs past address 65535".into(),
            ));
        }
        let mut sentinels = Vec::new();
        for (si, s) in c.sentinels.iter().enumerate() {
            let sp = format!("{p}.sentinels[{si}]");
            let max = if width == 2 {
                i64::from(u32::MAX)
            } else {
                i64::from(u16::MAX)
            };
            let raw = u32::try_from(s.raw).ok().filter(|r| i64::from(*r) <= max);
            if raw.is_none() {
                local.push((
                    format!("{sp}.raw"),
                    format!("{} does not fit the channel's {} register(s)", s.raw, width),
                ));
            }
            let status = ChannelStatus::from_wire(&s.status).filter(|s| *s != ChannelStatus::Ok);
            if status.is_none() {
                local.push((
                    format!("{sp}.status"),
                    format!("{:?} must be open, short, range or fault", s.status),
                ));
            }
            if let (Some(raw), Some(status)) = (raw, status) {
                sentinels.push(Sentinel { raw, status });
            }
        }
        let ok = local.is_empty();
        for (path, message) in local {
            issue(path, message);
        }
        if let (true, Ok(id), Some(quantity), Some(function), Some(value_type), Some(order)) =
            (ok, id, quantity, function, value_type, order)
        {
            channels.push(ChannelSpec {
                id,
                quantity,
                function,
                address: addr,
                value_type,
                order,
                scale: c.scale,
                offset: c.offset,
                sentinels,
            });
        }
    }
    // Two channels reading the same register is a mistake in the map.
    spans.sort();
    for w in spans.windows(2) {
        if w[0].0 == w[1].0 && w[1].1 < w[0].2 {
            issue(
                format!("{}.address", w[1].3),
                format!(
                    "{} register {} overlaps {}",
                    w[1].0.as_str(),
                    w[1].1,
                    w[0].3
                ),
            );
        }
    }
    let mut status = Vec::new();
    let mut bits = HashSet::new();
    for (i, s) in raw.status.iter().enumerate() {
        let p = format!("status[{i}]");
        let mut local = Vec::new();
        let function = Function::parse(&s.function);
        if function.is_none() {
            local.push((
                format!("{p}.function"),
                format!(
                    "unknown function {:?} (holding, input, coil, discrete)",
                    s.function
                ),
            ));
        }
        let mut addr_issues = Vec::new();
        let addr = address(s.address, format!("{p}.address"), &mut addr_issues);
        local.extend(addr_issues.into_iter().map(|i| (i.path, i.message)));
        let max_bit = if function.is_some_and(Function::is_bits) {
            0
        } else {
            15
        };
        if !(0..=max_bit).contains(&s.bit) {
            local.push((format!("{p}.bit"), format!("must be 0..={max_bit}")));
        }
        let meaning = Meaning::parse(&s.meaning);
        if meaning.is_none() {
            local.push((
                format!("{p}.meaning"),
                format!(
                    "unknown meaning {:?} (pre_alarm, alarm, open, short, fault, supply)",
                    s.meaning
                ),
            ));
        }
        let channel = match (&s.channel, meaning) {
            (Some(_), Some(Meaning::Supply)) => {
                local.push((
                    format!("{p}.channel"),
                    "supply is about the device, not a channel".into(),
                ));
                None
            }
            (None, Some(m)) if m != Meaning::Supply => {
                local.push((
                    format!("{p}.channel"),
                    format!("is required for {}", m.as_str()),
                ));
                None
            }
            (Some(c), _) => match channels.iter().find(|ch| ch.id.as_str() == c) {
                Some(ch) => Some(ch.id.clone()),
                None => {
                    local.push((
                        format!("{p}.channel"),
                        format!("no channel {c:?} in the map"),
                    ));
                    None
                }
            },
            (None, _) => None,
        };
        if let Some(f) = function {
            if let Some((_, _, _, owner)) = spans
                .iter()
                .find(|(sf, a, b, _)| *sf == f && (*a..*b).contains(&u32::from(addr)))
            {
                local.push((
                    format!("{p}.address"),
                    format!("{} register {addr} is {owner}'s value", f.as_str()),
                ));
            }
            if !bits.insert((f, addr, s.bit)) {
                local.push((
                    format!("{p}.bit"),
                    format!("{} {addr} bit {} is listed twice", f.as_str(), s.bit),
                ));
            }
        }
        let ok = local.is_empty();
        for (path, message) in local {
            issue(path, message);
        }
        if let (true, Some(function), Some(meaning)) = (ok, function, meaning) {
            status.push(StatusBit {
                function,
                address: addr,
                bit: s.bit as u8,
                meaning,
                channel,
            });
        }
    }
    RegisterMap {
        model: raw.model,
        name: raw.name,
        channels,
        status,
    }
}

// ---------------------------------------------------------------------------
// Planning

/// One read request: `count` items of `function` from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadRequest {
    pub function: Function,
    pub start: u16,
    pub count: u16,
}

impl ReadRequest {
    fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// The reads that cover every register a device's polled channels and
/// status bits use: contiguous or overlapping spans of one table merged into
/// one request, up to the protocol's limit per request. Gaps are never read
/// (many devices answer an exception for an address they do not have).
pub fn plan(map: &RegisterMap, skip: &[ChannelId]) -> Vec<ReadRequest> {
    let mut spans: Vec<(Function, u32, u32)> = map
        .channels
        .iter()
        .filter(|c| !skip.contains(&c.id))
        .map(|c| {
            let a = u32::from(c.address);
            (c.function, a, a + u32::from(c.value_type.width()))
        })
        .chain(
            map.status
                .iter()
                .filter(|s| s.channel.as_ref().is_none_or(|c| !skip.contains(c)))
                .map(|s| {
                    let a = u32::from(s.address);
                    (s.function, a, a + 1)
                }),
        )
        .collect();
    spans.sort();
    let mut out: Vec<ReadRequest> = Vec::new();
    for (f, a, b) in spans {
        if let Some(last) = out.last_mut() {
            let limit = u32::from(f.max_per_read());
            if last.function == f && a <= last.end() && b - u32::from(last.start) <= limit {
                let end = last.end().max(b);
                last.count = (end - u32::from(last.start)) as u16;
                continue;
            }
        }
        out.push(ReadRequest {
            function: f,
            start: a as u16,
            count: (b - a) as u16,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Decoding

/// What one read returned: registers as words, coils and discrete inputs as 0 or 1.
/// `None` when the read failed (an exception): its channels are `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub request: ReadRequest,
    pub words: Option<Vec<u16>>,
}

impl Block {
    fn get(&self, f: Function, addr: u16) -> Option<u16> {
        let r = &self.request;
        if r.function != f || addr < r.start || u32::from(addr) >= r.end() {
            return None;
        }
        self.words
            .as_ref()?
            .get(usize::from(addr - r.start))
            .copied()
    }
}

fn lookup(blocks: &[Block], f: Function, addr: u16) -> Option<u16> {
    blocks.iter().find_map(|b| b.get(f, addr))
}

/// One decoded channel, in the wire's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub id: ChannelId,
    pub quantity: Quantity,
    /// In the quantity's integer unit; 0 when the status is not `ok`.
    pub value: i32,
    pub status: ChannelStatus,
}

/// A set status bit with a meaning other than a sensor fault (those are in
/// the channel's status): the device's own alarms and its supply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flag {
    pub meaning: Meaning,
    pub channel: Option<ChannelId>,
}

/// A decoded poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reading {
    pub channels: Vec<Decoded>,
    pub flags: Vec<Flag>,
}

/// The raw register value as an unsigned number (for sentinels) from its
/// words in wire order.
fn raw_bits(words: &[u16], order: WordOrder) -> u32 {
    let fix = |w: u16| {
        if order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        }
    };
    match words {
        [w] => u32::from(fix(*w)),
        [a, b] => {
            let (hi, lo) = if order.swaps_words() {
                (*b, *a)
            } else {
                (*a, *b)
            };
            (u32::from(fix(hi)) << 16) | u32::from(fix(lo))
        }
        _ => 0,
    }
}

/// The raw register value as an unsigned number; `None` if a word is missing.
fn raw_value(spec: &ChannelSpec, blocks: &[Block]) -> Option<u32> {
    let mut words = [0u16; 2];
    let n = usize::from(spec.value_type.width());
    for (i, w) in words.iter_mut().enumerate().take(n) {
        *w = lookup(blocks, spec.function, spec.address.checked_add(i as u16)?)?;
    }
    if spec.value_type == ValueType::Bool {
        return Some(u32::from(words[0] != 0));
    }
    Some(raw_bits(&words[..n], spec.order))
}

/// Converts a raw register value to the channel's wire value and status:
/// sentinels first, then the number scaled, offset and rounded (half away
/// from zero). A float that is not a number, or a result outside `i32`, is
/// `fault` or `range`.
pub fn convert(spec: &ChannelSpec, raw: u32) -> (i32, ChannelStatus) {
    if let Some(s) = spec.sentinels.iter().find(|s| s.raw == raw) {
        return (0, s.status);
    }
    let x = match spec.value_type {
        ValueType::U16 | ValueType::U32 | ValueType::Bool => f64::from(raw),
        ValueType::I16 => f64::from(raw as u16 as i16),
        ValueType::I32 => f64::from(raw as i32),
        ValueType::F32 => {
            let f = f32::from_bits(raw);
            if !f.is_finite() {
                return (0, ChannelStatus::Fault);
            }
            f64::from(f)
        }
    };
    let v = (x * spec.scale + spec.offset).round();
    if v.is_finite() && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
        (v as i32, ChannelStatus::Ok)
    } else {
        (0, ChannelStatus::Range)
    }
}

/// Decodes a poll: every polled channel with its value and status, and the
/// device's set flags (alarm, pre-alarm, supply). Status bits that mean a
/// sensor fault set the channel's status unless a sentinel already did.
/// A channel whose registers were not read (its block failed) is `fault`.
pub fn decode(map: &RegisterMap, skip: &[ChannelId], blocks: &[Block]) -> Reading {
    let mut faults: BTreeMap<&ChannelId, ChannelStatus> = BTreeMap::new();
    let mut flags = Vec::new();
    for s in &map.status {
        if s.channel.as_ref().is_some_and(|c| skip.contains(c)) {
            continue;
        }
        let Some(word) = lookup(blocks, s.function, s.address) else {
            continue;
        };
        if word & (1 << s.bit) == 0 {
            continue;
        }
        match (s.meaning.channel_status(), &s.channel) {
            (Some(st), Some(c)) => {
                faults.entry(c).or_insert(st);
            }
            _ => flags.push(Flag {
                meaning: s.meaning,
                channel: s.channel.clone(),
            }),
        }
    }
    flags.sort();
    flags.dedup();
    let channels = map
        .channels
        .iter()
        .filter(|c| !skip.contains(&c.id))
        .map(|c| {
            let (value, status) = match raw_value(c, blocks) {
                None => (0, ChannelStatus::Fault),
                Some(raw) => match convert(c, raw) {
                    (v, ChannelStatus::Ok) => match faults.get(&c.id) {
                        Some(st) => (0, *st),
                        None => (v, ChannelStatus::Ok),
                    },
                    other => other,
                },
            };
            Decoded {
                id: c.id.clone(),
                quantity: c.quantity,
                value,
                status,
            }
        })
        .collect();
    Reading { channels, flags }
}

// ---------------------------------------------------------------------------
// Encoding (the simulator's side)

/// The words a device would hold for a raw value, in wire order.
pub fn words_for_raw(spec: &ChannelSpec, raw: u32) -> Vec<u16> {
    let fix = |w: u16| {
        if spec.order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        }
    };
    match spec.value_type.width() {
        2 => {
            let (hi, lo) = (fix((raw >> 16) as u16), fix(raw as u16));
            if spec.order.swaps_words() {
                vec![lo, hi]
            } else {
                vec![hi, lo]
            }
        }
        _ if spec.value_type == ValueType::Bool => vec![u16::from(raw != 0)],
        _ => vec![fix(raw as u16)],
    }
}

/// The raw value a device would hold for a wire value: the inverse of
/// [`convert`] (up to rounding), saturating at the type's range.
pub fn raw_for_value(spec: &ChannelSpec, value: i32) -> u32 {
    let x = ((f64::from(value) - spec.offset) / spec.scale).round();
    match spec.value_type {
        ValueType::U16 => x.clamp(0.0, f64::from(u16::MAX)) as u32,
        ValueType::I16 => {
            u32::from(x.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16 as u16)
        }
        ValueType::U32 => x.clamp(0.0, f64::from(u32::MAX)) as u32,
        ValueType::I32 => x.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 as u32,
        ValueType::F32 => (((f64::from(value) - spec.offset) / spec.scale) as f32).to_bits(),
        ValueType::Bool => u32::from(x != 0.0),
    }
}

// ---------------------------------------------------------------------------
// The shipped maps

/// The maps built into the gateway, as `(file name, TOML)`.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "acrel_asj.toml",
        include_str!("../../modbus-maps/acrel_asj.toml"),
    ),
    (
        "aim_r100.toml",
        include_str!("../../modbus-maps/aim_r100.toml"),
    ),
    (
        "temp_module.toml",
        include_str!("../../modbus-maps/temp_module.toml"),
    ),
    (
        "transmitter_4_20.toml",
        include_str!("../../modbus-maps/transmitter_4_20.toml"),
    ),
];

/// A shipped map by model name. The shipped maps are tested to parse.
pub fn shipped(model: &str) -> Option<RegisterMap> {
    SHIPPED
        .iter()
        .filter_map(|(_, text)| parse_map(text).ok())
        .find(|m| m.model == model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(value_type: ValueType, order: WordOrder) -> ChannelSpec {
        ChannelSpec {
            id: ChannelId::new("x").unwrap(),
            quantity: Quantity::Current,
            function: Function::Holding,
            address: 10,
            value_type,
            order,
            scale: 1.0,
            offset: 0.0,
            sentinels: vec![],
        }
    }

    fn block(start: u16, words: &[u16]) -> Block {
        Block {
            request: ReadRequest {
                function: Function::Holding,
                start,
                count: words.len() as u16,
            },
            words: Some(words.to_vec()),
        }
    }

    fn read(spec: &ChannelSpec, words: &[u16]) -> (i32, ChannelStatus) {
        let raw = raw_value(spec, &[block(spec.address, words)]).unwrap();
        convert(spec, raw)
    }

    /// 0x12345678 = 305419896, as each order puts its bytes A B C D on the wire.
    #[test]
    fn thirty_two_bit_orders_with_exact_bytes() {
        let cases = [
            (WordOrder::Abcd, [0x1234, 0x5678]),
            (WordOrder::Cdab, [0x5678, 0x1234]),
            (WordOrder::Badc, [0x3412, 0x7856]),
            (WordOrder::Dcba, [0x7856, 0x3412]),
        ];
        for (order, words) in cases {
            for t in [ValueType::U32, ValueType::I32] {
                let spec = ch(t, order);
                assert_eq!(
                    read(&spec, &words),
                    (0x1234_5678, ChannelStatus::Ok),
                    "{order:?} {t:?}"
                );
                assert_eq!(
                    words_for_raw(&spec, 0x1234_5678),
                    words.to_vec(),
                    "{order:?}"
                );
            }
        }
        // Negative i32: -2 = 0xFFFFFFFE.
        assert_eq!(
            read(&ch(ValueType::I32, WordOrder::Cdab), &[0xFFFE, 0xFFFF]).0,
            -2
        );
        assert_eq!(
            read(&ch(ValueType::U32, WordOrder::Abcd), &[0x7FFF, 0xFFFF]).0,
            i32::MAX
        );
        // Past i32: not a wrap, a range fault.
        assert_eq!(
            read(&ch(ValueType::U32, WordOrder::Abcd), &[0x8000, 0x0000]),
            (0, ChannelStatus::Range)
        );
    }

    #[test]
    fn sixteen_bit_byte_order_and_sign() {
        assert_eq!(read(&ch(ValueType::U16, WordOrder::Abcd), &[0x0102]).0, 258);
        assert_eq!(read(&ch(ValueType::U16, WordOrder::Cdab), &[0x0102]).0, 258);
        assert_eq!(read(&ch(ValueType::U16, WordOrder::Badc), &[0x0201]).0, 258);
        assert_eq!(read(&ch(ValueType::U16, WordOrder::Dcba), &[0x0201]).0, 258);
        assert_eq!(
            read(&ch(ValueType::I16, WordOrder::Abcd), &[0xFF38]).0,
            -200
        );
        assert_eq!(
            read(&ch(ValueType::U16, WordOrder::Abcd), &[0xFF38]).0,
            65336
        );
    }

    /// 12.5 = 0x41480000 as f32.
    #[test]
    fn floats_in_every_order_and_nan_is_a_fault() {
        let cases = [
            (WordOrder::Abcd, [0x4148, 0x0000]),
            (WordOrder::Cdab, [0x0000, 0x4148]),
            (WordOrder::Badc, [0x4841, 0x0000]),
            (WordOrder::Dcba, [0x0000, 0x4841]),
        ];
        for (order, words) in cases {
            let mut spec = ch(ValueType::F32, order);
            spec.scale = 10.0;
            assert_eq!(read(&spec, &words), (125, ChannelStatus::Ok), "{order:?}");
        }
        let spec = ch(ValueType::F32, WordOrder::Abcd);
        assert_eq!(read(&spec, &[0x7FC0, 0x0000]), (0, ChannelStatus::Fault)); // NaN
        assert_eq!(read(&spec, &[0x7F80, 0x0000]), (0, ChannelStatus::Fault)); // +inf
        assert_eq!(read(&spec, &[0xFF80, 0x0000]), (0, ChannelStatus::Fault)); // -inf
        let mut big = ch(ValueType::F32, WordOrder::Abcd);
        big.scale = 1e6;
        assert_eq!(read(&big, &[0x7F7F, 0xFFFF]), (0, ChannelStatus::Range)); // f32::MAX × 1e6
    }

    #[test]
    fn scale_and_offset_round_half_away_from_zero() {
        // The temperature module: °C = raw / 10 − 50, so 0.1 °C = raw − 500.
        let mut t = ch(ValueType::U16, WordOrder::Abcd);
        t.quantity = Quantity::Temperature;
        t.offset = -500.0;
        assert_eq!(read(&t, &[756]).0, 256); // 25.6 °C
        assert_eq!(read(&t, &[0]).0, -500); // −50.0 °C
                                            // 0.01 mA → µA.
        let mut s = ch(ValueType::U16, WordOrder::Abcd);
        s.scale = 10.0;
        assert_eq!(read(&s, &[1234]).0, 12340);
        // Halves round away from zero, both signs.
        let mut h = ch(ValueType::I16, WordOrder::Abcd);
        h.scale = 0.5;
        assert_eq!(read(&h, &[3]).0, 2); // 1.5 → 2
        assert_eq!(read(&h, &[(-3i16) as u16]).0, -2); // −1.5 → −2
        assert_eq!(read(&h, &[1]).0, 1); // 0.5 → 1
        h.scale = 0.1;
        assert_eq!(read(&h, &[14]).0, 1); // 1.4 → 1
                                          // MPa as f32 → kPa.
        let mut p = ch(ValueType::F32, WordOrder::Cdab);
        p.scale = 1000.0;
        let words = words_for_raw(&p, 0.35f32.to_bits());
        assert_eq!(read(&p, &words).0, 350);
    }

    #[test]
    fn sentinels_come_before_scaling() {
        let mut s = ch(ValueType::U16, WordOrder::Abcd);
        s.sentinels = vec![
            Sentinel {
                raw: 0xE5E5,
                status: ChannelStatus::Short,
            },
            Sentinel {
                raw: 0xFAFA,
                status: ChannelStatus::Open,
            },
        ];
        s.offset = -500.0;
        assert_eq!(read(&s, &[0xE5E5]), (0, ChannelStatus::Short));
        assert_eq!(read(&s, &[0xFAFA]), (0, ChannelStatus::Open));
        assert_eq!(read(&s, &[0xFAFB]), (0xFAFB - 500, ChannelStatus::Ok));
        // A sentinel is matched on the value as ordered, not the wire bytes.
        s.order = WordOrder::Badc;
        assert_eq!(read(&s, &[0xFAFA]), (0, ChannelStatus::Open));
        assert_eq!(read(&s, &[0xE5E5]), (0, ChannelStatus::Short));
        let mut wide = ch(ValueType::U32, WordOrder::Cdab);
        wide.sentinels = vec![Sentinel {
            raw: 0xFFFF_FFFF,
            status: ChannelStatus::Fault,
        }];
        assert_eq!(read(&wide, &[0xFFFF, 0xFFFF]), (0, ChannelStatus::Fault));
    }

    #[test]
    fn encoding_inverts_decoding() {
        for order in [
            WordOrder::Abcd,
            WordOrder::Cdab,
            WordOrder::Badc,
            WordOrder::Dcba,
        ] {
            for t in [
                ValueType::U16,
                ValueType::I16,
                ValueType::U32,
                ValueType::I32,
                ValueType::F32,
            ] {
                let mut spec = ch(t, order);
                spec.scale = 0.1;
                spec.offset = -20.0;
                for v in [-20, 0, 7, 1234, 3000] {
                    let raw = raw_for_value(&spec, v);
                    let words = words_for_raw(&spec, raw);
                    assert_eq!(
                        read(&spec, &words),
                        (v, ChannelStatus::Ok),
                        "{t:?} {order:?} {v}"
                    );
                }
            }
        }
    }

    const ASJ: &str = r#"
model = "asj"
name = "test"
[[channels]]
id = "rc1"
quantity = "residual_current"
address = 0
sentinels = [{ raw = 0xFAFA, status = "open" }]
[[channels]]
id = "t1"
quantity = "temperature"
address = 1
offset = -500.0
[[status]]
address = 0x1B
bit = 0
meaning = "pre_alarm"
channel = "rc1"
[[status]]
address = 0x1B
bit = 1
meaning = "alarm"
channel = "rc1"
[[status]]
address = 0x1B
bit = 2
meaning = "open"
channel = "rc1"
[[status]]
address = 0x1B
bit = 3
meaning = "supply"
"#;

    #[test]
    fn status_bits_set_faults_and_flags() {
        let map = parse_map(ASJ).unwrap();
        let reqs = plan(&map, &[]);
        assert_eq!(
            reqs,
            vec![
                ReadRequest {
                    function: Function::Holding,
                    start: 0,
                    count: 2
                },
                ReadRequest {
                    function: Function::Holding,
                    start: 0x1B,
                    count: 1
                },
            ]
        );
        let blocks = |rc: u16, t: u16, st: u16| {
            vec![
                Block {
                    request: reqs[0],
                    words: Some(vec![rc, t]),
                },
                Block {
                    request: reqs[1],
                    words: Some(vec![st]),
                },
            ]
        };
        let r = decode(&map, &[], &blocks(312, 756, 0));
        assert_eq!(
            r.channels
                .iter()
                .map(|d| (d.value, d.status))
                .collect::<Vec<_>>(),
            vec![(312, ChannelStatus::Ok), (256, ChannelStatus::Ok)]
        );
        assert!(r.flags.is_empty());
        let r = decode(&map, &[], &blocks(620, 756, 0b1011));
        assert_eq!(r.channels[0].status, ChannelStatus::Ok);
        let rc1 = Some(ChannelId::new("rc1").unwrap());
        assert_eq!(
            r.flags,
            vec![
                Flag {
                    meaning: Meaning::PreAlarm,
                    channel: rc1.clone()
                },
                Flag {
                    meaning: Meaning::Alarm,
                    channel: rc1.clone()
                },
                Flag {
                    meaning: Meaning::Supply,
                    channel: None
                },
            ]
        );
        // CT break bit → open; the sentinel wins over it.
        let r = decode(&map, &[], &blocks(0, 756, 0b0100));
        assert_eq!(
            (r.channels[0].value, r.channels[0].status),
            (0, ChannelStatus::Open)
        );
        assert_eq!(r.channels[1].status, ChannelStatus::Ok);
        // A failed block: its channels are faults, its bits unknown.
        let mut b = blocks(312, 756, 0b0100);
        b[0].words = None;
        let r = decode(&map, &[], &b);
        assert!(r.channels.iter().all(|c| c.status == ChannelStatus::Fault));
        // Skipped channels are neither read nor reported, nor their bits.
        let skip = [ChannelId::new("rc1").unwrap()];
        assert_eq!(plan(&map, &skip)[0].count, 1);
        assert_eq!(plan(&map, &skip)[0].start, 1);
        let r = decode(&map, &skip, &blocks(0, 756, 0b0111));
        assert_eq!(r.channels.len(), 1);
        assert_eq!(r.flags.len(), 0);
    }

    #[test]
    fn a_short_block_faults_the_channels_it_misses() {
        let map = parse_map(ASJ).unwrap();
        let reqs = plan(&map, &[]);
        let b = vec![Block {
            request: reqs[0],
            words: Some(vec![312]),
        }];
        let r = decode(&map, &[], &b);
        assert_eq!(r.channels[0].status, ChannelStatus::Ok);
        assert_eq!(r.channels[1].status, ChannelStatus::Fault);
    }

    #[test]
    fn planning_merges_contiguous_spans_up_to_the_protocol_limit() {
        let mut text = String::from("model = \"big\"\n");
        // 30 u32 channels at 0..60 and 2 at 200.. (a gap), input table.
        for i in 0..32u32 {
            let addr = if i < 30 { i * 2 } else { 200 + (i - 30) * 2 };
            text += &format!(
                "[[channels]]\nid = \"c{i}\"\nquantity = \"current\"\nfunction = \"input\"\ntype = \"u32\"\naddress = {addr}\n"
            );
        }
        let map = parse_map(&text).unwrap();
        let p = plan(&map, &[]);
        assert_eq!(
            p,
            vec![
                ReadRequest {
                    function: Function::Input,
                    start: 0,
                    count: 60
                },
                ReadRequest {
                    function: Function::Input,
                    start: 200,
                    count: 4
                },
            ]
        );
        // 32 × 4-register-apart? Use 130 contiguous u16s: 125 + 5.
        let mut spans = RegisterMap {
            model: "x".into(),
            name: String::new(),
            channels: vec![],
            status: vec![],
        };
        for i in 0..130u16 {
            let mut c = ch(ValueType::U16, WordOrder::Abcd);
            c.address = i;
            c.id = ChannelId::new(&format!("c{i}")).unwrap();
            spans.channels.push(c);
        }
        let p = plan(&spans, &[]);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].start, p[0].count), (0, 125));
        assert_eq!((p[1].start, p[1].count), (125, 5));
        // Coils: 2000 per read.
        for c in &mut spans.channels {
            c.function = Function::Coil;
            c.value_type = ValueType::Bool;
        }
        assert_eq!(plan(&spans, &[]).len(), 1);
        // A u32 is never split across two reads.
        let mut split = spans.clone();
        for c in &mut split.channels {
            c.function = Function::Holding;
            c.value_type = ValueType::U16;
        }
        split.channels[124].value_type = ValueType::U32;
        split.channels.remove(125);
        let p = plan(&split, &[]);
        assert_eq!((p[0].start, p[0].count), (0, 124));
        assert_eq!((p[1].start, p[1].count), (124, 6));
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let text = r#"
model = "Bad Model"
colour = "red"
[[channels]]
id = "rc1"
quantity = "residual_current"
address = 0
type = "u64"
[[channels]]
id = "rc1"
quantity = "volume"
address = 0
scale = 0.0
order = "ADCB"
function = "holdings"
[[channels]]
id = "t1"
quantity = "temperature"
address = 4
type = "u32"
sentinels = [{ raw = 0x1FFFFFFFF, status = "ok" }]
[[channels]]
id = "t2"
quantity = "temperature"
address = 5
[[channels]]
id = "c1"
quantity = "current"
function = "coil"
type = "u16"
[[status]]
address = 4
bit = 16
meaning = "burning"
[[status]]
address = 9
meaning = "alarm"
channel = "zz"
[[status]]
address = 9
meaning = "supply"
channel = "t1"
"#;
        let issues = parse_map(text).unwrap_err();
        let got: Vec<String> = issues.iter().map(ToString::to_string).collect();
        let want = [
            "colour: unknown key",
            "model: must match [a-z0-9_-]{1,32}",
            "channels[0].type: unknown type \"u64\" (u16, i16, u32, i32, f32, bool)",
            "channels[1].id: duplicate channel id \"rc1\"",
            "channels[1].quantity: unknown quantity \"volume\"",
            "channels[1].function: unknown function \"holdings\" (holding, input, coil, discrete)",
            "channels[1].order: unknown order \"ADCB\" (ABCD, CDAB, BADC, DCBA)",
            "channels[1].scale: must be a finite number other than zero",
            "channels[2].sentinels[0].raw: 8589934591 does not fit the channel's 2 register(s)",
            "channels[2].sentinels[0].status: \"ok\" must be open, short, range or fault",
            "channels[4].address: is required",
            "channels[4].type: a coil is read as bool",
            "channels[3].address: holding register 5 overlaps channels[2]",
            "status[0].bit: must be 0..=15",
            "status[0].meaning: unknown meaning \"burning\" (pre_alarm, alarm, open, short, fault, supply)",
            "status[1].channel: no channel \"zz\" in the map",
            "status[2].channel: supply is about the device, not a channel",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
        }
        // Status register 4 is t1's value: reported too.
        assert!(
            got.iter()
                .any(|g| g.starts_with("status[0].address: holding register 4 is channels[2]")),
            "{got:#?}"
        );
    }

    #[test]
    fn hostile_map_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "model = 1",
            "[[channels]]\naddress = -1\nid = \"a\"\nquantity = \"arc\"",
            "[[channels]]\naddress = 65535\nid = \"a\"\nquantity = \"arc\"\ntype = \"f32\"",
            "[[channels]]\naddress = 99999999999\nid = \"a\"\nquantity = \"arc\"",
            "[[status]]\naddress = 1\nbit = -5\nmeaning = \"alarm\"",
            "channels = 5",
            "\u{0}",
        ] {
            assert!(parse_map(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn shipped_maps_parse_and_keep_within_one_message() {
        for (file, text) in SHIPPED {
            let map = parse_map(text).unwrap_or_else(|e| panic!("{file}: {e:?}"));
            assert!(map.channels.len() <= wire::MAX_CHANNELS);
            assert!(!plan(&map, &[]).is_empty());
            assert_eq!(format!("{}.toml", map.model), *file);
        }
        // DOMAIN.md §4, re-declared here so a wrong constant in a map fails.
        let asj = shipped("acrel_asj").unwrap();
        assert_eq!(asj.channels[0].address, 0x0000);
        assert!(asj.status.iter().all(|s| s.address == 0x001B));
        let aim = shipped("aim_r100").unwrap();
        let rc: Vec<u16> = aim
            .channels
            .iter()
            .filter(|c| c.quantity == Quantity::ResidualCurrent)
            .map(|c| c.address)
            .collect();
        assert_eq!(rc, (0x004A..=0x0055).collect::<Vec<_>>());
        for c in aim
            .channels
            .iter()
            .filter(|c| c.quantity == Quantity::ResidualCurrent)
        {
            assert!(c.sentinels.contains(&Sentinel {
                raw: 0xE5E5,
                status: ChannelStatus::Short
            }));
            assert!(c.sentinels.contains(&Sentinel {
                raw: 0xFAFA,
                status: ChannelStatus::Open
            }));
        }
        let t = shipped("temp_module").unwrap();
        assert_eq!(convert(&t.channels[0], 756), (256, ChannelStatus::Ok));
    }
}
