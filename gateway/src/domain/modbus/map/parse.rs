//! Parsing and validation of a map file: every problem at once, each with
//! its path.

use super::{
    ChannelSpec, Function, MapIssue, Meaning, RegisterMap, Sentinel, StatusBit, ValueType,
    WordOrder,
};
use serde::Deserialize;
use std::collections::HashSet;
use wire::{ChannelId, ChannelStatus, Quantity};

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
            &crate::domain::text::ignored_path(&path),
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
