//! `[rules.<quantity>]` and the overrides at the site, node and channel
//! levels.

use rules::{ChannelRule, Direction, FlapRule, RateRule, ThresholdRule};
use serde::{Deserialize, Serialize};

/// Overrides of a channel's rule at one level of the configuration
/// (全局 → 机构 → 节点 → 回路: defaults, then `[rules.<quantity>]`, then the
/// site's, the node's and the channel's). Unset fields keep what the level
/// above gave. `rate_rise = 0` and `flap_transitions = 0` switch those rules off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RuleOverride {
    /// `high` (alarm at or above the setpoint) or `low` (at or below: water pressure, level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// 预警 setpoint, in the quantity's wire unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_alarm: Option<i32>,
    /// 报警 setpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<i32>,
    /// Return difference (回差).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latch_alarm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latch_pre_alarm: Option<bool>,
    /// Rate of rise: alarm when the value rises by this much within `rate_window_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_rise: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_window_ms: Option<u32>,
    /// Flapping: this many raise/clear transitions within `flap_window_ms`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_transitions: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_window_ms: Option<u32>,
    /// …and it ends after this long without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_quiet_ms: Option<u32>,
    /// Valid readings (inclusive); outside is a sensor fault (e.g. NE43 3600–21000 µA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_min: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_max: Option<i32>,
}

/// Default window of a rate-of-rise rule switched on by configuration alone.
const DEFAULT_RATE_WINDOW_MS: u32 = 60_000;

impl RuleOverride {
    /// Applies these overrides to `rule`.
    pub fn apply(&self, mut rule: ChannelRule) -> ChannelRule {
        let touches_threshold = self.direction.is_some()
            || self.pre_alarm.is_some()
            || self.alarm.is_some()
            || self.hysteresis.is_some()
            || self.on_delay_ms.is_some()
            || self.off_delay_ms.is_some()
            || self.latch_alarm.is_some()
            || self.latch_pre_alarm.is_some();
        if touches_threshold {
            let mut t = rule.threshold.unwrap_or(ThresholdRule::high(None, None));
            if let Some(d) = self.direction {
                t.direction = d;
            }
            if self.pre_alarm.is_some() {
                t.pre_alarm = self.pre_alarm;
            }
            if self.alarm.is_some() {
                t.alarm = self.alarm;
            }
            t.hysteresis = self.hysteresis.unwrap_or(t.hysteresis);
            t.on_delay_ms = self.on_delay_ms.unwrap_or(t.on_delay_ms);
            t.off_delay_ms = self.off_delay_ms.unwrap_or(t.off_delay_ms);
            t.latch_alarm = self.latch_alarm.unwrap_or(t.latch_alarm);
            t.latch_pre_alarm = self.latch_pre_alarm.unwrap_or(t.latch_pre_alarm);
            rule.threshold = Some(t);
        }
        match (self.rate_rise, rule.rate) {
            (Some(0), _) => rule.rate = None,
            (Some(rise), r) => {
                let window = self
                    .rate_window_ms
                    .or(r.map(|r| r.window_ms))
                    .unwrap_or(DEFAULT_RATE_WINDOW_MS);
                rule.rate = Some(RateRule::new(rise, window));
            }
            (None, Some(r)) => {
                rule.rate = Some(RateRule::new(
                    r.rise,
                    self.rate_window_ms.unwrap_or(r.window_ms),
                ))
            }
            (None, None) => {}
        }
        let flap = rule.flap.unwrap_or(rules::defaults::flap_rule());
        match self.flap_transitions {
            Some(0) => rule.flap = None,
            n if n.is_some() || rule.flap.is_some() => {
                rule.flap = Some(FlapRule::new(
                    n.unwrap_or(flap.transitions),
                    self.flap_window_ms.unwrap_or(flap.window_ms),
                    self.flap_quiet_ms.unwrap_or(flap.quiet_ms),
                ))
            }
            _ => {}
        }
        if self.valid_min.is_some() || self.valid_max.is_some() {
            let (lo, hi) = rule.valid_range.unwrap_or((i32::MIN, i32::MAX));
            rule.valid_range = Some((self.valid_min.unwrap_or(lo), self.valid_max.unwrap_or(hi)));
        }
        rule
    }
}
