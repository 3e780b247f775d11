//! Fuzz target: arbitrary bytes as a channel rule (valid or not) and a sequence of samples,
//! faults, resets, context flags and time steps (including backwards and jumps to 0 or
//! `u64::MAX`), fed to the channel engine and the node/site functions.
//!
//! Besides "never panics", every step checks the engine's invariants:
//! - at most six outputs per sample;
//! - every transition is consistent with the ones before it (a clear follows its raise, a
//!   fault clear its fault, a rate clear its rate raise, flapping ends after it started), and
//!   the transitions account for the state;
//! - a latched alarm only leaves the alarm level through a successful reset;
//! - the context changes dispositions only: a twin fed the opposite `suppressed` flag emits
//!   the same transitions and ends in the same state.
//!
//! Layout: 24 bytes of rule, then 8 bytes per operation (see `Op::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::{
    evaluate, node, reset, site, ChannelRule, ChannelState, Context, Direction, Disposition,
    FaultKind, FlapRule, Level, Millis, NodeRule, NodeState, RateRule, Sample, SiteState,
    ThresholdRule, Transition,
};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn i16(&mut self) -> i16 {
        i16::from_le_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
}

/// Small numbers most of the time (so setpoints, values and delays meet), extremes sometimes.
fn setpoint(b: &mut Bytes, flag: bool) -> Option<i32> {
    let v = b.i16();
    flag.then_some(match v {
        i16::MIN => i32::MIN,
        i16::MAX => i32::MAX,
        v => i32::from(v),
    })
}

fn ms(v: u16) -> u32 {
    match v {
        u16::MAX => u32::MAX,
        v => u32::from(v) * 16,
    }
}

fn rule(b: &mut Bytes) -> ChannelRule {
    let flags = b.u8();
    let latch = b.u8();
    let threshold = ThresholdRule {
        direction: if flags & 1 == 0 {
            Direction::High
        } else {
            Direction::Low
        },
        pre_alarm: setpoint(b, flags & 2 != 0),
        alarm: setpoint(b, flags & 4 != 0),
        hysteresis: i32::from(b.i16()),
        on_delay_ms: ms(b.u16()),
        off_delay_ms: ms(b.u16()),
        latch_alarm: latch & 1 == 0,
        latch_pre_alarm: latch & 2 != 0,
    };
    let rate = RateRule::new(i32::from(b.i16()), ms(b.u16()));
    let low = i32::from(b.i16());
    let high = i32::from(b.i16());
    let flap = FlapRule::new(b.u8(), ms(b.u16()), ms(b.u16()));
    ChannelRule {
        threshold: (flags & 8 != 0).then_some(threshold),
        rate: (flags & 16 != 0).then_some(rate),
        valid_range: (flags & 32 != 0).then_some((low, high)),
        flap: (flags & 64 != 0).then_some(flap),
    }
}

#[derive(Debug)]
enum Op {
    Eval(Sample, bool),
    Reset,
    Node(u8, bool),
}

impl Op {
    /// 8 bytes: kind, time mode, 2 bytes of time step, 4 bytes of value.
    fn parse(b: &mut Bytes, now: &mut Millis) -> Op {
        let kind = b.u8();
        let mode = b.u8();
        let dt = u64::from(b.u16());
        let value = i32::from_le_bytes(b.take());
        *now = match mode % 16 {
            0 => now.saturating_sub(dt * 100),
            1 => 0,
            2 => u64::MAX - dt,
            3 => now.saturating_add(dt * 10_000),
            _ => now.saturating_add(dt),
        };
        let suppressed = kind & 0x80 != 0;
        match kind & 0x0f {
            0..=7 => Op::Eval(Sample::ok(value % 2_000), suppressed),
            8 => Op::Eval(Sample::ok(value), suppressed),
            9 => Op::Eval(
                Sample {
                    value,
                    status: rules::SampleStatus::Fault(
                        [
                            FaultKind::Open,
                            FaultKind::Short,
                            FaultKind::Range,
                            FaultKind::Fault,
                        ][(value as u32 % 4) as usize],
                    ),
                },
                suppressed,
            ),
            10 | 11 => Op::Reset,
            k => Op::Node(k, suppressed),
        }
    }
}

#[derive(Default)]
struct Model {
    level: Level,
    rate: bool,
    flapping: bool,
    fault: Option<FaultKind>,
}

impl Model {
    fn apply(&mut self, t: Transition) {
        use Transition::*;
        match t {
            Raised { level, .. } => {
                assert_eq!(self.level, Level::Normal, "{t:?}");
                assert!(level > Level::Normal);
                self.level = level;
            }
            Escalated { from, to, .. } => {
                assert!(self.level == from && to > from, "{t:?}");
                self.level = to;
            }
            Deescalated { from, to, .. } => {
                assert!(
                    self.level == from && to < from && to > Level::Normal,
                    "{t:?}"
                );
                self.level = to;
            }
            Cleared { from, .. } => {
                assert!(self.level == from && from > Level::Normal, "{t:?}");
                self.level = Level::Normal;
            }
            Latched { level, .. } => assert!(self.level == level && level > Level::Normal),
            Reset { from } => {
                assert_eq!(self.level, from);
                self.level = Level::Normal;
            }
            FaultRaised { kind } => {
                assert!(self.fault.is_none(), "{t:?}");
                self.fault = Some(kind);
            }
            FaultCleared { kind } => {
                assert_eq!(self.fault, Some(kind));
                self.fault = None;
            }
            RateRaised { rise, .. } => {
                assert!(!self.rate && rise >= 0, "{t:?}");
                self.rate = true;
            }
            RateCleared { .. } => {
                assert!(self.rate, "{t:?}");
                self.rate = false;
            }
            FlappingStarted { .. } => {
                assert!(!self.flapping);
                self.flapping = true;
            }
            FlappingEnded { level } => {
                assert!(self.flapping && level == self.level, "{t:?}");
                self.flapping = false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let rule = rule(&mut b);
    let _ = rule.validate();
    for &q in wire_quantities() {
        let _ = rule.validate_for(q);
    }
    let node_rule = NodeRule {
        offline_after_ms: ms(b.u16()),
    };

    let mut s = ChannelState::default();
    let mut twin = ChannelState::default();
    let mut m = Model::default();
    let mut node_state = NodeState::default();
    let mut site_state = SiteState::default();
    let mut now: Millis = 0;
    while !b.0.is_empty() {
        let op = Op::parse(&mut b, &mut now);
        let before = s.level();
        match op {
            Op::Eval(sample, suppressed) => {
                let out = evaluate(&rule, &mut s, sample, now, Context { suppressed });
                let other = evaluate(
                    &rule,
                    &mut twin,
                    sample,
                    now,
                    Context {
                        suppressed: !suppressed,
                    },
                );
                assert!(out.len() <= 6, "{out:?}");
                assert_eq!(out.len(), other.len());
                for (o, t) in out.iter().zip(&other) {
                    assert_eq!(o.transition, t.transition);
                    if suppressed {
                        assert_eq!(o.disposition, Disposition::Suppressed);
                    }
                    m.apply(o.transition);
                }
                if before == Level::Alarm && rule.threshold.is_some_and(|t| t.latch_alarm) {
                    assert_eq!(
                        s.level(),
                        Level::Alarm,
                        "a latched alarm left without reset"
                    );
                }
            }
            Op::Reset => {
                let r = reset(&rule, &mut s, now);
                assert_eq!(r, reset(&rule, &mut twin, now));
                if let Some(t) = r {
                    m.apply(t);
                }
            }
            Op::Node(k, ok) => {
                let _ = match k {
                    12 => node::seen(&node_rule, &mut node_state, now),
                    13 => node::tick(&node_rule, &mut node_state, now),
                    14 => node::last_will(&mut node_state, now),
                    _ => node::supply(&mut node_state, ok, now),
                };
                let down = u16::from(node_state.is_down());
                let _ = site::update(&mut site_state, u16::from(k) % 4, down * 2);
            }
        }
        assert_eq!(s, twin, "the context changed the state");
        assert_eq!(m.level, s.level());
        assert_eq!(m.rate, s.is_rate_raised());
        assert_eq!(m.fault, s.fault());
        if rule.flap.is_some() {
            assert_eq!(m.flapping, s.is_flapping());
        }
    }
});

fn wire_quantities() -> &'static [wire::Quantity] {
    wire::Quantity::ALL
}
