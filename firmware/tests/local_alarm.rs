//! `LocalAlarm` tests: rule transitions (threshold, rate of rise, NE43 range,
//! flapping) mapped to wire event levels, faults
//! reported as faults and never as alarms, and `sounding()` following the
//! alarm level.

use firmware::local::{ConfigError, LocalAlarm, MAX_LOCAL_CHANNELS};
use rules::{Level, RuleError, ThresholdRule};
use wire::{ChannelId, ChannelStatus, EventLevel, Quantity, Reading};

fn id(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

fn reading(ch: &str, v: i32, s: ChannelStatus) -> Reading {
    Reading {
        id: id(ch),
        q: Quantity::ResidualCurrent,
        v,
        s,
    }
}

fn ok(ch: &str, v: i32) -> Reading {
    reading(ch, v, ChannelStatus::Ok)
}

/// Residual current: pre-alarm 200 mA, alarm 300 mA, 10 mA hysteresis; the
/// alarm latches, the pre-alarm does not.
fn alarm() -> LocalAlarm {
    let mut a = LocalAlarm::new();
    a.add_channel(
        id("rc1"),
        ThresholdRule::high(Some(200), Some(300)).with_hysteresis(10),
    )
    .unwrap();
    a
}

fn events(a: &mut LocalAlarm, r: &Reading, now: u64) -> Vec<(String, EventLevel, i32)> {
    a.on_sample(r, now)
        .into_iter()
        .map(|(c, l, v)| (c.as_str().to_owned(), l, v))
        .collect()
}

fn ev(ch: &str, l: EventLevel, v: i32) -> (String, EventLevel, i32) {
    (ch.to_owned(), l, v)
}

#[test]
fn raises_alarm_at_the_setpoint_and_sounds() {
    let mut a = alarm();
    assert!(events(&mut a, &ok("rc1", 199), 0).is_empty());
    assert!(!a.sounding());
    assert_eq!(
        events(&mut a, &ok("rc1", 200), 1),
        [ev("rc1", EventLevel::PreAlarm, 200)]
    );
    assert!(!a.sounding(), "a pre-alarm does not sound");
    assert!(events(&mut a, &ok("rc1", 299), 2).is_empty());
    assert_eq!(
        events(&mut a, &ok("rc1", 300), 3),
        [ev("rc1", EventLevel::Alarm, 300)]
    );
    assert!(a.sounding());
    assert_eq!(a.state(&id("rc1")).unwrap().level(), Level::Alarm);
}

#[test]
fn straight_to_alarm_from_normal() {
    let mut a = alarm();
    assert_eq!(
        events(&mut a, &ok("rc1", 312), 0),
        [ev("rc1", EventLevel::Alarm, 312)]
    );
    assert!(a.sounding());
}

#[test]
fn latched_alarm_keeps_sounding_until_reset() {
    let mut a = alarm();
    events(&mut a, &ok("rc1", 312), 0);
    // Back inside the band: Latched emits nothing, the sounder keeps going.
    assert!(events(&mut a, &ok("rc1", 100), 1).is_empty());
    assert!(a.sounding());
    assert!(a.state(&id("rc1")).unwrap().is_latched());
    // Reset releases it to normal, with the last value.
    assert_eq!(
        a.reset(2)
            .into_iter()
            .map(|(c, l, v)| (c.as_str().to_owned(), l, v))
            .collect::<Vec<_>>(),
        [ev("rc1", EventLevel::Normal, 100)]
    );
    assert!(!a.sounding());
    assert!(a.reset(3).is_empty(), "nothing left to reset");
}

#[test]
fn live_alarm_cannot_be_reset() {
    let mut a = alarm();
    events(&mut a, &ok("rc1", 312), 0);
    assert!(a.reset(1).is_empty());
    assert!(a.sounding());
}

#[test]
fn pre_alarm_clears_to_normal_past_the_hysteresis() {
    let mut a = alarm();
    events(&mut a, &ok("rc1", 250), 0);
    assert!(events(&mut a, &ok("rc1", 191), 1).is_empty(), "within 回差");
    assert_eq!(
        events(&mut a, &ok("rc1", 189), 2),
        [ev("rc1", EventLevel::Normal, 189)]
    );
}

#[test]
fn non_latching_alarm_deescalates_to_pre_alarm() {
    let mut a = LocalAlarm::new();
    a.add_channel(
        id("t1"),
        ThresholdRule::high(Some(600), Some(800)).with_latching(false, false),
    )
    .unwrap();
    assert_eq!(
        events(&mut a, &ok("t1", 650), 0),
        [ev("t1", EventLevel::PreAlarm, 650)]
    );
    assert_eq!(
        events(&mut a, &ok("t1", 810), 1),
        [ev("t1", EventLevel::Alarm, 810)]
    );
    assert_eq!(
        events(&mut a, &ok("t1", 700), 2),
        [ev("t1", EventLevel::PreAlarm, 700)]
    );
    assert!(!a.sounding());
}

#[test]
fn open_circuit_is_a_fault_not_an_alarm() {
    let mut a = alarm();
    // An open CT reading a huge value is still only a fault.
    assert_eq!(
        events(&mut a, &reading("rc1", 5000, ChannelStatus::Open), 0),
        [ev("rc1", EventLevel::Fault, 5000)]
    );
    assert!(!a.sounding());
    assert_eq!(a.state(&id("rc1")).unwrap().level(), Level::Normal);
    // Still open: nothing new.
    assert!(events(&mut a, &reading("rc1", 5000, ChannelStatus::Open), 1).is_empty());
    // Back to a valid, normal reading.
    assert_eq!(
        events(&mut a, &ok("rc1", 20), 2),
        [ev("rc1", EventLevel::Normal, 20)]
    );
    // A valid alarm value right after a fault: back to normal, then alarm.
    events(&mut a, &reading("rc1", 0, ChannelStatus::Short), 3);
    assert_eq!(
        events(&mut a, &ok("rc1", 320), 4),
        [
            ev("rc1", EventLevel::Normal, 320),
            ev("rc1", EventLevel::Alarm, 320)
        ]
    );
    assert!(a.sounding());
}

#[test]
fn every_bad_status_is_a_fault() {
    for s in [
        ChannelStatus::Open,
        ChannelStatus::Short,
        ChannelStatus::Range,
        ChannelStatus::Fault,
    ] {
        let mut a = alarm();
        assert_eq!(
            events(&mut a, &reading("rc1", 999, s), 0),
            [ev("rc1", EventLevel::Fault, 999)],
            "{s}"
        );
        assert!(!a.sounding());
        assert!(a.state(&id("rc1")).unwrap().fault().is_some());
    }
}

#[test]
fn fault_kind_change_is_one_fault_event() {
    let mut a = alarm();
    events(&mut a, &reading("rc1", 0, ChannelStatus::Open), 0);
    assert_eq!(
        events(&mut a, &reading("rc1", 0, ChannelStatus::Short), 1),
        [ev("rc1", EventLevel::Fault, 0)]
    );
}

#[test]
fn alarm_is_held_through_a_fault() {
    let mut a = alarm();
    events(&mut a, &ok("rc1", 400), 0);
    assert_eq!(
        events(&mut a, &reading("rc1", 0, ChannelStatus::Open), 1),
        [ev("rc1", EventLevel::Fault, 0)]
    );
    assert!(a.sounding(), "a fault does not silence a live alarm");
    // The fault clears with the value still high: the channel is back at
    // alarm, not normal.
    assert_eq!(
        events(&mut a, &ok("rc1", 400), 2),
        [ev("rc1", EventLevel::Alarm, 400)]
    );
    assert!(a.sounding());
}

#[test]
fn channels_are_independent_and_unknown_ones_ignored() {
    let mut a = alarm();
    a.add_channel(id("t1"), ThresholdRule::high(None, Some(700)))
        .unwrap();
    assert!(events(&mut a, &ok("zz", 1_000_000), 0).is_empty());
    assert!(events(&mut a, &ok("rc1", 250), 0).len() == 1);
    assert_eq!(
        events(&mut a, &ok("t1", 700), 1),
        [ev("t1", EventLevel::Alarm, 700)]
    );
    assert!(a.sounding());
    assert_eq!(a.state(&id("rc1")).unwrap().level(), Level::PreAlarm);
    assert!(a.state(&id("zz")).is_none());
}

#[test]
fn configuration_is_checked() {
    let mut a = alarm();
    assert_eq!(
        a.add_channel(id("rc1"), ThresholdRule::high(None, Some(1))),
        Err(ConfigError::Duplicate)
    );
    assert_eq!(
        a.add_channel(id("x"), ThresholdRule::high(None, None)),
        Err(ConfigError::Rule(RuleError::NoSetpoint))
    );
    for i in 1..MAX_LOCAL_CHANNELS {
        a.add_channel(id(&format!("c{i}")), ThresholdRule::high(None, Some(1)))
            .unwrap();
    }
    assert_eq!(
        a.add_channel(id("one_more"), ThresholdRule::high(None, Some(1))),
        Err(ConfigError::Full)
    );
}

fn q_reading(ch: &str, q: Quantity, v: i32, s: ChannelStatus) -> Reading {
    Reading {
        id: id(ch),
        q,
        v,
        s,
    }
}

#[test]
fn a_rate_of_rise_is_a_pre_alarm_on_the_wire_and_never_sounds() {
    // Temperature defaults: rate +10 °C within 60 s, pre-alarm 60 °C, alarm 80 °C.
    let mut a = LocalAlarm::new();
    a.add_default(id("t1"), Quantity::Temperature).unwrap();
    let t = |v| q_reading("t1", Quantity::Temperature, v, ChannelStatus::Ok);
    assert!(events(&mut a, &t(400), 0).is_empty());
    assert_eq!(
        events(&mut a, &t(510), 10_000),
        [ev("t1", EventLevel::PreAlarm, 510)]
    );
    assert!(!a.sounding());
    assert!(a.state(&id("t1")).unwrap().is_rate_raised());
    // The threshold pre-alarm while the rate is raised: already pre_alarm on the wire.
    assert!(events(&mut a, &t(600), 20_000).is_empty());
    // Alarm: the wire level goes up.
    assert_eq!(
        events(&mut a, &t(800), 30_000),
        [ev("t1", EventLevel::Alarm, 800)]
    );
    assert!(a.sounding());
    // The rate clears while the alarm is latched: nothing on the wire.
    assert!(events(&mut a, &t(800), 200_000).is_empty());
    assert!(!a.state(&id("t1")).unwrap().is_rate_raised());
}

#[test]
fn the_rate_alone_clears_back_to_normal() {
    let mut a = LocalAlarm::new();
    a.add_default(id("t1"), Quantity::Temperature).unwrap();
    let t = |v| q_reading("t1", Quantity::Temperature, v, ChannelStatus::Ok);
    events(&mut a, &t(300), 0);
    assert_eq!(
        events(&mut a, &t(420), 1_000),
        [ev("t1", EventLevel::PreAlarm, 420)]
    );
    assert_eq!(
        events(&mut a, &t(420), 200_000),
        [ev("t1", EventLevel::Normal, 420)]
    );
}

#[test]
fn loop_current_outside_ne43_is_a_fault() {
    let mut a = LocalAlarm::new();
    a.add_default(id("p1"), Quantity::LoopCurrent).unwrap();
    let l = |v| q_reading("p1", Quantity::LoopCurrent, v, ChannelStatus::Ok);
    assert!(events(&mut a, &l(4_000), 0).is_empty());
    assert_eq!(
        events(&mut a, &l(3_500), 1),
        [ev("p1", EventLevel::Fault, 3_500)]
    );
    assert!(!a.sounding());
    assert_eq!(
        events(&mut a, &l(20_000), 2),
        [ev("p1", EventLevel::Normal, 20_000)]
    );
}

#[test]
fn quantity_checks_refuse_dangerous_settings() {
    let mut a = LocalAlarm::new();
    let too_high = rules::ChannelRule::from(ThresholdRule::high(None, Some(1_200)));
    assert_eq!(
        a.add_channel_for(id("rc1"), Quantity::ResidualCurrent, too_high),
        Err(ConfigError::Rule(RuleError::SetpointTooHigh {
            quantity: Quantity::ResidualCurrent,
            setpoint: 1_200,
            max: 1_000
        }))
    );
    // The same rule passes the quantity-blind check.
    assert_eq!(a.add_channel(id("rc1"), too_high), Ok(()));
    for &q in Quantity::ALL {
        a.add_default(id(q.as_str()), q).unwrap();
    }
}

#[test]
fn flapping_sends_every_level_change_and_nothing_more() {
    let mut a = LocalAlarm::new();
    a.add_channel(
        id("rc1"),
        rules::ChannelRule::from(ThresholdRule::high(None, Some(300)).with_latching(false, false))
            .with_flap(rules::FlapRule::new(2, 60_000, 1_000)),
    )
    .unwrap();
    assert_eq!(
        events(&mut a, &ok("rc1", 300), 0),
        [ev("rc1", EventLevel::Alarm, 300)]
    );
    // FlappingStarted is not on the wire; the clear still is.
    assert_eq!(
        events(&mut a, &ok("rc1", 100), 1),
        [ev("rc1", EventLevel::Normal, 100)]
    );
    assert!(a.state(&id("rc1")).unwrap().is_flapping());
    // FlappingEnded: nothing on the wire.
    assert!(events(&mut a, &ok("rc1", 100), 5_000).is_empty());
    assert!(!a.state(&id("rc1")).unwrap().is_flapping());
}
