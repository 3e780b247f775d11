//! Flapping detection: a channel that keeps raising and clearing is reported once, as flapping.
//!
//! A value hovering around a setpoint despite hysteresis and delays (DOMAIN §3) would otherwise
//! storm the duty desk and the bot channels with raise/clear pairs. A [`FlapRule`] counts the
//! channel's raise/clear transitions (see [`Transition::counts_for_flapping`]: every level,
//! rate and fault transition, not resets). When `transitions` of them fall within `window_ms`,
//! the channel is flapping: the channel engine emits one [`Transition::FlappingStarted`], and
//! from then on returns the channel's transitions with [`crate::Disposition::Flapping`] (still
//! returned, so the caller can record them) until `quiet_ms` pass with no transition; then it
//! emits [`Transition::FlappingEnded`] with the channel's level at that moment and behaves
//! normally.
//!
//! [`Transition::counts_for_flapping`]: crate::Transition::counts_for_flapping
//! [`Transition::FlappingStarted`]: crate::Transition::FlappingStarted
//! [`Transition::FlappingEnded`]: crate::Transition::FlappingEnded
//!
//! # Algorithm (O(1) state)
//! The window is anchored at the first transition counted in it: a transition more than
//! `window_ms` after the anchor starts a new window (count 1). This is exact for a steady
//! stream of transitions, but a burst that straddles a window boundary is split and may only be
//! detected one window later, if it goes on; a channel that really flaps keeps flapping, so the
//! cost is a delay of at most one window, never a miss of a persistent flap.
//!
//! The transition that reaches the count is the first one marked `Flapping`, and
//! `FlappingStarted` is returned just before it. The quiet period is checked when the next
//! sample is evaluated (the engine reads no clock), before that sample's own transitions.
//!
//! # Time
//! If `now` goes backwards, the window and the quiet period restart from the new `now`; the
//! count is kept. Nothing panics.

use crate::stamp::Stamp;
use crate::{Millis, RuleError};

/// The configuration of flapping detection for one channel.
///
/// With the `serde` feature every field has a default (6 transitions within 10 min, quiet
/// 10 min) and unknown fields are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct FlapRule {
    /// How many raise/clear transitions within `window_ms` make a channel flap (`>= 2`).
    pub transitions: u8,
    /// The counting window, in ms (`> 0`).
    pub window_ms: u32,
    /// How long without any transition ends the flapping, in ms.
    pub quiet_ms: u32,
}

impl Default for FlapRule {
    /// 6 transitions within 10 minutes; 10 quiet minutes end it.
    fn default() -> Self {
        FlapRule::new(6, 600_000, 600_000)
    }
}

impl FlapRule {
    /// A flapping rule.
    pub const fn new(transitions: u8, window_ms: u32, quiet_ms: u32) -> Self {
        FlapRule {
            transitions,
            window_ms,
            quiet_ms,
        }
    }

    /// Checks that at least two transitions are needed and the window is not empty.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.transitions < 2 {
            return Err(RuleError::FlapTooFewTransitions {
                transitions: self.transitions,
            });
        }
        if self.window_ms == 0 {
            return Err(RuleError::ZeroFlapWindow);
        }
        Ok(())
    }
}

/// The flapping state of one channel (16 bytes). Start from `FlapState::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FlapState {
    /// When the current counting window started (its first transition).
    window_start: Stamp,
    /// The last transition, as an offset from `window_start` (never more than the window).
    last_offset: u32,
    /// Transitions counted in the current window (saturating).
    count: u8,
    /// `FlappingStarted` was emitted and not yet ended.
    flapping: bool,
}

impl FlapState {
    /// Whether the channel is flapping.
    pub fn is_flapping(&self) -> bool {
        self.flapping
    }

    /// Transitions counted in the current window.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// When the last counted transition happened, if any since the last flapping ended.
    pub fn last_transition(&self) -> Option<Millis> {
        (self.count > 0).then(|| self.last())
    }

    fn last(&self) -> Millis {
        self.window_start
            .get()
            .saturating_add(u64::from(self.last_offset))
    }
}

/// Checks, before a sample's transitions, whether a flapping channel has been quiet for
/// `quiet_ms`; returns `true` (once) when the flapping ends now. The count starts afresh.
#[inline]
pub fn quiet(rule: &FlapRule, state: &mut FlapState, now: Millis) -> bool {
    if !state.flapping {
        return false;
    }
    let last = state.last();
    if now < last {
        state.window_start = Stamp::new(now);
        state.last_offset = 0;
        return false;
    }
    if now - last >= u64::from(rule.quiet_ms) {
        state.flapping = false;
        state.count = 0;
        return true;
    }
    false
}

/// Counts one raise/clear transition at `now`; returns `true` (once) when it makes the channel
/// flap.
#[inline]
pub fn record(rule: &FlapRule, state: &mut FlapState, now: Millis) -> bool {
    let start = state.window_start.get();
    if state.count == 0 || now.saturating_sub(start) > u64::from(rule.window_ms) {
        state.window_start = Stamp::new(now);
        state.last_offset = 0;
        state.count = 0;
    } else if now < start {
        state.window_start = Stamp::new(now);
        state.last_offset = 0;
    } else {
        // now - start <= window_ms, so it fits.
        state.last_offset = u32::try_from(now - start).unwrap_or(u32::MAX);
    }
    state.count = state.count.saturating_add(1);
    if !state.flapping && state.count >= rule.transitions {
        state.flapping = true;
        return true;
    }
    false
}
