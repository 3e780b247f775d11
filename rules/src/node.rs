//! Node-level rules: offline detection (dead-man timer and MQTT Last Will) and supply failure.
//!
//! Root cause first (DOMAIN §3): when a node goes offline or its supply fails, that is one alarm
//! for the node, not one per channel. The caller keeps a [`NodeState`] per node and calls:
//! - [`seen`] whenever any message from the node arrives (telemetry, event, birth, ack): it
//!   returns [`NodeTransition::Online`] if the node was offline;
//! - [`tick`] periodically (e.g. every second): it returns `Offline { cause: Timeout }` once when
//!   nothing has been seen for `offline_after_ms`. A node never seen is not timed out (the
//!   gateway cannot know it should exist until its first message; configured-but-silent nodes
//!   are the caller's business);
//! - [`last_will`] when the broker delivers the node's Last Will (or an orderly offline status):
//!   `Offline { cause: LastWill }` at once, once;
//! - [`supply`] when the node reports its supply state: `SupplyFailed` / `SupplyRestored` on
//!   change. A supply report is also a message: call [`seen`] for it too.
//!
//! [`NodeState::is_down`] (offline or supply failed) is what the caller feeds into
//! [`crate::Context::suppressed`] for the node's channels, and counts as a down node for
//! [`crate::site::update`].
//!
//! # Time
//! `now` is monotonic milliseconds. If it goes backwards, [`seen`] takes the new `now` as the
//! last message time and [`tick`] counts no elapsed time; nothing panics.

use crate::stamp::Stamp;
use crate::Millis;

/// Node-level configuration.
///
/// With the `serde` feature the field has a default and unknown fields are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct NodeRule {
    /// A node from which nothing arrived for this long is offline (dead-man timer).
    pub offline_after_ms: u32,
}

impl Default for NodeRule {
    /// 60 s without a message: offline.
    fn default() -> Self {
        NodeRule {
            offline_after_ms: 60_000,
        }
    }
}

/// Why a node is considered offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum OfflineCause {
    /// Nothing arrived for `offline_after_ms`.
    Timeout,
    /// The broker delivered the node's Last Will (or the node said goodbye).
    LastWill,
}

/// A change in a node's reachability or supply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum NodeTransition {
    /// The node went offline.
    Offline {
        /// Why.
        cause: OfflineCause,
    },
    /// A message arrived from a node that was offline.
    Online,
    /// The node reports that its supply failed (mains lost, on battery).
    SupplyFailed,
    /// The node reports that its supply is back.
    SupplyRestored,
}

/// The state of one node (24 bytes). Start from `NodeState::default()`: never seen, not
/// offline, supply ok.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeState {
    /// When the last message arrived (meaningless until `ever_seen`).
    last_seen: Stamp,
    /// When the node's state (offline/online/supply) last changed.
    changed_at: Stamp,
    /// A message has arrived at least once.
    ever_seen: bool,
    /// Offline, and why.
    offline: Option<OfflineCause>,
    /// The node reports a supply failure.
    supply_failed: bool,
}

impl NodeState {
    /// Offline or supply failed: the node's channels' outputs should be suppressed.
    pub fn is_down(&self) -> bool {
        self.offline.is_some() || self.supply_failed
    }

    /// Whether the node is offline.
    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    /// Why the node is offline, if it is.
    pub fn offline_cause(&self) -> Option<OfflineCause> {
        self.offline
    }

    /// Whether the node reports a supply failure.
    pub fn supply_failed(&self) -> bool {
        self.supply_failed
    }

    /// When the last message arrived, if any.
    pub fn last_seen(&self) -> Option<Millis> {
        self.ever_seen.then(|| self.last_seen.get())
    }

    /// When the node's state last changed (`0` if never).
    pub fn changed_at(&self) -> Millis {
        self.changed_at.get()
    }
}

/// A message from the node arrived at `now`. Returns `Online` if the node was offline; the
/// first message ever returns `None` (the node was not known to be offline).
pub fn seen(_rule: &NodeRule, state: &mut NodeState, now: Millis) -> Option<NodeTransition> {
    state.last_seen = Stamp::new(now);
    state.ever_seen = true;
    if state.offline.take().is_some() {
        state.changed_at = Stamp::new(now);
        return Some(NodeTransition::Online);
    }
    None
}

/// The dead-man timer at `now`: `Offline { cause: Timeout }` once, when `now - last_seen >=
/// offline_after_ms`; never before the first message, never while already offline.
pub fn tick(rule: &NodeRule, state: &mut NodeState, now: Millis) -> Option<NodeTransition> {
    if !state.ever_seen || state.offline.is_some() {
        return None;
    }
    if now.saturating_sub(state.last_seen.get()) >= u64::from(rule.offline_after_ms) {
        state.offline = Some(OfflineCause::Timeout);
        state.changed_at = Stamp::new(now);
        return Some(NodeTransition::Offline {
            cause: OfflineCause::Timeout,
        });
    }
    None
}

/// The node's Last Will arrived at `now`: `Offline { cause: LastWill }` at once, unless it is
/// already offline (then `None`: one offline transition per outage, whatever came first).
/// Works for a node never seen (e.g. a retained will found after the gateway restarted).
pub fn last_will(state: &mut NodeState, now: Millis) -> Option<NodeTransition> {
    if state.offline.is_some() {
        return None;
    }
    state.offline = Some(OfflineCause::LastWill);
    state.changed_at = Stamp::new(now);
    Some(NodeTransition::Offline {
        cause: OfflineCause::LastWill,
    })
}

/// The node reports its supply state at `now` (`ok: false` = mains lost). Returns
/// `SupplyFailed` / `SupplyRestored` when it changes.
pub fn supply(state: &mut NodeState, ok: bool, now: Millis) -> Option<NodeTransition> {
    if state.supply_failed != ok {
        return None;
    }
    state.supply_failed = !ok;
    state.changed_at = Stamp::new(now);
    Some(if ok {
        NodeTransition::SupplyRestored
    } else {
        NodeTransition::SupplyFailed
    })
}
