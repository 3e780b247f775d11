//! End-to-end self-test (自检) of one node: the installer asks, the gateway
//! sends `selftest` on the node's `cmd` topic, the node injects a test
//! signal on every channel (as a detector's test winding does), and the
//! gateway checks that each channel's test alarm came back through the
//! whole path — sensor, node, broker, ingest, rules — and how long it took.
//!
//! While a node is under test its readings are judged on scratch rule
//! state ([`crate::alarms::runtime::Runtime::begin_test`]): a test alarm is never an
//! alarm record, never a ticket, never a notification, and the channel's
//! real rule state is untouched. The test lasts until every channel has
//! either passed and come back to normal or cannot be tested (a faulted
//! sensor), or until the window ends; a node that never leaves its test
//! signal is then judged by the real rules again.
//!
//! Modbus devices have no command topic: for them the window opens and the
//! installer presses the detector's own test key (自检键); its alarm bit
//! comes back as an `event` like any node's.
//!
//! Pure: time is passed in; the pipeline does the I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wire::{ChannelStatus, EventLevel, Quantity};

/// How long a self-test waits by default for every channel (the
/// configuration's default, `commissioning.selftest_window_secs`).
pub use crate::config::commissioning::SELFTEST_WINDOW_MS as DEFAULT_WINDOW_MS;

/// How a test was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `selftest` sent on the node's `cmd` topic.
    Command,
    /// No command path (a Modbus device): the installer presses the
    /// device's test key within the window.
    TestKey,
}

/// What came back on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    quantity: Quantity,
    /// The channel's sensor status as last reported.
    status: ChannelStatus,
    /// First test alarm: arrival time, value, and who judged it.
    alarm: Option<(u64, Option<i32>, &'static str)>,
    /// The test signal was removed again (the channel judged normal after
    /// its alarm).
    back_to_normal: bool,
}

/// One channel's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelResult {
    pub channel: String,
    pub quantity: String,
    pub passed: bool,
    /// From the request to the test alarm's arrival at the gateway, ms.
    pub latency_ms: Option<u64>,
    /// The value that raised the test alarm.
    pub value: Option<i32>,
    /// `gateway` (the gateway's rules judged the injected value) or
    /// `device` (the node's or detector's own alarm event).
    pub judged_by: Option<String>,
    /// Why it failed (简体中文), for the installer.
    pub reason: Option<String>,
}

/// A self-test in progress.
#[derive(Debug, Clone)]
pub struct SelfTest {
    pub id: i64,
    pub site: String,
    pub node: String,
    pub trigger: Trigger,
    /// The command id (`st-{id}`) the node acknowledges.
    pub cmd_id: String,
    pub started_at: u64,
    pub deadline: u64,
    online: bool,
    ack: Option<bool>,
    checks: BTreeMap<String, Check>,
    /// The device's own level per channel as last reported during the test.
    device: BTreeMap<String, (EventLevel, i32)>,
}

impl SelfTest {
    /// A test of `channels` (id, quantity, last status) started at `now`.
    /// `online`: whether the node is up; an offline node fails at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        site: &str,
        node: &str,
        trigger: Trigger,
        channels: Vec<(String, Quantity, ChannelStatus)>,
        online: bool,
        now: u64,
        window_ms: u64,
    ) -> SelfTest {
        SelfTest {
            id,
            site: site.to_string(),
            node: node.to_string(),
            trigger,
            cmd_id: format!("st-{id}"),
            started_at: now,
            deadline: now.saturating_add(window_ms),
            online,
            ack: None,
            device: BTreeMap::new(),
            checks: channels
                .into_iter()
                .map(|(id, quantity, status)| {
                    (
                        id,
                        Check {
                            quantity,
                            status,
                            alarm: None,
                            back_to_normal: false,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The node acknowledged the command (`ok` false: it refused).
    pub fn ack(&mut self, ok: bool) {
        self.ack.get_or_insert(ok);
    }

    /// A reading's sensor status on `channel`.
    pub fn status(&mut self, channel: &str, status: ChannelStatus) {
        if let Some(c) = self.checks.get_mut(channel) {
            c.status = status;
        }
    }

    /// A test alarm on `channel` arrived at `at`. `judged_by`: `gateway` or
    /// `device`. A channel the test did not know of (first reported during
    /// the test) is added.
    pub fn alarm(
        &mut self,
        channel: &str,
        quantity: Option<Quantity>,
        value: Option<i32>,
        at: u64,
        judged_by: &'static str,
    ) {
        if !self.checks.contains_key(channel) {
            let Some(q) = quantity else { return };
            self.checks.insert(
                channel.to_string(),
                Check {
                    quantity: q,
                    status: ChannelStatus::Ok,
                    alarm: None,
                    back_to_normal: false,
                },
            );
        }
        if let Some(c) = self.checks.get_mut(channel) {
            c.alarm.get_or_insert((at, value, judged_by));
        }
    }

    /// The node's or detector's own level on `channel` (an `event`), kept so
    /// that an alarm still standing when the test ends is not lost.
    pub fn device_level(&mut self, channel: &str, level: EventLevel, value: i32) {
        self.device.insert(channel.to_string(), (level, value));
    }

    /// The channels whose device still reports 预警/报警 at the end: after
    /// the window that is no longer a test, and is raised as a real alarm.
    pub fn device_still_raised(&self) -> Vec<(String, EventLevel, i32)> {
        self.device
            .iter()
            .filter(|(_, (l, _))| matches!(l, EventLevel::Alarm | EventLevel::PreAlarm))
            .map(|(c, (l, v))| (c.clone(), *l, *v))
            .collect()
    }

    /// The gateway's scratch rules judge `channel` normal again.
    pub fn normal(&mut self, channel: &str) {
        if let Some(c) = self.checks.get_mut(channel) {
            if c.alarm.is_some() {
                c.back_to_normal = true;
            }
        }
    }

    /// Whether the test is over at `now`.
    pub fn done(&self, now: u64) -> bool {
        if !self.online || self.ack == Some(false) || now >= self.deadline {
            return true;
        }
        // Over once every channel passed and came back, or cannot be
        // tested — and no device still reports its own (test) alarm, which
        // would otherwise be taken for a real one.
        !self.checks.is_empty()
            && self
                .checks
                .values()
                .all(|c| c.status != ChannelStatus::Ok || (c.alarm.is_some() && c.back_to_normal))
            && self.device_still_raised().is_empty()
    }

    /// Whether the test signal may still be on: the node was told to test
    /// and some channel has not come back to normal.
    pub fn signal_may_be_on(&self) -> bool {
        self.checks
            .values()
            .any(|c| c.alarm.is_some() && !c.back_to_normal)
    }

    /// Every channel's result (at the end of the test).
    pub fn results(&self) -> Vec<ChannelResult> {
        self.checks
            .iter()
            .map(|(id, c)| {
                let reason = match (c.alarm, c.status) {
                    (Some(_), _) => None,
                    _ if !self.online => Some("节点离线，无法自检".to_string()),
                    _ if self.ack == Some(false) => Some("节点拒绝自检命令".to_string()),
                    (None, ChannelStatus::Ok) if self.ack.is_none() => Some(match self.trigger {
                        Trigger::Command => {
                            "节点未应答自检命令（检查节点固件版本与通信）".to_string()
                        }
                        Trigger::TestKey => {
                            "窗口内未收到测试报警（未按自检键，或探测器报警输出未接入）".to_string()
                        }
                    }),
                    (None, ChannelStatus::Ok) => {
                        Some("未收到测试报警（检查接线、互感器穿线方向与传感器类型）".to_string())
                    }
                    (None, s) => Some(format!(
                        "传感器{}，无法注入测试信号",
                        crate::domain::labels::channel_status(s.as_str())
                    )),
                };
                ChannelResult {
                    channel: id.clone(),
                    quantity: c.quantity.as_str().to_string(),
                    passed: c.alarm.is_some(),
                    latency_ms: c.alarm.map(|(at, _, _)| at.saturating_sub(self.started_at)),
                    value: c.alarm.and_then(|(_, v, _)| v),
                    judged_by: c.alarm.map(|(_, _, by)| by.to_string()),
                    reason,
                }
            })
            .collect()
    }

    /// Why the whole test failed, when no channel's reason says it: the
    /// node was offline, or no channel of it is known yet.
    pub fn reason(&self) -> Option<String> {
        if !self.online {
            Some("节点离线，无法自检".into())
        } else if self.checks.is_empty() {
            Some("尚未收到该节点的任何数据，无法确定其回路".into())
        } else {
            None
        }
    }
}

/// Whether every channel passed (and there was at least one).
pub fn all_passed(results: &[ChannelResult]) -> bool {
    !results.is_empty() && results.iter().all(|c| c.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(online: bool) -> SelfTest {
        SelfTest::new(
            7,
            "home_a",
            "n01",
            Trigger::Command,
            vec![
                ("rc1".into(), Quantity::ResidualCurrent, ChannelStatus::Ok),
                ("t1".into(), Quantity::Temperature, ChannelStatus::Ok),
                ("rc2".into(), Quantity::ResidualCurrent, ChannelStatus::Open),
            ],
            online,
            1_000,
            DEFAULT_WINDOW_MS,
        )
    }

    #[test]
    fn every_channel_passes_with_its_latency_and_the_test_ends_when_signals_are_off() {
        let mut t = test(true);
        assert_eq!(t.cmd_id, "st-7");
        t.ack(true);
        t.alarm("rc1", None, Some(620), 1_180, "gateway");
        t.alarm("rc1", None, Some(640), 1_300, "device");
        t.alarm("t1", None, Some(900), 1_250, "device");
        assert!(!t.done(2_000), "signals still on");
        assert!(t.signal_may_be_on());
        t.normal("rc1");
        t.normal("t1");
        assert!(t.done(2_000), "the faulted channel cannot be tested");
        let r = t.results();
        let rc1 = r.iter().find(|c| c.channel == "rc1").unwrap();
        assert_eq!(
            (
                rc1.passed,
                rc1.latency_ms,
                rc1.value,
                rc1.judged_by.as_deref()
            ),
            (true, Some(180), Some(620), Some("gateway")),
            "the first alarm counts"
        );
        let rc2 = r.iter().find(|c| c.channel == "rc2").unwrap();
        assert!(!rc2.passed);
        assert_eq!(rc2.reason.as_deref(), Some("传感器开路，无法注入测试信号"));
        assert!(!all_passed(&t.results()));
    }

    #[test]
    fn a_device_alarm_still_on_at_the_end_is_handed_back() {
        let mut t = test(true);
        t.device_level("rc1", EventLevel::Alarm, 800);
        t.device_level("t1", EventLevel::Alarm, 900);
        t.device_level("t1", EventLevel::Normal, 250);
        assert_eq!(
            t.device_still_raised(),
            vec![("rc1".to_string(), EventLevel::Alarm, 800)]
        );
        t.alarm("rc1", None, Some(800), 1_100, "gateway");
        t.alarm("t1", None, Some(900), 1_100, "gateway");
        t.normal("rc1");
        t.normal("t1");
        assert!(!t.done(2_000), "rc1's device still reports its alarm");
        t.device_level("rc1", EventLevel::Normal, 150);
        assert!(t.done(2_000));
        assert!(t.device_still_raised().is_empty());
    }

    #[test]
    fn an_offline_node_fails_at_once_with_the_reason() {
        let t = test(false);
        assert!(t.done(1_000));
        assert_eq!(t.reason().as_deref(), Some("节点离线，无法自检"));
        assert_eq!(test(true).reason(), None);
        assert!(t
            .results()
            .iter()
            .all(|c| !c.passed && c.reason.as_deref() == Some("节点离线，无法自检")));
    }

    #[test]
    fn silence_fails_at_the_deadline_naming_the_wiring_or_the_node() {
        let mut t = test(true);
        assert!(!t.done(60_999));
        assert!(t.done(61_000));
        assert!(t.results()[0].reason.as_deref().unwrap().contains("未应答"));
        t.ack(true);
        let rc1 = t
            .results()
            .into_iter()
            .find(|c| c.channel == "rc1")
            .unwrap();
        assert!(rc1.reason.unwrap().contains("接线"));
    }

    #[test]
    fn a_refusal_ends_the_test_and_a_normal_before_any_alarm_does_not_count() {
        let mut t = test(true);
        t.normal("rc1");
        t.ack(false);
        t.ack(true);
        assert!(t.done(1_001));
        assert!(t
            .results()
            .iter()
            .filter(|c| c.channel != "rc2")
            .all(|c| c.reason.as_deref() == Some("节点拒绝自检命令")));
    }

    #[test]
    fn a_channel_first_seen_during_the_test_is_added_only_with_its_quantity() {
        let mut t = test(true);
        t.alarm("x9", None, Some(1), 1_100, "device");
        t.alarm(
            "p1",
            Some(Quantity::WaterPressure),
            Some(50),
            1_100,
            "gateway",
        );
        let ids: Vec<_> = t.results().into_iter().map(|c| c.channel).collect();
        assert_eq!(ids, ["p1", "rc1", "rc2", "t1"]);
    }
}
