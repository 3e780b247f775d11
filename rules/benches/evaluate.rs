//! Throughput of the channel engine on one core: `cargo bench -p rules`.
//!
//! 10 000 channels with a realistic mix, each fed one sample per round (as if every channel
//! reported once a second):
//! - 40 % residual current, threshold only (pre-alarm 300 mA, alarm 500 mA);
//! - 30 % temperature, threshold + rate of rise (the default rule without flapping);
//! - 20 % 4–20 mA loop current, NAMUR NE43 valid range;
//! - 10 % residual current with flapping detection (the full default rule).
//!
//! Values wander around normal levels with occasional excursions past the setpoints, faults
//! and out-of-range readings, so every path of the engine is taken. Criterion reports the
//! throughput in elements (evaluations) per second; the state size per channel is printed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rules::{defaults, evaluate, ChannelRule, ChannelState, Context, FaultKind, Sample};
use std::hint::black_box;
use std::time::Instant;
use wire::Quantity;

const CHANNELS: usize = 10_000;
/// Pre-computed samples per kind of channel, indexed by (round + channel) % TABLE.
const TABLE: usize = 4_096;

struct Fleet {
    rules: [ChannelRule; 4],
    /// Which rule (index into `rules`) each channel uses.
    kinds: Vec<u8>,
    states: Vec<ChannelState>,
    samples: [Vec<Sample>; 4],
}

/// A small xorshift generator, so the benchmark needs no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> i32 {
        (self.next() % n) as i32
    }
}

/// A random walk around `base` with excursions of `peak` every few hundred samples, and a
/// fault every thousand or so.
fn walk(rng: &mut Rng, base: i32, spread: i32, peak: i32) -> Vec<Sample> {
    let mut v = base;
    let mut out = Vec::with_capacity(TABLE);
    for i in 0..TABLE {
        v += rng.below(2 * spread as u64 + 1) - spread;
        v = v.clamp(base - 10 * spread, base + 10 * spread);
        let s = match rng.below(1_000) {
            0 => Sample::fault(FaultKind::Open),
            _ if (i / 256) % 4 == 3 && i % 256 < 40 => Sample::ok(v + peak),
            _ => Sample::ok(v),
        };
        out.push(s);
    }
    out
}

impl Fleet {
    fn new() -> Self {
        let mut rc = defaults::channel_rule(Quantity::ResidualCurrent);
        rc.flap = None;
        let mut temp = defaults::channel_rule(Quantity::Temperature);
        temp.flap = None;
        let mut lc = defaults::channel_rule(Quantity::LoopCurrent);
        lc.flap = None;
        let rc_flap = defaults::channel_rule(Quantity::ResidualCurrent);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let samples = [
            walk(&mut rng, 120, 8, 420),
            walk(&mut rng, 350, 5, 500),
            walk(&mut rng, 12_000, 200, 10_000),
            walk(&mut rng, 280, 15, 250),
        ];
        let kinds = (0..CHANNELS)
            .map(|i| match i % 10 {
                0..=3 => 0,
                4..=6 => 1,
                7 | 8 => 2,
                _ => 3,
            })
            .collect();
        Fleet {
            rules: [rc, temp, lc, rc_flap],
            kinds,
            states: vec![ChannelState::default(); CHANNELS],
            samples,
        }
    }

    /// One round: every channel gets one sample at `now`. Returns the number of outputs, so
    /// nothing is optimised away.
    #[inline(never)]
    fn round(&mut self, round: usize, now: u64) -> usize {
        let mut outputs = 0;
        for (i, (state, &kind)) in self.states.iter_mut().zip(&self.kinds).enumerate() {
            let k = usize::from(kind);
            let sample = self.samples[k][(round + i) % TABLE];
            let out = evaluate(&self.rules[k], state, sample, now, Context::default());
            outputs += out.len();
        }
        outputs
    }
}

fn bench(c: &mut Criterion) {
    let state_bytes = core::mem::size_of::<ChannelState>();
    let rule_bytes = core::mem::size_of::<ChannelRule>();
    println!(
        "state per channel: {state_bytes} bytes ({} KiB for {CHANNELS} channels); rule: \
         {rule_bytes} bytes (shared per quantity here)",
        state_bytes * CHANNELS / 1024
    );

    // A plain timing first, so the evaluations per second are printed even without criterion's
    // statistics (e.g. `cargo bench -p rules -- --quick`).
    let mut fleet = Fleet::new();
    let mut outputs = 0;
    let rounds = 2_000;
    let start = Instant::now();
    for r in 0..rounds {
        outputs += fleet.round(r, 1_000 * r as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    let evals = (rounds * CHANNELS) as f64;
    println!(
        "plain timing: {:.1} million evaluations/s ({:.1} ns each), {outputs} outputs in \
         {rounds} rounds of {CHANNELS} channels",
        evals / secs / 1e6,
        secs / evals * 1e9,
    );

    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(CHANNELS as u64));
    let mut fleet = Fleet::new();
    let mut r = 0usize;
    group.bench_function("mix_10000_channels", |b| {
        b.iter(|| {
            r += 1;
            black_box(fleet.round(r, 1_000 * r as u64))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
