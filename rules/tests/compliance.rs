//! Compliance with the detector response times (GB 50166-2019 §4.8.5: residual current ≤ 30 s,
//! temperature ≤ 40 s; GB 14287.4: arc ≤ 30 s): with the default rule, and with the longest
//! on-delay `validate_for` accepts, a step past the alarm setpoint sampled every second is
//! raised (and notified) within `response_limit_ms(q)` of the moment the condition arose.

use rules::defaults::{channel_rule, max_on_delay_ms, response_limit_ms};
use rules::{evaluate, ChannelRule, ChannelState, Context, Disposition, Level, Millis, Sample};
use rules::{RuleError, Transition};
use wire::Quantity;

const PERIOD_MS: Millis = 1_000;

/// Samples `before` every second until the condition arises at `t0`, `after` from then on;
/// returns how long after `t0` the alarm level was notified, if within 120 s.
fn response(rule: &ChannelRule, before: i32, after: i32, t0: Millis) -> Option<Millis> {
    let mut s = ChannelState::default();
    let mut now = 0;
    while now < t0 + 120_000 {
        let v = if now >= t0 { after } else { before };
        for o in evaluate(rule, &mut s, Sample::ok(v), now, Context::default()) {
            let alarm = matches!(
                o.transition,
                Transition::Raised {
                    level: Level::Alarm,
                    ..
                } | Transition::Escalated {
                    to: Level::Alarm,
                    ..
                }
            );
            if alarm {
                assert_eq!(o.disposition, Disposition::Notify);
                assert!(now >= t0, "raised before the condition arose");
                return Some(now - t0);
            }
        }
        now += PERIOD_MS;
    }
    None
}

/// (quantity, a normal value, a value in the pre-alarm band).
const CASES: [(Quantity, i32, i32); 3] = [
    (Quantity::ResidualCurrent, 80, 350),
    (Quantity::Temperature, 300, 650),
    (Quantity::Arc, 0, 11),
];

fn rules_for(q: Quantity) -> [ChannelRule; 2] {
    let default = channel_rule(q);
    let mut slowest = default;
    if let Some(t) = slowest.threshold.as_mut() {
        t.on_delay_ms = max_on_delay_ms(q).unwrap();
    }
    assert_eq!(slowest.validate_for(q), Ok(()));
    [default, slowest]
}

#[test]
fn a_step_past_the_alarm_setpoint_is_raised_within_the_response_limit() {
    for (q, normal, pre) in CASES {
        let limit = Millis::from(response_limit_ms(q).unwrap());
        for rule in rules_for(q) {
            let alarm = rule.threshold.unwrap().alarm.unwrap();
            let on_delay = Millis::from(rule.threshold.unwrap().on_delay_ms);
            for from in [normal, pre] {
                for to in [alarm, alarm + 1, alarm * 2] {
                    // The condition may arise anywhere between two samples.
                    for offset in [0, 1, 250, 500, 999] {
                        let t0 = 100_000 + offset;
                        let took = response(&rule, from, to, t0)
                            .unwrap_or_else(|| panic!("{q}: {from} -> {to} at {t0}: never raised"));
                        assert!(
                            took <= limit,
                            "{q}: {from} -> {to}, on-delay {on_delay} ms, step at {t0}: raised \
                             after {took} ms > {limit} ms"
                        );
                        // And it is exact: the first sample past the setpoint plus the delay.
                        let first_seen = t0.div_ceil(PERIOD_MS) * PERIOD_MS - t0;
                        let waits = on_delay.div_ceil(PERIOD_MS) * PERIOD_MS;
                        assert_eq!(took, first_seen + waits, "{q}: {from} -> {to} at {t0}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_on_delay_bound_is_tight() {
    // One second more than validate_for accepts could miss the limit at 1 Hz sampling, and is
    // refused.
    for (q, normal, _) in CASES {
        let limit = Millis::from(response_limit_ms(q).unwrap());
        let mut rule = channel_rule(q);
        let t = rule.threshold.as_mut().unwrap();
        t.on_delay_ms = max_on_delay_ms(q).unwrap() + 1_000;
        let alarm = t.alarm.unwrap();
        assert!(matches!(
            rule.validate_for(q),
            Err(RuleError::OnDelayTooLong { .. })
        ));
        let took = response(&rule, normal, alarm, 100_001).unwrap();
        assert!(took > limit, "{q}: {took}");
    }
}

#[test]
fn the_pre_alarm_comes_first_on_a_slow_climb() {
    // Residual current climbing 10 mA/s from 200 mA: pre-alarm at 300, alarm at 500.
    let rule = channel_rule(Quantity::ResidualCurrent);
    let mut s = ChannelState::default();
    let mut seen = Vec::new();
    for k in 0..40 {
        let v = 200 + 10 * k;
        for o in evaluate(
            &rule,
            &mut s,
            Sample::ok(v),
            k as Millis * 1_000,
            Context::default(),
        ) {
            seen.push((k, o.transition));
        }
    }
    assert_eq!(
        seen,
        [
            (
                10,
                Transition::Raised {
                    level: Level::PreAlarm,
                    value: 300,
                    setpoint: 300
                }
            ),
            (
                30,
                Transition::Escalated {
                    from: Level::PreAlarm,
                    to: Level::Alarm,
                    value: 500,
                    setpoint: 500
                }
            ),
        ]
    );
}
