//! The offline buffer: a fixed-size ring of messages not yet acknowledged
//! by the broker, each stamped with its `boot` and `seq` when it was made.
//!
//! Every telemetry reading and local event goes through it, online or not:
//! the oldest record is the one being published, and it leaves the ring only
//! when its PUBACK arrives. After an outage the ring therefore drains
//! oldest-first (backfill) before anything newer (live).
//!
//! When the ring is full, the oldest telemetry record that is not in flight
//! is dropped; an `alarm` event is never dropped to make room (other events
//! go before it if there is no telemetry left). Every dropped record is
//! counted, and the node reports the count in its next `status`.

use wire::{ChannelStatus, EventLevel};

/// Most channels one buffered telemetry record holds.
pub const MAX_NODE_CHANNELS: usize = 8;

/// What a buffered record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// One sampling round: value and status per configured channel, in the
    /// node's channel order.
    Telemetry {
        /// Number of channels used in `values`.
        n: u8,
        /// `(value, status)` per channel.
        values: [(i32, ChannelStatus); MAX_NODE_CHANNELS],
    },
    /// A local alarm transition of channel number `ch`.
    Event {
        /// Index of the channel in the node's channel list.
        ch: u8,
        /// Level entered.
        level: EventLevel,
        /// Value that caused it.
        v: i32,
    },
}

impl Body {
    /// A telemetry body from `(value, status)` pairs; extra pairs beyond
    /// [`MAX_NODE_CHANNELS`] are ignored.
    pub fn telemetry(values: &[(i32, ChannelStatus)]) -> Body {
        let mut out = [(0, ChannelStatus::Ok); MAX_NODE_CHANNELS];
        let n = values.len().min(MAX_NODE_CHANNELS);
        out[..n].copy_from_slice(&values[..n]);
        Body::Telemetry {
            n: n as u8,
            values: out,
        }
    }

    fn is_alarm(&self) -> bool {
        matches!(
            self,
            Body::Event {
                level: EventLevel::Alarm,
                ..
            }
        )
    }

    fn is_telemetry(&self) -> bool {
        matches!(self, Body::Telemetry { .. })
    }
}

/// One buffered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Boot counter when it was made.
    pub boot: u32,
    /// Message number within the boot.
    pub seq: u32,
    /// Sampling time (ms since the epoch, or 0 without a wall clock).
    pub ts: u64,
    /// Telemetry or event.
    pub body: Body,
}

/// A ring of `N` records, oldest first.
#[derive(Clone, Debug)]
pub struct Outbox<const N: usize> {
    items: [Option<Record>; N],
    head: usize,
    len: usize,
    dropped: u32,
    in_flight: bool,
}

impl<const N: usize> Default for Outbox<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Outbox<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Outbox {
            items: [None; N],
            head: 0,
            len: 0,
            dropped: 0,
            in_flight: false,
        }
    }

    /// Records waiting (including the one in flight).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records dropped since boot (wrapping).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    fn slot(&self, i: usize) -> usize {
        (self.head + i) % N
    }

    /// The `i`-th oldest record.
    pub fn get(&self, i: usize) -> Option<&Record> {
        if i >= self.len {
            return None;
        }
        self.items[self.slot(i)].as_ref()
    }

    /// The oldest record: the next to publish.
    pub fn front(&self) -> Option<&Record> {
        self.get(0)
    }

    /// Marks the oldest record as being published: it is not dropped to
    /// make room until [`Outbox::pop_front`] or [`Outbox::release`].
    pub fn mark_in_flight(&mut self) {
        self.in_flight = self.len > 0;
    }

    /// Clears the in-flight mark without removing the record.
    pub fn release(&mut self) {
        self.in_flight = false;
    }

    /// Removes the oldest record (its PUBACK arrived).
    pub fn pop_front(&mut self) -> Option<Record> {
        if self.len == 0 {
            return None;
        }
        let r = self.items[self.head].take();
        self.head = (self.head + 1) % N;
        self.len -= 1;
        self.in_flight = false;
        r
    }

    fn remove(&mut self, i: usize) {
        // Shift the newer records down by one.
        for k in i..self.len - 1 {
            let (a, b) = (self.slot(k), self.slot(k + 1));
            self.items[a] = self.items[b];
        }
        let last = self.slot(self.len - 1);
        self.items[last] = None;
        self.len -= 1;
    }

    /// Appends `rec`. When full, makes room by dropping (and counting) the
    /// oldest telemetry, else the oldest non-alarm event, never the record
    /// in flight and never an alarm event. If nothing may go, a new
    /// non-alarm record is itself dropped; a new alarm event then replaces
    /// the oldest alarm not in flight (the ring holds nothing but alarms).
    /// Returns `false` when `rec` was dropped.
    pub fn push(&mut self, rec: Record) -> bool {
        if N == 0 {
            self.dropped = self.dropped.wrapping_add(1);
            return false;
        }
        if self.len == N {
            let first = usize::from(self.in_flight);
            let victim = (first..self.len)
                .find(|&i| self.get(i).is_some_and(|r| r.body.is_telemetry()))
                .or_else(|| {
                    (first..self.len).find(|&i| self.get(i).is_some_and(|r| !r.body.is_alarm()))
                })
                .or_else(|| (rec.body.is_alarm() && first < self.len).then_some(first));
            match victim {
                Some(i) => self.remove(i),
                None => {
                    self.dropped = self.dropped.wrapping_add(1);
                    return false;
                }
            }
            self.dropped = self.dropped.wrapping_add(1);
        }
        let at = self.slot(self.len);
        self.items[at] = Some(rec);
        self.len += 1;
        true
    }
}
