//! Decoding: register words into wire readings.

use super::{ChannelSpec, Function, Meaning, ReadRequest, RegisterMap, ValueType, WordOrder};
use std::collections::BTreeMap;
use wire::{ChannelId, ChannelStatus, Quantity};

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
pub(super) fn raw_value(spec: &ChannelSpec, blocks: &[Block]) -> Option<u32> {
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
