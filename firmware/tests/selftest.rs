//! The node set up from a provisioning artefact, and the self-test: test
//! signal injection per channel, faulted channels kept, the node's own reset
//! of test alarms, real alarms untouched.

use firmware::app::{NodeApp, SELFTEST_MS};
use firmware::buffer::Body;
use firmware::drivers::Measurement;
use firmware::provision::{load, NodeSetup, SetupError};
use rules::RuleError;
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use wire::provision::{self, Broker, ChannelSpec, Provision, ProvisionError, Sensor, Setpoints};
use wire::{ChannelId, ChannelStatus, Cmd, CmdId, CmdOp, EventLevel, NodeId, Quantity, SiteId};

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

fn spec(id: &str, q: Quantity, sensor: Sensor, set: Setpoints) -> ChannelSpec {
    ChannelSpec {
        id: ChannelId::new(id).unwrap(),
        q,
        sensor,
        set,
    }
}

fn sp(pre: Option<i32>, alarm: Option<i32>, h: Option<i32>) -> Setpoints {
    Setpoints {
        pre_alarm: pre,
        alarm,
        hysteresis: h,
    }
}

fn artefact() -> Provision {
    let mut channels = heapless::Vec::new();
    for c in [
        spec(
            "rc1",
            Quantity::ResidualCurrent,
            Sensor::Ct { ratio: 1000 },
            sp(Some(400), Some(700), Some(30)),
        ),
        spec(
            "t1",
            Quantity::Temperature,
            Sensor::NtcB3950,
            Setpoints::default(),
        ),
        spec(
            "p1",
            Quantity::WaterPressure,
            Sensor::Loop { lo: 0, hi: 1000 },
            Setpoints::default(),
        ),
        spec(
            "l1",
            Quantity::WaterLevel,
            Sensor::Loop { lo: 0, hi: 4000 },
            sp(Some(1000), Some(500), Some(50)),
        ),
    ] {
        channels.push(c).unwrap();
    }
    Provision {
        site: SiteId::new("home_a").unwrap(),
        node: NodeId::new("n07").unwrap(),
        broker: Broker {
            host: s("broker.local"),
            port: 1883,
        },
        client_id: s("home_a.n07"),
        username: s("node-user"),
        password: s("pw-secret"),
        channels,
    }
}

/// Real signal: 150 mA, 25.0 °C, 300 kPa, 2500 mm.
const REAL: [Measurement; 4] = [
    Measurement::ok(150),
    Measurement::ok(250),
    Measurement::ok(300),
    Measurement::ok(2500),
];

type App = NodeApp<'static, Pin, 64>;

fn app(pin: Pin) -> App {
    let setup: &'static NodeSetup = Box::leak(Box::new(
        load(&provision::encode(&artefact()).unwrap(), 9).unwrap(),
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

const CH: [&str; 4] = ["rc1", "t1", "p1", "l1"];

/// Events recorded from record `from` on: `(channel, level, value)`.
fn events(app: &App, from: usize) -> Vec<(&'static str, EventLevel, i32)> {
    (from..app.outbox().len())
        .filter_map(|i| match app.outbox().get(i).unwrap().body {
            Body::Event { ch, level, v } => Some((CH[ch as usize], level, v)),
            _ => None,
        })
        .collect()
}

fn last_telemetry(app: &App) -> Vec<(i32, ChannelStatus)> {
    (0..app.outbox().len())
        .rev()
        .find_map(|i| match app.outbox().get(i).unwrap().body {
            Body::Telemetry { n, values } => Some(values[..n as usize].to_vec()),
            _ => None,
        })
        .unwrap()
}

fn selftest(app: &mut App, id: &str, now: u64) -> bool {
    let _ = app.command(&Cmd::new(CmdId::new(id).unwrap(), CmdOp::Selftest), now);
    app.pending_acks()
        .find(|(c, _)| c.as_str() == id)
        .map(|(_, ok)| *ok)
        .expect("an ack is queued")
}

#[test]
fn the_artefact_sets_identity_credentials_board_and_rules() {
    let setup = load(&provision::encode(&artefact()).unwrap(), 9).unwrap();
    assert_eq!(setup.identity.site.as_str(), "home_a");
    assert_eq!(setup.identity.node.as_str(), "n07");
    assert_eq!(setup.identity.boot, 9);
    let cfg = setup.strings.session_config(10);
    assert_eq!(cfg.client_id, "home_a.n07");
    assert_eq!(cfg.username, Some("node-user"));
    assert_eq!(cfg.password, Some(&b"pw-secret"[..]));
    assert_eq!(cfg.subscribe, Some("fire/v1/home_a/n07/cmd"));
    assert_eq!(setup.broker.host.as_str(), "broker.local");
    assert_eq!(setup.board.ct.ratio, 1000);
    assert_eq!((setup.board.loop2.lo, setup.board.loop2.hi), (0, 4000));
    let rc1 = setup.channels[0].rule.threshold.unwrap();
    assert_eq!(
        (rc1.pre_alarm, rc1.alarm, rc1.hysteresis),
        (Some(400), Some(700), 30)
    );
}

#[test]
fn artefact_setpoints_are_in_force() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    app.sample(0, 0, &REAL);
    // 650 mA: past the default 500 mA alarm, but the artefact says 700.
    let m = [Measurement::ok(650), REAL[1], REAL[2], REAL[3]];
    app.sample(500, 0, &m);
    assert_eq!(events(&app, 0), vec![("rc1", EventLevel::PreAlarm, 650)]);
    assert!(!pin.0.get());
    // 1200 mm: above the level's 1000 mm pre-alarm (a low rule).
    let m = [Measurement::ok(650), REAL[1], REAL[2], Measurement::ok(900)];
    app.sample(1000, 0, &m);
    assert_eq!(events(&app, 0)[1], ("l1", EventLevel::PreAlarm, 900));
}

#[test]
fn selftest_injects_alarms_and_the_node_resets_them() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    app.sample(0, 0, &REAL);
    assert!(
        selftest(&mut app, "st-1", 400),
        "ack ok when the test starts"
    );
    assert!(app.selftest_active());
    let start = app.outbox().len();
    let mut t = 500;
    while t < 400 + SELFTEST_MS {
        app.sample(t, 0, &REAL);
        // The telemetry carries the test signal: each alarm setpoint.
        assert_eq!(
            last_telemetry(&app),
            vec![
                (700, ChannelStatus::Ok),
                (800, ChannelStatus::Ok),
                (100, ChannelStatus::Ok),
                (500, ChannelStatus::Ok)
            ]
        );
        assert!(pin.0.get(), "the sounder sounds during the test");
        t += 500;
    }
    let during = events(&app, start);
    for ch in CH {
        assert!(
            during.contains(&(
                ch,
                EventLevel::Alarm,
                match ch {
                    "rc1" => 700,
                    "t1" => 800,
                    "p1" => 100,
                    _ => 500,
                }
            )),
            "{ch}: {during:?}"
        );
    }
    let end = app.outbox().len();
    app.sample(t, 0, &REAL);
    assert!(!app.selftest_active());
    assert_eq!(last_telemetry(&app)[0], (150, ChannelStatus::Ok));
    let after = events(&app, end);
    for ch in CH {
        assert!(
            after
                .iter()
                .any(|(c, l, _)| *c == ch && *l == EventLevel::Normal),
            "{ch} back to normal: {after:?}"
        );
    }
    assert!(!pin.0.get(), "the sounder stops after the test");
    assert!(!app.local().sounding());
}

#[test]
fn a_faulted_channel_is_not_tested_and_keeps_its_fault() {
    let mut app = app(Pin::default());
    let open = [
        Measurement::fault(0, ChannelStatus::Open),
        REAL[1],
        REAL[2],
        REAL[3],
    ];
    app.sample(0, 0, &open);
    assert!(selftest(&mut app, "st-2", 100));
    let start = app.outbox().len();
    app.sample(500, 0, &open);
    assert_eq!(last_telemetry(&app)[0], (0, ChannelStatus::Open));
    assert_eq!(last_telemetry(&app)[1], (800, ChannelStatus::Ok));
    let ev = events(&app, start);
    assert!(!ev.iter().any(|(c, _, _)| *c == "rc1"), "{ev:?}");
    assert!(ev.contains(&("t1", EventLevel::Alarm, 800)), "{ev:?}");

    // Nothing testable at all: the ack says so.
    let mut app2 = self::app(Pin::default());
    let all_open = [Measurement::fault(0, ChannelStatus::Open); 4];
    app2.sample(0, 0, &all_open);
    assert!(!selftest(&mut app2, "st-3", 100));
    assert!(!app2.selftest_active());
}

#[test]
fn a_real_latched_alarm_survives_a_selftest() {
    let pin = Pin::default();
    let mut app = app(pin.clone());
    app.sample(0, 0, &REAL);
    let high = [Measurement::ok(750), REAL[1], REAL[2], REAL[3]];
    app.sample(500, 0, &high);
    app.sample(1000, 0, &REAL); // back to 150 mA: the alarm stays latched
    assert!(app.local().sounding());
    assert!(selftest(&mut app, "st-4", 1100));
    let mut t = 1500;
    while app.selftest_active() {
        app.sample(t, 0, &REAL);
        t += 500;
    }
    let rc1 = ChannelId::new("rc1").unwrap();
    assert_eq!(
        app.local().state(&rc1).unwrap().level(),
        rules::Level::Alarm,
        "the real alarm needs an authorised reset"
    );
    assert!(pin.0.get());
    let t1 = ChannelId::new("t1").unwrap();
    assert_eq!(
        app.local().state(&t1).unwrap().level(),
        rules::Level::Normal
    );
}

#[test]
fn artefacts_that_do_not_fit_the_board_or_the_rules_are_refused() {
    let mut p = artefact();
    p.channels[0].set.alarm = Some(1200);
    assert_eq!(
        NodeSetup::new(&p, 1).err(),
        Some(SetupError::Rule {
            channel: 0,
            error: RuleError::SetpointTooHigh {
                quantity: Quantity::ResidualCurrent,
                setpoint: 1200,
                max: 1000
            }
        })
    );
    let mut p = artefact();
    p.channels.swap(0, 1);
    assert!(matches!(
        NodeSetup::new(&p, 1),
        Err(SetupError::Input { channel: 0, .. })
    ));
    let mut p = artefact();
    p.channels
        .push(spec(
            "t2",
            Quantity::Temperature,
            Sensor::NtcB3950,
            Setpoints::default(),
        ))
        .unwrap();
    assert!(matches!(
        NodeSetup::new(&p, 1),
        Err(SetupError::TooManyChannels {
            channels: 5,
            inputs: 4
        })
    ));
    let mut blob = provision::encode(&artefact()).unwrap();
    blob[30] ^= 1;
    assert!(matches!(
        load(&blob, 1),
        Err(SetupError::Artefact(ProvisionError::Crc { .. }))
    ));
    // Fewer channels than inputs are fine.
    let mut p = artefact();
    p.channels.truncate(2);
    assert_eq!(NodeSetup::new(&p, 1).unwrap().channels.len(), 2);
}
