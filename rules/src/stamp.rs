//! A compact monotonic timestamp for rule state.
//!
//! [`Millis`] is a `u64`, which is 8-byte aligned; a state struct holding a few of them next to
//! one-byte fields pads badly. [`Stamp`] stores the same `u64` as two `u32` halves (4-byte
//! aligned), which is what keeps [`crate::ChannelState`] within 64 bytes. It is exact: no
//! truncation, no wrap-around; converting costs two moves. With the `serde` feature it is a plain
//! integer.

use crate::Millis;

/// A [`Millis`] stored at 4-byte alignment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u64", into = "u64"))]
pub(crate) struct Stamp {
    lo: u32,
    hi: u32,
}

impl Stamp {
    /// Stores `ms`.
    #[inline(always)]
    pub(crate) const fn new(ms: Millis) -> Self {
        Stamp {
            lo: ms as u32,
            hi: (ms >> 32) as u32,
        }
    }

    /// The stored time.
    #[inline(always)]
    pub(crate) const fn get(self) -> Millis {
        ((self.hi as u64) << 32) | self.lo as u64
    }
}

impl From<u64> for Stamp {
    fn from(ms: u64) -> Self {
        Stamp::new(ms)
    }
}

impl From<Stamp> for u64 {
    fn from(s: Stamp) -> u64 {
        s.get()
    }
}
