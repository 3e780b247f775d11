//! Driver for the TI ADS1115 16-bit ΔΣ ADC on I²C, over
//! `embedded_hal::i2c::I2c`: single-shot conversions (with a bounded poll
//! of the OS bit) and continuous mode for fast sample windows (CT RMS).
//!
//! Registers (datasheet SBAS444): pointer 0x00 conversion, 0x01 config.
//! Config bits: OS [15], MUX [14:12], PGA [11:9], MODE [8] (1 single-shot),
//! DR [7:5], COMP_QUE [1:0] (0b11 disables the comparator).

use embedded_hal::i2c::I2c;

/// Conversion register pointer.
pub const REG_CONVERSION: u8 = 0x00;
/// Config register pointer.
pub const REG_CONFIG: u8 = 0x01;
/// Default 7-bit address (ADDR pin to GND).
pub const DEFAULT_ADDRESS: u8 = 0x48;
/// OS bit: write 1 to start a single conversion; reads 1 when idle.
pub const OS: u16 = 1 << 15;
/// MODE bit: single-shot.
pub const MODE_SINGLE: u16 = 1 << 8;
/// DR = 860 samples/s.
pub const DR_860: u16 = 0b111 << 5;
/// Comparator disabled.
pub const COMP_DISABLE: u16 = 0b11;
/// How many times the OS bit is polled before giving up.
pub const MAX_POLLS: u32 = 64;

/// Input multiplexer setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mux {
    /// AIN0 − AIN1 (differential, for the CT).
    Diff01,
    /// AIN2 − AIN3 (differential).
    Diff23,
    /// AINx against GND.
    Single(u8),
}

impl Mux {
    /// MUX field bits in place.
    pub const fn bits(self) -> u16 {
        let m = match self {
            Mux::Diff01 => 0b000,
            Mux::Diff23 => 0b011,
            Mux::Single(n) => 0b100 | (n as u16 & 0b11),
        };
        m << 12
    }
}

/// Programmable gain: full-scale range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gain {
    /// ±6.144 V
    Fs6144,
    /// ±4.096 V
    Fs4096,
    /// ±2.048 V
    Fs2048,
    /// ±1.024 V
    Fs1024,
    /// ±0.512 V
    Fs512,
    /// ±0.256 V
    Fs256,
}

impl Gain {
    /// PGA field bits in place.
    pub const fn bits(self) -> u16 {
        let p = match self {
            Gain::Fs6144 => 0b000,
            Gain::Fs4096 => 0b001,
            Gain::Fs2048 => 0b010,
            Gain::Fs1024 => 0b011,
            Gain::Fs512 => 0b100,
            Gain::Fs256 => 0b101,
        };
        p << 9
    }

    /// Full scale in µV.
    pub const fn full_scale_uv(self) -> i64 {
        match self {
            Gain::Fs6144 => 6_144_000,
            Gain::Fs4096 => 4_096_000,
            Gain::Fs2048 => 2_048_000,
            Gain::Fs1024 => 1_024_000,
            Gain::Fs512 => 512_000,
            Gain::Fs256 => 256_000,
        }
    }

    /// A raw conversion result in µV (exact integer maths).
    pub const fn to_uv(self, raw: i16) -> i32 {
        (raw as i64 * self.full_scale_uv() / 32_768) as i32
    }
}

/// Driver errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed.
    I2c(E),
    /// The conversion did not finish within [`MAX_POLLS`] polls.
    Timeout,
}

/// An ADS1115 on an I²C bus.
pub struct Ads1115<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Ads1115<I> {
    /// A driver for the chip at `address`.
    pub fn new(i2c: I, address: u8) -> Self {
        Ads1115 { i2c, address }
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }

    /// The config word for a conversion of `mux` at `gain`.
    pub const fn config(mux: Mux, gain: Gain, single: bool) -> u16 {
        let mode = if single { MODE_SINGLE } else { 0 };
        let os = if single { OS } else { 0 };
        os | mux.bits() | gain.bits() | mode | DR_860 | COMP_DISABLE
    }

    fn write_config(&mut self, word: u16) -> Result<(), Error<I::Error>> {
        let [h, l] = word.to_be_bytes();
        self.i2c
            .write(self.address, &[REG_CONFIG, h, l])
            .map_err(Error::I2c)
    }

    fn read_reg(&mut self, reg: u8) -> Result<u16, Error<I::Error>> {
        let mut b = [0u8; 2];
        self.i2c
            .write_read(self.address, &[reg], &mut b)
            .map_err(Error::I2c)?;
        Ok(u16::from_be_bytes(b))
    }

    /// One single-shot conversion: starts it, polls OS until done, reads it.
    pub fn read_single(&mut self, mux: Mux, gain: Gain) -> Result<i16, Error<I::Error>> {
        self.write_config(Self::config(mux, gain, true))?;
        for _ in 0..MAX_POLLS {
            if self.read_reg(REG_CONFIG)? & OS != 0 {
                return Ok(self.read_reg(REG_CONVERSION)? as i16);
            }
        }
        Err(Error::Timeout)
    }

    /// Switches to continuous conversions of `mux` at `gain`.
    pub fn start_continuous(&mut self, mux: Mux, gain: Gain) -> Result<(), Error<I::Error>> {
        self.write_config(Self::config(mux, gain, false))
    }

    /// The latest result in continuous mode.
    pub fn read_conversion(&mut self) -> Result<i16, Error<I::Error>> {
        Ok(self.read_reg(REG_CONVERSION)? as i16)
    }

    /// Fills `out` with consecutive continuous-mode results of `mux`.
    pub fn read_window(
        &mut self,
        mux: Mux,
        gain: Gain,
        out: &mut [i16],
    ) -> Result<(), Error<I::Error>> {
        self.start_continuous(mux, gain)?;
        for s in out.iter_mut() {
            *s = self.read_conversion()?;
        }
        Ok(())
    }
}
