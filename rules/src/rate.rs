//! The rate-of-rise rule: the value rose by at least `rise` within `window_ms`.
//!
//! A loose or corroded terminal heats up minutes before it crosses the absolute temperature
//! setpoint (DOMAIN §2); a rate-of-rise rule catches it early. It is an early warning: it emits
//! [`Transition::RateRaised`] and auto-clears with [`Transition::RateCleared`]; it never latches.
//!
//! # Algorithm (O(1) state)
//! Time is cut into buckets of half a window, `h = max(window_ms / 2, 1)`. The state keeps the
//! minimum valid value of the current bucket and of the one before it, so the reference minimum
//! always covers the last `h` to `2h ≤ window_ms` milliseconds. For each valid value `v`:
//! 1. Roll the buckets: once `now` is past the current bucket by `h` or more, it becomes the
//!    previous bucket; past by `2h` or more, both are emptied (no data within the window).
//! 2. `rise = v - min(previous, current)`, where the current bucket already includes `v` (so
//!    `rise >= 0`; an empty bucket counts as +∞).
//! 3. Not raised and `rise >= rule.rise` → `RateRaised { value: v, rise }`.
//!    Raised and `rise < rule.rise - rule.rise / 2` (half the rise, rounded up) → `RateCleared`.
//!    The half-rise clearing point is the rate rule's hysteresis: a steady climb keeps it raised,
//!    a plateau clears it once the low values have aged out of the window (within `window_ms`).
//!
//! Guarantee: a rise of `rule.rise` that happens within `window_ms / 2` is always caught; one
//! spread over between `window_ms / 2` and `window_ms` may be caught (it depends on where the
//! bucket boundaries fall); one spread over more than `window_ms` never is.
//!
//! The rule only looks upwards; a falling rate (e.g. fire-water pressure dropping) is not
//! expressed here. Faulted samples are not fed to it: the channel engine holds the rate rule
//! while the channel is faulted.
//!
//! # Time
//! If `now` goes backwards, the current bucket is re-anchored at `now` and both minima are kept:
//! nothing is invented or lost, and they age out `h` to `2h` later as usual. Nothing panics.

use crate::stamp::Stamp;
use crate::{Millis, RuleError, Transition};

/// The configuration of a rate-of-rise rule.
///
/// With the `serde` feature both fields are required and unknown fields are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct RateRule {
    /// How much the value must rise (in the channel's unit, `> 0`) within the window.
    pub rise: i32,
    /// The window, in ms (`> 0`).
    pub window_ms: u32,
}

impl RateRule {
    /// A rule raising when the value rises by `rise` within `window_ms`.
    pub const fn new(rise: i32, window_ms: u32) -> Self {
        RateRule { rise, window_ms }
    }

    /// Checks that the rise is positive and the window is not empty.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.rise <= 0 {
            return Err(RuleError::NonPositiveRise { rise: self.rise });
        }
        if self.window_ms == 0 {
            return Err(RuleError::ZeroRateWindow);
        }
        Ok(())
    }

    /// The rise below which a raised rate clears: half of `rise`, rounded up.
    pub const fn clear_below(&self) -> i32 {
        self.rise - self.rise / 2
    }
}

/// The state of one channel under a [`RateRule`]: two bucket minima and a start time
/// (20 bytes). Start from `RateState::default()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RateState {
    /// Start of the current bucket.
    start: Stamp,
    /// Minimum of the previous bucket (`i32::MAX` when empty).
    prev_min: i32,
    /// Minimum of the current bucket (`i32::MAX` when empty).
    cur_min: i32,
    /// `RateRaised` was emitted and not yet cleared.
    raised: bool,
}

impl Default for RateState {
    fn default() -> Self {
        RateState {
            start: Stamp::new(0),
            prev_min: i32::MAX,
            cur_min: i32::MAX,
            raised: false,
        }
    }
}

impl RateState {
    /// Whether the rate of rise is raised.
    pub fn is_raised(&self) -> bool {
        self.raised
    }

    /// The lowest value within the look-back (the last `h` to `2h` ms), if any.
    pub fn reference(&self) -> Option<i32> {
        let m = self.prev_min.min(self.cur_min);
        // Design: i32::MAX doubles as "empty"; a bucket whose only value is i32::MAX can never
        // show a rise anyway, so nothing is lost by reporting it as empty.
        (m != i32::MAX).then_some(m)
    }
}

/// Feeds one valid `value` taken at `now`; returns `RateRaised` or `RateCleared` when the rate
/// state changes. Never panics, whatever the rule, value or time.
#[inline]
pub fn evaluate(
    rule: &RateRule,
    state: &mut RateState,
    value: i32,
    now: Millis,
) -> Option<Transition> {
    let half = u64::from(rule.window_ms / 2).max(1);
    let start = state.start.get();
    if now < start {
        state.start = Stamp::new(now);
    } else {
        let elapsed = now - start;
        if elapsed >= 2 * half {
            state.prev_min = i32::MAX;
            state.cur_min = i32::MAX;
            state.start = Stamp::new(now);
        } else if elapsed >= half {
            state.prev_min = state.cur_min;
            state.cur_min = i32::MAX;
            state.start = Stamp::new(start + half);
        }
    }
    state.cur_min = state.cur_min.min(value);
    let base = state.prev_min.min(state.cur_min);
    // Design: i64 so that `value - base` cannot overflow; base <= value, so rise >= 0.
    let rise = i64::from(value) - i64::from(base);
    if !state.raised {
        if rise >= i64::from(rule.rise) {
            state.raised = true;
            return Some(Transition::RateRaised {
                value,
                rise: i32::try_from(rise).unwrap_or(i32::MAX),
            });
        }
    } else if rise < i64::from(rule.clear_below()) {
        state.raised = false;
        return Some(Transition::RateCleared { value });
    }
    None
}
