//! Property tests (proptest) of the channel engine's invariants:
//! - a value hovering inside the hysteresis band never raises more than once;
//! - a latched alarm never clears without a reset;
//! - every clear (`Cleared`, `RateCleared`, `FaultCleared`, `FlappingEnded`, ...) is preceded by
//!   its raise, and the transitions always account for the state;
//! - time going backwards (or jumping to the extremes) never panics, whatever the rule;
//! - suppression and flapping never drop an output: every transition that would be emitted
//!   without them is emitted, with another disposition, and the state is the same.

use proptest::prelude::*;
use rules::node::{last_will, seen, supply, tick};
use rules::{
    evaluate, reset, site, ChannelRule, ChannelState, Context, Direction, Disposition, FaultKind,
    FlapRule, Level, Millis, NodeRule, NodeState, RateRule, Sample, SampleStatus, SiteState,
    ThresholdRule, Transition,
};

// ---------------------------------------------------------------------------------------------
// Strategies

/// How the clock moves before an operation.
#[derive(Clone, Copy, Debug)]
enum Step {
    Forward(u64),
    Back(u64),
    Jump(u64),
}

impl Step {
    fn apply(self, now: Millis) -> Millis {
        match self {
            Step::Forward(d) => now.saturating_add(d),
            Step::Back(d) => now.saturating_sub(d),
            Step::Jump(t) => t,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Eval {
        step: Step,
        sample: Sample,
        suppressed: bool,
    },
    Reset {
        step: Step,
    },
}

fn step(backwards: bool) -> BoxedStrategy<Step> {
    if backwards {
        prop_oneof![
            12 => (0u64..3_000).prop_map(Step::Forward),
            2 => (0u64..700_000).prop_map(Step::Forward),
            2 => (0u64..100_000).prop_map(Step::Back),
            1 => prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
                .prop_map(Step::Jump),
        ]
        .boxed()
    } else {
        prop_oneof![
            8 => (0u64..3_000).prop_map(Step::Forward),
            1 => (0u64..700_000).prop_map(Step::Forward),
        ]
        .boxed()
    }
}

fn value() -> impl Strategy<Value = i32> {
    prop_oneof![
        8 => -50i32..1_200,
        1 => any::<i32>(),
        1 => prop::sample::select(vec![i32::MIN, i32::MAX, 0, -1, 1]),
    ]
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop::sample::select(vec![
        FaultKind::Open,
        FaultKind::Short,
        FaultKind::Range,
        FaultKind::Fault,
    ])
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        12 => value().prop_map(Sample::ok),
        1 => fault_kind().prop_map(Sample::fault),
        1 => (value(), fault_kind()).prop_map(|(v, k)| Sample {
            value: v,
            status: SampleStatus::Fault(k),
        }),
    ]
}

fn ops(backwards: bool, max: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        20 => (step(backwards), sample(), prop::bool::weighted(0.2)).prop_map(
            |(step, sample, suppressed)| Op::Eval {
                step,
                sample,
                suppressed
            }
        ),
        1 => step(backwards).prop_map(|step| Op::Reset { step }),
    ];
    prop::collection::vec(op, 1..max)
}

fn setpoint() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        1 => Just(None),
        5 => (0i32..1_000).prop_map(Some),
        1 => any::<i32>().prop_map(Some),
    ]
}

fn delay() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(0u32),
        3 => 0u32..5_000,
        1 => any::<u32>(),
    ]
}

/// Any threshold rule, valid or not.
fn threshold() -> impl Strategy<Value = ThresholdRule> {
    (
        any::<bool>(),
        setpoint(),
        setpoint(),
        prop_oneof![4 => 0i32..60, 1 => any::<i32>()],
        delay(),
        delay(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(high, pre, alarm, h, on, off, la, lp)| ThresholdRule {
            direction: if high {
                Direction::High
            } else {
                Direction::Low
            },
            pre_alarm: pre,
            alarm,
            hysteresis: h,
            on_delay_ms: on,
            off_delay_ms: off,
            latch_alarm: la,
            latch_pre_alarm: lp,
        })
}

fn rate() -> impl Strategy<Value = RateRule> {
    (
        prop_oneof![4 => 1i32..300, 1 => any::<i32>()],
        prop_oneof![4 => 1u32..120_000, 1 => Just(0u32), 1 => any::<u32>()],
    )
        .prop_map(|(rise, window)| RateRule::new(rise, window))
}

fn flap() -> impl Strategy<Value = FlapRule> {
    (
        prop_oneof![4 => 2u8..8, 1 => any::<u8>()],
        prop_oneof![4 => 1u32..60_000, 1 => Just(0u32), 1 => any::<u32>()],
        prop_oneof![4 => 0u32..60_000, 1 => any::<u32>()],
    )
        .prop_map(|(n, w, q)| FlapRule::new(n, w, q))
}

fn range() -> impl Strategy<Value = (i32, i32)> {
    prop_oneof![
        4 => (-100i32..200, 800i32..1_300),
        1 => (any::<i32>(), any::<i32>()),
    ]
}

/// Any channel rule, valid or not.
fn channel_rule() -> impl Strategy<Value = ChannelRule> {
    (
        prop::option::weighted(0.8, threshold()),
        prop::option::weighted(0.5, rate()),
        prop::option::weighted(0.3, range()),
        prop::option::weighted(0.5, flap()),
    )
        .prop_map(|(threshold, rate, valid_range, flap)| ChannelRule {
            threshold,
            rate,
            valid_range,
            flap,
        })
}

fn ctx(suppressed: bool) -> Context {
    Context { suppressed }
}

// ---------------------------------------------------------------------------------------------
// A model of what the transitions say, to check they are consistent with each other and with
// the state.

#[derive(Default, Debug)]
struct Model {
    level: Level,
    rate: bool,
    flapping: bool,
    fault: Option<FaultKind>,
}

impl Model {
    /// Applies one transition, checking it is preceded by what it undoes.
    fn apply(&mut self, t: Transition) -> Result<(), TestCaseError> {
        use Transition::*;
        match t {
            Raised { level, .. } => {
                prop_assert_eq!(self.level, Level::Normal, "{:?}", t);
                prop_assert!(level > Level::Normal);
                self.level = level;
            }
            Escalated { from, to, .. } => {
                prop_assert_eq!(self.level, from, "{:?}", t);
                prop_assert!(to > from);
                self.level = to;
            }
            Deescalated { from, to, .. } => {
                prop_assert_eq!(self.level, from, "{:?}", t);
                prop_assert!(to < from && to > Level::Normal);
                self.level = to;
            }
            Cleared { from, .. } => {
                prop_assert_eq!(self.level, from, "cleared without its raise: {:?}", t);
                prop_assert!(from > Level::Normal);
                self.level = Level::Normal;
            }
            Latched { level, .. } => {
                prop_assert_eq!(self.level, level, "{:?}", t);
                prop_assert!(level > Level::Normal);
            }
            Reset { from } => {
                prop_assert_eq!(self.level, from, "{:?}", t);
                self.level = Level::Normal;
            }
            FaultRaised { kind } => {
                prop_assert!(self.fault.is_none(), "{:?} while {:?}", t, self.fault);
                self.fault = Some(kind);
            }
            FaultCleared { kind } => {
                prop_assert_eq!(self.fault, Some(kind), "fault cleared without its raise");
                self.fault = None;
            }
            RateRaised { rise, .. } => {
                prop_assert!(!self.rate, "{:?} twice", t);
                prop_assert!(rise >= 0);
                self.rate = true;
            }
            RateCleared { .. } => {
                prop_assert!(self.rate, "rate cleared without its raise");
                self.rate = false;
            }
            FlappingStarted { .. } => {
                prop_assert!(!self.flapping);
                self.flapping = true;
            }
            FlappingEnded { level } => {
                prop_assert!(self.flapping, "flapping ended without its start");
                prop_assert_eq!(level, self.level);
                self.flapping = false;
            }
        }
        Ok(())
    }

    fn check(&self, s: &ChannelState, rule: &ChannelRule) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.level, s.level());
        prop_assert_eq!(self.rate, s.is_rate_raised());
        prop_assert_eq!(self.fault, s.fault());
        if rule.flap.is_some() {
            prop_assert_eq!(self.flapping, s.is_flapping());
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A value that stays between `alarm - hysteresis` and anything above the alarm setpoint
    /// (for a low rule: mirrored), with any pre-alarm setpoint below the band, delays, latching,
    /// flapping, faults and suppression, raises each level at most once and never lowers.
    #[test]
    fn hovering_inside_the_hysteresis_band_raises_at_most_once(
        high in any::<bool>(),
        alarm in -10_000i32..10_000,
        h in 0i32..500,
        pre_gap in prop::option::of(1i32..1_000),
        on in delay(),
        off in delay(),
        latch in (any::<bool>(), any::<bool>()),
        flap in prop::option::of(flap()),
        steps in prop::collection::vec(
            (step(true), 0i32..=1_500, prop::bool::weighted(0.05), any::<bool>()), 1..300),
    ) {
        let sign = if high { 1 } else { -1 };
        let pre = pre_gap.map(|g| alarm - sign * (h + g));
        let threshold = ThresholdRule {
            direction: if high { Direction::High } else { Direction::Low },
            pre_alarm: pre,
            alarm: Some(alarm),
            hysteresis: h,
            on_delay_ms: on,
            off_delay_ms: off,
            latch_alarm: latch.0,
            latch_pre_alarm: latch.1,
        };
        prop_assert_eq!(threshold.validate(), Ok(()));
        let rule = ChannelRule { threshold: Some(threshold), flap, ..ChannelRule::default() };
        let mut s = ChannelState::default();
        let mut now = 0;
        let (mut raised, mut escalated) = (0, 0);
        for (st, offset, fault, suppressed) in steps {
            now = st.apply(now);
            // offset 0..=h is the return band, above it is past the setpoint.
            let v = alarm - sign * h + sign * offset;
            let sample = if fault { Sample::fault(FaultKind::Open) } else { Sample::ok(v) };
            for o in evaluate(&rule, &mut s, sample, now, ctx(suppressed)) {
                match o.transition {
                    Transition::Raised { .. } => raised += 1,
                    Transition::Escalated { .. } => escalated += 1,
                    Transition::Cleared { .. }
                    | Transition::Deescalated { .. }
                    | Transition::Latched { .. } => {
                        prop_assert!(false, "lowered inside the band: {:?}", o);
                    }
                    _ => {}
                }
            }
        }
        prop_assert!(raised <= 1 && escalated <= 1, "raised {} escalated {}", raised, escalated);
    }

    /// Once at alarm level with a latching alarm, the level stays alarm until a reset succeeds,
    /// whatever the values, faults, times and contexts.
    #[test]
    fn a_latched_alarm_never_clears_without_a_reset(
        rule in channel_rule(),
        ops in ops(true, 300),
    ) {
        let mut rule = rule;
        let mut t = rule.threshold.unwrap_or_else(|| ThresholdRule::high(None, Some(300)));
        t.latch_alarm = true;
        rule.threshold = Some(t);
        let mut s = ChannelState::default();
        let mut now = 0;
        for op in ops {
            let before = s.level();
            match op {
                Op::Eval { step, sample, suppressed } => {
                    now = step.apply(now);
                    let out = evaluate(&rule, &mut s, sample, now, ctx(suppressed));
                    if before == Level::Alarm {
                        prop_assert_eq!(s.level(), Level::Alarm, "{:?}", out);
                        for o in &out {
                            prop_assert!(!matches!(
                                o.transition,
                                Transition::Cleared { .. } | Transition::Deescalated { .. }
                            ), "{:?}", o);
                        }
                    }
                }
                Op::Reset { step } => {
                    now = step.apply(now);
                    let r = reset(&rule, &mut s, now);
                    if before == Level::Alarm && r.is_none() {
                        prop_assert_eq!(s.level(), Level::Alarm);
                    }
                    if r.is_some() {
                        prop_assert_eq!(s.level(), Level::Normal);
                    }
                }
            }
        }
    }

    /// Every clear follows its raise, the transitions account for the state, and one sample
    /// never yields more than six outputs.
    #[test]
    fn every_clear_is_preceded_by_its_raise(
        rule in channel_rule(),
        ops in ops(true, 300),
    ) {
        let mut s = ChannelState::default();
        let mut m = Model::default();
        let mut now = 0;
        for op in ops {
            match op {
                Op::Eval { step, sample, suppressed } => {
                    now = step.apply(now);
                    let out = evaluate(&rule, &mut s, sample, now, ctx(suppressed));
                    prop_assert!(out.len() <= 6, "{:?}", out);
                    for o in &out {
                        m.apply(o.transition)?;
                    }
                }
                Op::Reset { step } => {
                    now = step.apply(now);
                    if let Some(t) = reset(&rule, &mut s, now) {
                        m.apply(t)?;
                    }
                }
            }
            m.check(&s, &rule)?;
        }
    }

    /// Whatever the rule (invalid ones included), values and times (backwards, 0, u64::MAX),
    /// nothing panics; node and site functions neither.
    #[test]
    fn time_going_backwards_never_panics(
        rule in channel_rule(),
        ops in ops(true, 200),
        node_rule in any::<u32>(),
        node_ops in prop::collection::vec((0u8..5, step(true), any::<bool>()), 0..100),
    ) {
        let mut s = ChannelState::default();
        let mut now = 0;
        for op in ops {
            match op {
                Op::Eval { step, sample, suppressed } => {
                    now = step.apply(now);
                    let out = evaluate(&rule, &mut s, sample, now, ctx(suppressed));
                    prop_assert!(out.len() <= 6);
                }
                Op::Reset { step } => {
                    now = step.apply(now);
                    let _ = reset(&rule, &mut s, now);
                }
            }
        }
        let nr = NodeRule { offline_after_ms: node_rule };
        let mut n = NodeState::default();
        let mut site_state = SiteState::default();
        let mut now = 0;
        for (kind, st, ok) in node_ops {
            now = st.apply(now);
            let _ = match kind {
                0 => seen(&nr, &mut n, now),
                1 | 2 => tick(&nr, &mut n, now),
                3 => last_will(&mut n, now),
                _ => supply(&mut n, ok, now),
            };
            let _ = site::update(&mut site_state, kind.into(), u16::from(n.is_down()) * 3);
        }
    }

    /// Suppression and flapping never drop an output: the same samples through the rule
    /// without flapping (A), with flapping (B) and with flapping under a random context (C)
    /// give the same transitions; only dispositions differ (and B/C add the flapping
    /// transitions). The context never changes the state.
    #[test]
    fn suppression_and_flapping_never_drop_an_output(
        rule in channel_rule(),
        flap in flap(),
        ops in ops(true, 300),
    ) {
        let with_flap = ChannelRule { flap: Some(flap), ..rule };
        let without = ChannelRule { flap: None, ..rule };
        let (mut a, mut b, mut c) =
            (ChannelState::default(), ChannelState::default(), ChannelState::default());
        let mut now = 0;
        for op in ops {
            match op {
                Op::Eval { step, sample, suppressed } => {
                    now = step.apply(now);
                    let oa = evaluate(&without, &mut a, sample, now, Context::default());
                    let ob = evaluate(&with_flap, &mut b, sample, now, Context::default());
                    let oc = evaluate(&with_flap, &mut c, sample, now, ctx(suppressed));
                    prop_assert!(oa.iter().all(|o| o.disposition == Disposition::Notify));
                    let plain_b: Vec<Transition> = ob
                        .iter()
                        .map(|o| o.transition)
                        .filter(|t| t.counts_for_flapping())
                        .collect();
                    let plain_a: Vec<Transition> = oa.iter().map(|o| o.transition).collect();
                    prop_assert_eq!(plain_a, plain_b);
                    prop_assert!(ob.iter().all(|o| o.disposition != Disposition::Suppressed));
                    prop_assert_eq!(
                        ob.iter().map(|o| o.transition).collect::<Vec<_>>(),
                        oc.iter().map(|o| o.transition).collect::<Vec<_>>()
                    );
                    for (x, y) in ob.iter().zip(&oc) {
                        if suppressed {
                            prop_assert_eq!(y.disposition, Disposition::Suppressed);
                        } else {
                            prop_assert_eq!(x.disposition, y.disposition);
                        }
                        if x.disposition == Disposition::Flapping {
                            prop_assert!(x.transition.counts_for_flapping());
                        }
                    }
                }
                Op::Reset { step } => {
                    now = step.apply(now);
                    let ra = reset(&without, &mut a, now);
                    let rb = reset(&with_flap, &mut b, now);
                    let rc = reset(&with_flap, &mut c, now);
                    prop_assert_eq!(ra, rb);
                    prop_assert_eq!(rb, rc);
                }
            }
            prop_assert_eq!(b, c, "the context changed the state");
            prop_assert_eq!(a.threshold(), b.threshold());
            prop_assert_eq!(a.rate(), b.rate());
        }
    }
}
