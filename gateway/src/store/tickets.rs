//! Hazard tickets (隐患工单): opening one for an alarm or attaching to the
//! open one, the closed loop's transitions (judged by the pure
//! `crate::tickets` machine) with their append-only audit trail (留痕), and
//! overdue marking. One open ticket per (site, node, channel, cause) is held
//! by a partial unique index.

use super::alarms::{AlarmKey, AlarmRow, ALARM_COLUMNS};
use super::audit::{append_audit, AuditEntry};
use super::readings::TicketReadingRow;
use super::{query, query_as, query_scalar, sites_json, Flag, Store, StoreError};
use crate::domain::labels::TICKET_STATUSES;
use serde::Serialize;
use sqlx::{Any, Transaction};

/// What a ticket opened for an alarm looks like.
#[derive(Debug, Clone)]
pub struct TicketSpec {
    /// `sensor_alarm`, `sensor_fault`, `offline`.
    pub source: &'static str,
    /// `electrical_fire` (电气火灾隐患), `device_fault` (设备故障), ….
    pub category: &'static str,
    /// `general` (一般隐患) or `major` (重大隐患).
    pub grade: &'static str,
    /// Number prefix: `YH` for hazards, `GZ` for faults.
    pub prefix: &'static str,
    pub title: String,
    pub location: String,
    /// A ticket on the same key closed less than this long ago is reopened
    /// instead of opening a new one (the hazard came back).
    pub reopen_window_ms: u64,
}

/// What happened to the ticket when an alarm was raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum TicketOutcome {
    Opened {
        id: i64,
        number: String,
    },
    /// The hazard recurred within the window after 销号: its ticket is back in 整改中.
    Reopened {
        id: i64,
        number: String,
    },
    Attached {
        id: i64,
        number: String,
    },
    AlreadyLinked {
        id: i64,
    },
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TicketRow {
    pub id: i64,
    /// 编号: YH… hazards, GZ… device faults, LX… nodes or sites offline.
    pub number: String,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
    #[schema(schema_with = crate::domain::codes::ticket_source)]
    pub source: String,
    #[schema(schema_with = crate::domain::codes::ticket_category)]
    pub category: String,
    #[schema(value_type = crate::domain::ticket::Grade)]
    pub grade: String,
    #[schema(value_type = crate::domain::ticket::Status)]
    pub status: String,
    pub title: String,
    pub location: String,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub alarm_count: i64,
    pub last_alarm_at: i64,
    #[sqlx(try_from = "Flag")]
    pub sensor_sourced: bool,
    /// 时限 in force.
    pub deadline: Option<i64>,
    pub responsible_unit: Option<String>,
    pub responsible_person: Option<String>,
    pub measures: Option<String>,
    pub funds: Option<String>,
    pub contingency_plan: Option<String>,
    pub supervisor: Option<String>,
    pub document_no: Option<String>,
    pub listed_at: Option<i64>,
    pub delisted_at: Option<i64>,
    pub rectified_at: Option<i64>,
    #[sqlx(try_from = "Flag")]
    pub reviewed: bool,
    pub extension_requested: Option<i64>,
    /// When the deadline was found passed (逾期).
    pub overdue_at: Option<i64>,
    /// Who the overdue ticket was escalated to.
    pub escalated_to: Option<String>,
}

impl TicketRow {
    /// What the closed loop's state machine needs of this ticket.
    pub fn machine(&self) -> crate::domain::ticket::Ticket {
        use crate::domain::ticket::{Grade, Status};
        let at = |t: Option<i64>| t.map(|d| d.max(0) as u64);
        crate::domain::ticket::Ticket {
            status: Status::from_code(&self.status).unwrap_or(Status::PendingRegistration),
            grade: Grade::from_code(&self.grade).unwrap_or(Grade::General),
            sensor_sourced: self.sensor_sourced,
            deadline: at(self.deadline),
            rectified_at: at(self.rectified_at),
            extension_requested: at(self.extension_requested),
            reviewed: self.reviewed,
            closed_at: at(self.closed_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TicketEventRow {
    pub id: i64,
    pub ticket_id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Option<crate::domain::ticket::Status>)]
    pub from_status: Option<String>,
    #[schema(value_type = Option<crate::domain::ticket::Status>)]
    pub to_status: Option<String>,
    pub note: String,
    pub role: Option<String>,
    /// The step as JSON.
    pub details: Option<String>,
}

/// Which tickets to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketFilter {
    Open,
    Closed,
    All,
    Status(String),
}

impl TicketFilter {
    /// `open`, `closed`, `all`, or one status code of [`TICKET_STATUSES`].
    pub fn parse(s: &str) -> Option<TicketFilter> {
        match s {
            "open" => Some(TicketFilter::Open),
            "closed" => Some(TicketFilter::Closed),
            "all" => Some(TicketFilter::All),
            code if TICKET_STATUSES.iter().any(|(c, _)| *c == code) => {
                Some(TicketFilter::Status(code.to_string()))
            }
            _ => None,
        }
    }

    /// The SQL condition, with `placeholder` where a status code is bound,
    /// and the code to bind there.
    pub(super) fn condition(&self, placeholder: &str) -> (String, Option<&str>) {
        match self {
            TicketFilter::Open => ("status <> 'closed'".into(), None),
            TicketFilter::Closed => ("status = 'closed'".into(), None),
            TicketFilter::All => ("1 = 1".into(), None),
            TicketFilter::Status(s) => (format!("status = {placeholder}"), Some(s.as_str())),
        }
    }
}

/// The status a ticket opened from telemetry starts in.
pub const INITIAL_STATUS: &str = "pending_registration";

pub(super) const TICKET_COLUMNS: &str =
    "id, number, site, node, channel, cause, source, category, grade, status, title, \
     location, opened_at, updated_at, closed_at, alarm_count, last_alarm_at, sensor_sourced, deadline, \
     responsible_unit, responsible_person, measures, funds, contingency_plan, supervisor, document_no, \
     listed_at, delisted_at, rectified_at, reviewed, extension_requested, overdue_at, escalated_to";

/// Why a ticket transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no such ticket")]
    NotFound,
    #[error("{0}")]
    Refused(#[from] crate::domain::ticket::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TransitionError {
    fn from(e: sqlx::Error) -> Self {
        TransitionError::Store(StoreError::Db(e))
    }
}

/// Who acts on a ticket, and why.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub role: crate::domain::ticket::Role,
    pub note: &'a str,
}

pub(super) async fn open_or_attach(
    tx: &mut Transaction<'_, Any>,
    k: &AlarmKey,
    spec: &TicketSpec,
    alarm_id: i64,
    at: i64,
) -> Result<TicketOutcome, StoreError> {
    // The open ticket, if any (one per key by a partial unique index),
    // counted and found in one statement.
    let open: Option<(i64, String)> = query_as(
        "UPDATE tickets SET alarm_count = alarm_count + 1, last_alarm_at = ?, updated_at = ? \
         WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND status <> 'closed' RETURNING id, number",
    )
    .bind(at)
    .bind(at)
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((id, number)) = open {
        add_event(
            tx,
            id,
            at,
            "alarm_attached",
            None,
            None,
            &format!("alarm #{alarm_id}"),
        )
        .await?;
        return Ok(TicketOutcome::Attached { id, number });
    }
    let recent: Option<(i64, String)> = query_as(
        "SELECT id, number FROM tickets WHERE site = ? AND node = ? AND channel = ? AND cause = ? \
         AND status = 'closed' AND closed_at >= ? ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .bind(at.saturating_sub(spec.reopen_window_ms as i64))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((id, number)) = recent {
        query(
            "UPDATE tickets SET status = 'rectifying', closed_at = NULL, reviewed = FALSE, rectified_at = NULL, \
             alarm_count = alarm_count + 1, last_alarm_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(at)
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        let note = format!("hazard recurred: alarm #{alarm_id}");
        add_event(
            tx,
            id,
            at,
            "reopened",
            Some("closed"),
            Some("rectifying"),
            &note,
        )
        .await?;
        let entry = AuditEntry {
            at: at as u64,
            actor: "system",
            role: "system",
            action: "ticket.reopen",
            subject: format!("ticket:{id}"),
            details: serde_json::json!({ "alarm": alarm_id }).to_string(),
        };
        append_audit(tx, &entry).await?;
        return Ok(TicketOutcome::Reopened { id, number });
    }
    // The number needs the row id; insert with a placeholder unique to this
    // transaction, then set it.
    let placeholder = format!("pending-{alarm_id}-{at}");
    let id: i64 = query_scalar(
        "INSERT INTO tickets (number, site, node, channel, cause, source, category, grade, status, title, location, \
         opened_at, updated_at, alarm_count, last_alarm_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
    )
    .bind(&placeholder)
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .bind(spec.source)
    .bind(spec.category)
    .bind(spec.grade)
    .bind(INITIAL_STATUS)
    .bind(&spec.title)
    .bind(&spec.location)
    .bind(at)
    .bind(at)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    let number = format!(
        "{}{}-{id:05}",
        spec.prefix,
        crate::domain::time::date_cst(at as u64)
    );
    query("UPDATE tickets SET number = ? WHERE id = ?")
        .bind(&number)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    add_event(
        tx,
        id,
        at,
        "opened",
        None,
        Some(INITIAL_STATUS),
        &format!("opened automatically by alarm #{alarm_id}"),
    )
    .await?;
    Ok(TicketOutcome::Opened { id, number })
}

pub(super) async fn add_event(
    tx: &mut Transaction<'_, Any>,
    ticket_id: i64,
    at: i64,
    action: &str,
    from: Option<&str>,
    to: Option<&str>,
    note: &str,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note) \
         VALUES (?, ?, 'system', ?, ?, ?, ?)",
    )
    .bind(ticket_id)
    .bind(at)
    .bind(action)
    .bind(from)
    .bind(to)
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Flags open tickets whose deadline has passed (逾期) and escalates
    /// each to its supervising unit (or the bureau), once; returns them.
    pub async fn mark_overdue(&self, now: u64) -> Result<Vec<TicketRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let due: Vec<TicketRow> = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE status <> 'closed' AND deadline IS NOT NULL \
             AND deadline < ? AND overdue_at IS NULL ORDER BY id"
        ))
        .bind(now as i64)
        .fetch_all(&mut *tx)
        .await?;
        for t in &due {
            let to = t
                .supervisor
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "民政局".to_string());
            query(
                "UPDATE tickets SET overdue_at = ?, escalated_to = ?, updated_at = ? WHERE id = ?",
            )
            .bind(now as i64)
            .bind(&to)
            .bind(now as i64)
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
            add_event(
                &mut tx,
                t.id,
                now as i64,
                "overdue",
                None,
                None,
                &format!("escalated to {to}"),
            )
            .await?;
            let entry = AuditEntry {
                at: now,
                actor: "system",
                role: "system",
                action: "ticket.overdue",
                subject: format!("ticket:{}", t.id),
                details: serde_json::json!({ "deadline": t.deadline, "escalated_to": to })
                    .to_string(),
            };
            append_audit(&mut tx, &entry).await?;
        }
        let ids: Vec<i64> = due.iter().map(|t| t.id).collect();
        let mut out = Vec::new();
        for id in ids {
            out.push(
                query_as(&format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?,
            );
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Since when the channel behind a ticket has been normal: no standing
    /// alarm, pre-alarm or fault on it, and its node not offline or on
    /// battery. `None` while anything stands.
    pub(super) async fn normal_since(
        tx: &mut Transaction<'_, Any>,
        t: &TicketRow,
    ) -> Result<Option<u64>, StoreError> {
        let (standing, last_cleared): (i64, Option<i64>) = query_as(
            "SELECT COUNT(CASE WHEN state <> 'cleared' THEN 1 END), MAX(cleared_at) FROM alarms \
             WHERE site = ? AND node = ? AND (channel = ? OR channel = '')",
        )
        .bind(&t.site)
        .bind(&t.node)
        .bind(&t.channel)
        .fetch_one(&mut **tx)
        .await?;
        if standing > 0 {
            return Ok(None);
        }
        Ok(Some(last_cleared.unwrap_or(t.opened_at).max(0) as u64))
    }

    /// Drives a ticket one step through the closed loop: checks the step
    /// with the pure state machine (role, status, data proof), then records
    /// the new state and the step (who, role, when, why, what) in one
    /// transaction.
    pub async fn transition_ticket(
        &self,
        id: i64,
        action: &crate::domain::ticket::Action,
        actor: &Actor<'_>,
        policy: &crate::domain::ticket::Policy,
        now: u64,
    ) -> Result<TicketRow, TransitionError> {
        use crate::domain::ticket::{self as tickets, Action, DataProof};
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: TicketRow = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(TransitionError::NotFound)?;
        let current = row.machine();
        let proof = DataProof {
            normal_since: Self::normal_since(&mut tx, &row).await?,
        };
        let next = match tickets::apply(&current, action, actor.role, proof, policy, now) {
            Ok(n) => n,
            // Name the offending alarms, so the person sees what the data says.
            Err(tickets::Refusal::DataNotProven { reason }) => {
                let standing: Vec<AlarmRow> = query_as(&format!(
                    "SELECT {ALARM_COLUMNS} FROM alarms WHERE site = ? AND node = ? AND (channel = ? OR channel = '') \
                     AND state <> 'cleared' ORDER BY id"
                ))
                .bind(&row.site)
                .bind(&row.node)
                .bind(&row.channel)
                .fetch_all(&mut *tx)
                .await?;
                let offending: Vec<String> = standing
                    .iter()
                    .map(|a| {
                        let q = a.quantity.as_deref().unwrap_or("");
                        let value = a
                            .value
                            .map(|v| format!(" {}", crate::domain::labels::value(q, v)))
                            .unwrap_or_default();
                        let place = if a.channel.is_empty() {
                            a.node.clone()
                        } else {
                            format!("{}/{}", a.node, a.channel)
                        };
                        format!(
                            "{place} {}{}{value}（{}，{}起）",
                            crate::domain::labels::quantity(q),
                            crate::domain::labels::level(&a.level),
                            crate::domain::labels::alarm_state(&a.state),
                            crate::domain::time::minute_cst(a.raised_at)
                        )
                    })
                    .collect();
                let mut reason = if offending.is_empty() {
                    reason
                } else {
                    format!("{reason}；仍存在：{}", offending.join("；"))
                };
                // And the abnormal readings since the rectification report.
                let since = row.rectified_at.unwrap_or(row.opened_at);
                let readings: Vec<TicketReadingRow> = query_as(
                    "SELECT id, ticket_id, at, quantity, value, status, level, abnormal FROM ticket_readings \
                     WHERE ticket_id = ? AND at >= ? AND abnormal = TRUE ORDER BY at DESC, id DESC LIMIT 5",
                )
                .bind(id)
                .bind(since)
                .fetch_all(&mut *tx)
                .await?;
                if !readings.is_empty() {
                    let listed: Vec<String> = readings
                        .iter()
                        .map(|r| {
                            let what = if r.status != "ok" {
                                format!(
                                    "传感器{}",
                                    crate::domain::labels::channel_status(&r.status)
                                )
                            } else {
                                crate::domain::labels::level(&r.level).to_string()
                            };
                            format!(
                                "{} {} {}（{what}）",
                                crate::domain::time::minute_cst(r.at),
                                crate::domain::labels::quantity(&r.quantity),
                                crate::domain::labels::value(&r.quantity, r.value),
                            )
                        })
                        .collect();
                    reason = format!("{reason}；整改后异常读数：{}", listed.join("；"));
                }
                return Err(tickets::Refusal::DataNotProven { reason }.into());
            }
            Err(e) => return Err(e.into()),
        };
        let at = now as i64;
        let opt = |v: Option<u64>| v.map(|x| x as i64);
        query(
            "UPDATE tickets SET status = ?, grade = ?, deadline = ?, rectified_at = ?, reviewed = ?, \
             extension_requested = ?, closed_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(next.status.code())
        .bind(next.grade.code())
        .bind(opt(next.deadline))
        .bind(opt(next.rectified_at))
        .bind(next.reviewed)
        .bind(opt(next.extension_requested))
        .bind(opt(next.closed_at))
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        match action {
            Action::StartRectification { plan } => {
                query(
                    "UPDATE tickets SET responsible_unit = ?, responsible_person = ?, measures = ?, funds = ?, \
                     contingency_plan = ? WHERE id = ?",
                )
                .bind(&plan.responsible_unit)
                .bind(&plan.responsible_person)
                .bind(&plan.measures)
                .bind(&plan.funds)
                .bind(&plan.contingency_plan)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            Action::List {
                supervisor,
                document_no,
                ..
            } => {
                query("UPDATE tickets SET supervisor = ?, document_no = ?, listed_at = ? WHERE id = ?")
                    .bind(supervisor)
                    .bind(document_no)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            // 摘牌: a listed hazard is delisted when accepted.
            Action::Accept { passed: true } => {
                query("UPDATE tickets SET delisted_at = ? WHERE id = ?")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        let details = serde_json::to_string(action).unwrap_or_default();
        query(
            "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note, role, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(at)
        .bind(actor.name)
        .bind(action.code())
        .bind(current.status.code())
        .bind(next.status.code())
        .bind(actor.note)
        .bind(serde_json::to_value(actor.role).ok().and_then(|v| v.as_str().map(str::to_string)))
        .bind(&details)
        .execute(&mut *tx)
        .await?;
        let role = serde_json::to_value(actor.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let entry = AuditEntry {
            at: now,
            actor: actor.name,
            role: &role,
            action: &format!("ticket.{}", action.code()),
            subject: format!("ticket:{id}"),
            details: serde_json::json!({ "from": current.status.code(), "to": next.status.code(), "step": action, "note": actor.note }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        let row = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Tickets, newest first.
    pub async fn tickets(
        &self,
        filter: &TicketFilter,
        limit: i64,
    ) -> Result<Vec<TicketRow>, StoreError> {
        self.tickets_in(filter, None, limit).await
    }

    /// Tickets of some sites only (`None` = every site), newest first: the
    /// jurisdiction is applied in the query, before the limit.
    pub async fn tickets_in(
        &self,
        filter: &TicketFilter,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<TicketRow>, StoreError> {
        let (cond, status) = filter.condition("?3");
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE {cond} \
             AND (?1 IS NULL OR {site_in}) ORDER BY opened_at DESC, id DESC LIMIT ?2"
        );
        let q = query_as(&sql).bind(sites_json(sites)).bind(limit);
        let q = match status {
            Some(s) => q.bind(s),
            None => q,
        };
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// One ticket with its audit trail and linked alarms.
    pub async fn ticket(
        &self,
        id: i64,
    ) -> Result<Option<(TicketRow, Vec<TicketEventRow>, Vec<AlarmRow>)>, StoreError> {
        let ticket: Option<TicketRow> = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        let events = query_as(
            "SELECT id, ticket_id, at, actor, action, from_status, to_status, note, role, details FROM ticket_events \
             WHERE ticket_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let alarms = query_as(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE ticket_id = ? ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((ticket, events, alarms)))
    }
}
