//! Configuration and event types through serde (feature `serde`): a table overrides individual
//! fields of a rule, unknown fields are refused, and names match the wire contract.
#![cfg(feature = "serde")]

use rules::{
    ChannelState, Direction, FaultKind, Level, Sample, SampleStatus, ThresholdRule, Transition,
};

#[test]
fn a_table_overrides_individual_fields() {
    let rule: ThresholdRule = serde_json::from_str(r#"{"alarm": 300, "hysteresis": 10}"#).unwrap();
    assert_eq!(
        rule,
        ThresholdRule::high(None, Some(300)).with_hysteresis(10)
    );
    assert_eq!(rule.validate(), Ok(()));

    let rule: ThresholdRule = serde_json::from_str(
        r#"{"direction": "low", "pre_alarm": 150, "alarm": 100, "on_delay_ms": 2000,
            "latch_alarm": false}"#,
    )
    .unwrap();
    assert_eq!(rule.direction, Direction::Low);
    assert_eq!(rule.pre_alarm, Some(150));
    assert_eq!(rule.on_delay_ms, 2_000);
    assert_eq!(rule.off_delay_ms, 0);
    assert!(!rule.latch_alarm);

    let empty: ThresholdRule = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, ThresholdRule::default());
}

#[test]
fn unknown_fields_and_bad_names_are_refused() {
    assert!(serde_json::from_str::<ThresholdRule>(r#"{"alarm": 300, "alram": 1}"#).is_err());
    assert!(serde_json::from_str::<ThresholdRule>(r#"{"direction": "up"}"#).is_err());
}

#[test]
fn events_use_the_wire_names() {
    let raised = Transition::Raised {
        level: Level::PreAlarm,
        value: 612,
        setpoint: 500,
    };
    assert_eq!(
        serde_json::to_string(&raised).unwrap(),
        r#"{"raised":{"level":"pre_alarm","value":612,"setpoint":500}}"#
    );
    assert_eq!(
        serde_json::to_string(&FaultKind::Open).unwrap(),
        r#""open""#
    );
    assert_eq!(
        serde_json::to_string(&Sample::ok(5)).unwrap(),
        r#"{"value":5,"status":"ok"}"#
    );
    assert_eq!(
        serde_json::to_string(&SampleStatus::Fault(FaultKind::Range)).unwrap(),
        r#"{"fault":"range"}"#
    );
    let back: Transition = serde_json::from_str(&serde_json::to_string(&raised).unwrap()).unwrap();
    assert_eq!(back, raised);
}

#[test]
fn channel_state_round_trips() {
    let rule = ThresholdRule::high(None, Some(300));
    let mut s = ChannelState::default();
    rules::evaluate(&rule, &mut s, Sample::ok(300), 10);
    rules::evaluate(&rule, &mut s, Sample::ok(100), 20);
    let json = serde_json::to_string(&s).unwrap();
    let back: ChannelState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(back.is_latched());
}
