use super::*;
use rules::OfflineCause;

fn cfg(extra: &str) -> Arc<Config> {
    Arc::new(
        Config::from_toml(&format!(
            r#"
            offline_after_secs = 60
            {extra}
            [[sites]]
            id = "home_a"
            [[sites.nodes]]
            id = "n01"
            [[sites.nodes.channels]]
            id = "rc2"
            quantity = "residual_current"
            rule = {{ alarm = 400 }}
            [[sites.nodes]]
            id = "n02"
            "#
        ))
        .unwrap(),
    )
}

fn ids() -> (SiteId, NodeId) {
    (SiteId::new("home_a").unwrap(), NodeId::new("n01").unwrap())
}

fn r(id: &str, q: Quantity, v: i32, s: ChannelStatus) -> Reading {
    Reading {
        id: ChannelId::new(id).unwrap(),
        q,
        v,
        s,
    }
}

fn transitions(ch: &[Change]) -> Vec<(Transition, Disposition)> {
    ch.iter()
        .filter_map(|c| match c {
            Change::Channel {
                transition,
                disposition,
                ..
            } => Some((*transition, *disposition)),
            _ => None,
        })
        .collect()
}

#[test]
fn residual_current_over_the_default_setpoint_raises_and_latches() {
    let (s, n) = ids();
    let mut rt = Runtime::new(cfg(""));
    assert!(rt
        .readings(
            &s,
            &n,
            &[r("rc1", Quantity::ResidualCurrent, 150, ChannelStatus::Ok)],
            0
        )
        .is_empty());
    let ch = rt.readings(
        &s,
        &n,
        &[r("rc1", Quantity::ResidualCurrent, 520, ChannelStatus::Ok)],
        1000,
    );
    assert_eq!(
        transitions(&ch),
        [(
            Transition::Raised {
                level: Level::Alarm,
                value: 520,
                setpoint: 500
            },
            Disposition::Notify
        )]
    );
    let Change::Channel {
        ch: cref,
        transition,
        ..
    } = &ch[0]
    else {
        unreachable!()
    };
    assert_eq!(cref.key_for(transition).cause, "residual_current_high");
    let ch = rt.readings(
        &s,
        &n,
        &[r("rc1", Quantity::ResidualCurrent, 100, ChannelStatus::Ok)],
        2000,
    );
    assert_eq!(
        transitions(&ch),
        [(
            Transition::Latched {
                level: Level::Alarm,
                value: 100
            },
            Disposition::Notify
        )]
    );
    let c = ChannelId::new("rc1").unwrap();
    assert!(matches!(
        rt.reset(&s, &n, &c, 3000),
        Ok(Change::Channel {
            transition: Transition::Reset { .. },
            ..
        })
    ));
    assert_eq!(rt.reset(&s, &n, &c, 3001), Err(ResetRefused::NotReleasable));
}

#[test]
fn per_channel_setpoint_overrides_the_default() {
    let (s, n) = ids();
    let mut rt = Runtime::new(cfg(""));
    let ch = rt.readings(
        &s,
        &n,
        &[r("rc2", Quantity::ResidualCurrent, 420, ChannelStatus::Ok)],
        0,
    );
    assert!(
        matches!(
            transitions(&ch)[..],
            [(
                Transition::Raised {
                    level: Level::Alarm,
                    setpoint: 400,
                    ..
                },
                _
            )]
        ),
        "{ch:?}"
    );
}

#[test]
fn a_faulty_channel_is_a_fault_never_an_alarm() {
    let (s, n) = ids();
    let mut rt = Runtime::new(cfg(""));
    let ch = rt.readings(
        &s,
        &n,
        &[r(
            "rc1",
            Quantity::ResidualCurrent,
            9999,
            ChannelStatus::Open,
        )],
        0,
    );
    assert_eq!(
        transitions(&ch),
        [(
            Transition::FaultRaised {
                kind: FaultKind::Open
            },
            Disposition::Notify
        )]
    );
    // NE43: a 4–20 mA loop below 3.6 mA is a sensor fault.
    let ch = rt.readings(
        &s,
        &n,
        &[r("p1", Quantity::LoopCurrent, 2000, ChannelStatus::Ok)],
        0,
    );
    assert_eq!(
        transitions(&ch),
        [(
            Transition::FaultRaised {
                kind: FaultKind::Range
            },
            Disposition::Notify
        )]
    );
}

#[test]
fn dead_man_and_last_will_take_a_node_offline_and_suppress_its_channels() {
    let (s, n) = ids();
    let n2 = NodeId::new("n02").unwrap();
    let mut rt = Runtime::new(cfg(""));
    rt.start(0);
    assert!(rt.tick(59_999).is_empty());
    // Both nodes silent for 60 s: both offline, and the site's uplink is the root cause.
    let ch = rt.tick(60_000);
    let nodes: Vec<_> = ch
        .iter()
        .filter(|c| matches!(c, Change::Node { .. }))
        .collect();
    assert_eq!(nodes.len(), 2, "{ch:?}");
    assert!(
        ch.iter().any(|c| matches!(
            c,
            Change::Site {
                transition: SiteTransition::UplinkLost,
                ..
            }
        )),
        "{ch:?}"
    );
    assert!(
        matches!(
            ch.last(),
            Some(Change::Node {
                suppressed: true,
                ..
            })
        ),
        "the last node is suppressed: {ch:?}"
    );
    // n01 comes back: the uplink is back; its channel alarms notify again.
    let ch = rt.seen(&s, &n, 61_000);
    assert!(
        matches!(
            ch[0],
            Change::Node {
                transition: NodeTransition::Online,
                ..
            }
        ),
        "{ch:?}"
    );
    assert!(ch.iter().any(|c| matches!(
        c,
        Change::Site {
            transition: SiteTransition::UplinkRestored,
            ..
        }
    )));
    // n02's Last Will while n01 is up: one node offline, not the site.
    rt.seen(&s, &n2, 61_000);
    let ch = rt.status(&s, &n2, &Status::offline(), 62_000);
    assert_eq!(
        ch,
        [Change::Node {
            key: node_key("home_a", "n02", CAUSE_OFFLINE),
            transition: NodeTransition::Offline {
                cause: OfflineCause::LastWill
            },
            suppressed: false
        }]
    );
    // A supply failure suppresses the node's channel alarms.
    let ch = rt.supply(&s, &n, false, 63_000);
    assert!(
        matches!(
            ch[..],
            [Change::Node {
                transition: NodeTransition::SupplyFailed,
                ..
            }]
        ),
        "{ch:?}"
    );
    let ch = rt.readings(
        &s,
        &n,
        &[r("rc1", Quantity::ResidualCurrent, 700, ChannelStatus::Ok)],
        63_500,
    );
    assert_eq!(transitions(&ch)[0].1, Disposition::Suppressed);
}

#[test]
fn unknown_nodes_are_refused_unless_configured() {
    let rt = Runtime::new(cfg(""));
    let (s, n) = ids();
    assert!(rt.knows(&s, &n));
    assert!(!rt.knows(&s, &NodeId::new("n99").unwrap()));
}

#[test]
fn admission_caps_a_nodes_channels_and_late_readings_never_replace_one() {
    use crate::ingest::node_limits::MAX_NODE_CHANNELS;
    let mut rt = Runtime::new(cfg(""));
    let (s, n) = ids();
    let rc = Quantity::ResidualCurrent;
    for i in 0..MAX_NODE_CHANNELS {
        let id = format!("c{i}");
        assert_eq!(
            rt.admit(&s, &n, &r(&id, rc, 100, ChannelStatus::Ok), true),
            Admission::Fresh
        );
        assert_eq!(
            rt.admit(&s, &n, &r(&id, rc, 100, ChannelStatus::Ok), false),
            Admission::Known
        );
    }
    assert_eq!(
        rt.admit(&s, &n, &r("extra", rc, 100, ChannelStatus::Ok), false),
        Admission::ChannelLimit
    );
    // Another node has channels of its own.
    let other = NodeId::new("n02").unwrap();
    assert_eq!(
        rt.admit(&s, &other, &r("extra", rc, 100, ChannelStatus::Ok), true),
        Admission::Fresh
    );
    // A late reading of another quantity on an idle channel is stored,
    // but the channel stays what the rules judge.
    let c0 = ChannelId::new("c0").unwrap();
    let t = r("c0", Quantity::Temperature, 250, ChannelStatus::Ok);
    assert_eq!(rt.admit(&s, &n, &t, false), Admission::Fresh);
    assert_eq!(rt.channel_rule(&s, &n, &c0).map(|c| c.0), Some(rc));
    assert_eq!(rt.admit(&s, &n, &t, true), Admission::Fresh);
    assert_eq!(
        rt.channel_rule(&s, &n, &c0).map(|c| c.0),
        Some(Quantity::Temperature)
    );
    // Still 32 channels: a replaced one is not a new one.
    assert_eq!(
        rt.admit(&s, &n, &r("extra", rc, 100, ChannelStatus::Ok), true),
        Admission::ChannelLimit
    );
}
