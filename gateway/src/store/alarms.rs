//! Alarms (报警记录): raising, levels, settling, suppression and flapping,
//! acknowledgement, the append-only alarm log, and the alarm rows as the
//! API lists them. One standing alarm per (site, node, channel, cause) is
//! held by a partial unique index.

use super::audit::{append_audit, AuditEntry};
use super::tickets::{TicketOutcome, TicketSpec};
use super::{query, query_as, sites_json, Flag, Store, StoreError};
use serde::Serialize;
use sqlx::{Any, Transaction};

/// Identity of an alarm cause on a channel (or a node, with `channel` empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AlarmKey {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
}

/// An alarm being raised or updated.
#[derive(Debug, Clone)]
pub struct AlarmInput {
    pub key: AlarmKey,
    /// `electrical_fire`, `fire_facility`, `fault` or `offline`.
    pub kind: &'static str,
    /// `pre_alarm`, `alarm`, `fault` or `offline`.
    pub level: &'static str,
    pub quantity: Option<&'static str>,
    pub value: Option<i32>,
    pub setpoint: Option<i32>,
    pub at: u64,
    /// Raised while its root cause stands (node offline, supply failure,
    /// site uplink lost): recorded, shown as suppressed, no ticket.
    pub suppressed: bool,
}

/// One rule transition for the append-only alarm log.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    pub at: u64,
    pub key: &'a AlarmKey,
    /// `raised`, `cleared`, `fault_raised`, `offline`, `uplink_lost`, …
    pub transition: &'static str,
    pub level: Option<&'static str>,
    pub value: Option<i32>,
    /// `notify`, `suppressed` or `flapping`.
    pub disposition: &'static str,
    /// `system`, or the operator who acted.
    pub actor: &'a str,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AlarmLogRow {
    pub id: i64,
    pub at: i64,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
    pub transition: String,
    pub level: Option<String>,
    pub value: Option<i64>,
    pub disposition: String,
    pub actor: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AlarmRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    /// Empty for node- and site-level alarms (offline, supply, uplink).
    pub channel: String,
    /// {quantity}_high, {quantity}_low, {quantity}_rise, fault, offline, supply, uplink.
    pub cause: String,
    #[schema(schema_with = crate::domain::codes::alarm_kind)]
    pub kind: String,
    #[schema(schema_with = crate::domain::codes::alarm_level)]
    pub level: String,
    #[schema(schema_with = crate::domain::codes::alarm_state)]
    pub state: String,
    #[schema(schema_with = crate::domain::codes::quantity)]
    pub quantity: Option<String>,
    /// In the quantity's wire unit.
    pub value: Option<i64>,
    pub setpoint: Option<i64>,
    pub peak: Option<i64>,
    pub raised_at: i64,
    pub updated_at: i64,
    pub cleared_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub ticket_id: Option<i64>,
    /// Raised while its root cause (node offline, supply failure, site uplink
    /// lost) stood: shown, not notified, no ticket.
    #[sqlx(try_from = "Flag")]
    pub suppressed: bool,
    /// The channel is flapping (抖动): its swings are logged, not notified.
    #[sqlx(try_from = "Flag")]
    pub flapping: bool,
}

/// Which alarms to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmFilter {
    /// Not cleared: active or latched awaiting reset.
    Standing,
    Active,
    Latched,
    Cleared,
    All,
}

pub(super) const ALARM_COLUMNS: &str =
    "id, site, node, channel, cause, kind, level, state, quantity, value, setpoint, peak, \
     raised_at, updated_at, cleared_at, acked_at, acked_by, ticket_id, suppressed, flapping";
pub(super) async fn alarm_by_id(
    tx: &mut Transaction<'_, Any>,
    id: i64,
) -> Result<AlarmRow, StoreError> {
    Ok(
        query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut **tx)
            .await?,
    )
}

impl Store {
    /// Raises (or updates) the standing alarm for `a.key`; with a ticket spec,
    /// links it to the open ticket for the same key, opening one if there is
    /// none. One transaction.
    pub async fn raise(
        &self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        // A concurrent writer may win the unique index between our read and
        // insert; the second attempt then finds its row and attaches.
        match self.raise_once(a, ticket).await {
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.raise_once(a, ticket).await
            }
            other => other,
        }
    }

    pub(super) async fn raise_once(
        &self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let mut b = self.batch().await?;
        let out = b.raise(a, ticket).await?;
        b.commit().await?;
        Ok(out)
    }

    /// Moves the standing alarm for `key` to `latched` or `cleared`. Returns
    /// the row, or `None` when nothing was standing.
    pub async fn settle(
        &self,
        key: &AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let mut b = self.batch().await?;
        let row = b.settle(key, state, value, at).await?;
        b.commit().await?;
        Ok(row)
    }

    /// Changes the level of a standing alarm (e.g. 报警 back to 预警).
    pub async fn set_level(
        &self,
        key: &AlarmKey,
        level: &'static str,
        value: i32,
        at: u64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.set_level(key, level, value, at).await?;
        b.commit().await
    }

    /// Appends a rule transition to the alarm log.
    pub async fn log_transition(&self, e: &LogEntry<'_>) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.log_transition(e).await?;
        b.commit().await
    }

    /// The alarm log of a site (and node), newest first.
    pub async fn alarm_log(
        &self,
        site: &str,
        node: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlarmLogRow>, StoreError> {
        Ok(query_as(
            "SELECT id, at, site, node, channel, cause, transition, level, value, disposition, actor FROM alarm_log \
             WHERE site = ? AND (? IS NULL OR node = ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(site)
        .bind(node)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One alarm by id.
    pub async fn alarm(&self, id: i64) -> Result<Option<AlarmRow>, StoreError> {
        Ok(
            query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Standing alarms with `cause` (e.g. every node's `offline`), of one site or all.
    pub async fn standing_with_cause(
        &self,
        site: Option<&str>,
        cause: &str,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE (? IS NULL OR site = ?) AND cause = ? AND state <> 'cleared' ORDER BY id"
        );
        Ok(query_as(&sql)
            .bind(site)
            .bind(site)
            .bind(cause)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Marks standing alarms of a site with `cause` suppressed (their root
    /// cause is now reported higher up, e.g. the site's uplink).
    pub async fn suppress_standing(
        &self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError> {
        let mut b = self.batch().await?;
        let n = b.suppress_standing(site, cause, at).await?;
        b.commit().await?;
        Ok(n)
    }

    /// Marks the standing alarm for `key` as flapping or not.
    pub async fn set_flapping(
        &self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let mut b = self.batch().await?;
        let row = b.set_flapping(key, flapping, at).await?;
        b.commit().await?;
        Ok(row)
    }

    /// Standing alarms of a node (or, with `node` empty, of a site's
    /// node-level causes) that were raised suppressed.
    pub async fn suppressed_standing(
        &self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        // Read in a transaction of its own, rolled back when dropped.
        self.batch().await?.suppressed_standing(site, node).await
    }

    /// Lifts the suppression of a standing alarm once its root cause has
    /// gone; with a ticket spec, links it to a ticket as a new raise would.
    pub async fn unsuppress(
        &self,
        id: i64,
        ticket: Option<&TicketSpec>,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        self.link_ticket(id, ticket, true, at).await
    }

    /// Links a standing alarm to a ticket (opening, attaching or reopening
    /// one), optionally lifting its suppression first.
    pub async fn link_ticket(
        &self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let mut b = self.batch().await?;
        let out = b.link_ticket(id, ticket, unsuppress, at).await?;
        b.commit().await?;
        Ok(out)
    }

    /// Standing node- or site-level offline alarms raised before `before`,
    /// not suppressed and without a ticket: due a 离线 ticket.
    pub async fn offline_due_ticket(&self, before: u64) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE cause IN ('offline', 'uplink') AND state <> 'cleared' \
             AND suppressed = FALSE AND ticket_id IS NULL AND raised_at <= ? ORDER BY id"
        );
        Ok(query_as(&sql)
            .bind(before as i64)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Standing alarms, newest first; `limit` caps the list.
    pub async fn alarms(
        &self,
        filter: AlarmFilter,
        limit: i64,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        self.alarms_in(filter, None, limit).await
    }

    /// Alarms of some sites only (`None` = every site), newest first: the
    /// jurisdiction is applied in the query, before the limit.
    pub async fn alarms_in(
        &self,
        filter: AlarmFilter,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let cond = match filter {
            AlarmFilter::Standing => "state <> 'cleared'",
            AlarmFilter::Active => "state = 'active'",
            AlarmFilter::Latched => "state = 'latched'",
            AlarmFilter::Cleared => "state = 'cleared'",
            AlarmFilter::All => "1 = 1",
        };
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE {cond} \
             AND (?1 IS NULL OR {site_in}) ORDER BY raised_at DESC, id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records the duty officer's acknowledgement (确认) of an alarm; the first
    /// acknowledgement counts. `None` when there is no such alarm.
    pub async fn ack(&self, id: i64, by: &str, at: u64) -> Result<Option<AlarmRow>, StoreError> {
        self.ack_as(id, by, "duty", at).await
    }

    /// [`Store::ack`] by someone in `role` (a role code), for the audit trail.
    pub async fn ack_as(
        &self,
        id: i64,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let first =
            query("UPDATE alarms SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL")
                .bind(at as i64)
                .bind(by)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if first > 0 {
            let entry = AuditEntry {
                at,
                actor: by,
                role,
                action: "alarm.ack",
                subject: format!("alarm:{id}"),
                details: "{}".into(),
            };
            append_audit(&mut tx, &entry).await?;
        }
        let row = query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}
