//! Setpoints from a node's provisioning artefact over the defaults.

use rules::defaults::{channel_rule, provisioned};
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
