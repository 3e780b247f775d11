//! The channel engine: exact output sequences for the valid range (NAMUR NE43), rate of rise,
//! faults holding the rate rule, flapping, root-cause suppression, reset, and the state size.

use rules::{
    evaluate, reset, ChannelRule, ChannelState, Context, Disposition, FaultKind, FlapRule, Level,
    Millis, Output, RateRule, Sample, ThresholdRule, Transition,
};

use Disposition::{Flapping, Notify, Suppressed};
use Transition::*;

const CTX: Context = Context { suppressed: false };
const DOWN: Context = Context { suppressed: true };

fn feed(rule: &ChannelRule, s: &mut ChannelState, value: i32, now: Millis) -> Vec<Output> {
    evaluate(rule, s, Sample::ok(value), now, CTX).to_vec()
}

fn o(transition: Transition, disposition: Disposition) -> Output {
    Output {
        transition,
        disposition,
    }
}

fn n(transition: Transition) -> Output {
    o(transition, Notify)
}

/// Runs `steps` of `(now, sample)` and compares every step's outputs.
fn run_table(rule: &ChannelRule, ctx: Context, steps: &[(Millis, Sample, Vec<Output>)]) {
    let mut s = ChannelState::default();
    for (i, (now, sample, want)) in steps.iter().enumerate() {
        let got = evaluate(rule, &mut s, *sample, *now, ctx).to_vec();
        assert_eq!(&got, want, "step {i}: {sample:?} at {now}");
    }
}

#[test]
fn channel_state_fits_in_64_bytes() {
    assert!(core::mem::size_of::<ChannelState>() <= 64);
    assert_eq!(core::mem::size_of::<ChannelState>(), 64);
    assert_eq!(core::mem::size_of::<rules::ThresholdState>(), 28);
    assert_eq!(core::mem::size_of::<rules::RateState>(), 20);
    assert_eq!(core::mem::size_of::<rules::FlapState>(), 16);
    assert!(core::mem::size_of::<rules::NodeState>() <= 24);
    assert_eq!(core::mem::size_of::<rules::SiteState>(), 1);
    // Transition stays small and Copy.
    assert!(core::mem::size_of::<Transition>() <= 12);
}

// ---------------------------------------------------------------------------------------------
// Valid range (NAMUR NE43) and faults

#[test]
fn loop_current_outside_ne43_is_a_range_fault_never_an_alarm() {
    let rule = rules::defaults::channel_rule(wire::Quantity::LoopCurrent);
    let ok = Sample::ok;
    run_table(
        &rule,
        CTX,
        &[
            (0, ok(4_000), vec![]),
            (1, ok(3_600), vec![] /* inclusive */),
            (
                2,
                ok(3_599),
                vec![n(FaultRaised {
                    kind: FaultKind::Range,
                })],
            ),
            (3, ok(0), vec![]),
            (
                4,
                ok(3_600),
                vec![n(FaultCleared {
                    kind: FaultKind::Range,
                })],
            ),
            (5, ok(21_000), vec![]),
            (
                6,
                ok(21_001),
                vec![n(FaultRaised {
                    kind: FaultKind::Range,
                })],
            ),
            (
                7,
                Sample::fault(FaultKind::Open),
                vec![
                    n(FaultCleared {
                        kind: FaultKind::Range,
                    }),
                    n(FaultRaised {
                        kind: FaultKind::Open,
                    }),
                ],
            ),
            // The sixth fault transition within 10 minutes: the default flapping rule steps in.
            (
                8,
                ok(12_000),
                vec![
                    n(FlappingStarted { transitions: 6 }),
                    o(
                        FaultCleared {
                            kind: FaultKind::Open,
                        },
                        Flapping,
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn a_value_past_the_range_with_a_setpoint_is_still_only_a_fault() {
    // Pressure transmitter scaled to µA with a high setpoint inside the range.
    let rule = ChannelRule::new()
        .with_threshold(ThresholdRule::high(None, Some(20_000)))
        .with_valid_range(3_600, 21_000);
    rule.validate().unwrap();
    let mut s = ChannelState::default();
    assert_eq!(
        feed(&rule, &mut s, 25_000, 0),
        [n(FaultRaised {
            kind: FaultKind::Range
        })]
    );
    assert_eq!(s.level(), Level::Normal);
    assert_eq!(s.last_value(), None, "an out-of-range value is not valid");
    assert_eq!(
        feed(&rule, &mut s, 20_500, 1),
        [
            n(FaultCleared {
                kind: FaultKind::Range
            }),
            n(Raised {
                level: Level::Alarm,
                value: 20_500,
                setpoint: 20_000
            })
        ]
    );
}

#[test]
fn without_any_rule_faults_are_still_watched() {
    let rule = ChannelRule::default();
    rule.validate().unwrap();
    run_table(
        &rule,
        CTX,
        &[
            (0, Sample::ok(i32::MAX), vec![]),
            (
                1,
                Sample::fault(FaultKind::Short),
                vec![n(FaultRaised {
                    kind: FaultKind::Short,
                })],
            ),
            (
                2,
                Sample::ok(i32::MIN),
                vec![n(FaultCleared {
                    kind: FaultKind::Short,
                })],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Rate of rise

/// +10 °C (100 × 0.1 °C) within 60 s.
fn rate_rule() -> ChannelRule {
    ChannelRule::new().with_rate(RateRule::new(100, 60_000))
}

#[test]
fn rate_raises_on_a_fast_rise_and_clears_once_the_low_values_age_out() {
    run_table(
        &rate_rule(),
        CTX,
        &[
            (0, Sample::ok(400), vec![]),
            (10_000, Sample::ok(450), vec![]),
            (
                20_000,
                Sample::ok(505),
                vec![n(RateRaised {
                    value: 505,
                    rise: 105,
                })],
            ),
            // Plateau: 400 is still within the look-back.
            (30_000, Sample::ok(505), vec![]),
            (59_999, Sample::ok(505), vec![]),
            // The bucket holding 400 ages out: the rise over the window is 0.
            (60_000, Sample::ok(505), vec![n(RateCleared { value: 505 })]),
            (90_000, Sample::ok(505), vec![]),
        ],
    );
}

#[test]
fn rate_clears_below_half_the_rise() {
    run_table(
        &rate_rule(),
        CTX,
        &[
            (0, Sample::ok(400), vec![]),
            (
                1_000,
                Sample::ok(520),
                vec![n(RateRaised {
                    value: 520,
                    rise: 120,
                })],
            ),
            (
                2_000,
                Sample::ok(460),
                vec![], /* rise 60 >= 50: held */
            ),
            (3_000, Sample::ok(450), vec![] /* rise 50: held */),
            (4_000, Sample::ok(449), vec![n(RateCleared { value: 449 })]),
            // Raising again needs the full rise over the window's minimum (400).
            (5_000, Sample::ok(499), vec![]),
            (
                6_000,
                Sample::ok(500),
                vec![n(RateRaised {
                    value: 500,
                    rise: 100,
                })],
            ),
        ],
    );
}

#[test]
fn a_slow_rise_never_raises_the_rate() {
    // 1 °C per 10 s: 6 °C per minute, below the 10 °C rule.
    let rule = rate_rule();
    let mut s = ChannelState::default();
    for i in 0..600 {
        let out = feed(&rule, &mut s, 400 + i, i as Millis * 1_000);
        assert_eq!(out, [], "at {i} s");
    }
}

#[test]
fn a_rise_within_half_the_window_is_caught_whatever_the_phase() {
    // A 10 °C step spread over 30 s (half the window), starting at any phase of the buckets.
    for phase in (0..60_000).step_by(1_700) {
        let rule = rate_rule();
        let mut s = ChannelState::default();
        let mut raised_at = None;
        for k in 0..200u64 {
            let now = phase + k * 1_000;
            let v = match k {
                0..=59 => 400,
                60..=90 => 400 + (k as i32 - 60) * 100 / 30,
                _ => 500,
            };
            for out in feed(&rule, &mut s, v, now) {
                if let RateRaised { .. } = out.transition {
                    raised_at.get_or_insert(k);
                }
            }
        }
        let k = raised_at.unwrap_or_else(|| panic!("phase {phase}: never raised"));
        assert!((61..=90).contains(&k), "phase {phase}: raised at {k}");
    }
}

#[test]
fn a_gap_longer_than_the_window_is_not_a_rate() {
    run_table(
        &rate_rule(),
        CTX,
        &[
            (0, Sample::ok(400), vec![]),
            (60_000, Sample::ok(600), vec![]),
        ],
    );
}

#[test]
fn rate_rule_survives_time_going_backwards() {
    run_table(
        &rate_rule(),
        CTX,
        &[
            (100_000, Sample::ok(400), vec![]),
            (
                101_000,
                Sample::ok(520),
                vec![n(RateRaised {
                    value: 520,
                    rise: 120,
                })],
            ),
            // The clock goes back: the minimum is kept, nothing is invented or lost.
            (5, Sample::ok(520), vec![]),
            (29_999, Sample::ok(520), vec![]),
            // Ages out as usual, two half-windows after the re-anchoring.
            (60_005, Sample::ok(520), vec![n(RateCleared { value: 520 })]),
        ],
    );
}

#[test]
fn a_loose_terminal_is_caught_by_the_rate_before_the_setpoint() {
    // Temperature defaults: pre-alarm 60 °C, alarm 80 °C, rate +10 °C within 60 s. A terminal
    // heating from 40 °C at 0.5 °C/s, sampled every second.
    let rule = rules::defaults::channel_rule(wire::Quantity::Temperature);
    let mut s = ChannelState::default();
    let mut seen = Vec::new();
    for k in 0..100 {
        let v = 400 + 5 * k;
        for out in feed(&rule, &mut s, v, k as Millis * 1_000) {
            seen.push((k, out.transition));
        }
    }
    assert_eq!(
        seen[0],
        (
            20,
            RateRaised {
                value: 500,
                rise: 100
            }
        ),
        "{seen:?}"
    );
    assert_eq!(
        seen[1],
        (
            40,
            Raised {
                level: Level::PreAlarm,
                value: 600,
                setpoint: 600
            }
        )
    );
    assert_eq!(
        seen[2],
        (
            80,
            Escalated {
                from: Level::PreAlarm,
                to: Level::Alarm,
                value: 800,
                setpoint: 800
            }
        )
    );
}

#[test]
fn a_fault_holds_the_rate_rule() {
    let rule = rate_rule();
    run_table(
        &rule,
        CTX,
        &[
            (0, Sample::ok(400), vec![]),
            (
                1_000,
                Sample::ok(520),
                vec![n(RateRaised {
                    value: 520,
                    rise: 120,
                })],
            ),
            // An open probe reads nothing: the rate stays raised, nothing new.
            (
                2_000,
                Sample::fault(FaultKind::Open),
                vec![n(FaultRaised {
                    kind: FaultKind::Open,
                })],
            ),
            (70_000, Sample::fault(FaultKind::Open), vec![]),
            // Valid again much later: the window is empty, so the rate clears with the fault.
            (
                200_000,
                Sample::ok(520),
                vec![
                    n(FaultCleared {
                        kind: FaultKind::Open,
                    }),
                    n(RateCleared { value: 520 }),
                ],
            ),
        ],
    );

    // A huge value with a fault status never feeds the rate.
    let mut s = ChannelState::default();
    feed(&rule, &mut s, 400, 0);
    let out = evaluate(
        &rule,
        &mut s,
        Sample {
            value: 9_999,
            status: rules::SampleStatus::Fault(FaultKind::Short),
        },
        500,
        CTX,
    );
    assert_eq!(
        out.to_vec(),
        [n(FaultRaised {
            kind: FaultKind::Short
        })]
    );
    assert!(!s.is_rate_raised());
}

#[test]
fn rate_and_threshold_in_one_sample_come_threshold_first() {
    let rule = ChannelRule::new()
        .with_threshold(ThresholdRule::high(None, Some(500)))
        .with_rate(RateRule::new(100, 60_000));
    run_table(
        &rule,
        CTX,
        &[
            (0, Sample::ok(400), vec![]),
            (
                1_000,
                Sample::ok(500),
                vec![
                    n(Raised {
                        level: Level::Alarm,
                        value: 500,
                        setpoint: 500,
                    }),
                    n(RateRaised {
                        value: 500,
                        rise: 100,
                    }),
                ],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Flapping

/// Alarm at 300, no hysteresis, nothing latches; flapping at 4 transitions within 10 s, quiet 5 s.
fn flappy() -> ChannelRule {
    ChannelRule::new()
        .with_threshold(ThresholdRule::high(None, Some(300)).with_latching(false, false))
        .with_flap(FlapRule::new(4, 10_000, 5_000))
}

fn raised(v: i32) -> Transition {
    Raised {
        level: Level::Alarm,
        value: v,
        setpoint: 300,
    }
}

fn cleared(v: i32) -> Transition {
    Cleared {
        from: Level::Alarm,
        value: v,
    }
}

#[test]
fn flapping_is_reported_once_and_swallows_until_quiet() {
    run_table(
        &flappy(),
        CTX,
        &[
            (0, Sample::ok(300), vec![n(raised(300))]),
            (1_000, Sample::ok(200), vec![n(cleared(200))]),
            (2_000, Sample::ok(300), vec![n(raised(300))]),
            (
                3_000,
                Sample::ok(200),
                vec![
                    n(FlappingStarted { transitions: 4 }),
                    o(cleared(200), Flapping),
                ],
            ),
            (4_000, Sample::ok(300), vec![o(raised(300), Flapping)]),
            (5_000, Sample::ok(300), vec![]),
            (8_999, Sample::ok(300), vec![]),
            (
                9_000,
                Sample::ok(300),
                vec![n(FlappingEnded {
                    level: Level::Alarm,
                })],
            ),
            // Normal behaviour again, counting afresh.
            (10_000, Sample::ok(200), vec![n(cleared(200))]),
            (11_000, Sample::ok(300), vec![n(raised(300))]),
        ],
    );
}

#[test]
fn transitions_spread_wider_than_the_window_do_not_flap() {
    let rule = flappy();
    let mut s = ChannelState::default();
    for k in 0..40u64 {
        let v = if k % 2 == 0 { 300 } else { 200 };
        // One transition every 4 s: at most 3 within any 10 s window.
        let out = feed(&rule, &mut s, v, k * 4_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].disposition, Notify, "at step {k}: {out:?}");
    }
    assert!(!s.is_flapping());
}

#[test]
fn a_transition_while_flapping_restarts_the_quiet_period() {
    run_table(
        &flappy(),
        CTX,
        &[
            (0, Sample::ok(300), vec![n(raised(300))]),
            (1, Sample::ok(200), vec![n(cleared(200))]),
            (2, Sample::ok(300), vec![n(raised(300))]),
            (
                3,
                Sample::ok(200),
                vec![
                    n(FlappingStarted { transitions: 4 }),
                    o(cleared(200), Flapping),
                ],
            ),
            (5_002, Sample::ok(300), vec![o(raised(300), Flapping)]),
            (10_001, Sample::ok(300), vec![]),
            (
                10_002,
                Sample::ok(300),
                vec![n(FlappingEnded {
                    level: Level::Alarm,
                })],
            ),
        ],
    );
}

#[test]
fn flapping_ends_before_the_sample_that_is_evaluated_after_the_quiet_period() {
    run_table(
        &flappy(),
        CTX,
        &[
            (0, Sample::ok(300), vec![n(raised(300))]),
            (1, Sample::ok(200), vec![n(cleared(200))]),
            (2, Sample::ok(300), vec![n(raised(300))]),
            (
                3,
                Sample::ok(200),
                vec![
                    n(FlappingStarted { transitions: 4 }),
                    o(cleared(200), Flapping),
                ],
            ),
            (
                60_000,
                Sample::ok(300),
                vec![
                    n(FlappingEnded {
                        level: Level::Normal,
                    }),
                    n(raised(300)),
                ],
            ),
        ],
    );
}

#[test]
fn fault_transitions_count_for_flapping() {
    let rule = ChannelRule::new().with_flap(FlapRule::new(3, 10_000, 5_000));
    let open = Sample::fault(FaultKind::Open);
    run_table(
        &rule,
        CTX,
        &[
            (
                0,
                open,
                vec![n(FaultRaised {
                    kind: FaultKind::Open,
                })],
            ),
            (
                1,
                Sample::ok(5),
                vec![n(FaultCleared {
                    kind: FaultKind::Open,
                })],
            ),
            (
                2,
                open,
                vec![
                    n(FlappingStarted { transitions: 3 }),
                    o(
                        FaultRaised {
                            kind: FaultKind::Open,
                        },
                        Flapping,
                    ),
                ],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Root-cause suppression

#[test]
fn suppression_marks_every_output_and_changes_no_state() {
    let rule = flappy();
    let steps: [(Millis, i32); 6] = [
        (0, 300),
        (1_000, 200),
        (2_000, 300),
        (3_000, 200),
        (4_000, 300),
        (9_000, 300),
    ];
    let mut plain = ChannelState::default();
    let mut down = ChannelState::default();
    let mut all = Vec::new();
    for (now, v) in steps {
        let a = evaluate(&rule, &mut plain, Sample::ok(v), now, CTX);
        let b = evaluate(&rule, &mut down, Sample::ok(v), now, DOWN);
        assert_eq!(plain, down, "the context never changes the state");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.transition, y.transition);
            assert_eq!(y.disposition, Suppressed);
        }
        all.extend(b.iter().map(|o| o.transition));
    }
    assert_eq!(
        all,
        [
            raised(300),
            cleared(200),
            raised(300),
            FlappingStarted { transitions: 4 },
            cleared(200),
            raised(300),
            FlappingEnded {
                level: Level::Alarm
            },
        ]
    );
}

#[test]
fn suppression_can_come_and_go_between_samples() {
    let rule = ChannelRule::from(ThresholdRule::high(Some(200), Some(300)));
    let mut s = ChannelState::default();
    assert_eq!(
        evaluate(&rule, &mut s, Sample::ok(250), 0, DOWN).to_vec(),
        [o(
            Raised {
                level: Level::PreAlarm,
                value: 250,
                setpoint: 200
            },
            Suppressed
        )]
    );
    assert_eq!(
        evaluate(&rule, &mut s, Sample::ok(350), 1, CTX).to_vec(),
        [n(Escalated {
            from: Level::PreAlarm,
            to: Level::Alarm,
            value: 350,
            setpoint: 300
        })]
    );
}

// ---------------------------------------------------------------------------------------------
// Latching and reset through the channel engine

#[test]
fn latched_alarm_needs_an_authorised_reset() {
    let rule = rules::defaults::channel_rule(wire::Quantity::ResidualCurrent);
    let mut s = ChannelState::default();
    assert_eq!(
        feed(&rule, &mut s, 520, 0),
        [n(Raised {
            level: Level::Alarm,
            value: 520,
            setpoint: 500
        })]
    );
    assert_eq!(reset(&rule, &mut s, 1), None, "live alarm");
    assert_eq!(
        feed(&rule, &mut s, 100, 2),
        [n(Latched {
            level: Level::Alarm,
            value: 100
        })]
    );
    for t in 3..100 {
        assert_eq!(feed(&rule, &mut s, 100, t), []);
        assert_eq!(s.level(), Level::Alarm);
    }
    assert_eq!(
        reset(&rule, &mut s, 100),
        Some(Reset { from: Level::Alarm })
    );
    assert_eq!(s.level(), Level::Normal);
    assert_eq!(reset(&rule, &mut s, 101), None);

    // A channel without a threshold has nothing to reset.
    let mut s = ChannelState::default();
    assert_eq!(reset(&ChannelRule::default(), &mut s, 0), None);
}

#[test]
fn pre_alarm_auto_clears_by_default() {
    let rule = rules::defaults::channel_rule(wire::Quantity::ResidualCurrent);
    run_table(
        &rule,
        CTX,
        &[
            (
                0,
                Sample::ok(300),
                vec![n(Raised {
                    level: Level::PreAlarm,
                    value: 300,
                    setpoint: 300,
                })],
            ),
            (
                1,
                Sample::ok(271),
                vec![], /* within the 30 mA return difference */
            ),
            (
                2,
                Sample::ok(269),
                vec![n(Cleared {
                    from: Level::PreAlarm,
                    value: 269,
                })],
            ),
        ],
    );
}
