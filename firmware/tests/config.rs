//! The `config` command: new setpoints for one channel, checked like the
//! artefact's, applied to the local rule from the next sample with the
//! channel's state kept; refused (ack not ok, nothing changed) when the
//! quantity does not allow them, the channel is unknown or a field is
//! missing.

mod common;

use common::{packets, Pipe};
use firmware::app::{CmdRefusal, NodeApp};
use firmware::buffer::Body;
use firmware::drivers::Measurement;
use firmware::mqtt::codec;
use firmware::provision::{load, NodeSetup};
use rules::{Level, RuleError};
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use wire::provision::{self, Broker, ChannelSpec, Provision, Sensor, Setpoints};
use wire::{ChannelId, Cmd, CmdId, CmdOp, EventLevel, NodeId, Quantity, SiteId};

#[derive(Clone, Default)]
struct Pin(Rc<Cell<bool>>);

impl embedded_hal::digital::ErrorType for Pin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set(true);
        Ok(())
    }
}

fn s<const N: usize>(v: &str) -> heapless::String<N> {
    heapless::String::try_from(v).unwrap()
}

/// rc1: residual current, artefact setpoints 300/500 mA, hysteresis 30;
/// t1: temperature with the defaults (60 °C / 80 °C).
fn artefact() -> Provision {
    let mut channels = heapless::Vec::new();
    channels
        .push(ChannelSpec {
            id: ChannelId::new("rc1").unwrap(),
            q: Quantity::ResidualCurrent,
            sensor: Sensor::Ct { ratio: 1000 },
            set: Setpoints {
                pre_alarm: Some(300),
                alarm: Some(500),
                hysteresis: Some(30),
            },
        })
        .unwrap();
    channels
        .push(ChannelSpec {
            id: ChannelId::new("t1").unwrap(),
            q: Quantity::Temperature,
            sensor: Sensor::NtcB3950,
            set: Setpoints::default(),
        })
        .unwrap();
    Provision {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n01").unwrap(),
        broker: Broker {
            host: s("broker.local"),
            port: 1883,
        },
        client_id: s("home_a.n01"),
        username: s("home_a.n01"),
        password: s("pw"),
        channels,
    }
}

type App = NodeApp<'static, Pin, 64>;

fn app(pin: Pin) -> App {
    let setup: &'static NodeSetup = Box::leak(Box::new(
        load(&provision::encode(&artefact()).unwrap(), 3).unwrap(),
    ));
    let mut app = NodeApp::new(
        setup.identity.clone(),
        "0.1.0",
        setup.strings.session_config(10),
        pin,
    );
    for c in &setup.channels {
        app.add_channel_rule(c.id.clone(), c.q, c.rule).unwrap();
    }
    app
}

const CH: [&str; 2] = ["rc1", "t1"];

fn rc1() -> ChannelId {
    ChannelId::new("rc1").unwrap()
}

/// One sample: rc1 at `rc` mA, t1 at 25.0 °C.
fn sample(app: &mut App, now: u64, rc: i32) {
    app.sample(now, 0, &[Measurement::ok(rc), Measurement::ok(250)]);
}

/// Events recorded from record `from` on: `(channel, level, value)`.
fn events(app: &App, from: usize) -> Vec<(&'static str, EventLevel, i32)> {
    (from..app.outbox().len())
        .filter_map(|i| match app.outbox().get(i).unwrap().body {
            Body::Event { ch, level, v } => Some((CH[ch as usize], level, v)),
            _ => None,
        })
        .collect()
}

fn config(id: &str, ch: &str, pre: Option<i32>, alarm: i32, hyst: Option<i32>) -> Cmd {
    Cmd::config(
        CmdId::new(id).unwrap(),
        ChannelId::new(ch).unwrap(),
        pre,
        alarm,
        hyst,
    )
}

/// The ack queued for command `id`.
fn ack(app: &App, id: &str) -> bool {
    app.pending_acks()
        .find(|(c, _)| c.as_str() == id)
        .map(|(_, ok)| *ok)
        .expect("an ack is queued")
}

/// rc1's (pre-alarm, alarm, hysteresis).
fn setpoints(app: &App) -> (Option<i32>, Option<i32>, i32) {
    let t = app.local().rule(&rc1()).unwrap().threshold.unwrap();
    (t.pre_alarm, t.alarm, t.hysteresis)
}

#[test]
fn applies_new_setpoints_from_the_next_sample() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    sample(&mut app, 0, 150);
    let cmd = config("cfg-12", "rc1", Some(300), 450, None);
    assert_eq!(app.command(&cmd, 10), Ok(()));
    assert!(ack(&app, "cfg-12"));
    assert_eq!(setpoints(&app), (Some(300), Some(450), 30));
    assert_eq!(app.last_cmd(), Some(&(cmd, Ok(()))));
    // Nothing happens until a sample is judged by the new rule.
    let from = app.outbox().len();
    assert!(events(&app, from).is_empty());
    // 460 mA: only a pre-alarm under the artefact's 500 mA, an alarm now.
    sample(&mut app, 1_000, 460);
    assert_eq!(events(&app, from), vec![("rc1", EventLevel::Alarm, 460)]);
    assert!(pin.0.get(), "the sounder sounds");
    assert!(app.local().sounding());
}

#[test]
fn a_standing_level_is_judged_against_the_new_setpoints() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    // 460 mA under 300/500: pre-alarm.
    sample(&mut app, 0, 460);
    assert_eq!(app.local().state(&rc1()).unwrap().level(), Level::PreAlarm);
    // Alarm lowered to 450: the same reading escalates, no new pre-alarm
    // event first (the channel keeps its state).
    assert_eq!(
        app.command(&config("c1", "rc1", Some(300), 450, None), 100),
        Ok(())
    );
    let from = app.outbox().len();
    sample(&mut app, 1_000, 460);
    assert_eq!(events(&app, from), vec![("rc1", EventLevel::Alarm, 460)]);
    assert!(pin.0.get());

    // A second node, pre-alarm standing at 350 mA: the pre-alarm level is
    // removed (no `pre_alarm`), so the next sample clears it.
    let mut app = self::app(Pin::default());
    sample(&mut app, 0, 350);
    assert_eq!(app.local().state(&rc1()).unwrap().level(), Level::PreAlarm);
    assert_eq!(
        app.command(&config("c2", "rc1", None, 450, Some(20)), 100),
        Ok(())
    );
    assert_eq!(setpoints(&app), (None, Some(450), 20));
    let from = app.outbox().len();
    sample(&mut app, 1_000, 350);
    assert_eq!(events(&app, from), vec![("rc1", EventLevel::Normal, 350)]);
}

#[test]
fn refuses_setpoints_the_standard_does_not_allow_and_changes_nothing() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    let before = *app.local().rule(&rc1()).unwrap();
    for (id, pre, alarm, hyst, why) in [
        (
            "c-high",
            Some(300),
            1_200,
            None,
            RuleError::SetpointTooHigh {
                quantity: Quantity::ResidualCurrent,
                setpoint: 1_200,
                max: 1_000,
            },
        ),
        (
            "c-low",
            None,
            50,
            None,
            RuleError::SetpointTooLow {
                quantity: Quantity::ResidualCurrent,
                setpoint: 50,
                min: 100,
            },
        ),
        (
            "c-order",
            Some(600),
            450,
            None,
            RuleError::PreAlarmNotBeforeAlarm,
        ),
        (
            "c-hyst",
            Some(300),
            450,
            Some(-5),
            RuleError::NegativeHysteresis,
        ),
        (
            "c-wide",
            Some(430),
            450,
            None,
            RuleError::HysteresisTooWide {
                hysteresis: 30,
                gap: 20,
            },
        ),
    ] {
        let cmd = config(id, "rc1", pre, alarm, hyst);
        assert_eq!(app.command(&cmd, 0), Err(CmdRefusal::Rule(why)), "{id}");
        assert!(!ack(&app, id), "{id}");
        assert_eq!(app.last_cmd(), Some(&(cmd, Err(CmdRefusal::Rule(why)))));
        assert_eq!(app.local().rule(&rc1()), Some(&before), "{id}");
    }
    // 1200 mA was refused: 460 mA is still only a pre-alarm under 300/500.
    sample(&mut app, 1_000, 460);
    assert_eq!(events(&app, 0), vec![("rc1", EventLevel::PreAlarm, 460)]);
    assert!(!pin.0.get());
}

#[test]
fn refuses_unknown_channels_incomplete_config_and_stray_fields() {
    let mut app = app(Pin::default());
    let before = *app.local().rule(&rc1()).unwrap();
    assert_eq!(
        app.command(&config("c-x", "rc9", Some(300), 450, None), 0),
        Err(CmdRefusal::UnknownChannel)
    );
    assert!(!ack(&app, "c-x"));
    // Without `ch` or `alarm` (still a valid payload).
    let bare = Cmd::new(CmdId::new("c-bare").unwrap(), CmdOp::Config);
    assert_eq!(app.command(&bare, 0), Err(CmdRefusal::ConfigIncomplete));
    assert!(!ack(&app, "c-bare"));
    let no_alarm = Cmd {
        ch: Some(rc1()),
        pre_alarm: Some(300),
        ..Cmd::new(CmdId::new("c-na").unwrap(), CmdOp::Config)
    };
    assert_eq!(app.command(&no_alarm, 0), Err(CmdRefusal::ConfigIncomplete));
    let no_ch = Cmd {
        alarm: Some(450),
        ..Cmd::new(CmdId::new("c-nc").unwrap(), CmdOp::Config)
    };
    assert_eq!(app.command(&no_ch, 0), Err(CmdRefusal::ConfigIncomplete));
    // Setpoints on `reset` are not quietly ignored.
    let stray = Cmd {
        op: CmdOp::Reset,
        ..config("c-r", "rc1", Some(300), 450, None)
    };
    assert_eq!(app.command(&stray, 0), Err(CmdRefusal::UnexpectedFields));
    assert_eq!(app.local().rule(&rc1()), Some(&before));
    // The reasons read well in the node's log.
    assert_eq!(
        CmdRefusal::ConfigIncomplete.to_string(),
        "config needs `ch` and `alarm`"
    );
    assert_eq!(
        CmdRefusal::Rule(RuleError::PreAlarmNotBeforeAlarm).to_string(),
        format!("setpoints refused: {}", RuleError::PreAlarmNotBeforeAlarm)
    );
    assert_eq!(app.stats().cmds, 5);
}

#[test]
fn a_channel_without_a_threshold_gets_one_and_temperature_keeps_its_rate() {
    let mut app = app(Pin::default());
    let t1 = ChannelId::new("t1").unwrap();
    let before = *app.local().rule(&t1).unwrap();
    assert_eq!(
        app.command(&config("c-t", "t1", Some(500), 700, None), 0),
        Ok(())
    );
    let after = app.local().rule(&t1).unwrap();
    assert_eq!(after.rate, before.rate);
    assert_eq!(after.threshold.unwrap().alarm, Some(700));
    // Self-test now injects the new alarm setpoint.
    assert_eq!(app.local().test_value(&t1), Some(700));
}

#[test]
fn a_config_cmd_through_mqtt_is_applied_and_acked() {
    let mut app = app(Pin::default());
    let mut io = Pipe::default();
    app.poll(&mut io, 0);
    io.take_tx();
    io.feed(&[0x20, 2, 0, 0]); // CONNACK
    app.poll(&mut io, 10);
    assert_eq!(app.stats().connected, 1);
    let mut buf = [0u8; 256];
    let n = codec::publish(
        &mut buf,
        "fire/v1/home_a/n01/cmd",
        br#"{"id":"cfg-12","op":"config","ch":"rc1","pre_alarm":null,"alarm":450,"hysteresis":25}"#,
        1,
        false,
        false,
        9,
    )
    .unwrap();
    io.feed(&buf[..n]);
    app.poll(&mut io, 20);
    assert!(
        packets(&io.take_tx()).contains(&vec![0x40, 2, 0, 9]),
        "the cmd is PUBACKed"
    );
    assert_eq!(app.stats().bad_cmds, 0);
    assert!(ack(&app, "cfg-12"));
    assert_eq!(setpoints(&app), (None, Some(450), 25));
}
