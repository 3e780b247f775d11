//! Codes kept as strings in the store (alarm kinds, levels, states, ticket
//! sources and categories, evidence kinds) and their OpenAPI schemas: an
//! enumeration of the codes, each described with its Chinese label. The
//! store's rows name these schemas; the API's document lists them.

use crate::domain::labels;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// Which desk an alarm belongs to (`AlarmRow.kind`).
pub const ALARM_KINDS: &[&str] = &["electrical_fire", "fire_facility", "fault", "offline"];
/// `AlarmRow.level`.
pub const ALARM_LEVELS: &[&str] = &["pre_alarm", "alarm", "fault", "offline"];
/// `AlarmRow.state`.
pub const ALARM_STATES: &[&str] = &["active", "latched", "cleared"];
/// Where a ticket came from (`TicketRow.source`).
pub const TICKET_SOURCES: &[&str] = &["sensor_alarm", "sensor_fault", "offline", "inspection"];
/// `TicketRow.category`.
pub const TICKET_CATEGORIES: &[&str] = &[
    "electrical_fire",
    "fire_facility",
    "device_fault",
    "offline",
];
/// `EvidenceRow.kind`.
pub const EVIDENCE_KINDS: &[&str] = &["note", "file"];

/// A string enumeration of `codes`, described as `what`, followed by each
/// code with its Chinese label when `label` is given.
pub fn codes(
    what: &str,
    codes: &[&str],
    label: Option<fn(&str) -> &'static str>,
    nullable: bool,
) -> Object {
    let description = match label {
        Some(label) => {
            let each: Vec<String> = codes
                .iter()
                .map(|c| format!("{c} ({})", label(c)))
                .collect();
            format!("{what}: {}", each.join(", "))
        }
        None => what.to_string(),
    };
    let mut values: Vec<serde_json::Value> = codes.iter().map(|c| (*c).into()).collect();
    let schema_type = if nullable {
        values.push(serde_json::Value::Null);
        [Type::String, Type::Null]
            .into_iter()
            .collect::<SchemaType>()
    } else {
        Type::String.into()
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}

/// Schema of `AlarmRow.kind`.
pub fn alarm_kind() -> Object {
    codes("Desk", ALARM_KINDS, Some(labels::alarm_kind), false)
}

/// Schema of `AlarmRow.level`.
pub fn alarm_level() -> Object {
    codes("Level", ALARM_LEVELS, Some(labels::level), false)
}

/// Schema of `AlarmRow.state`.
pub fn alarm_state() -> Object {
    codes("State", ALARM_STATES, Some(labels::alarm_state), false)
}

/// Schema of `AlarmRow.quantity`: a wire quantity, or null for node- and
/// site-level alarms.
pub fn quantity() -> Object {
    let all: Vec<&str> = wire::Quantity::ALL.iter().map(|q| q.as_str()).collect();
    codes("Quantity", &all, Some(labels::quantity), true)
}

/// Schema of `TicketRow.source`.
pub fn ticket_source() -> Object {
    codes("Source", TICKET_SOURCES, Some(labels::ticket_source), false)
}

/// Schema of `TicketRow.category`.
pub fn ticket_category() -> Object {
    codes("Category", TICKET_CATEGORIES, Some(labels::category), false)
}

/// Schema of `EvidenceRow.kind`.
pub fn evidence_kind() -> Object {
    codes(
        "A note, or a file (media_type, size and content_hash set)",
        EVIDENCE_KINDS,
        None,
        false,
    )
}
