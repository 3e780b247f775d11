//! Validation: every refusal of `ChannelRule::validate` / `validate_for`, with its message, and
//! the defaults of every quantity passing their own checks.

use rules::defaults::{self, channel_rule, response_limit_ms};
use rules::{ChannelRule, FlapRule, RateRule, RuleError, ThresholdRule};
use wire::Quantity;

use Quantity::*;

fn rc(rule: ThresholdRule) -> Result<(), RuleError> {
    ChannelRule::from(rule).validate_for(ResidualCurrent)
}

#[test]
fn every_default_passes_its_own_quantity_checks() {
    for &q in Quantity::ALL {
        let rule = channel_rule(q);
        assert_eq!(rule.validate(), Ok(()), "{q}");
        assert_eq!(rule.validate_for(q), Ok(()), "{q}");
        assert_eq!(rule.flap, Some(defaults::flap_rule()), "{q}");
    }
}

#[test]
fn defaults_follow_the_standards() {
    let r = channel_rule(ResidualCurrent).threshold.unwrap();
    assert_eq!(
        (r.pre_alarm, r.alarm, r.hysteresis),
        (Some(300), Some(500), 30)
    );
    assert!(r.latch_alarm && !r.latch_pre_alarm);
    assert_eq!(r.direction, rules::Direction::High);

    let t = channel_rule(Temperature);
    let th = t.threshold.unwrap();
    assert_eq!(
        (th.pre_alarm, th.alarm, th.hysteresis),
        (Some(600), Some(800), 20)
    );
    assert_eq!(t.rate, Some(RateRule::new(100, 60_000)));

    let a = channel_rule(Arc).threshold.unwrap();
    assert_eq!((a.pre_alarm, a.alarm), (Some(10), Some(14)));
    assert_eq!(
        a.target_level(9),
        rules::Level::Normal,
        "≤ 9 arcs/s: no alarm"
    );
    assert_eq!(
        a.target_level(14),
        rules::Level::Alarm,
        "≥ 14 arcs/s: alarm"
    );

    let p = channel_rule(WaterPressure).threshold.unwrap();
    assert_eq!(p.direction, rules::Direction::Low);
    assert_eq!((p.pre_alarm, p.alarm), (Some(150), Some(100)));
    assert_eq!(p.target_level(100), rules::Level::Alarm, "0.10 MPa");

    let l = channel_rule(LoopCurrent);
    assert_eq!(l.valid_range, Some((3_600, 21_000)));
    assert_eq!(l.threshold, None);

    for q in [WaterLevel, Current, Voltage] {
        let r = channel_rule(q);
        assert_eq!(
            (r.threshold, r.rate, r.valid_range),
            (None, None, None),
            "{q}"
        );
    }

    assert_eq!(response_limit_ms(ResidualCurrent), Some(30_000));
    assert_eq!(response_limit_ms(Temperature), Some(40_000));
    assert_eq!(response_limit_ms(Arc), Some(30_000));
    assert_eq!(response_limit_ms(WaterPressure), None);
    assert_eq!(defaults::flap_rule(), FlapRule::new(6, 600_000, 600_000));
    assert_eq!(FlapRule::default(), defaults::flap_rule());
}

#[test]
fn residual_current_setpoints_are_bounded() {
    assert_eq!(rc(ThresholdRule::high(Some(300), Some(1_000))), Ok(()));
    assert_eq!(rc(ThresholdRule::high(Some(100), Some(200))), Ok(()));
    assert_eq!(
        rc(ThresholdRule::high(None, Some(1_001))),
        Err(RuleError::SetpointTooHigh {
            quantity: ResidualCurrent,
            setpoint: 1_001,
            max: 1_000
        })
    );
    assert_eq!(
        rc(ThresholdRule::high(Some(99), Some(300))),
        Err(RuleError::SetpointTooLow {
            quantity: ResidualCurrent,
            setpoint: 99,
            min: 100
        })
    );
    assert_eq!(
        rc(ThresholdRule::high(Some(300), None)),
        Err(RuleError::MissingAlarm {
            quantity: ResidualCurrent
        })
    );
    assert_eq!(
        ChannelRule::default().validate_for(ResidualCurrent),
        Err(RuleError::MissingAlarm {
            quantity: ResidualCurrent
        })
    );
    assert_eq!(
        rc(ThresholdRule::low(None, Some(300))),
        Err(RuleError::WrongDirection {
            quantity: ResidualCurrent
        })
    );
}

#[test]
fn temperature_and_arc_setpoints_are_bounded() {
    let t = |r: ThresholdRule| ChannelRule::from(r).validate_for(Temperature);
    assert_eq!(t(ThresholdRule::high(None, Some(1_400))), Ok(()));
    assert_eq!(
        t(ThresholdRule::high(None, Some(1_401))),
        Err(RuleError::SetpointTooHigh {
            quantity: Temperature,
            setpoint: 1_401,
            max: 1_400
        })
    );
    // Frost protection of a water pipe: a low temperature rule is fine.
    assert_eq!(
        t(ThresholdRule::low(None, Some(30)).with_hysteresis(50)),
        Ok(())
    );
    // Temperature may be negative: a hysteresis wider than the setpoint can still clear.
    assert_eq!(
        t(ThresholdRule::high(None, Some(50)).with_hysteresis(60)),
        Ok(())
    );

    let a = |r: ThresholdRule| ChannelRule::from(r).validate_for(Arc);
    assert_eq!(a(ThresholdRule::high(None, Some(10))), Ok(()));
    assert_eq!(
        a(ThresholdRule::high(None, Some(15))),
        Err(RuleError::SetpointTooHigh {
            quantity: Arc,
            setpoint: 15,
            max: 14
        })
    );
    assert_eq!(
        a(ThresholdRule::high(Some(5), Some(9))),
        Err(RuleError::SetpointTooLow {
            quantity: Arc,
            setpoint: 9,
            min: 10
        })
    );
}

#[test]
fn on_delay_must_leave_the_response_time_reachable() {
    for (q, base) in [
        (ResidualCurrent, ThresholdRule::high(Some(300), Some(500))),
        (Temperature, ThresholdRule::high(Some(600), Some(800))),
        (Arc, ThresholdRule::high(Some(10), Some(14))),
    ] {
        let max = response_limit_ms(q).unwrap() - defaults::PIPELINE_BUDGET_MS;
        assert_eq!(defaults::max_on_delay_ms(q), Some(max));
        let ok = ChannelRule::from(base.with_delays(max, 600_000));
        assert_eq!(ok.validate_for(q), Ok(()), "{q}: off-delay is not bounded");
        let too_long = ChannelRule::from(base.with_delays(max + 1, 0));
        assert_eq!(
            too_long.validate_for(q),
            Err(RuleError::OnDelayTooLong {
                quantity: q,
                on_delay_ms: max + 1,
                max_ms: max
            })
        );
    }
    // No response limit for water pressure: any on-delay.
    let p = ChannelRule::from(ThresholdRule::low(Some(150), Some(100)).with_delays(u32::MAX, 0));
    assert_eq!(p.validate_for(WaterPressure), Ok(()));
}

#[test]
fn hysteresis_that_is_too_wide_is_refused() {
    // Wider than the gap between pre-alarm and alarm.
    assert_eq!(
        ThresholdRule::high(Some(300), Some(500))
            .with_hysteresis(200)
            .validate(),
        Err(RuleError::HysteresisTooWide {
            hysteresis: 200,
            gap: 200
        })
    );
    assert_eq!(
        ThresholdRule::low(Some(150), Some(100))
            .with_hysteresis(49)
            .validate(),
        Ok(())
    );
    // A level that no non-negative reading can leave.
    let stuck = ChannelRule::from(ThresholdRule::high(None, Some(300)).with_hysteresis(300));
    assert_eq!(
        stuck.validate(),
        Ok(()),
        "fine on its own: the unit is unknown"
    );
    assert_eq!(
        stuck.validate_for(Current),
        Err(RuleError::LevelCannotClear {
            setpoint: 300,
            hysteresis: 300,
            bound: 0
        })
    );
    assert_eq!(
        ChannelRule::from(ThresholdRule::high(None, Some(300)).with_hysteresis(299))
            .validate_for(Current),
        Ok(())
    );
    // ... or, with a valid range, no valid reading.
    let rule = ChannelRule::from(ThresholdRule::high(None, Some(4_000)).with_hysteresis(400))
        .with_valid_range(3_600, 21_000);
    assert_eq!(
        rule.validate(),
        Err(RuleError::LevelCannotClear {
            setpoint: 4_000,
            hysteresis: 400,
            bound: 3_600
        })
    );
    let rule = ChannelRule::from(ThresholdRule::low(None, Some(20_000)).with_hysteresis(1_000))
        .with_valid_range(3_600, 21_000);
    assert_eq!(
        rule.validate(),
        Err(RuleError::LevelCannotClear {
            setpoint: 20_000,
            hysteresis: 1_000,
            bound: 21_000
        })
    );
}

#[test]
fn rate_flap_and_range_parts_are_checked() {
    let r = |rate| ChannelRule::new().with_rate(rate).validate();
    assert_eq!(r(RateRule::new(100, 0)), Err(RuleError::ZeroRateWindow));
    assert_eq!(
        r(RateRule::new(0, 60_000)),
        Err(RuleError::NonPositiveRise { rise: 0 })
    );
    assert_eq!(r(RateRule::new(1, 1)), Ok(()));

    let f = |flap| ChannelRule::new().with_flap(flap).validate();
    assert_eq!(
        f(FlapRule::new(1, 600_000, 0)),
        Err(RuleError::FlapTooFewTransitions { transitions: 1 })
    );
    assert_eq!(f(FlapRule::new(2, 0, 0)), Err(RuleError::ZeroFlapWindow));
    assert_eq!(f(FlapRule::new(2, 1, 0)), Ok(()));

    assert_eq!(
        ChannelRule::new().with_valid_range(10, 9).validate(),
        Err(RuleError::EmptyValidRange { low: 10, high: 9 })
    );
    assert_eq!(
        ChannelRule::from(ThresholdRule::high(None, Some(22_000)))
            .with_valid_range(3_600, 21_000)
            .validate(),
        Err(RuleError::SetpointOutsideValidRange {
            setpoint: 22_000,
            low: 3_600,
            high: 21_000
        })
    );
    // The threshold part's own checks come through.
    assert_eq!(
        ChannelRule::from(ThresholdRule::high(None, None)).validate(),
        Err(RuleError::NoSetpoint)
    );
}

#[test]
fn every_error_has_a_clear_english_message() {
    let cases: [(RuleError, &str); 18] = [
        (
            RuleError::NoSetpoint,
            "the rule has neither a pre-alarm nor an alarm setpoint",
        ),
        (
            RuleError::PreAlarmNotBeforeAlarm,
            "the pre-alarm setpoint must be reached before the alarm setpoint (below it for a \
             high rule, above it for a low rule)",
        ),
        (
            RuleError::NegativeHysteresis,
            "the hysteresis (return difference) must not be negative",
        ),
        (
            RuleError::HysteresisTooWide {
                hysteresis: 200,
                gap: 200,
            },
            "the hysteresis (return difference) 200 must be smaller than the distance 200 \
             between the pre-alarm and alarm setpoints",
        ),
        (
            RuleError::LevelCannotClear {
                setpoint: 300,
                hysteresis: 300,
                bound: 0,
            },
            "with a hysteresis of 300 the level at setpoint 300 could never clear: valid \
             readings stop at 0",
        ),
        (
            RuleError::NonPositiveRise { rise: 0 },
            "the rate-of-rise rule's rise must be positive, not 0",
        ),
        (
            RuleError::ZeroRateWindow,
            "the rate-of-rise rule's window must be longer than 0 ms",
        ),
        (
            RuleError::FlapTooFewTransitions { transitions: 1 },
            "the flapping rule needs at least 2 transitions within its window, not 1",
        ),
        (
            RuleError::ZeroFlapWindow,
            "the flapping rule's window must be longer than 0 ms",
        ),
        (
            RuleError::EmptyValidRange { low: 10, high: 9 },
            "the valid range 10..=9 is empty",
        ),
        (
            RuleError::SetpointOutsideValidRange {
                setpoint: 1,
                low: 2,
                high: 3,
            },
            "the setpoint 1 lies outside the valid range 2..=3, so it could never be reached",
        ),
        (
            RuleError::SetpointTooHigh {
                quantity: ResidualCurrent,
                setpoint: 1_200,
                max: 1_000,
            },
            "the residual_current setpoint 1200 mA is above the allowed maximum of 1000 mA: \
             the alarm would come too late",
        ),
        (
            RuleError::SetpointTooLow {
                quantity: ResidualCurrent,
                setpoint: 50,
                min: 100,
            },
            "the residual_current setpoint 50 mA is below the allowed minimum of 100 mA: it \
             would alarm on a healthy installation",
        ),
        (
            RuleError::SetpointTooHigh {
                quantity: Temperature,
                setpoint: 1_500,
                max: 1_400,
            },
            "the temperature setpoint 1500 0.1 °C is above the allowed maximum of 1400 0.1 °C: \
             the alarm would come too late",
        ),
        (
            RuleError::MissingAlarm { quantity: Arc },
            "arc channels must have an alarm setpoint",
        ),
        (
            RuleError::WrongDirection {
                quantity: ResidualCurrent,
            },
            "residual_current rules must be high rules: the danger is a high value",
        ),
        (
            RuleError::OnDelayTooLong {
                quantity: ResidualCurrent,
                on_delay_ms: 30_000,
                max_ms: 29_000,
            },
            "the on-delay of 30000 ms is too long for residual_current: at most 29000 ms \
             keeps the standard's response time",
        ),
        (
            RuleError::OnDelayTooLong {
                quantity: Temperature,
                on_delay_ms: 40_000,
                max_ms: 39_000,
            },
            "the on-delay of 40000 ms is too long for temperature: at most 39000 ms keeps the \
             standard's response time",
        ),
    ];
    for (e, msg) in cases {
        assert_eq!(e.to_string(), msg);
    }
}
