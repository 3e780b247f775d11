//! The notification delivery log (推送记录): every attempt, and whether an
//! alarm has been delivered.

use super::{query, query_as, query_scalar, sites_json, Store, StoreError};
use serde::Serialize;

/// One notification delivery attempt, to log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NotificationLog {
    /// When it was attempted (ms since the epoch).
    pub at: i64,
    pub site: String,
    /// The channel's name; `-` when the site has no route for the tier.
    pub channel: String,
    /// What it was about: `alarm:12:raised:duty`, `alarm:12:escalated:manager`,
    /// `ticket:3:overdue:bureau`, …
    pub subject: String,
    pub alarm_id: Option<i64>,
    pub ticket_id: Option<i64>,
    /// delivered, rate_limited, refused, failed, gave_up, unrouted.
    pub outcome: String,
    /// The vendor's code and message.
    pub detail: String,
    /// How many messages the send carried (a group: “…等 N 条报警”).
    pub group_size: i64,
    pub attempt: i64,
    pub text: String,
}

/// A logged notification delivery attempt (推送记录).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Notification)]
pub struct NotificationRow {
    pub id: i64,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub log: NotificationLog,
}

impl Store {
    /// Logs notification delivery attempts, in one transaction.
    pub async fn log_notifications(&self, rows: &[NotificationLog]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for r in rows {
            query(
                "INSERT INTO notification_log (at, site, channel, subject, alarm_id, ticket_id, outcome, detail, \
                 group_size, attempt, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.at)
            .bind(&r.site)
            .bind(&r.channel)
            .bind(&r.subject)
            .bind(r.alarm_id)
            .bind(r.ticket_id)
            .bind(&r.outcome)
            .bind(&r.detail)
            .bind(r.group_size)
            .bind(r.attempt)
            .bind(&r.text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether an alarm's first notice was delivered somewhere.
    pub async fn notified(&self, alarm_id: i64) -> Result<bool, StoreError> {
        let n: i64 = query_scalar(
            "SELECT COUNT(*) FROM notification_log WHERE alarm_id = ? AND outcome = 'delivered'",
        )
        .bind(alarm_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Notification attempts of some sites (`None` = every site), newest first.
    pub async fn notifications_in(
        &self,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT id, at, site, channel, subject, alarm_id, ticket_id, outcome, detail, group_size, attempt, text \
             FROM notification_log WHERE (?1 IS NULL OR {site_in}) ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
