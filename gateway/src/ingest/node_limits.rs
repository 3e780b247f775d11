//! What a node may make the gateway keep (通道上限): which readings the
//! rules take. Pure: the decision from what is known, no I/O.
//!
//! Every channel a node reports becomes rule state, hourly rollups, linked
//! readings and metric series kept per `(site, node, channel)`. The wire
//! contract allows [`wire::MAX_CHANNELS`] readings in one message, so a node
//! can never *need* more channels than that; a node (or whoever holds its
//! credentials) inventing a new channel id in every message would otherwise
//! grow those maps without bound. Past the cap, readings on new channel ids
//! are refused and counted; the node's known channels go on being judged.
//!
//! A channel whose reported quantity changes (rc1 was residual current, now
//! says temperature) would otherwise start afresh under the new quantity and
//! silently drop a standing or latched alarm. While anything stands on the
//! channel (a level, a latch, a fault, a rate alarm, flapping), readings of
//! another quantity are refused and counted, and the duty desk is told once;
//! an authorised reset (复位) of the channel's alarm releases it, and the
//! next reading starts the channel afresh under the new quantity. An idle
//! channel takes the new quantity at once, as before.

use rules::{ChannelState, Level};
use wire::Quantity;

/// Distinct channels kept per node: the contract's channels per message.
pub const MAX_NODE_CHANNELS: usize = wire::MAX_CHANNELS;

/// What to do with one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A known channel, same quantity: judge it.
    Known,
    /// A channel the rules do not know yet (or an idle one whose quantity
    /// changed): start it afresh, then judge it.
    Fresh,
    /// The node already has [`MAX_NODE_CHANNELS`] channels: refused.
    ChannelLimit,
    /// Another quantity on a channel where an alarm stands: refused until
    /// an authorised reset. `first`: the first such reading since the
    /// alarm stood (the duty desk is told once).
    QuantityChanged { first: bool },
}

impl Admission {
    /// The reason code a refusal is counted under, `None` when admitted.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            Admission::Known | Admission::Fresh => None,
            Admission::ChannelLimit => Some("channel_limit"),
            Admission::QuantityChanged { .. } => Some("quantity_changed"),
        }
    }
}

/// Whether a channel's rule state holds something a person must see
/// resolved: a level, a latch, a fault, a rate alarm, flapping.
pub fn stands(state: &ChannelState) -> bool {
    state.level() != Level::Normal
        || state.is_latched()
        || state.fault().is_some()
        || state.is_rate_raised()
        || state.is_flapping()
}

/// Decides on a reading of quantity `q`. `known`: the channel's quantity,
/// state and whether another quantity was already refused on it, if the
/// rules know the channel; `channels`: how many channels the node has.
pub fn admit(
    known: Option<(Quantity, &ChannelState, bool)>,
    channels: usize,
    q: Quantity,
) -> Admission {
    match known {
        Some((kq, _, _)) if kq == q => Admission::Known,
        Some((_, state, refused_before)) if stands(state) => Admission::QuantityChanged {
            first: !refused_before,
        },
        Some(_) => Admission::Fresh,
        None if channels >= MAX_NODE_CHANNELS => Admission::ChannelLimit,
        None => Admission::Fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::Sample;

    /// A residual-current channel's state after `values` (shipped rule: latching).
    fn state_after(values: &[i32]) -> ChannelState {
        let rule = rules::defaults::channel_rule(Quantity::ResidualCurrent);
        let mut st = ChannelState::default();
        for (i, v) in values.iter().enumerate() {
            rules::evaluate(
                &rule,
                &mut st,
                Sample::ok(*v),
                i as u64 * 1000,
                Default::default(),
            );
        }
        st
    }

    #[test]
    fn known_channels_pass_and_new_ones_stop_at_the_cap() {
        let idle = ChannelState::default();
        let rc = Quantity::ResidualCurrent;
        assert_eq!(admit(Some((rc, &idle, false)), 99, rc), Admission::Known);
        assert_eq!(admit(None, 0, rc), Admission::Fresh);
        assert_eq!(admit(None, MAX_NODE_CHANNELS - 1, rc), Admission::Fresh);
        assert_eq!(admit(None, MAX_NODE_CHANNELS, rc), Admission::ChannelLimit);
        assert_eq!(Admission::ChannelLimit.refusal(), Some("channel_limit"));
        assert_eq!(Admission::Fresh.refusal(), None);
    }

    #[test]
    fn a_quantity_change_never_drops_a_standing_or_latched_alarm() {
        let t = Quantity::Temperature;
        let rc = Quantity::ResidualCurrent;
        let alarm = state_after(&[150, 700]);
        assert_eq!(alarm.level(), Level::Alarm);
        assert_eq!(
            admit(Some((rc, &alarm, false)), 1, t),
            Admission::QuantityChanged { first: true }
        );
        assert_eq!(
            admit(Some((rc, &alarm, true)), 1, t),
            Admission::QuantityChanged { first: false }
        );
        // Back in band but latched: still standing.
        let latched = state_after(&[150, 700, 100]);
        assert!(latched.is_latched(), "{latched:?}");
        assert!(stands(&latched));
        assert_eq!(
            Admission::QuantityChanged { first: true }.refusal(),
            Some("quantity_changed")
        );
        assert!(matches!(
            admit(Some((rc, &latched, false)), 1, t),
            Admission::QuantityChanged { .. }
        ));
        // Idle: the new quantity starts afresh.
        let idle = state_after(&[150, 160]);
        assert!(!stands(&idle));
        assert_eq!(admit(Some((rc, &idle, false)), 1, t), Admission::Fresh);
    }
}
