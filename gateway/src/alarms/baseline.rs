//! Baseline learning (基线学习) and recommended setpoints (推荐定值).
//!
//! For an observation window after a loop's first reading (default 7 days),
//! the gateway learns what the loop does when nothing is wrong: its natural
//! leakage, or its normal temperature. The data are the hourly rollups the
//! gateway already keeps (`channel_hourly`: min, max, sum and count per
//! hour), so learning costs no extra work per reading and survives
//! restarts. Percentiles are taken over the window's hours: P50 of the
//! hourly means (the usual level), P95 and P99 of the hourly maxima (the
//! peaks a healthy loop reaches every day), and the highest reading.
//!
//! Recommendations follow DOMAIN.md §2 (GB 50116 §9.2.3) for residual
//! current: the alarm setpoint at least twice the natural leakage (its
//! P95 of hourly peaks), 300–500 mA where that allows, never above
//! 1000 mA; the pre-alarm between the natural peaks and the alarm. A loop
//! whose natural leakage is already above what a healthy loop leaks
//! (200 mA), or so high that no setpoint ≤ 1000 mA is twice it, is itself
//! a hazard: 线路绝缘老化嫌疑, a 一般隐患 ticket. Temperature: the alarm
//! stays at the standard's default unless the loop runs close to it; the
//! pre-alarm sits above the normal peaks. Every recommendation is checked
//! by the rules crate's own validation before it is offered.
//!
//! Pure: rows and times are passed in.

use rules::{ChannelRule, Direction};
use serde::{Deserialize, Serialize};
use wire::Quantity;

/// Default observation window (`commissioning.baseline_hours`).
pub use crate::config::commissioning::BASELINE_WINDOW_HOURS as DEFAULT_WINDOW_HOURS;
/// The share of the window's hours that must hold readings for a baseline.
pub const MIN_COVERAGE_PERCENT: u32 = 80;
/// Natural leakage above this is not a healthy loop (DOMAIN.md §2: 100–200 mA).
pub const HEALTHY_LEAKAGE_MAX_MA: i64 = 200;
/// Residual-current setpoints are not set above this (GB 50116 §9.2.3).
pub const RESIDUAL_CURRENT_MAX_MA: i64 = rules::defaults::RESIDUAL_CURRENT_MAX_MA as i64;
/// The design range of the residual-current alarm setpoint, mA.
pub const DESIGN_RANGE_MA: (i64, i64) = (300, 500);

/// One hour of a channel: a row of the store.
pub use crate::store::HourRow as Hour;

/// What a loop does when nothing is wrong, in its wire unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baseline {
    pub quantity: String,
    /// The window, ms since the epoch.
    pub from: i64,
    pub to: i64,
    /// Hours with readings, and the window's hours.
    pub hours: u32,
    pub window_hours: u32,
    pub readings: i64,
    /// Median of the hourly means.
    pub p50: i64,
    /// 95th and 99th percentile of the hourly maxima.
    pub p95: i64,
    pub p99: i64,
    /// Highest reading.
    pub max: i64,
}

/// Why no baseline could be learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotLearned {
    /// The window is not over yet: percent of it elapsed.
    Learning { percent: u32 },
    /// Too few hours hold readings: what there was (percentiles 0), to be
    /// recorded so the installer sees why, and how many hours were needed.
    Insufficient { baseline: Baseline, needed: u32 },
}

impl Baseline {
    /// Whether enough of the window's hours held readings for percentiles.
    pub fn covered(&self) -> bool {
        self.hours * 100 >= self.window_hours * MIN_COVERAGE_PERCENT
    }
}

/// Nearest-rank percentile of sorted values; `p` in 1..=100.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p.clamp(1, 100)) * sorted.len() as u64).div_ceil(100);
    sorted.get(rank.saturating_sub(1) as usize).copied()
}

/// Learns the baseline of one channel from its hours in `[from, from +
/// window)`, at `now`.
pub fn learn(
    q: Quantity,
    hours: &[Hour],
    from: i64,
    window_hours: u32,
    now: i64,
) -> Result<Baseline, NotLearned> {
    let to = from + i64::from(window_hours) * 3_600_000;
    if now < to {
        let elapsed = (now - from).max(0) as u128 * 100 / (to - from).max(1) as u128;
        return Err(NotLearned::Learning {
            percent: elapsed.min(99) as u32,
        });
    }
    let inside: Vec<&Hour> = hours
        .iter()
        .filter(|h| h.hour >= from && h.hour < to && h.count > 0)
        .collect();
    let needed = (window_hours * MIN_COVERAGE_PERCENT).div_ceil(100).max(1);
    let n = inside.len() as u32;
    let mut b = Baseline {
        quantity: q.as_str().to_string(),
        from,
        to,
        hours: n,
        window_hours,
        readings: inside.iter().map(|h| h.count).sum(),
        p50: 0,
        p95: 0,
        p99: 0,
        max: 0,
    };
    if n < needed {
        return Err(NotLearned::Insufficient {
            baseline: b,
            needed,
        });
    }
    let mut means: Vec<i64> = inside.iter().map(|h| h.sum / h.count).collect();
    let mut maxima: Vec<i64> = inside.iter().map(|h| h.max).collect();
    means.sort_unstable();
    maxima.sort_unstable();
    b.p50 = percentile(&means, 50).unwrap_or(0);
    b.p95 = percentile(&maxima, 95).unwrap_or(0);
    b.p99 = percentile(&maxima, 99).unwrap_or(0);
    b.max = maxima.last().copied().unwrap_or(0);
    Ok(b)
}

/// Setpoints recommended for a loop, with what the installer should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// 预警 and 报警 setpoints and the hysteresis, in the wire unit; none
    /// when no setpoint can be both safe and quiet (see `hazard`).
    pub pre_alarm: Option<i64>,
    pub alarm: Option<i64>,
    pub hysteresis: Option<i64>,
    /// Why these values (简体中文).
    pub basis: String,
    /// The loop itself is a hazard (线路绝缘老化嫌疑): why.
    pub hazard: Option<String>,
}

fn ceil_to(v: i64, step: i64) -> i64 {
    v.div_euclid(step) * step + if v.rem_euclid(step) == 0 { 0 } else { step }
}

/// The recommendation for a learned baseline, on top of the channel's
/// current rule. `None` for quantities without learned setpoints.
pub fn recommend(q: Quantity, b: &Baseline, current: &ChannelRule) -> Option<Recommendation> {
    let hysteresis = current
        .threshold
        .map(|t| i64::from(t.hysteresis))
        .unwrap_or(0);
    match q {
        Quantity::ResidualCurrent => {
            let natural = b.p95;
            let twice = 2 * natural;
            let high = natural > HEALTHY_LEAKAGE_MAX_MA;
            if twice > RESIDUAL_CURRENT_MAX_MA {
                return Some(Recommendation {
                    pre_alarm: None,
                    alarm: None,
                    hysteresis: None,
                    basis: format!(
                        "自然漏电流 P95 {natural} mA 的 2 倍超过 {RESIDUAL_CURRENT_MAX_MA} mA，无法给出合规定值"
                    ),
                    hazard: Some(format!(
                        "自然漏电流 P95 {natural} mA，远高于正常回路的 100–200 mA：线路绝缘老化嫌疑，应排查整改后重新学习"
                    )),
                });
            }
            let alarm = ceil_to(twice.max(DESIGN_RANGE_MA.0), 10);
            // Above the natural peaks by the hysteresis, below the alarm by it.
            let pre = ceil_to((natural + 2 * hysteresis).max(alarm * 6 / 10), 10)
                .min(alarm - hysteresis - 10);
            let basis = if alarm > DESIGN_RANGE_MA.1 {
                format!(
                    "报警值取自然漏电流 P95 {natural} mA 的 2 倍（{alarm} mA），已高于 300–500 mA 设计范围"
                )
            } else {
                format!(
                    "报警值不低于自然漏电流 P95 {natural} mA 的 2 倍，并在 300–500 mA 设计范围内"
                )
            };
            Some(Recommendation {
                pre_alarm: (pre > natural).then_some(pre),
                alarm: Some(alarm),
                hysteresis: Some(hysteresis),
                basis,
                hazard: high.then(|| {
                    format!(
                        "自然漏电流 P95 {natural} mA，高于正常回路的 100–200 mA：线路绝缘老化嫌疑"
                    )
                }),
            })
        }
        Quantity::Temperature => {
            let t = current.threshold?;
            if t.direction != Direction::High {
                return None;
            }
            let default_alarm = i64::from(t.alarm?);
            let peak = b.p99;
            // 30 °C of headroom over the normal peaks for the alarm, 15 °C
            // for the pre-alarm; never below the defaults (60/80 °C).
            let default_pre = t.pre_alarm.map(i64::from).unwrap_or(550);
            let alarm = ceil_to(default_alarm.max(peak + 300), 10)
                .min(i64::from(rules::defaults::TEMPERATURE_MAX_ALARM));
            let pre = ceil_to((peak + 150).max(default_pre), 10).min(alarm - hysteresis - 10);
            Some(Recommendation {
                pre_alarm: (pre > peak).then_some(pre),
                alarm: (alarm > peak + hysteresis).then_some(alarm),
                hysteresis: Some(hysteresis),
                basis: format!(
                    "正常运行温度峰值 P99 {:.1} °C；预警、报警分别高出约 15 °C、30 °C，且不低于默认值",
                    peak as f64 / 10.0
                ),
                hazard: None,
            })
        }
        _ => None,
    }
}

/// Checks setpoints someone wants to apply: the rules crate's own limits
/// for the quantity, and for residual current with a learned baseline the
/// alarm at least twice the natural leakage. A refusal says why (简体中文).
pub fn check(
    q: Quantity,
    current: &ChannelRule,
    pre_alarm: Option<i64>,
    alarm: i64,
    baseline: Option<&Baseline>,
) -> Result<ChannelRule, String> {
    let Some(mut t) = current.threshold else {
        return Err(format!("{} 回路没有可设定的阈值", q.as_str()));
    };
    let to_i32 = |v: i64| i32::try_from(v).map_err(|_| format!("定值 {v} 超出范围"));
    if q == Quantity::ResidualCurrent {
        if alarm > RESIDUAL_CURRENT_MAX_MA {
            return Err(format!(
                "剩余电流报警值 {alarm} mA 超过 {RESIDUAL_CURRENT_MAX_MA} mA 上限（GB 50116）"
            ));
        }
        if let Some(b) = baseline {
            if alarm < 2 * b.p95 {
                return Err(format!(
                    "报警值 {alarm} mA 低于自然漏电流 P95 {} mA 的 2 倍，会频繁误报",
                    b.p95
                ));
            }
        }
    }
    let a = to_i32(alarm)?;
    t.alarm = Some(a);
    if let Some(p) = pre_alarm {
        let p = to_i32(p)?;
        let ok = match t.direction {
            Direction::High => p < a,
            Direction::Low => p > a,
        };
        if !ok {
            return Err("预警值必须在报警值之前触发".into());
        }
        t.pre_alarm = Some(p);
    } else {
        t.pre_alarm = None;
    }
    let rule = ChannelRule {
        threshold: Some(t),
        ..*current
    };
    rule.validate_for(q)
        .map_err(|e| format!("定值不合规：{e}"))?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    /// A week of hours: mean `mean`, peak `peak` (and one spike).
    fn week(mean: i64, peak: i64) -> Vec<Hour> {
        (0..168)
            .map(|i| Hour {
                hour: i * H,
                min: mean - 20,
                max: if i == 100 { peak + 200 } else { peak - (i % 7) },
                sum: mean * 60,
                count: 60,
            })
            .collect()
    }

    fn rc_rule() -> ChannelRule {
        rules::defaults::channel_rule(Quantity::ResidualCurrent)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn learning_waits_for_the_window_and_enough_hours() {
        let rows = week(120, 160);
        assert_eq!(
            learn(Quantity::ResidualCurrent, &rows, 0, 168, 84 * H),
            Err(NotLearned::Learning { percent: 50 })
        );
        match learn(Quantity::ResidualCurrent, &rows[..100], 0, 168, 168 * H) {
            Err(NotLearned::Insufficient { baseline, needed }) => {
                assert_eq!((baseline.hours, needed), (100, 135));
                assert_eq!(baseline.readings, 100 * 60);
                assert_eq!((baseline.p50, baseline.p95), (0, 0));
                assert!(!baseline.covered());
            }
            other => panic!("not insufficient: {other:?}"),
        }
        let b = learn(Quantity::ResidualCurrent, &rows, 0, 168, 168 * H).unwrap();
        assert!(b.covered());
        assert_eq!((b.hours, b.readings, b.p50), (168, 168 * 60, 120));
        assert_eq!(b.p95, 160, "the one spike does not move P95");
        assert_eq!(b.max, 360);
    }

    #[test]
    fn a_healthy_loop_gets_setpoints_in_the_design_range() {
        let b = learn(Quantity::ResidualCurrent, &week(90, 120), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::ResidualCurrent, &b, &rc_rule()).unwrap();
        assert_eq!((r.pre_alarm, r.alarm), (Some(180), Some(300)));
        assert!(r.hazard.is_none());
        let b = learn(Quantity::ResidualCurrent, &week(150, 190), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::ResidualCurrent, &b, &rc_rule()).unwrap();
        assert_eq!((r.pre_alarm, r.alarm), (Some(250), Some(380)));
        check(
            Quantity::ResidualCurrent,
            &rc_rule(),
            r.pre_alarm,
            r.alarm.unwrap(),
            Some(&b),
        )
        .expect("a recommendation passes its own check");
    }

    #[test]
    fn high_natural_leakage_is_a_hazard_and_past_500_ma_no_setpoint_is_offered() {
        let b = learn(Quantity::ResidualCurrent, &week(230, 280), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::ResidualCurrent, &b, &rc_rule()).unwrap();
        assert_eq!(r.alarm, Some(560));
        assert!(r.basis.contains("高于 300–500 mA"));
        assert!(r.hazard.unwrap().contains("线路绝缘老化嫌疑"));
        let b = learn(Quantity::ResidualCurrent, &week(480, 560), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::ResidualCurrent, &b, &rc_rule()).unwrap();
        assert_eq!((r.pre_alarm, r.alarm), (None, None), "never above 1000 mA");
        assert!(r.hazard.unwrap().contains("线路绝缘老化嫌疑"));
    }

    #[test]
    fn temperature_keeps_the_default_alarm_unless_the_loop_runs_hot() {
        let rule = rules::defaults::channel_rule(Quantity::Temperature);
        let b = learn(Quantity::Temperature, &week(300, 380), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::Temperature, &b, &rule).unwrap();
        assert_eq!((r.pre_alarm, r.alarm), (Some(600), Some(800)));
        let b = learn(Quantity::Temperature, &week(500, 560), 0, 168, 168 * H).unwrap();
        let r = recommend(Quantity::Temperature, &b, &rule).unwrap();
        assert_eq!((r.pre_alarm, r.alarm), (Some(710), Some(860)));
        check(
            Quantity::Temperature,
            &rule,
            r.pre_alarm,
            r.alarm.unwrap(),
            Some(&b),
        )
        .unwrap();
    }

    #[test]
    fn setpoints_outside_the_bounds_are_refused_with_the_reason() {
        let b = learn(Quantity::ResidualCurrent, &week(150, 190), 0, 168, 168 * H).unwrap();
        let refuse = |pre: Option<i64>, alarm: i64| {
            check(Quantity::ResidualCurrent, &rc_rule(), pre, alarm, Some(&b)).unwrap_err()
        };
        assert!(refuse(Some(300), 1200).contains("1000 mA"));
        assert!(refuse(Some(200), 300).contains("2 倍"));
        assert!(refuse(Some(450), 400).contains("预警值"));
        assert!(refuse(None, 20_000_000_000).contains("1000 mA"));
        let ok = check(
            Quantity::ResidualCurrent,
            &rc_rule(),
            Some(300),
            450,
            Some(&b),
        )
        .unwrap();
        let t = ok.threshold.unwrap();
        assert_eq!((t.pre_alarm, t.alarm), (Some(300), Some(450)));
        assert!(check(
            Quantity::WaterLevel,
            &rules::defaults::channel_rule(Quantity::WaterLevel),
            None,
            1,
            None
        )
        .is_err());
    }
}
