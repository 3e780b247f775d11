//! Setpoints from a node's provisioning artefact over the defaults, and from
//! a `config` command over a channel's current rule.

use rules::defaults::{channel_rule, configured, provisioned};
use rules::{Direction, RuleError};
use wire::provision::Setpoints;
use wire::Quantity;

fn set(pre: Option<i32>, alarm: Option<i32>, hyst: Option<i32>) -> Setpoints {
    Setpoints {
        pre_alarm: pre,
        alarm,
        hysteresis: hyst,
    }
}

#[test]
fn nothing_given_is_the_default() {
    for &q in Quantity::ALL {
        assert_eq!(
            provisioned(q, &Setpoints::default()),
            Ok(channel_rule(q)),
            "{q}"
        );
    }
}

#[test]
fn given_setpoints_replace_the_defaults_one_by_one() {
    let r = provisioned(Quantity::ResidualCurrent, &set(Some(400), Some(700), None)).unwrap();
    let t = r.threshold.unwrap();
    assert_eq!(
        (t.pre_alarm, t.alarm, t.hysteresis),
        (Some(400), Some(700), 30)
    );
    assert!(t.latch_alarm);
    let r = provisioned(Quantity::WaterPressure, &set(None, Some(120), Some(5))).unwrap();
    let t = r.threshold.unwrap();
    assert_eq!(
        (t.pre_alarm, t.alarm, t.hysteresis),
        (Some(150), Some(120), 5)
    );
    assert_eq!(t.direction, Direction::Low);
    // Water level has no default setpoint: a low rule.
    let r = provisioned(Quantity::WaterLevel, &set(Some(1000), Some(500), Some(50))).unwrap();
    let t = r.threshold.unwrap();
    assert_eq!(t.direction, Direction::Low);
    assert_eq!((t.pre_alarm, t.alarm), (Some(1000), Some(500)));
}

#[test]
fn refuses_what_the_standards_refuse() {
    assert_eq!(
        provisioned(Quantity::ResidualCurrent, &set(None, Some(1200), None)),
        Err(RuleError::SetpointTooHigh {
            quantity: Quantity::ResidualCurrent,
            setpoint: 1200,
            max: 1000
        })
    );
    assert_eq!(
        provisioned(Quantity::ResidualCurrent, &set(Some(600), None, None)),
        Err(RuleError::PreAlarmNotBeforeAlarm)
    );
    assert_eq!(
        provisioned(Quantity::Temperature, &set(None, None, Some(-1))),
        Err(RuleError::NegativeHysteresis)
    );
}

#[test]
fn configured_replaces_the_setpoints_and_keeps_the_rest() {
    let current = provisioned(Quantity::Temperature, &set(Some(500), Some(700), Some(15))).unwrap();
    let r = configured(Quantity::Temperature, &current, Some(550), 750, None).unwrap();
    let t = r.threshold.unwrap();
    assert_eq!(
        (t.pre_alarm, t.alarm, t.hysteresis),
        (Some(550), Some(750), 15)
    );
    let c = current.threshold.unwrap();
    assert_eq!(
        (t.direction, t.latch_alarm, t.latch_pre_alarm, t.on_delay_ms),
        (c.direction, c.latch_alarm, c.latch_pre_alarm, c.on_delay_ms)
    );
    assert_eq!(
        (r.rate, r.flap, r.valid_range),
        (current.rate, current.flap, current.valid_range)
    );
    // A given hysteresis replaces the current one.
    let r = configured(Quantity::Temperature, &current, Some(550), 750, Some(40)).unwrap();
    assert_eq!(r.threshold.unwrap().hysteresis, 40);
    // No pre-alarm means none, not "keep the current one" (unlike the artefact).
    let r = configured(
        Quantity::ResidualCurrent,
        &channel_rule(Quantity::ResidualCurrent),
        None,
        450,
        None,
    )
    .unwrap();
    assert_eq!(r.threshold.unwrap().pre_alarm, None);
    assert_eq!(r.threshold.unwrap().alarm, Some(450));
    // A channel without a threshold gets one in the quantity's direction.
    let r = configured(
        Quantity::WaterLevel,
        &channel_rule(Quantity::WaterLevel),
        Some(800),
        500,
        Some(20),
    )
    .unwrap();
    let t = r.threshold.unwrap();
    assert_eq!(t.direction, Direction::Low);
    assert_eq!(
        (t.pre_alarm, t.alarm, t.hysteresis),
        (Some(800), Some(500), 20)
    );
    assert!(t.latch_alarm && !t.latch_pre_alarm);
}

#[test]
fn configured_refuses_what_the_artefact_path_refuses() {
    let rc = channel_rule(Quantity::ResidualCurrent);
    for (pre, alarm, hyst, want) in [
        (
            None,
            50,
            None,
            RuleError::SetpointTooLow {
                quantity: Quantity::ResidualCurrent,
                setpoint: 50,
                min: 100,
            },
        ),
        (Some(600), 500, None, RuleError::PreAlarmNotBeforeAlarm),
        (Some(300), 450, Some(-1), RuleError::NegativeHysteresis),
        (
            Some(300),
            450,
            Some(200),
            RuleError::HysteresisTooWide {
                hysteresis: 200,
                gap: 150,
            },
        ),
    ] {
        assert_eq!(
            configured(Quantity::ResidualCurrent, &rc, pre, alarm, hyst),
            Err(want),
            "{pre:?} {alarm} {hyst:?}"
        );
        // The same setpoints in an artefact are refused the same way.
        assert!(provisioned(
            Quantity::ResidualCurrent,
            &set(pre.or(Some(150)), Some(alarm), hyst)
        )
        .is_err());
    }
    // Extremes: a typed error, no overflow.
    assert!(configured(
        Quantity::Temperature,
        &channel_rule(Quantity::Temperature),
        Some(i32::MIN),
        i32::MAX,
        Some(i32::MAX)
    )
    .is_err());
    assert_eq!(
        configured(Quantity::ResidualCurrent, &rc, Some(300), 1200, None),
        Err(RuleError::SetpointTooHigh {
            quantity: Quantity::ResidualCurrent,
            setpoint: 1200,
            max: 1000
        })
    );
    assert_eq!(
        configured(Quantity::Arc, &channel_rule(Quantity::Arc), None, 20, None),
        Err(RuleError::SetpointTooHigh {
            quantity: Quantity::Arc,
            setpoint: 20,
            max: 14
        })
    );
}
