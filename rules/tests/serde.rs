//! Configuration and event types through serde (feature `serde`): a table overrides individual
//! fields of a rule, unknown fields are refused, and names match the wire contract.
#![cfg(feature = "serde")]

use rules::{
    Direction, FaultKind, Level, Sample, SampleStatus, ThresholdRule, ThresholdState, Transition,
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
    let mut s = ThresholdState::default();
    rules::threshold::evaluate(&rule, &mut s, Sample::ok(300), 10);
    rules::threshold::evaluate(&rule, &mut s, Sample::ok(100), 20);
    let json = serde_json::to_string(&s).unwrap();
    let back: ThresholdState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(back.is_latched());
}

#[test]
fn a_channel_rule_table_sets_only_what_it_names() {
    use rules::{ChannelRule, FlapRule, RateRule};
    let rule: ChannelRule = serde_json::from_str(
        r#"{"threshold": {"alarm": 800, "pre_alarm": 600},
            "rate": {"rise": 100, "window_ms": 60000},
            "valid_range": [3600, 21000],
            "flap": {"transitions": 4}}"#,
    )
    .unwrap();
    assert_eq!(
        rule,
        ChannelRule::new()
            .with_threshold(ThresholdRule::high(Some(600), Some(800)))
            .with_rate(RateRule::new(100, 60_000))
            .with_valid_range(3_600, 21_000)
            .with_flap(FlapRule {
                transitions: 4,
                ..FlapRule::default()
            })
    );
    let empty: ChannelRule = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, ChannelRule::default());
    // Unknown fields are refused at every level; the rate rule needs both fields.
    assert!(serde_json::from_str::<ChannelRule>(r#"{"treshold": {}}"#).is_err());
    assert!(serde_json::from_str::<ChannelRule>(r#"{"flap": {"quiet": 1}}"#).is_err());
    assert!(serde_json::from_str::<ChannelRule>(r#"{"rate": {"rise": 1}}"#).is_err());
    // Round trip of the defaults of every quantity.
    for &q in wire::Quantity::ALL {
        let r = rules::defaults::channel_rule(q);
        let back: ChannelRule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn node_rule_and_outputs_use_snake_case_names() {
    use rules::{Disposition, NodeRule, NodeTransition, OfflineCause, Output, SiteTransition};
    let r: NodeRule = serde_json::from_str("{}").unwrap();
    assert_eq!(r, NodeRule::default());
    assert_eq!(r.offline_after_ms, 60_000);
    assert!(serde_json::from_str::<NodeRule>(r#"{"offline_after": 1}"#).is_err());
    assert_eq!(
        serde_json::to_string(&NodeTransition::Offline {
            cause: OfflineCause::LastWill
        })
        .unwrap(),
        r#"{"offline":{"cause":"last_will"}}"#
    );
    assert_eq!(
        serde_json::to_string(&SiteTransition::UplinkLost).unwrap(),
        r#""uplink_lost""#
    );
    let out = Output {
        transition: Transition::FlappingEnded {
            level: Level::Alarm,
        },
        disposition: Disposition::Suppressed,
    };
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"transition":{"flapping_ended":{"level":"alarm"}},"disposition":"suppressed"}"#
    );
    assert_eq!(
        serde_json::to_string(&Transition::RateRaised { value: 5, rise: 3 }).unwrap(),
        r#"{"rate_raised":{"value":5,"rise":3}}"#
    );
}

#[test]
fn channel_and_node_states_round_trip() {
    use rules::{ChannelState, Context, NodeState};
    let rule = rules::defaults::channel_rule(wire::Quantity::Temperature);
    let mut s = ChannelState::default();
    for (t, v) in [(0, 400), (1_000, 900), (2_000, 580)] {
        rules::evaluate(&rule, &mut s, Sample::ok(v), t, Context::default());
    }
    assert!(s.is_latched() && s.is_rate_raised());
    let back: ChannelState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);

    let mut n = NodeState::default();
    rules::node::seen(&rules::NodeRule::default(), &mut n, u64::MAX - 1);
    rules::node::supply(&mut n, false, u64::MAX);
    let json = serde_json::to_string(&n).unwrap();
    assert!(json.contains(&(u64::MAX - 1).to_string()), "{json}");
    let back: NodeState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, n);
}
