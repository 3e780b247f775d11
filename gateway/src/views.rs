//! What the API and the event stream show of alarms and tickets: the stored
//! rows plus Chinese labels and readable times (China Standard Time).

use crate::labels;
use crate::store::{AlarmRow, TicketEventRow, TicketOutcome, TicketRow};
use crate::time::rfc3339_cst;
use serde::Serialize;

fn t(ms: Option<i64>) -> Option<String> {
    ms.map(|m| rfc3339_cst(m.max(0) as u64))
}

#[derive(Debug, Clone, Serialize)]
pub struct AlarmView {
    #[serde(flatten)]
    pub row: AlarmRow,
    pub kind_label: &'static str,
    pub level_label: &'static str,
    pub state_label: &'static str,
    pub quantity_label: Option<&'static str>,
    pub value_display: Option<String>,
    pub setpoint_display: Option<String>,
    pub raised_at_text: String,
    pub acked_at_text: Option<String>,
    /// Seconds from raising to the duty officer's acknowledgement.
    pub time_to_ack_s: Option<f64>,
}

impl From<AlarmRow> for AlarmView {
    fn from(row: AlarmRow) -> Self {
        let q = row.quantity.clone().unwrap_or_default();
        AlarmView {
            kind_label: labels::alarm_kind(&row.kind),
            level_label: labels::level(&row.level),
            state_label: labels::alarm_state(&row.state),
            quantity_label: row.quantity.as_deref().map(labels::quantity),
            value_display: row.value.map(|v| labels::value(&q, v)),
            setpoint_display: row.setpoint.map(|v| labels::value(&q, v)),
            raised_at_text: rfc3339_cst(row.raised_at.max(0) as u64),
            acked_at_text: t(row.acked_at),
            time_to_ack_s: row.acked_at.map(|a| (a - row.raised_at) as f64 / 1000.0),
            row,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    #[serde(flatten)]
    pub row: TicketRow,
    pub status_label: &'static str,
    pub category_label: &'static str,
    pub grade_label: &'static str,
    pub opened_at_text: String,
    pub closed_at_text: Option<String>,
}

impl From<TicketRow> for TicketView {
    fn from(row: TicketRow) -> Self {
        TicketView {
            status_label: labels::ticket_status(&row.status),
            category_label: labels::category(&row.category),
            grade_label: labels::grade(&row.grade),
            opened_at_text: rfc3339_cst(row.opened_at.max(0) as u64),
            closed_at_text: t(row.closed_at),
            row,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketEventView {
    #[serde(flatten)]
    pub row: TicketEventRow,
    pub at_text: String,
}

impl From<TicketEventRow> for TicketEventView {
    fn from(row: TicketEventRow) -> Self {
        TicketEventView {
            at_text: rfc3339_cst(row.at.max(0) as u64),
            row,
        }
    }
}

/// A change the duty desk sees as it happens (`/api/v1/events`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayEvent {
    /// A new alarm, or one that rose to a higher level.
    AlarmRaised {
        alarm: AlarmView,
        ticket: Option<TicketOutcome>,
    },
    /// A standing alarm changed: lower level, latched, cleared or acknowledged.
    AlarmUpdated { alarm: AlarmView },
    /// A ticket moved a step through the closed loop.
    TicketUpdated { ticket: TicketView },
}

impl GatewayEvent {
    /// The site the event is about.
    pub fn site(&self) -> &str {
        match self {
            GatewayEvent::AlarmRaised { alarm, .. } | GatewayEvent::AlarmUpdated { alarm } => {
                &alarm.row.site
            }
            GatewayEvent::TicketUpdated { ticket } => &ticket.row.site,
        }
    }
}
