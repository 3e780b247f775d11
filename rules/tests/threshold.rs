//! Behaviour of the threshold rule: exact transition sequences for setpoints, hysteresis,
//! delays, latching and reset, escalation, low rules, faults, validation and extreme inputs,
//! plus a deterministic pseudo-random sweep checking that evaluation never panics and that the
//! emitted transitions always account for the state's level.

use rules::threshold::{evaluate, reset};
use rules::{
    Direction, FaultKind, Level, Millis, RuleError, Sample, SampleStatus, ThresholdRule,
    ThresholdState, Transition, Transitions,
};

use Transition::*;

/// Feeds `value` at `now` and returns the transitions as a plain vector for comparison.
fn feed(
    rule: &ThresholdRule,
    state: &mut ThresholdState,
    value: i32,
    now: Millis,
) -> Vec<Transition> {
    evaluate(rule, state, Sample::ok(value), now).to_vec()
}

fn feed_fault(
    rule: &ThresholdRule,
    state: &mut ThresholdState,
    kind: FaultKind,
    now: Millis,
) -> Vec<Transition> {
    evaluate(rule, state, Sample::fault(kind), now).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Setpoints and hysteresis

#[test]
fn raises_exactly_at_the_setpoint() {
    // Residual current: alarm at 300 mA.
    let rule = ThresholdRule::high(None, Some(300));
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 150, 0), vec![]);
    assert_eq!(feed(&rule, &mut s, 299, 1_000), vec![]);
    assert_eq!(s.level(), Level::Normal);
    assert_eq!(
        feed(&rule, &mut s, 300, 2_000),
        vec![Raised {
            level: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
    assert_eq!(s.level(), Level::Alarm);
    assert_eq!(s.changed_at(), 2_000);
    // Already in alarm: nothing new.
    assert_eq!(feed(&rule, &mut s, 450, 3_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 4_000), vec![]);
}

#[test]
fn hysteresis_holds_the_level_until_past_the_return_difference() {
    // Non-latched pre-alarm at 200 with a return difference of 10.
    let rule = ThresholdRule::high(Some(200), None).with_hysteresis(10);
    let mut s = ThresholdState::default();
    assert_eq!(
        feed(&rule, &mut s, 200, 0),
        vec![Raised {
            level: Level::PreAlarm,
            value: 200,
            setpoint: 200
        }]
    );
    assert_eq!(feed(&rule, &mut s, 199, 1), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 190, 2),
        vec![],
        "190 is not below 200 - 10"
    );
    assert_eq!(s.level(), Level::PreAlarm);
    assert_eq!(
        feed(&rule, &mut s, 189, 3),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 189
        }]
    );
    assert_eq!(s.level(), Level::Normal);
    assert!(!s.is_latched());
}

#[test]
fn a_value_hovering_at_the_setpoint_raises_once() {
    let rule = ThresholdRule::high(Some(200), None).with_hysteresis(5);
    let mut s = ThresholdState::default();
    let mut all = Vec::new();
    for (i, v) in [199, 200, 199, 201, 198, 200, 196, 200, 199]
        .into_iter()
        .enumerate()
    {
        all.extend(feed(&rule, &mut s, v, i as Millis * 1_000));
    }
    assert_eq!(
        all,
        vec![Raised {
            level: Level::PreAlarm,
            value: 200,
            setpoint: 200
        }]
    );
}

#[test]
fn without_hysteresis_the_level_clears_just_below_the_setpoint() {
    let rule = ThresholdRule::high(Some(200), None);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 200, 0);
    assert_eq!(
        feed(&rule, &mut s, 199, 1),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 199
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Delays

#[test]
fn on_delay_raises_only_after_the_delay() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(5_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 10_000), vec![]);
    assert_eq!(s.pending(), Some(Level::Alarm));
    assert_eq!(feed(&rule, &mut s, 320, 12_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 310, 14_999), vec![]);
    assert_eq!(s.level(), Level::Normal);
    assert_eq!(
        feed(&rule, &mut s, 305, 15_000),
        vec![Raised {
            level: Level::Alarm,
            value: 305,
            setpoint: 300
        }]
    );
    assert_eq!(s.pending(), None);
    assert_eq!(s.changed_at(), 15_000);
}

#[test]
fn on_delay_restarts_when_the_value_dips() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(5_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0), vec![]);
    assert_eq!(feed(&rule, &mut s, 299, 2_000), vec![]);
    assert_eq!(s.pending(), None);
    assert_eq!(feed(&rule, &mut s, 300, 3_000), vec![]);
    // 5 s after the first rise, but only 2 s after the restart.
    assert_eq!(feed(&rule, &mut s, 300, 5_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 7_999), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 300, 8_000),
        vec![Raised {
            level: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
}

#[test]
fn on_delay_zero_confirms_on_the_first_sample() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(0, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0).len(), 1);
}

#[test]
fn off_delay_clears_only_after_the_delay() {
    let rule = ThresholdRule::high(Some(200), None).with_delays(0, 3_000);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 250, 0).len(), 1);
    assert_eq!(feed(&rule, &mut s, 150, 1_000), vec![]);
    assert_eq!(s.pending(), Some(Level::Normal));
    assert_eq!(feed(&rule, &mut s, 150, 3_999), vec![]);
    assert_eq!(s.level(), Level::PreAlarm);
    assert_eq!(
        feed(&rule, &mut s, 140, 4_000),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 140
        }]
    );
}

#[test]
fn off_delay_restarts_when_the_value_comes_back() {
    let rule = ThresholdRule::high(Some(200), None).with_delays(0, 3_000);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 250, 0);
    assert_eq!(feed(&rule, &mut s, 150, 1_000), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 210, 2_000),
        vec![],
        "back above: stays, no event"
    );
    assert_eq!(s.pending(), None);
    assert_eq!(feed(&rule, &mut s, 150, 2_500), vec![]);
    assert_eq!(feed(&rule, &mut s, 150, 5_499), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 150, 5_500),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 150
        }]
    );
}

#[test]
fn a_further_target_while_pending_starts_its_own_wait() {
    let rule = ThresholdRule::high(Some(200), Some(300))
        .with_latching(false, false)
        .with_delays(5_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 250, 0), vec![]);
    assert_eq!(s.pending(), Some(Level::PreAlarm));
    // Reaches the alarm setpoint: alarm pending from this sample.
    assert_eq!(feed(&rule, &mut s, 300, 1_000), vec![]);
    assert_eq!(s.pending(), Some(Level::Alarm));
    assert_eq!(feed(&rule, &mut s, 300, 5_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 5_999), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 300, 6_000),
        vec![Raised {
            level: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
}

#[test]
fn a_nearer_target_while_pending_keeps_the_start_time() {
    let rule = ThresholdRule::high(Some(200), Some(300))
        .with_latching(false, false)
        .with_delays(5_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0), vec![]);
    // Falls back into the pre-alarm band: it has been at or above 200 since t = 0.
    assert_eq!(feed(&rule, &mut s, 250, 3_000), vec![]);
    assert_eq!(s.pending(), Some(Level::PreAlarm));
    assert_eq!(
        feed(&rule, &mut s, 250, 5_000),
        vec![Raised {
            level: Level::PreAlarm,
            value: 250,
            setpoint: 200
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Latching and reset

#[test]
fn alarm_latches_and_reset_is_refused_while_the_value_is_still_high() {
    let rule = ThresholdRule::high(None, Some(300)).with_hysteresis(10);
    assert!(rule.latch_alarm, "alarms latch by default");
    let mut s = ThresholdState::default();

    assert_eq!(
        feed(&rule, &mut s, 350, 0),
        vec![Raised {
            level: Level::Alarm,
            value: 350,
            setpoint: 300
        }]
    );
    assert_eq!(
        reset(&rule, &mut s, 500),
        None,
        "a live alarm cannot be reset"
    );
    assert_eq!(s.level(), Level::Alarm);

    assert_eq!(
        feed(&rule, &mut s, 295, 1_000),
        vec![],
        "inside the return difference"
    );
    assert_eq!(reset(&rule, &mut s, 1_100), None);
    assert_eq!(
        feed(&rule, &mut s, 250, 2_000),
        vec![Latched {
            level: Level::Alarm,
            value: 250
        }]
    );
    assert!(s.is_latched());
    assert_eq!(s.level(), Level::Alarm);
    // Latched is emitted once.
    assert_eq!(feed(&rule, &mut s, 100, 3_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 0, 4_000), vec![]);
    assert_eq!(s.level(), Level::Alarm);

    // The value rises again: still in alarm, nothing new, no longer just latched.
    assert_eq!(feed(&rule, &mut s, 320, 5_000), vec![]);
    assert!(!s.is_latched());
    assert_eq!(reset(&rule, &mut s, 5_500), None);

    // Back down: latched again, then an authorised reset releases it.
    assert_eq!(
        feed(&rule, &mut s, 200, 6_000),
        vec![Latched {
            level: Level::Alarm,
            value: 200
        }]
    );
    assert_eq!(
        reset(&rule, &mut s, 7_000),
        Some(Reset { from: Level::Alarm })
    );
    assert_eq!(s.level(), Level::Normal);
    assert!(!s.is_latched());
    assert_eq!(s.changed_at(), 7_000);
    assert_eq!(reset(&rule, &mut s, 7_001), None, "nothing left to reset");
    assert_eq!(feed(&rule, &mut s, 200, 8_000), vec![]);
}

#[test]
fn reset_may_release_a_latch_while_the_value_is_in_the_return_band() {
    // Latched after dropping below 290, then back up to 295: not at the setpoint, so resettable.
    let rule = ThresholdRule::high(None, Some(300)).with_hysteresis(10);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    feed(&rule, &mut s, 280, 1);
    assert_eq!(feed(&rule, &mut s, 295, 2), vec![]);
    assert!(s.is_latched());
    assert_eq!(reset(&rule, &mut s, 3), Some(Reset { from: Level::Alarm }));
}

#[test]
fn reset_goes_to_normal_and_the_next_sample_raises_what_the_value_justifies() {
    let rule = ThresholdRule::high(Some(200), Some(300));
    let mut s = ThresholdState::default();
    assert_eq!(
        feed(&rule, &mut s, 300, 0),
        vec![Raised {
            level: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 250, 1_000),
        vec![Latched {
            level: Level::Alarm,
            value: 250
        }]
    );
    assert_eq!(
        reset(&rule, &mut s, 2_000),
        Some(Reset { from: Level::Alarm })
    );
    assert_eq!(s.level(), Level::Normal);
    assert_eq!(
        feed(&rule, &mut s, 250, 3_000),
        vec![Raised {
            level: Level::PreAlarm,
            value: 250,
            setpoint: 200
        }]
    );
}

#[test]
fn latched_is_emitted_only_after_the_off_delay() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(0, 2_000);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    assert_eq!(feed(&rule, &mut s, 100, 1_000), vec![]);
    assert!(!s.is_latched());
    assert_eq!(
        feed(&rule, &mut s, 100, 3_000),
        vec![Latched {
            level: Level::Alarm,
            value: 100
        }]
    );
}

#[test]
fn a_latching_pre_alarm_auto_clears_only_if_configured() {
    let rule = ThresholdRule::high(Some(200), None).with_latching(true, true);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 200, 0);
    assert_eq!(
        feed(&rule, &mut s, 100, 1),
        vec![Latched {
            level: Level::PreAlarm,
            value: 100
        }]
    );
    assert_eq!(
        reset(&rule, &mut s, 2),
        Some(Reset {
            from: Level::PreAlarm
        })
    );
}

#[test]
fn a_non_latching_alarm_over_a_latching_pre_alarm_steps_down_and_holds() {
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(false, true);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    assert_eq!(
        feed(&rule, &mut s, 100, 1),
        vec![
            Deescalated {
                from: Level::Alarm,
                to: Level::PreAlarm,
                value: 100
            },
            Latched {
                level: Level::PreAlarm,
                value: 100
            }
        ]
    );
    assert_eq!(s.level(), Level::PreAlarm);
    assert!(s.is_latched());
}

#[test]
fn reset_of_a_normal_or_unlatched_channel_does_nothing() {
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(false, false);
    let mut s = ThresholdState::default();
    assert_eq!(reset(&rule, &mut s, 0), None);
    feed(&rule, &mut s, 250, 1);
    assert_eq!(reset(&rule, &mut s, 2), None);
    assert_eq!(s.level(), Level::PreAlarm);
}

// ---------------------------------------------------------------------------------------------
// Two levels

#[test]
fn pre_alarm_escalates_to_alarm_and_back() {
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(false, false);
    let mut s = ThresholdState::default();
    let mut seen = Vec::new();
    for (t, v) in [(0, 100), (1, 200), (2, 300), (3, 250), (4, 100)] {
        seen.extend(feed(&rule, &mut s, v, t));
    }
    assert_eq!(
        seen,
        vec![
            Raised {
                level: Level::PreAlarm,
                value: 200,
                setpoint: 200
            },
            Escalated {
                from: Level::PreAlarm,
                to: Level::Alarm,
                value: 300,
                setpoint: 300
            },
            Deescalated {
                from: Level::Alarm,
                to: Level::PreAlarm,
                value: 250
            },
            Cleared {
                from: Level::PreAlarm,
                value: 100
            },
        ]
    );
}

#[test]
fn a_jump_straight_to_alarm_is_raised_as_alarm() {
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(false, false);
    let mut s = ThresholdState::default();
    assert_eq!(
        feed(&rule, &mut s, 350, 0),
        vec![Raised {
            level: Level::Alarm,
            value: 350,
            setpoint: 300
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 0, 1),
        vec![Cleared {
            from: Level::Alarm,
            value: 0
        }]
    );
}

#[test]
fn dropping_from_alarm_respects_each_levels_hysteresis() {
    let rule = ThresholdRule::high(Some(200), Some(300))
        .with_latching(false, false)
        .with_hysteresis(20);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    // Below the pre-alarm setpoint but inside its return band: alarm -> pre-alarm only.
    assert_eq!(
        feed(&rule, &mut s, 190, 1),
        vec![Deescalated {
            from: Level::Alarm,
            to: Level::PreAlarm,
            value: 190
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 179, 2),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 179
        }]
    );
}

#[test]
fn a_latched_pre_alarm_escalates_when_the_alarm_setpoint_is_reached() {
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(true, true);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 200, 0);
    feed(&rule, &mut s, 100, 1);
    assert!(s.is_latched());
    assert_eq!(
        feed(&rule, &mut s, 300, 2),
        vec![Escalated {
            from: Level::PreAlarm,
            to: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
    assert!(!s.is_latched());
}

// ---------------------------------------------------------------------------------------------
// Low direction

#[test]
fn low_rule_for_fire_water_pressure() {
    // Hydrant pressure: pre-alarm at 150 kPa, alarm at 100 kPa, return difference 10 kPa.
    let rule = ThresholdRule::low(Some(150), Some(100)).with_hysteresis(10);
    assert_eq!(rule.direction, Direction::Low);
    assert_eq!(rule.validate(), Ok(()));
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0), vec![]);
    assert_eq!(feed(&rule, &mut s, 151, 1), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 120, 2),
        vec![Raised {
            level: Level::PreAlarm,
            value: 120,
            setpoint: 150
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 100, 3),
        vec![Escalated {
            from: Level::PreAlarm,
            to: Level::Alarm,
            value: 100,
            setpoint: 100
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 110, 4),
        vec![],
        "110 is not above 100 + 10"
    );
    assert_eq!(
        feed(&rule, &mut s, 111, 5),
        vec![Latched {
            level: Level::Alarm,
            value: 111
        }]
    );
    assert_eq!(reset(&rule, &mut s, 6), Some(Reset { from: Level::Alarm }));
    assert_eq!(
        feed(&rule, &mut s, 111, 7),
        vec![Raised {
            level: Level::PreAlarm,
            value: 111,
            setpoint: 150
        }]
    );
    assert_eq!(feed(&rule, &mut s, 160, 8), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 161, 9),
        vec![Cleared {
            from: Level::PreAlarm,
            value: 161
        }]
    );
}

#[test]
fn low_rule_refuses_reset_while_pressure_is_still_low() {
    let rule = ThresholdRule::low(None, Some(100));
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 80, 0);
    assert_eq!(reset(&rule, &mut s, 1), None);
    feed(&rule, &mut s, 250, 2);
    assert_eq!(reset(&rule, &mut s, 3), Some(Reset { from: Level::Alarm }));
}

// ---------------------------------------------------------------------------------------------
// Faults

#[test]
fn a_fault_is_never_an_alarm_and_holds_the_delays() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(1_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0), vec![]);
    assert_eq!(s.pending(), Some(Level::Alarm));

    // A faulted sample with a huge value: a fault, never an alarm; the pending wait is cancelled.
    let faulted = Sample {
        value: i32::MAX,
        status: SampleStatus::Fault(FaultKind::Open),
    };
    assert_eq!(
        evaluate(&rule, &mut s, faulted, 500).to_vec(),
        vec![FaultRaised {
            kind: FaultKind::Open
        }]
    );
    assert_eq!(s.fault(), Some(FaultKind::Open));
    assert_eq!(s.pending(), None);
    assert_eq!(feed_fault(&rule, &mut s, FaultKind::Open, 1_500), vec![]);
    assert_eq!(
        feed_fault(&rule, &mut s, FaultKind::Short, 1_600),
        vec![
            FaultCleared {
                kind: FaultKind::Open
            },
            FaultRaised {
                kind: FaultKind::Short
            }
        ]
    );
    assert_eq!(s.level(), Level::Normal);

    // First valid sample: the fault clears and the on-delay starts afresh.
    assert_eq!(
        feed(&rule, &mut s, 300, 2_000),
        vec![FaultCleared {
            kind: FaultKind::Short
        }]
    );
    assert_eq!(s.fault(), None);
    assert_eq!(feed(&rule, &mut s, 300, 2_999), vec![]);
    assert_eq!(
        feed(&rule, &mut s, 300, 3_000),
        vec![Raised {
            level: Level::Alarm,
            value: 300,
            setpoint: 300
        }]
    );
}

#[test]
fn a_fault_holds_an_alarm_and_blocks_its_reset() {
    let rule = ThresholdRule::high(None, Some(300));
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    feed(&rule, &mut s, 100, 1);
    assert!(s.is_latched());
    assert_eq!(
        feed_fault(&rule, &mut s, FaultKind::Range, 2),
        vec![FaultRaised {
            kind: FaultKind::Range
        }]
    );
    assert_eq!(s.level(), Level::Alarm);
    assert_eq!(reset(&rule, &mut s, 3), None, "value unknown while faulted");
    assert_eq!(
        feed(&rule, &mut s, 100, 4),
        vec![FaultCleared {
            kind: FaultKind::Range
        }]
    );
    assert_eq!(reset(&rule, &mut s, 5), Some(Reset { from: Level::Alarm }));
}

#[test]
fn fault_clear_and_level_change_in_one_sample() {
    let rule = ThresholdRule::high(Some(200), None);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 250, 0);
    feed_fault(&rule, &mut s, FaultKind::Fault, 1);
    assert_eq!(s.level(), Level::PreAlarm, "held while faulted");
    assert_eq!(
        feed(&rule, &mut s, 0, 2),
        vec![
            FaultCleared {
                kind: FaultKind::Fault
            },
            Cleared {
                from: Level::PreAlarm,
                value: 0
            }
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn validate_reports_each_problem() {
    assert_eq!(
        ThresholdRule::high(None, None).validate(),
        Err(RuleError::NoSetpoint)
    );
    assert_eq!(
        ThresholdRule::default().validate(),
        Err(RuleError::NoSetpoint)
    );
    assert_eq!(
        ThresholdRule::high(Some(300), Some(300)).validate(),
        Err(RuleError::PreAlarmNotBeforeAlarm)
    );
    assert_eq!(
        ThresholdRule::high(Some(400), Some(300)).validate(),
        Err(RuleError::PreAlarmNotBeforeAlarm)
    );
    assert_eq!(
        ThresholdRule::low(Some(100), Some(150)).validate(),
        Err(RuleError::PreAlarmNotBeforeAlarm)
    );
    assert_eq!(
        ThresholdRule::high(None, Some(300))
            .with_hysteresis(-1)
            .validate(),
        Err(RuleError::NegativeHysteresis)
    );
    assert_eq!(ThresholdRule::high(Some(200), Some(300)).validate(), Ok(()));
    assert_eq!(ThresholdRule::high(Some(200), None).validate(), Ok(()));
    assert_eq!(ThresholdRule::low(Some(150), Some(100)).validate(), Ok(()));
    assert_eq!(ThresholdRule::low(None, Some(100)).validate(), Ok(()));

    for e in [
        RuleError::NoSetpoint,
        RuleError::PreAlarmNotBeforeAlarm,
        RuleError::NegativeHysteresis,
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        RuleError::NegativeHysteresis.to_string(),
        "the hysteresis (return difference) must not be negative"
    );
}

#[test]
fn setpoint_of_each_level() {
    let rule = ThresholdRule::high(Some(200), Some(300));
    assert_eq!(rule.setpoint(Level::Normal), None);
    assert_eq!(rule.setpoint(Level::PreAlarm), Some(200));
    assert_eq!(rule.setpoint(Level::Alarm), Some(300));
    assert!(Level::Normal < Level::PreAlarm && Level::PreAlarm < Level::Alarm);
}

#[test]
fn high_defaults_match_the_domain() {
    let rule = ThresholdRule::high(Some(1), Some(2));
    assert_eq!(rule.direction, Direction::High);
    assert_eq!(rule.hysteresis, 0);
    assert_eq!((rule.on_delay_ms, rule.off_delay_ms), (0, 0));
    assert!(rule.latch_alarm);
    assert!(!rule.latch_pre_alarm);
}

// ---------------------------------------------------------------------------------------------
// Extreme inputs

#[test]
fn extreme_values_do_not_overflow() {
    let rule = ThresholdRule::high(None, Some(i32::MAX))
        .with_hysteresis(i32::MAX)
        .with_latching(false, false);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, i32::MAX - 1, 0), vec![]);
    assert_eq!(
        feed(&rule, &mut s, i32::MAX, 1),
        vec![Raised {
            level: Level::Alarm,
            value: i32::MAX,
            setpoint: i32::MAX
        }]
    );
    assert_eq!(
        feed(&rule, &mut s, 0, 2),
        vec![],
        "0 is not below MAX - MAX"
    );
    assert_eq!(
        feed(&rule, &mut s, i32::MIN, 3),
        vec![Cleared {
            from: Level::Alarm,
            value: i32::MIN
        }]
    );

    let rule = ThresholdRule::low(None, Some(i32::MIN))
        .with_hysteresis(i32::MAX)
        .with_latching(false, false);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, i32::MIN + 1, 0), vec![]);
    assert_eq!(feed(&rule, &mut s, i32::MIN, 1).len(), 1);
    assert_eq!(
        feed(&rule, &mut s, -1, 2),
        vec![],
        "-1 is not above MIN + MAX"
    );
    assert_eq!(feed(&rule, &mut s, i32::MAX, 3).len(), 1);
    assert_eq!(s.level(), Level::Normal);
}

#[test]
fn extreme_times_and_time_going_backwards() {
    let rule = ThresholdRule::high(None, Some(300)).with_delays(u32::MAX, u32::MAX);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, u64::MAX - 10), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, u64::MAX), vec![]);

    // The clock goes backwards: the wait restarts from the new time instead of stalling.
    let rule = ThresholdRule::high(None, Some(300)).with_delays(1_000, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 1_000_000), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 5), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 1_004), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, 1_005).len(), 1);

    // Huge delays with time starting at 0 and the maximum time in one step.
    let rule = ThresholdRule::high(None, Some(300)).with_delays(u32::MAX, 0);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, 300, 0), vec![]);
    assert_eq!(feed(&rule, &mut s, 300, u64::MAX).len(), 1);
}

#[test]
fn invalid_rules_are_evaluated_without_panicking() {
    let rules = [
        ThresholdRule::high(None, None),
        ThresholdRule::high(Some(300), Some(200)),
        ThresholdRule::low(Some(100), Some(150)),
        ThresholdRule::high(Some(200), Some(300)).with_hysteresis(i32::MIN),
    ];
    for rule in rules {
        let mut s = ThresholdState::default();
        for (t, v) in [0, 150, 200, 250, 300, 350, 100, i32::MIN, i32::MAX]
            .into_iter()
            .enumerate()
        {
            let _ = evaluate(&rule, &mut s, Sample::ok(v), t as Millis);
            let _ = reset(&rule, &mut s, t as Millis);
        }
    }
    // No setpoints: never raises.
    let rule = ThresholdRule::high(None, None);
    let mut s = ThresholdState::default();
    assert_eq!(feed(&rule, &mut s, i32::MAX, 0), vec![]);
}

#[test]
fn a_level_removed_from_the_configuration_can_be_left() {
    // The state was raised under one rule; the alarm setpoint is then removed.
    let rule = ThresholdRule::high(Some(200), Some(300)).with_latching(false, false);
    let mut s = ThresholdState::default();
    feed(&rule, &mut s, 300, 0);
    let changed = ThresholdRule::high(Some(200), None).with_latching(false, false);
    assert_eq!(
        feed(&changed, &mut s, 250, 1),
        vec![Deescalated {
            from: Level::Alarm,
            to: Level::PreAlarm,
            value: 250
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Sweep: never panics, and the transitions always account for the level

/// A small deterministic linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly values near a few setpoints, sometimes anything at all.
    fn value(&mut self) -> i32 {
        match self.below(8) {
            0 => [i32::MIN, i32::MAX, 0, -1, 1][self.below(5) as usize],
            1 => self.next() as i32 ^ (self.next() << 31) as i32,
            _ => 100 + self.below(300) as i32 - 50,
        }
    }

    fn setpoint(&mut self) -> Option<i32> {
        match self.below(6) {
            0 => None,
            1 => Some([i32::MIN, i32::MAX, 0][self.below(3) as usize]),
            _ => Some(self.below(300) as i32),
        }
    }

    fn rule(&mut self) -> ThresholdRule {
        ThresholdRule {
            direction: if self.below(2) == 0 {
                Direction::High
            } else {
                Direction::Low
            },
            pre_alarm: self.setpoint(),
            alarm: self.setpoint(),
            hysteresis: match self.below(5) {
                0 => i32::MAX,
                1 => i32::MIN,
                _ => self.below(30) as i32,
            },
            on_delay_ms: [0, 1, 500, 3_000, u32::MAX][self.below(5) as usize],
            off_delay_ms: [0, 1, 500, 3_000, u32::MAX][self.below(5) as usize],
            latch_alarm: self.below(2) == 0,
            latch_pre_alarm: self.below(2) == 0,
        }
    }
}

/// The level implied by a run of transitions, starting from `level`.
fn apply(mut level: Level, transitions: &Transitions) -> Level {
    for t in transitions {
        level = match *t {
            Raised { level, .. } => level,
            Escalated { to, .. } | Deescalated { to, .. } => to,
            Cleared { .. } | Reset { .. } => Level::Normal,
            Latched { .. } | FaultRaised { .. } | FaultCleared { .. } => level,
            RateRaised { .. }
            | RateCleared { .. }
            | FlappingStarted { .. }
            | FlappingEnded { .. } => unreachable!("not a threshold transition: {t:?}"),
        };
    }
    level
}

#[test]
fn sweep_never_panics_and_transitions_track_the_level() {
    let mut rng = Lcg(0x5eed_f12e);
    // How often each kind of transition was seen, so the sweep cannot pass by never firing.
    let mut seen = [0u32; 8];
    for _ in 0..2_000 {
        let rule = rng.rule();
        let mut s = ThresholdState::default();
        let mut tracked = Level::Normal;
        let mut now: Millis = rng.below(1_000_000);
        for _ in 0..200 {
            now = match rng.below(20) {
                0 => now.saturating_sub(rng.below(10_000)), // backwards
                1 => u64::MAX - rng.below(3),
                2 => 0,
                _ => now.saturating_add(rng.below(2_000)),
            };
            let before = s;
            let out = if rng.below(25) == 0 {
                let r = reset(&rule, &mut s, now);
                let mut v = Transitions::new();
                if let Some(t) = r {
                    assert!(before.is_latched(), "reset released an unlatched level");
                    assert_eq!(
                        t,
                        Reset {
                            from: before.level()
                        }
                    );
                    v.push(t).unwrap();
                }
                v
            } else {
                let sample = if rng.below(15) == 0 {
                    Sample::fault(
                        [
                            FaultKind::Open,
                            FaultKind::Short,
                            FaultKind::Range,
                            FaultKind::Fault,
                        ][rng.below(4) as usize],
                    )
                } else {
                    Sample::ok(rng.value())
                };
                let out = evaluate(&rule, &mut s, sample, now);
                if let SampleStatus::Fault(kind) = sample.status {
                    assert_eq!(s.level(), before.level(), "a fault changed the level");
                    assert_eq!(s.fault(), Some(kind));
                    assert!(out
                        .iter()
                        .all(|t| matches!(t, FaultRaised { .. } | FaultCleared { .. })));
                } else {
                    assert_eq!(s.fault(), None);
                }
                out
            };
            assert!(out.len() <= 3, "{out:?}");
            for t in &out {
                seen[kind_index(t)] += 1;
            }
            tracked = apply(tracked, &out);
            assert_eq!(tracked, s.level(), "rule {rule:?}, transitions {out:?}");
            if s.is_latched() {
                assert!(rule.latches(s.level()), "latched a non-latching level");
            }
            if s.level() > before.level() {
                // Raising needs the setpoint to have been reached by the current value.
                let v = s.last_value().unwrap();
                assert!(rule.target_level(v) >= s.level());
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "kinds seen: {seen:?}");
}

fn kind_index(t: &Transition) -> usize {
    match t {
        Raised { .. } => 0,
        Escalated { .. } => 1,
        Deescalated { .. } => 2,
        Cleared { .. } => 3,
        Latched { .. } => 4,
        Reset { .. } => 5,
        FaultRaised { .. } => 6,
        FaultCleared { .. } => 7,
        RateRaised { .. } | RateCleared { .. } | FlappingStarted { .. } | FlappingEnded { .. } => {
            unreachable!("not a threshold transition: {t:?}")
        }
    }
}
