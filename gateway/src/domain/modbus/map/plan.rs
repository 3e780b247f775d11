//! Planning: the read requests that cover a device's registers.

use super::{Function, RegisterMap};
use wire::ChannelId;

/// One read request: `count` items of `function` from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadRequest {
    pub function: Function,
    pub start: u16,
    pub count: u16,
}

impl ReadRequest {
    pub(super) fn end(&self) -> u32 {
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
