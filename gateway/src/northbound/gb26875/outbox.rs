//! The persisted outbox of one (centre, site) link (`gb26875_outbox`):
//! data units in the order they are to reach the centre. The head is sent
//! and resent until the centre confirms it; only then does the next go, so
//! the centre sees events in the order they happened, across outages and
//! restarts. Full (`outbox_max` unconfirmed): the oldest units that do not
//! carry a fire alarm are dropped and counted; a fire alarm never is.

use crate::store::{portable, Store, StoreError};
use sqlx::{AssertSqlSafe, Row};

/// Confirmed rows are kept this long (for the audit of what was sent).
const KEEP_CONFIRMED_MS: i64 = 7 * 86_400_000;

fn q(sql: &str) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(AssertSqlSafe(portable(sql)))
}

#[derive(Clone)]
pub struct Outbox {
    store: Store,
    centre: String,
    site: String,
    max: i64,
}

/// The unit at the head of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: i64,
    pub unit: Vec<u8>,
    pub subject: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    super::describe::parse_hex(s).unwrap_or_default()
}

impl Outbox {
    pub fn new(store: Store, centre: &str, site: &str, max: u32) -> Outbox {
        Outbox {
            store,
            centre: centre.into(),
            site: site.into(),
            max: i64::from(max),
        }
    }

    /// Queues a unit unless its subject was queued before; returns whether
    /// it was added, and how many old units a full outbox dropped for it.
    pub async fn push(
        &self,
        subject: &str,
        alarm_id: Option<i64>,
        unit: &[u8],
        fire: bool,
        now_ms: i64,
    ) -> Result<(bool, u64), StoreError> {
        let added = q("INSERT INTO gb26875_outbox (centre, site, subject, alarm_id, unit_hex, fire, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (centre, site, subject) DO NOTHING")
        .bind(&self.centre)
        .bind(&self.site)
        .bind(subject)
        .bind(alarm_id)
        .bind(hex(unit))
        .bind(fire)
        .bind(now_ms)
        .execute(self.store.pool())
        .await?
        .rows_affected()
            > 0;
        let mut dropped = 0;
        if added {
            let depth = self.depth().await?;
            if depth > self.max {
                dropped = q(
                    "DELETE FROM gb26875_outbox WHERE id IN (SELECT id FROM gb26875_outbox \
                     WHERE centre = ? AND site = ? AND confirmed_at IS NULL AND fire = FALSE \
                     ORDER BY id LIMIT ?)",
                )
                .bind(&self.centre)
                .bind(&self.site)
                .bind(depth - self.max)
                .execute(self.store.pool())
                .await?
                .rows_affected();
            }
        }
        Ok((added, dropped))
    }

    /// The oldest unconfirmed unit.
    pub async fn head(&self) -> Result<Option<Head>, StoreError> {
        let row = q("SELECT id, unit_hex, subject FROM gb26875_outbox \
             WHERE centre = ? AND site = ? AND confirmed_at IS NULL ORDER BY id LIMIT 1")
        .bind(&self.centre)
        .bind(&self.site)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map(|r| Head {
            id: r.get::<i64, _>(0),
            unit: unhex(&r.get::<String, _>(1)),
            subject: r.get::<String, _>(2),
        }))
    }

    /// The centre confirmed the unit; confirmed rows older than a week go.
    pub async fn confirm(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        q("UPDATE gb26875_outbox SET confirmed_at = ? WHERE id = ?")
            .bind(now_ms)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        q("DELETE FROM gb26875_outbox WHERE centre = ? AND site = ? AND confirmed_at < ?")
            .bind(&self.centre)
            .bind(&self.site)
            .bind(now_ms - KEEP_CONFIRMED_MS)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Counts a send of the unit.
    pub async fn attempted(&self, id: i64) -> Result<(), StoreError> {
        q("UPDATE gb26875_outbox SET attempts = attempts + 1 WHERE id = ?")
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Unconfirmed units.
    pub async fn depth(&self) -> Result<i64, StoreError> {
        let r = q("SELECT COUNT(*) FROM gb26875_outbox WHERE centre = ? AND site = ? AND confirmed_at IS NULL")
            .bind(&self.centre)
            .bind(&self.site)
            .fetch_one(self.store.pool())
            .await?;
        Ok(r.get::<i64, _>(0))
    }

    /// Alarms queued as raised whose clear has not been queued.
    pub async fn raised_not_cleared(&self) -> Result<Vec<i64>, StoreError> {
        let rows = q(
            "SELECT DISTINCT alarm_id FROM gb26875_outbox o WHERE centre = ? AND site = ? \
             AND alarm_id IS NOT NULL AND subject NOT LIKE '%:clear' AND NOT EXISTS \
             (SELECT 1 FROM gb26875_outbox c WHERE c.centre = o.centre AND c.site = o.site \
              AND c.alarm_id = o.alarm_id AND c.subject LIKE '%:clear')",
        )
        .bind(&self.centre)
        .bind(&self.site)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }
}
