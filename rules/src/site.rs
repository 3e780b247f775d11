//! Site-level root cause: the uplink of a whole site (its router, 4G modem or the site's power).
//!
//! The gateway cannot observe a site's uplink directly; it only sees the site's nodes go quiet.
//! Heuristic: **a site with at least two nodes whose nodes are all down** (offline or supply
//! failed, [`crate::NodeState::is_down`]) has lost its uplink — one common cause is far more
//! likely than every node failing on its own. Then the caller reports one alarm for the site
//! (DOMAIN §3) and suppresses the node- and channel-level ones. A single-node site never
//! "loses its uplink": its node's offline alarm is already the one alarm. The uplink is restored
//! as soon as any node of the site is up again (or the site's node count drops below two).
//!
//! Nodes time out one by one ([`crate::node::tick`]), so the node-level offline transitions come
//! before the site-level one; a caller that wants only the site alarm should hold node-offline
//! notifications briefly (e.g. one `offline_after_ms`) and drop those covered by `UplinkLost`.

/// The uplink state of one site. Start from `SiteState::default()` (uplink up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SiteState {
    uplink_lost: bool,
}

impl SiteState {
    /// Whether the site's uplink is considered lost: feed it into
    /// [`crate::Context::suppressed`] for every channel of the site.
    pub fn is_uplink_lost(&self) -> bool {
        self.uplink_lost
    }
}

/// A change of a site's uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SiteTransition {
    /// Every node of the site is down.
    UplinkLost,
    /// A node of the site is up again.
    UplinkRestored,
}

/// Re-evaluates a site that has `nodes_total` known nodes of which `nodes_down` are down; call
/// it whenever a node of the site changes state. Returns a transition when the uplink state
/// changes. `nodes_down > nodes_total` counts as all down.
pub fn update(state: &mut SiteState, nodes_total: u16, nodes_down: u16) -> Option<SiteTransition> {
    let lost = nodes_total >= 2 && nodes_down >= nodes_total;
    if lost == state.uplink_lost {
        return None;
    }
    state.uplink_lost = lost;
    Some(if lost {
        SiteTransition::UplinkLost
    } else {
        SiteTransition::UplinkRestored
    })
}
