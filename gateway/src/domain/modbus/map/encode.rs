//! Encoding, the simulator's side: the words a device would hold.

use super::{ChannelSpec, ValueType};

/// The words a device would hold for a raw value, in wire order.
pub fn words_for_raw(spec: &ChannelSpec, raw: u32) -> Vec<u16> {
    let fix = |w: u16| {
        if spec.order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        }
    };
    match spec.value_type.width() {
        2 => {
            let (hi, lo) = (fix((raw >> 16) as u16), fix(raw as u16));
            if spec.order.swaps_words() {
                vec![lo, hi]
            } else {
                vec![hi, lo]
            }
        }
        _ if spec.value_type == ValueType::Bool => vec![u16::from(raw != 0)],
        _ => vec![fix(raw as u16)],
    }
}

/// The raw value a device would hold for a wire value: the inverse of
/// [`convert`] (up to rounding), saturating at the type's range.
pub fn raw_for_value(spec: &ChannelSpec, value: i32) -> u32 {
    let x = ((f64::from(value) - spec.offset) / spec.scale).round();
    match spec.value_type {
        ValueType::U16 => x.clamp(0.0, f64::from(u16::MAX)) as u32,
        ValueType::I16 => {
            u32::from(x.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16 as u16)
        }
        ValueType::U32 => x.clamp(0.0, f64::from(u32::MAX)) as u32,
        ValueType::I32 => x.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 as u32,
        ValueType::F32 => (((f64::from(value) - spec.offset) / spec.scale) as f32).to_bits(),
        ValueType::Bool => u32::from(x != 0.0),
    }
}
