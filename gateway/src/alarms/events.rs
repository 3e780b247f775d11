//! What the API and the event stream show of alarms and tickets: the stored
//! rows plus Chinese labels and readable times (China Standard Time).

use crate::domain::labels;
use crate::domain::time::rfc3339_cst;
use crate::store::{AlarmRow, TicketEventRow, TicketOutcome, TicketRow};
use serde::Serialize;
use utoipa::ToSchema;

fn t(ms: Option<i64>) -> Option<String> {
    ms.map(|m| rfc3339_cst(m.max(0) as u64))
}

/// An alarm (报警) as the API shows it: the stored record with labels.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Alarm)]
pub struct AlarmView {
    #[serde(flatten)]
    pub row: AlarmRow,
    /// `kind` in Chinese.
    pub kind_label: &'static str,
    /// `level` in Chinese.
    pub level_label: &'static str,
    /// `state` in Chinese.
    pub state_label: &'static str,
    /// `quantity` in Chinese.
    pub quantity_label: Option<&'static str>,
    /// `value` with its unit, e.g. `512 mA`, `81.2 °C`.
    pub value_display: Option<String>,
    /// `setpoint` with its unit.
    pub setpoint_display: Option<String>,
    /// `raised_at` in RFC 3339, China Standard Time.
    pub raised_at_text: String,
    /// `acked_at` in RFC 3339, China Standard Time.
    pub acked_at_text: Option<String>,
    /// Seconds from raising to the duty officer's acknowledgement.
    pub time_to_ack_s: Option<f64>,
    /// For a notice to the duty desk rather than an alarm (a node's
    /// sequence restarted, a channel's quantity changed): what it means.
    pub notice_label: Option<&'static str>,
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
            notice_label: labels::notice(&row.cause),
            row,
        }
    }
}

/// A hazard ticket (隐患工单) as the API shows it: the stored record with labels.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Ticket)]
pub struct TicketView {
    #[serde(flatten)]
    pub row: TicketRow,
    /// `status` in Chinese.
    pub status_label: &'static str,
    /// `category` in Chinese.
    pub category_label: &'static str,
    /// `grade` in Chinese.
    pub grade_label: &'static str,
    /// `opened_at` in RFC 3339, China Standard Time.
    pub opened_at_text: String,
    /// `closed_at` in RFC 3339, China Standard Time.
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

/// One recorded step of a ticket (留痕): who, in which role, when, why, what.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TicketEvent)]
pub struct TicketEventView {
    #[serde(flatten)]
    pub row: TicketEventRow,
    /// `at` in RFC 3339, China Standard Time.
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
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayEvent {
    /// A new alarm, or one that rose to a higher level.
    AlarmRaised {
        alarm: AlarmView,
        /// What happened to the alarm's ticket, if it has one.
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
