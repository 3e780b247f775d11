//! Drivers and conversions: the ADS1115 driver against embedded-hal-mock
//! transaction lists (register constants re-declared here from the
//! datasheet, not taken from the driver), CT RMS scaling and CT break, NTC
//! temperature with open/short, 4–20 mA scaling with NAMUR NE43.

use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use firmware::drivers::ads1115::{Ads1115, Error, Gain, Mux};
use firmware::drivers::ct::{residual_current, rms_uv, CtConfig};
use firmware::drivers::loop_current::{measure_ua, LoopConfig};
use firmware::drivers::ntc::{temperature, temperature_from_ohm, NtcConfig};
use firmware::drivers::{isqrt, Measurement};
use wire::ChannelStatus;

const ADDR: u8 = 0x48;
const CONVERSION: u8 = 0x00;
const CONFIG: u8 = 0x01;

#[test]
fn single_shot_writes_config_polls_os_and_reads() {
    // OS=1, MUX=110 (AIN2), PGA=001 (±4.096 V), MODE=1, DR=111, COMP_QUE=11
    let cfg: u16 = 0x8000 | (0b110 << 12) | (0b001 << 9) | 0x0100 | (0b111 << 5) | 0b11;
    let [h, l] = cfg.to_be_bytes();
    let expectations = [
        Transaction::write(ADDR, vec![CONFIG, h, l]),
        Transaction::write_read(ADDR, vec![CONFIG], vec![h & 0x7F, l]), // busy
        Transaction::write_read(ADDR, vec![CONFIG], vec![h, l]),        // done
        Transaction::write_read(ADDR, vec![CONVERSION], vec![0x34, 0x56]),
    ];
    let mut i2c = Mock::new(&expectations);
    let mut adc = Ads1115::new(&mut i2c, ADDR);
    assert_eq!(adc.read_single(Mux::Single(2), Gain::Fs4096), Ok(0x3456));
    i2c.done();
    assert_eq!(Gain::Fs4096.to_uv(0x3456), 1_674_750);
    assert_eq!(Gain::Fs256.to_uv(-32768), -256_000);
}

#[test]
fn single_shot_times_out_when_os_never_sets() {
    let cfg = Ads1115::<Mock>::config(Mux::Single(0), Gain::Fs4096, true);
    let [h, l] = cfg.to_be_bytes();
    let mut ex = vec![Transaction::write(ADDR, vec![CONFIG, h, l])];
    for _ in 0..64 {
        ex.push(Transaction::write_read(ADDR, vec![CONFIG], vec![0, 0]));
    }
    let mut i2c = Mock::new(&ex);
    let mut adc = Ads1115::new(&mut i2c, ADDR);
    assert_eq!(
        adc.read_single(Mux::Single(0), Gain::Fs4096),
        Err(Error::Timeout)
    );
    i2c.done();
}

#[test]
fn continuous_window_for_the_ct() {
    // MUX=000 (AIN0−AIN1), PGA=101 (±0.256 V), MODE=0, DR=111, COMP_QUE=11
    let cfg: u16 = (0b101 << 9) | (0b111 << 5) | 0b11;
    let [h, l] = cfg.to_be_bytes();
    let mut i2c = Mock::new(&[
        Transaction::write(ADDR, vec![CONFIG, h, l]),
        Transaction::write_read(ADDR, vec![CONVERSION], vec![0x00, 0x10]),
        Transaction::write_read(ADDR, vec![CONVERSION], vec![0xFF, 0xF0]),
    ]);
    let mut adc = Ads1115::new(&mut i2c, ADDR);
    let mut out = [0i16; 2];
    adc.read_window(Mux::Diff01, Gain::Fs256, &mut out).unwrap();
    assert_eq!(out, [16, -16]);
    i2c.done();
}

const CT: CtConfig = CtConfig {
    ratio: 1000,
    burden_mohm: 20_000,
    open_dc_uv: 100_000,
    clip_uv: 255_000,
};

fn sine_window(peak_uv: i32, dc: i32) -> Vec<i32> {
    (0..64)
        .map(|i| {
            let a = 2.0 * std::f64::consts::PI * f64::from(i) / 32.0;
            dc + (f64::from(peak_uv) * a.sin()).round() as i32
        })
        .collect()
}

#[test]
fn ct_rms_scales_to_milliamps() {
    // 500 mA primary → 0.5 mA secondary → 10 mV RMS across 20 Ω.
    let w = sine_window(14_142, 0);
    assert_eq!(rms_uv(&w).0, 10_000);
    assert_eq!(residual_current(&CT, &w), Measurement::ok(500));
    // A DC offset from the bias network does not count as leakage.
    assert_eq!(
        residual_current(&CT, &sine_window(4_243, 30_000)),
        Measurement::ok(150)
    );
    assert_eq!(residual_current(&CT, &[0; 64]), Measurement::ok(0));
    assert_eq!(residual_current(&CT, &[]), Measurement::ok(0));
}

#[test]
fn ct_break_and_saturation_are_faults() {
    assert_eq!(residual_current(&CT, &[200_000; 64]).s, ChannelStatus::Open);
    assert_eq!(
        residual_current(&CT, &sine_window(300_000, 0)).s,
        ChannelStatus::Range
    );
    assert_eq!(
        residual_current(&CT, &[i32::MIN; 4]).s,
        ChannelStatus::Range
    );
}

#[test]
fn isqrt_is_exact_floor() {
    for n in [0u64, 1, 2, 3, 4, 15, 16, 17, 1 << 40, u64::MAX] {
        let r = isqrt(n);
        assert!(
            r * r <= n && (r + 1).checked_mul(r + 1).is_none_or(|s| s > n),
            "{n}"
        );
    }
}

const NTC: NtcConfig = NtcConfig {
    vref_uv: 3_300_000,
    r_fixed_ohm: 10_000,
    open_margin_uv: 20_000,
    short_below_uv: 5_000,
};

#[test]
fn ntc_temperature_to_a_tenth_of_a_degree() {
    assert_eq!(temperature(&NTC, 1_650_000), Measurement::ok(250));
    // B-parameter equation: 60 °C ↔ 2486 Ω; 37 °C ↔ 5,990 Ω (table gives ±0.3 °C).
    assert_eq!(temperature_from_ohm(2486), Ok(600));
    let t = temperature_from_ohm(5990).unwrap();
    assert!((367..=373).contains(&t), "{t}");
    assert_eq!(temperature(&NTC, 3_299_000).s, ChannelStatus::Open);
    assert_eq!(temperature(&NTC, 1_000).s, ChannelStatus::Short);
    assert_eq!(temperature_from_ohm(150), Err(ChannelStatus::Range));
    assert_eq!(temperature_from_ohm(500_000), Err(ChannelStatus::Range));
}

const PRESSURE: LoopConfig = LoopConfig {
    shunt_mohm: 150_000,
    lo: 0,
    hi: 1_000,
};

#[test]
fn four_to_twenty_with_ne43() {
    assert_eq!(measure_ua(&PRESSURE, 4_000), Measurement::ok(0));
    assert_eq!(measure_ua(&PRESSURE, 8_800), Measurement::ok(300));
    assert_eq!(measure_ua(&PRESSURE, 20_000), Measurement::ok(1_000));
    assert_eq!(
        firmware::drivers::loop_current::measure(&PRESSURE, 1_800_000),
        Measurement::ok(500)
    );
    assert_eq!(measure_ua(&PRESSURE, 3_700).s, ChannelStatus::Range);
    assert_eq!(measure_ua(&PRESSURE, 20_800).s, ChannelStatus::Range);
    assert_eq!(
        measure_ua(&PRESSURE, 3_500).s,
        ChannelStatus::Fault,
        "below 3.6 mA"
    );
    assert_eq!(
        measure_ua(&PRESSURE, 21_500).s,
        ChannelStatus::Fault,
        "above 21 mA"
    );
    assert_eq!(measure_ua(&PRESSURE, 0).s, ChannelStatus::Open);
    assert_eq!(measure_ua(&PRESSURE, 30_000).s, ChannelStatus::Short);
    assert_eq!(measure_ua(&PRESSURE, i32::MIN).s, ChannelStatus::Open);
}

#[test]
fn the_simulated_board_replays_the_scenario_through_the_drivers() {
    use firmware::board::Board;
    use firmware::sim::{Scenario, SimBus};
    let mut b = Board::new(SimBus::new(Scenario::DEFAULT));
    let at = |b: &mut Board<SimBus>, t: u64| {
        b.bus().set_time(t);
        b.sample()
    };
    let m = at(&mut b, 1_000);
    assert!(
        (145..=155).contains(&m[0].v) && m[0].s == ChannelStatus::Ok,
        "{m:?}"
    );
    assert_eq!(
        &m[1..],
        &[
            Measurement::ok(250),
            Measurement::ok(300),
            Measurement::ok(2500)
        ]
    );
    let m = at(&mut b, 9_000);
    assert!((640..=660).contains(&m[0].v), "{m:?}");
    assert_eq!(at(&mut b, 17_000)[0].s, ChannelStatus::Open);
    assert!((145..=155).contains(&at(&mut b, 23_000)[0].v));
}
