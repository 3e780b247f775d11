//! Simulated sensors behind the real driver traits: an I²C bus with the two
//! ADS1115 of [`crate::board`], whose inputs follow a [`Scenario`] in time.
//! The QEMU node and the host tests run the same drivers over it.
//!
//! The default scenario (times after boot): normal leakage 150 mA; from
//! `rise_at` 650 mA (past the 500 mA alarm setpoint); from `break_at` the
//! CT is disconnected (bias pulls the input to +200 mV DC: `open`); from
//! `recover_at` normal leakage again. Temperature 25.0 °C, pressure
//! 300 kPa, level 2500 mm throughout.

use crate::board::{CT, CT_GAIN, SECOND_ADDRESS, V_GAIN};
use crate::drivers::ads1115::{DEFAULT_ADDRESS, REG_CONFIG, REG_CONVERSION};
use core::convert::Infallible;
use embedded_hal::i2c::{ErrorType, I2c, Operation};

/// One cycle of a sine, 32 points, ×1000.
const SINE: [i32; 32] = [
    0, 195, 383, 556, 707, 831, 924, 981, 1000, 981, 924, 831, 707, 556, 383, 195, 0, -195, -383,
    -556, -707, -831, -924, -981, -1000, -981, -924, -831, -707, -556, -383, -195,
];

/// When the simulated residual current changes, in ms after boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Normal leakage, mA.
    pub normal_ma: u32,
    /// Leakage after the rise, mA.
    pub high_ma: u32,
    /// Start of the rise.
    pub rise_at: u64,
    /// Start of the CT break.
    pub break_at: u64,
    /// Start of the recovery.
    pub recover_at: u64,
}

impl Scenario {
    /// Normal, rise past 500 mA, CT break, recovery.
    pub const DEFAULT: Scenario = Scenario {
        normal_ma: 150,
        high_ma: 650,
        rise_at: 8_000,
        break_at: 16_000,
        recover_at: 22_000,
    };
}

/// The simulated bus: both converters, their config registers and a clock.
#[derive(Clone, Debug)]
pub struct SimBus {
    scenario: Scenario,
    now_ms: u64,
    config: [u16; 2],
    phase: usize,
}

impl SimBus {
    /// A bus replaying `scenario`.
    pub fn new(scenario: Scenario) -> Self {
        SimBus {
            scenario,
            now_ms: 0,
            config: [0; 2],
            phase: 0,
        }
    }

    /// Sets the simulated time (ms after boot).
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    fn ct_uv(&mut self) -> i32 {
        let s = &self.scenario;
        let t = self.now_ms;
        if t >= s.break_at && t < s.recover_at {
            return 200_000;
        }
        let ma = if t >= s.rise_at && t < s.break_at {
            s.high_ma
        } else {
            s.normal_ma
        };
        // Secondary RMS voltage in µV, then peak = RMS × √2 (×1414/1000).
        let rms_uv = i64::from(ma) * i64::from(CT.burden_mohm) / i64::from(CT.ratio);
        let peak = rms_uv * 1414 / 1000;
        let v = peak * i64::from(SINE[self.phase % 32]) / 1000;
        self.phase = self.phase.wrapping_add(1);
        v as i32
    }

    fn loop_uv(ua: i64) -> i32 {
        (ua * 150_000 / 1000) as i32
    }

    fn conversion(&mut self, chip: usize) -> i16 {
        let mux = (self.config[chip] >> 12) & 0b111;
        let (uv, fs) = match (chip, mux) {
            (0, 0b000) => (self.ct_uv(), CT_GAIN.full_scale_uv()),
            // NTC at 25 °C: 10 kΩ under 10 kΩ from 3.3 V.
            (0, 0b110) => (1_650_000, V_GAIN.full_scale_uv()),
            // 300 kPa of 0–1000: 4 + 16 × 0.3 = 8.8 mA.
            (0, 0b111) => (Self::loop_uv(8_800), V_GAIN.full_scale_uv()),
            // 2500 mm of 0–5000: 12 mA.
            (1, 0b100) => (Self::loop_uv(12_000), V_GAIN.full_scale_uv()),
            _ => (0, V_GAIN.full_scale_uv()),
        };
        (i64::from(uv) * 32_768 / fs).clamp(-32_768, 32_767) as i16
    }

    fn chip(address: u8) -> Option<usize> {
        match address {
            DEFAULT_ADDRESS => Some(0),
            SECOND_ADDRESS => Some(1),
            _ => None,
        }
    }
}

impl ErrorType for SimBus {
    type Error = Infallible;
}

impl I2c for SimBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let Some(chip) = Self::chip(address) else {
            return Ok(());
        };
        let mut pointer = REG_CONVERSION;
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    if let Some(&p) = bytes.first() {
                        pointer = p;
                    }
                    if pointer == REG_CONFIG && bytes.len() >= 3 {
                        self.config[chip] = u16::from_be_bytes([bytes[1], bytes[2]]);
                    }
                }
                Operation::Read(buf) => {
                    let word = if pointer == REG_CONFIG {
                        // Conversions finish at once: OS reads 1.
                        self.config[chip] | 0x8000
                    } else {
                        self.conversion(chip) as u16
                    };
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = word.to_be_bytes().get(i).copied().unwrap_or(0);
                    }
                }
            }
        }
        Ok(())
    }
}
