//! What the centre is told: the gateway's alarms, faults, offline nodes,
//! clears and readings as GB/T 26875.3 data units. Pure: rows in, units out.
//!
//! - The component (部件) is the node's channel: address
//!   `node number × 1000 + channel number` (both 1-based, in the site's
//!   configuration order; channel 0 is the node itself), description the
//!   node's and channel's location text (GB 18030, 31 bytes).
//! - Component type by quantity: residual current 17, temperature 18,
//!   water pressure / level 99 (压力开关), anything else and node-level
//!   events 16 (电气火灾监控报警器, the node itself).
//! - State bits (always with bit 0, 正常运行 as opposed to 测试):
//!   electrical-fire 报警 → 火警 (bit 1); 预警 → 监管 (bit 4); fire-facility
//!   报警 (e.g. water pressure low) → 故障 (bit 2); sensor fault and
//!   offline node → 故障 (bit 2); supply failure → 主电故障 (bit 8); a
//!   cleared alarm → bit 0 alone. A latched alarm stays as it was sent.
//!   Suppressed alarms (their root cause was sent) and notices are not sent.

use super::frame::TimeLabel;
use super::unit::{
    analog_type, component_bits as cb, component_type as ct, device_bits, encode_description,
    ComponentAnalog, ComponentState, DataUnit, Timed,
};
use crate::config::Config;
use crate::store::{AlarmRow, LatestRow};

/// A data unit for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Unique per link: the same event is queued once.
    pub subject: String,
    pub alarm_id: Option<i64>,
    pub unit: DataUnit,
    /// Carries a fire alarm: never dropped.
    pub fire: bool,
}

/// The component address of a node's channel.
pub fn component_address(config: &Config, site: &str, node: &str, channel: &str) -> u32 {
    let Some(s) = config.sites.iter().find(|s| s.id == site) else {
        return fallback_address(node, channel);
    };
    let Some((ni, n)) = s.nodes.iter().enumerate().find(|(_, n)| n.id == node) else {
        return fallback_address(node, channel);
    };
    let ci = if channel.is_empty() {
        0
    } else {
        match n.channels.iter().position(|c| c.id == channel) {
            Some(i) => i + 1,
            None => return fallback_address(node, channel),
        }
    };
    ((ni + 1) * 1000 + ci.min(999)) as u32
}

/// Nodes outside the configuration file (registered later): a stable
/// address above every configured one (FNV-1a of node/channel).
fn fallback_address(node: &str, channel: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in node.bytes().chain([b'/']).chain(channel.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    10_000_000 + h % 1_000_000_000
}

/// 部件类型 by quantity.
pub fn component_type(quantity: Option<&str>) -> u8 {
    match quantity {
        Some("residual_current") => ct::RESIDUAL_CURRENT_DETECTOR,
        Some("temperature") => ct::TEMPERATURE_DETECTOR,
        Some("water_pressure" | "water_level") => ct::PRESSURE_SWITCH,
        _ => ct::ELECTRICAL_FIRE_PANEL,
    }
}

/// The state bits of a standing alarm, `None` when it is not sent.
pub fn standing_bits(row: &AlarmRow) -> Option<u16> {
    if row.suppressed || crate::domain::labels::notice(&row.cause).is_some() {
        return None;
    }
    let bit = match (row.kind.as_str(), row.level.as_str(), row.cause.as_str()) {
        (_, _, "supply") => cb::MAIN_POWER_FAULT,
        ("electrical_fire", "alarm", _) => cb::FIRE,
        (_, "pre_alarm", _) => cb::SUPERVISORY,
        _ => cb::FAULT,
    };
    Some(cb::NORMAL | bit)
}

fn description(config: &Config, row_site: &str, node: &str, channel: &str) -> [u8; 31] {
    let (_, location) = config.place(row_site, node, channel);
    let text = if location.is_empty() {
        if channel.is_empty() {
            node.to_string()
        } else {
            format!("{node}/{channel}")
        }
    } else {
        location
    };
    encode_description(&text)
}

/// The component state to send for an alarm row as it now stands:
/// raised (or re-levelled) or cleared.
pub fn alarm_unit(config: &Config, system_type: u8, row: &AlarmRow) -> Option<Outgoing> {
    let cleared = row.state == "cleared";
    let bits = standing_bits(row)?;
    let (state, at, subject) = if cleared {
        let at = row.cleared_at.unwrap_or(row.updated_at);
        (cb::NORMAL, at, format!("alarm:{}:clear", row.id))
    } else {
        (
            bits,
            row.updated_at,
            format!("alarm:{}:{}", row.id, row.level),
        )
    };
    let object = ComponentState {
        system_type,
        system_address: 0,
        component_type: component_type(row.quantity.as_deref()),
        component_address: component_address(config, &row.site, &row.node, &row.channel),
        state,
        description: description(config, &row.site, &row.node, &row.channel),
    };
    Some(Outgoing {
        subject,
        alarm_id: Some(row.id),
        unit: DataUnit::ComponentState(vec![Timed {
            object,
            time: TimeLabel::from_unix_ms(at.max(0) as u64),
        }]),
        fire: state & cb::FIRE != 0,
    })
}

/// 模拟量类型 and value of a reading, `None` for quantities without one.
/// Residual current in mA goes as user-defined type 128 (no standard type
/// has mA resolution); temperature in 0.1 °C as type 3; water pressure in
/// kPa as type 5. Values past i16 are clamped.
pub fn analog(quantity: &str, value: i64) -> Option<(u8, i16)> {
    let t = match quantity {
        "residual_current" => analog_type::RESIDUAL_CURRENT_MA,
        "temperature" => analog_type::TEMPERATURE,
        "water_pressure" => analog_type::PRESSURE,
        _ => return None,
    };
    Some((
        t,
        value.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16,
    ))
}

/// Latest readings as analog-value units (at most 60 objects each, well
/// under 1024 bytes), subject `analog:{now}:{n}`.
pub fn analog_units(
    config: &Config,
    system_type: u8,
    rows: &[LatestRow],
    now_ms: u64,
) -> Vec<Outgoing> {
    let objects: Vec<Timed<ComponentAnalog>> = rows
        .iter()
        .filter_map(|r| {
            let (analog_type, value) = analog(&r.quantity, r.value)?;
            Some(Timed {
                object: ComponentAnalog {
                    system_type,
                    system_address: 0,
                    component_type: component_type(Some(&r.quantity)),
                    component_address: component_address(config, &r.site, &r.node, &r.channel),
                    analog_type,
                    value,
                },
                time: TimeLabel::from_unix_ms(r.at.max(0) as u64),
            })
        })
        .collect();
    objects
        .chunks(60)
        .enumerate()
        .map(|(i, c)| Outgoing {
            subject: format!("analog:{now_ms}:{i}"),
            alarm_id: None,
            unit: DataUnit::ComponentAnalog(c.to_vec()),
            fire: false,
        })
        .collect()
}

/// The transmission device's state bits (type 21) from a site's standing
/// alarms and the link.
pub fn device_state(standing: &[AlarmRow], link_fault: bool) -> u8 {
    let mut bits = device_bits::NORMAL;
    for r in standing {
        match standing_bits(r) {
            Some(b) if b & cb::FIRE != 0 => bits |= device_bits::FIRE,
            Some(b) if b & cb::MAIN_POWER_FAULT != 0 => bits |= device_bits::MAIN_POWER_FAULT,
            Some(b) if b & cb::FAULT != 0 => {
                bits |= device_bits::FAULT;
                if r.cause == "offline" || r.cause == "uplink" {
                    bits |= device_bits::LINE_FAULT;
                }
            }
            _ => {}
        }
    }
    if link_fault {
        bits |= device_bits::LINK_FAULT;
    }
    bits
}
