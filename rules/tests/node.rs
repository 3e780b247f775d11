//! Node-level rules (dead-man timer, Last Will, supply) and the site uplink heuristic: exact
//! transition sequences, and how they feed the channel engine's root-cause suppression.

use rules::node::{last_will, seen, supply, tick};
use rules::site::update;
use rules::{
    evaluate, ChannelRule, ChannelState, Context, Disposition, Level, NodeRule, NodeState,
    NodeTransition, OfflineCause, Sample, SiteState, SiteTransition, ThresholdRule, Transition,
};

const RULE: NodeRule = NodeRule {
    offline_after_ms: 60_000,
};

const TIMEOUT: Option<NodeTransition> = Some(NodeTransition::Offline {
    cause: OfflineCause::Timeout,
});
const WILL: Option<NodeTransition> = Some(NodeTransition::Offline {
    cause: OfflineCause::LastWill,
});

#[derive(Clone, Copy, Debug)]
enum Ev {
    Seen(u64),
    Tick(u64),
    Will(u64),
    Supply(bool, u64),
}

fn run(steps: &[(Ev, Option<NodeTransition>, bool)]) -> NodeState {
    let mut st = NodeState::default();
    for (i, &(ev, want, down)) in steps.iter().enumerate() {
        let got = match ev {
            Ev::Seen(t) => seen(&RULE, &mut st, t),
            Ev::Tick(t) => tick(&RULE, &mut st, t),
            Ev::Will(t) => last_will(&mut st, t),
            Ev::Supply(ok, t) => supply(&mut st, ok, t),
        };
        assert_eq!(got, want, "step {i}: {ev:?}");
        assert_eq!(st.is_down(), down, "step {i}: {ev:?} is_down");
    }
    st
}

#[test]
fn never_offline_before_the_first_message() {
    let st = run(&[
        (Ev::Tick(0), None, false),
        (Ev::Tick(1_000_000), None, false),
        (Ev::Tick(u64::MAX), None, false),
    ]);
    assert_eq!(st.last_seen(), None);
}

#[test]
fn dead_man_timer_goes_offline_once_and_a_message_brings_it_back() {
    let st = run(&[
        (Ev::Seen(1_000), None, false),
        (Ev::Tick(60_999), None, false),
        (Ev::Seen(30_000), None, false), // a message restarts the timer
        (Ev::Tick(89_999), None, false),
        (Ev::Tick(90_000), TIMEOUT, true),
        (Ev::Tick(90_001), None, true),
        (Ev::Tick(500_000), None, true),
        (Ev::Will(500_001), None, true), // already offline: one transition per outage
        (Ev::Seen(500_002), Some(NodeTransition::Online), false),
        (Ev::Seen(500_003), None, false),
        (Ev::Tick(560_002), None, false),
        (Ev::Tick(560_003), TIMEOUT, true),
    ]);
    assert_eq!(st.offline_cause(), Some(OfflineCause::Timeout));
    assert_eq!(st.changed_at(), 560_003);
}

#[test]
fn last_will_is_offline_at_once() {
    let st = run(&[
        (Ev::Seen(0), None, false),
        (Ev::Will(10), WILL, true),
        (Ev::Will(11), None, true),
        (Ev::Tick(1_000_000), None, true),
        (Ev::Seen(1_000_001), Some(NodeTransition::Online), false),
    ]);
    assert!(!st.is_offline());
    // A retained will of a node never seen (the gateway restarted).
    run(&[
        (Ev::Will(5), WILL, true),
        (Ev::Seen(6), Some(NodeTransition::Online), false),
    ]);
}

#[test]
fn supply_failure_is_down_but_not_offline() {
    let st = run(&[
        (Ev::Seen(0), None, false),
        (Ev::Supply(true, 1), None, false),
        (
            Ev::Supply(false, 2),
            Some(NodeTransition::SupplyFailed),
            true,
        ),
        (Ev::Supply(false, 3), None, true),
        (Ev::Seen(4), None, true),
        (Ev::Tick(70_000), TIMEOUT, true),
        (Ev::Seen(70_001), Some(NodeTransition::Online), true),
        (
            Ev::Supply(true, 70_002),
            Some(NodeTransition::SupplyRestored),
            false,
        ),
    ]);
    assert!(!st.supply_failed());
    assert_eq!(st.last_seen(), Some(70_001));
}

#[test]
fn time_going_backwards_never_times_out_early() {
    run(&[
        (Ev::Seen(u64::MAX), None, false),
        (Ev::Tick(0), None, false),
        (Ev::Seen(5), None, false),
        (Ev::Tick(60_004), None, false),
        (Ev::Tick(60_005), TIMEOUT, true),
    ]);
}

#[test]
fn site_uplink_is_lost_when_every_node_of_a_multi_node_site_is_down() {
    let mut st = SiteState::default();
    let steps: [((u16, u16), Option<SiteTransition>); 10] = [
        ((3, 0), None),
        ((3, 2), None),
        ((3, 3), Some(SiteTransition::UplinkLost)),
        ((3, 3), None),
        ((3, 4), None), // more down than known: still all down
        ((3, 2), Some(SiteTransition::UplinkRestored)),
        ((1, 1), None), // a single-node site: its node's alarm is the root cause
        ((2, 2), Some(SiteTransition::UplinkLost)),
        ((1, 1), Some(SiteTransition::UplinkRestored)),
        ((0, 0), None),
    ];
    for (i, ((total, down), want)) in steps.into_iter().enumerate() {
        assert_eq!(update(&mut st, total, down), want, "step {i}");
        assert_eq!(st.is_uplink_lost(), total >= 2 && down >= total, "step {i}");
    }
}

#[test]
fn a_down_node_suppresses_its_channels() {
    // The gateway's loop in miniature: node state → context → channel outputs.
    let mut node = NodeState::default();
    let rule = ChannelRule::from(ThresholdRule::high(None, Some(300)));
    let mut ch = ChannelState::default();
    seen(&RULE, &mut node, 0);
    supply(&mut node, false, 1);
    let ctx = Context {
        suppressed: node.is_down(),
    };
    let out = evaluate(&rule, &mut ch, Sample::ok(0), 2, ctx);
    assert!(out.is_empty());
    let out = evaluate(&rule, &mut ch, Sample::ok(400), 3, ctx);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].transition,
        Transition::Raised {
            level: Level::Alarm,
            value: 400,
            setpoint: 300
        }
    );
    assert_eq!(out[0].disposition, Disposition::Suppressed);
}
