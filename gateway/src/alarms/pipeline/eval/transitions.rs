//! What each rule output asks of the store: the alarm record, its log row,
//! its ticket, suppression and release — the mapping from a channel's,
//! node's or site's transition to [`Effect`]s. Pure.

use super::{input, level_code, Core};
use crate::alarms::pipeline::effects::{Effect, Note};
use crate::alarms::pipeline::specs;
use crate::alarms::runtime::{alarm_kind, ChannelRef, CAUSE_OFFLINE};
use crate::domain::labels;
use crate::store::{AlarmInput, AlarmKey};
use rules::{Disposition, FaultKind, Level, NodeTransition, SiteTransition, Transition};
use wire::{NodeId, SiteId};

impl Core {
    pub(super) fn apply_channel(
        &mut self,
        ch: &ChannelRef,
        t: Transition,
        disposition: Disposition,
        level: Level,
        at: u64,
        actor: &str,
    ) {
        let key = ch.key_for(&t);
        let q = ch.quantity;
        let (name, log_level, value) = match t {
            Transition::Raised { level, value, .. } => {
                ("raised", Some(level_code(level)), Some(value))
            }
            Transition::Escalated { to, value, .. } => {
                ("escalated", Some(level_code(to)), Some(value))
            }
            Transition::Deescalated { to, value, .. } => {
                ("deescalated", Some(level_code(to)), Some(value))
            }
            Transition::Cleared { value, .. } => ("cleared", None, Some(value)),
            Transition::Latched { level, value } => {
                ("latched", Some(level_code(level)), Some(value))
            }
            Transition::Reset { .. } => ("reset", None, None),
            Transition::FaultRaised { .. } => ("fault_raised", Some("fault"), None),
            Transition::FaultCleared { .. } => ("fault_cleared", None, None),
            Transition::RateRaised { value, .. } => ("rate_raised", Some("pre_alarm"), Some(value)),
            Transition::RateCleared { value } => ("rate_cleared", None, Some(value)),
            Transition::FlappingStarted { .. } => ("flapping_started", None, None),
            Transition::FlappingEnded { .. } => ("flapping_ended", None, None),
        };
        self.log(&key, name, log_level, value, disposition, at, actor);
        let suppressed = disposition == Disposition::Suppressed;
        // While flapping, raise/clear/level changes are recorded only; the
        // one FlappingStarted notification stands for them.
        let swallowed = disposition == Disposition::Flapping;
        match t {
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
            } => {
                // A fire alarm is never swallowed: only pre-alarm swings are.
                if swallowed && level != Level::Alarm {
                    return;
                }
                let ticket = (level == Level::Alarm && !suppressed).then(|| {
                    let what = format!(
                        "超限（{} {} 报警值 {}）",
                        labels::value(q.as_str(), value.into()),
                        if ch.direction == rules::Direction::Low {
                            "≤"
                        } else {
                            "≥"
                        },
                        labels::value(q.as_str(), setpoint.into())
                    );
                    specs::hazard(&self.config, &key, q, what)
                });
                let input = input(
                    key,
                    alarm_kind(q),
                    level_code(level),
                    Some(q),
                    Some(value),
                    Some(setpoint),
                    at,
                    suppressed,
                );
                self.raise(input, ticket);
            }
            Transition::RateRaised { value, rise } => {
                if swallowed {
                    return;
                }
                let ticket = (!suppressed).then(|| {
                    let what = format!(
                        "温升过快（{} 内上升 {}）",
                        "1 分钟",
                        labels::value(q.as_str(), rise.into())
                    );
                    specs::hazard(&self.config, &key, q, what)
                });
                let input = input(
                    key,
                    alarm_kind(q),
                    "pre_alarm",
                    Some(q),
                    Some(value),
                    Some(rise),
                    at,
                    suppressed,
                );
                self.raise(input, ticket);
            }
            Transition::Deescalated { to, value, .. } if !swallowed => {
                self.push(Effect::SetLevel {
                    key,
                    level: level_code(to),
                    value,
                    at,
                });
            }
            Transition::Latched { value, .. } if !swallowed => {
                self.settle(&key, "latched", Some(value), at)
            }
            Transition::Cleared { value, .. } if !swallowed => {
                self.note(Note::AlarmsCleared);
                self.settle(&key, "cleared", Some(value), at)
            }
            Transition::RateCleared { value } if !swallowed => {
                self.settle(&key, "cleared", Some(value), at)
            }
            Transition::Reset { .. } => self.settle(&key, "cleared", None, at),
            Transition::FaultRaised { kind } => {
                // Faults are never swallowed by flapping: a broken sensor must be seen.
                let what = match kind {
                    FaultKind::Open => "开路",
                    FaultKind::Short => "短路",
                    FaultKind::Range => "超量程",
                    FaultKind::Fault => "故障",
                };
                let ticket = (!suppressed).then(|| {
                    specs::fault(
                        &self.config,
                        &key,
                        format!("{}传感器{what}", labels::quantity(q.as_str())),
                    )
                });
                self.note(Note::FaultsRaised);
                let input = input(key, "fault", "fault", Some(q), None, None, at, suppressed);
                self.raise(input, ticket);
            }
            Transition::FaultCleared { .. } => self.settle(&key, "cleared", None, at),
            Transition::FlappingStarted { transitions } => {
                tracing::warn!(site = %key.site, node = %key.node, ch = %key.channel, transitions, "channel is flapping");
                let l = if level == Level::Normal {
                    Level::PreAlarm
                } else {
                    level
                };
                let fallback = level_input(key.clone(), q, l, at, suppressed);
                self.push(Effect::FlappingStarted { key, fallback, at });
            }
            Transition::FlappingEnded { level } => {
                self.push(Effect::FlappingEnded {
                    key: key.clone(),
                    at,
                });
                // Back to plain behaviour: the record shows where the channel settled.
                match level {
                    Level::Normal => self.settle(&key, "cleared", None, at),
                    l => {
                        let ticket = (l == Level::Alarm && !suppressed)
                            .then(|| specs::hazard(&self.config, &key, q, "抖动后持续报警".into()));
                        self.raise(level_input(key, q, l, at, suppressed), ticket);
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn apply_node(
        &mut self,
        key: &AlarmKey,
        t: NodeTransition,
        suppressed: bool,
        at: u64,
    ) {
        let disposition = if suppressed {
            Disposition::Suppressed
        } else {
            Disposition::Notify
        };
        match t {
            NodeTransition::Offline { cause } => {
                self.note(Note::NodeOffline);
                let how = match cause {
                    rules::OfflineCause::Timeout => "offline_timeout",
                    rules::OfflineCause::LastWill => "offline_last_will",
                };
                self.log(key, how, Some("offline"), None, disposition, at, "system");
                self.raise(offline_input(key.clone(), at, suppressed), None);
            }
            NodeTransition::SupplyFailed => {
                self.log(
                    key,
                    "supply_failed",
                    Some("fault"),
                    None,
                    disposition,
                    at,
                    "system",
                );
                let ticket =
                    (!suppressed).then(|| specs::fault(&self.config, key, "主电故障".into()));
                let input = input(
                    key.clone(),
                    "fault",
                    "fault",
                    None,
                    None,
                    None,
                    at,
                    suppressed,
                );
                self.raise(input, ticket);
            }
            NodeTransition::Online | NodeTransition::SupplyRestored => {
                let name = if t == NodeTransition::Online {
                    "online"
                } else {
                    "supply_restored"
                };
                self.log(key, name, None, None, Disposition::Notify, at, "system");
                self.settle(key, "cleared", None, at);
                self.release_suppressed(&key.site, &key.node, at);
            }
        }
    }

    pub(super) fn apply_site(&mut self, key: &AlarmKey, t: SiteTransition, at: u64) {
        match t {
            SiteTransition::UplinkLost => {
                self.log(
                    key,
                    "uplink_lost",
                    Some("offline"),
                    None,
                    Disposition::Notify,
                    at,
                    "system",
                );
                // The site's one alarm stands for its nodes' offline alarms.
                self.push(Effect::SuppressStanding {
                    site: key.site.clone(),
                    cause: CAUSE_OFFLINE,
                    at,
                });
                self.raise(offline_input(key.clone(), at, false), None);
            }
            SiteTransition::UplinkRestored => {
                self.log(
                    key,
                    "uplink_restored",
                    None,
                    None,
                    Disposition::Notify,
                    at,
                    "system",
                );
                self.settle(key, "cleared", None, at);
            }
        }
    }

    /// Once a root cause is gone, the alarms it suppressed that still stand
    /// are shown again, and get the ticket they would have had.
    fn release_suppressed(&mut self, site: &str, node: &str, at: u64) {
        let (Ok(s), Ok(n)) = (SiteId::new(site), NodeId::new(node)) else {
            return;
        };
        if self.runtime.is_suppressed(&s, &n) {
            return;
        }
        self.push(Effect::ReleaseSuppressed {
            site: site.to_string(),
            node: node.to_string(),
            at,
        });
    }
}

/// A channel's alarm at level `l` with no value to show (flapping).
fn level_input(
    key: AlarmKey,
    q: wire::Quantity,
    l: Level,
    at: u64,
    suppressed: bool,
) -> AlarmInput {
    input(
        key,
        alarm_kind(q),
        level_code(l),
        Some(q),
        None,
        None,
        at,
        suppressed,
    )
}

/// A node's or a site's offline alarm.
fn offline_input(key: AlarmKey, at: u64, suppressed: bool) -> AlarmInput {
    input(key, "offline", "offline", None, None, None, at, suppressed)
}
