//! Rules runtime (规则运行时): per-node and per-channel state, fed with
//! decoded messages, producing alarm changes. Pure: time is an argument, no
//! I/O; the pipeline applies the changes to the store and the notifiers.

use crate::config::Config;
use crate::dedup::{SeqTracker, Verdict};
use crate::store::AlarmKey;
use rules::{ChannelState, Direction, FaultKind, Level, Millis, Sample, ThresholdRule, Transition};
use std::collections::HashMap;
use std::sync::Arc;
use wire::{ChannelId, ChannelStatus, NodeId, NodeState, Quantity, Reading, SiteId, Status};

/// Cause of node-level alarms.
pub const CAUSE_OFFLINE: &str = "offline";
/// Cause of channel faults.
pub const CAUSE_FAULT: &str = "fault";

/// Which desk an alarm belongs to (GB 14287.1 keeps electrical-fire
/// warnings apart from fire alarms, and faults apart from both).
pub fn alarm_kind(q: Quantity) -> &'static str {
    match q {
        Quantity::ResidualCurrent
        | Quantity::Temperature
        | Quantity::Arc
        | Quantity::Current
        | Quantity::Voltage => "electrical_fire",
        Quantity::WaterPressure | Quantity::WaterLevel | Quantity::LoopCurrent => "fire_facility",
    }
}

/// The threshold cause name of a rule on a quantity: `residual_current_high`.
pub fn threshold_cause(q: Quantity, d: Direction) -> String {
    let dir = match d {
        Direction::High => "high",
        Direction::Low => "low",
    };
    format!("{}_{dir}", q.as_str())
}

fn fault_kind(s: ChannelStatus) -> Option<FaultKind> {
    match s {
        ChannelStatus::Ok => None,
        ChannelStatus::Open => Some(FaultKind::Open),
        ChannelStatus::Short => Some(FaultKind::Short),
        ChannelStatus::Range => Some(FaultKind::Range),
        ChannelStatus::Fault => Some(FaultKind::Fault),
    }
}

/// What the pipeline must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A threshold alarm was raised or escalated to `level`.
    Raise {
        key: AlarmKey,
        quantity: Quantity,
        level: Level,
        value: i32,
        setpoint: i32,
    },
    /// The alarm stays, at a lower level.
    Relevel {
        key: AlarmKey,
        level: Level,
        value: i32,
    },
    /// The value is back in band; the alarm is held for an authorised reset.
    Latch { key: AlarmKey, value: i32 },
    /// The alarm cleared (or was reset).
    Clear { key: AlarmKey, value: Option<i32> },
    /// The channel's sensor is faulty (设备故障) — not a fire alarm.
    FaultRaise {
        key: AlarmKey,
        quantity: Quantity,
        fault: FaultKind,
    },
    /// The channel's sensor fault is gone.
    FaultClear { key: AlarmKey },
    /// The node went offline (Last Will or goodbye).
    NodeOffline { key: AlarmKey },
    /// The node came (back) online.
    NodeOnline { key: AlarmKey, boot: Option<u32> },
}

struct ChannelRt {
    quantity: Quantity,
    rule: ThresholdRule,
    state: ChannelState,
}

#[derive(Default)]
struct NodeRt {
    seq: SeqTracker,
    online: Option<bool>,
}

/// All rule state of one gateway.
pub struct Runtime {
    config: Arc<Config>,
    channels: HashMap<(SiteId, NodeId, ChannelId), ChannelRt>,
    nodes: HashMap<(SiteId, NodeId), NodeRt>,
}

fn key(site: &SiteId, node: &NodeId, channel: &str, cause: &str) -> AlarmKey {
    AlarmKey {
        site: site.to_string(),
        node: node.to_string(),
        channel: channel.to_string(),
        cause: cause.to_string(),
    }
}

impl Runtime {
    pub fn new(config: Arc<Config>) -> Self {
        Runtime {
            config,
            channels: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// Whether messages from this node are accepted.
    pub fn knows(&self, site: &SiteId, node: &NodeId) -> bool {
        self.config.accept_unknown_nodes || self.config.node(site, node).is_some()
    }

    /// De-duplicates a telemetry or event message on `(boot, seq)`.
    pub fn observe_seq(&mut self, site: &SiteId, node: &NodeId, boot: u32, seq: u32) -> Verdict {
        self.nodes
            .entry((site.clone(), node.clone()))
            .or_default()
            .seq
            .observe(boot, seq)
    }

    /// Nodes currently known online.
    pub fn online_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.online == Some(true))
            .count()
    }

    fn rule_for(&self, site: &SiteId, node: &NodeId, ch: &ChannelId, q: Quantity) -> ThresholdRule {
        let over = self.config.node(site, node).and_then(|(_, n)| {
            n.channels
                .iter()
                .find(|c| {
                    c.id == ch.as_str() && c.quantity.as_deref().is_none_or(|cq| cq == q.as_str())
                })
                .map(|c| c.rule())
        });
        // Quantities without a built-in rule are still watched for faults:
        // a rule without setpoints never raises a level.
        self.config.rule_for(q, over.as_ref()).unwrap_or_default()
    }

    /// Evaluates in-order readings sampled at `at`.
    pub fn readings(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        readings: &[Reading],
        at: Millis,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for r in readings {
            let id = (site.clone(), node.clone(), r.id.clone());
            if self.channels.get(&id).is_none_or(|c| c.quantity != r.q) {
                // New channel, or the node now reports another quantity on it.
                let rule = self.rule_for(site, node, &r.id, r.q);
                self.channels.insert(
                    id.clone(),
                    ChannelRt {
                        quantity: r.q,
                        rule,
                        state: ChannelState::default(),
                    },
                );
            }
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            let sample = match fault_kind(r.s) {
                Some(k) => Sample::fault(k),
                None => Sample::ok(r.v),
            };
            let cause = threshold_cause(r.q, ch.rule.direction);
            for t in rules::evaluate(&ch.rule, &mut ch.state, sample, at) {
                let tk = key(site, node, &r.id, &cause);
                out.push(match t {
                    Transition::Raised {
                        level,
                        value,
                        setpoint,
                    }
                    | Transition::Escalated {
                        to: level,
                        value,
                        setpoint,
                        ..
                    } => Change::Raise {
                        key: tk,
                        quantity: r.q,
                        level,
                        value,
                        setpoint,
                    },
                    Transition::Deescalated { to, value, .. } => Change::Relevel {
                        key: tk,
                        level: to,
                        value,
                    },
                    Transition::Latched { value, .. } => Change::Latch { key: tk, value },
                    Transition::Cleared { value, .. } => Change::Clear {
                        key: tk,
                        value: Some(value),
                    },
                    Transition::Reset { .. } => Change::Clear {
                        key: tk,
                        value: None,
                    },
                    Transition::FaultRaised { kind } => Change::FaultRaise {
                        key: key(site, node, &r.id, CAUSE_FAULT),
                        quantity: r.q,
                        fault: kind,
                    },
                    Transition::FaultCleared { .. } => Change::FaultClear {
                        key: key(site, node, &r.id, CAUSE_FAULT),
                    },
                });
            }
        }
        out
    }

    /// Applies a `status` message (birth or Last Will).
    pub fn status(&mut self, site: &SiteId, node: &NodeId, status: &Status) -> Vec<Change> {
        let n = self.nodes.entry((site.clone(), node.clone())).or_default();
        let online = status.state == NodeState::Online;
        if n.online == Some(online) {
            return Vec::new();
        }
        let was = n.online.replace(online);
        let k = key(site, node, "", CAUSE_OFFLINE);
        match (online, was) {
            (false, _) => vec![Change::NodeOffline { key: k }],
            (true, _) => vec![Change::NodeOnline {
                key: k,
                boot: status.boot,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Arc<Config> {
        Arc::new(
            Config::from_toml(
                r#"
                [[sites]]
                id = "home_a"
                [[sites.nodes]]
                id = "n01"
                [[sites.nodes.channels]]
                id = "rc2"
                quantity = "residual_current"
                alarm = 400
                "#,
            )
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

    #[test]
    fn residual_current_over_the_default_setpoint_raises_an_alarm() {
        let (s, n) = ids();
        let mut rt = Runtime::new(cfg());
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
            ch,
            vec![Change::Raise {
                key: key(&s, &n, "rc1", "residual_current_high"),
                quantity: Quantity::ResidualCurrent,
                level: Level::Alarm,
                value: 520,
                setpoint: 500
            }]
        );
        // Back to normal: the alarm latches until an authorised reset.
        let ch = rt.readings(
            &s,
            &n,
            &[r("rc1", Quantity::ResidualCurrent, 100, ChannelStatus::Ok)],
            2000,
        );
        assert_eq!(
            ch,
            vec![Change::Latch {
                key: key(&s, &n, "rc1", "residual_current_high"),
                value: 100
            }]
        );
    }

    #[test]
    fn per_channel_setpoint_overrides_the_default() {
        let (s, n) = ids();
        let mut rt = Runtime::new(cfg());
        let ch = rt.readings(
            &s,
            &n,
            &[r("rc2", Quantity::ResidualCurrent, 420, ChannelStatus::Ok)],
            0,
        );
        assert!(
            matches!(
                ch[..],
                [Change::Raise {
                    level: Level::Alarm,
                    setpoint: 400,
                    ..
                }]
            ),
            "{ch:?}"
        );
    }

    #[test]
    fn temperature_pre_alarm_then_alarm() {
        let (s, n) = ids();
        let mut rt = Runtime::new(cfg());
        let ch = rt.readings(
            &s,
            &n,
            &[r("t1", Quantity::Temperature, 650, ChannelStatus::Ok)],
            0,
        );
        assert!(
            matches!(
                ch[..],
                [Change::Raise {
                    level: Level::PreAlarm,
                    setpoint: 600,
                    ..
                }]
            ),
            "{ch:?}"
        );
        let ch = rt.readings(
            &s,
            &n,
            &[r("t1", Quantity::Temperature, 812, ChannelStatus::Ok)],
            1,
        );
        assert!(
            matches!(
                ch[..],
                [Change::Raise {
                    level: Level::Alarm,
                    setpoint: 800,
                    ..
                }]
            ),
            "{ch:?}"
        );
    }

    #[test]
    fn a_faulty_channel_is_a_fault_never_an_alarm() {
        let (s, n) = ids();
        let mut rt = Runtime::new(cfg());
        // An open CT reading a huge value must not look like leakage.
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
            ch,
            vec![Change::FaultRaise {
                key: key(&s, &n, "rc1", CAUSE_FAULT),
                quantity: Quantity::ResidualCurrent,
                fault: FaultKind::Open
            }]
        );
        let ch = rt.readings(
            &s,
            &n,
            &[r("rc1", Quantity::ResidualCurrent, 120, ChannelStatus::Ok)],
            1,
        );
        assert_eq!(
            ch,
            vec![Change::FaultClear {
                key: key(&s, &n, "rc1", CAUSE_FAULT)
            }]
        );
        // Quantities without a threshold rule are still watched for faults.
        let ch = rt.readings(
            &s,
            &n,
            &[r("v1", Quantity::Voltage, 0, ChannelStatus::Short)],
            2,
        );
        assert!(matches!(
            ch[..],
            [Change::FaultRaise {
                fault: FaultKind::Short,
                ..
            }]
        ));
        assert!(
            rt.readings(
                &s,
                &n,
                &[r("v1", Quantity::Voltage, 99999, ChannelStatus::Ok)],
                3
            )
            .len()
                == 1
        );
    }

    #[test]
    fn last_will_marks_the_node_offline_once() {
        let (s, n) = ids();
        let mut rt = Runtime::new(cfg());
        let online = Status {
            state: NodeState::Online,
            fw: None,
            boot: Some(3),
            dropped: None,
        };
        assert!(matches!(
            rt.status(&s, &n, &online)[..],
            [Change::NodeOnline { boot: Some(3), .. }]
        ));
        assert_eq!(rt.online_count(), 1);
        assert!(rt.status(&s, &n, &online).is_empty());
        assert_eq!(
            rt.status(&s, &n, &Status::offline()),
            vec![Change::NodeOffline {
                key: key(&s, &n, "", "offline")
            }]
        );
        assert!(rt.status(&s, &n, &Status::offline()).is_empty());
        assert_eq!(rt.online_count(), 0);
    }

    #[test]
    fn unknown_nodes_are_refused_unless_configured() {
        let rt = Runtime::new(cfg());
        let (s, n) = ids();
        assert!(rt.knows(&s, &n));
        assert!(!rt.knows(&s, &NodeId::new("n99").unwrap()));
    }
}
