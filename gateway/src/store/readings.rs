//! Readings the store keeps without a TSDB: readings linked to open tickets
//! (关联读数), hourly rollups per channel, each channel's latest reading, and
//! daily maxima for trends.

use super::{query, query_as, sites_json, Flag, Store, StoreError};
use serde::Serialize;

/// One channel-hour's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupAgg {
    pub min: i64,
    pub max: i64,
    pub sum: i64,
    pub count: i64,
}

/// Identity of a channel-hour.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    /// Start of the hour, ms since the epoch (UTC hours; China time is a
    /// whole number of hours ahead, so these are China's hours too).
    pub hour: i64,
}

/// A channel's latest measured reading: (quantity, value, at).
pub type RollupLast = (String, i32, u64);

/// A reading kept with an open ticket (关联读数).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = TicketReading)]
pub struct TicketReadingRow {
    pub id: i64,
    pub ticket_id: i64,
    /// When the reading was taken (ms since the epoch).
    pub at: i64,
    pub quantity: String,
    /// In the quantity's wire unit.
    pub value: i64,
    /// The channel status on the wire: ok, open, short, range, fault.
    pub status: String,
    /// The rules' level after this reading: normal, pre_alarm, alarm.
    pub level: String,
    /// Status not ok, or level not normal.
    #[sqlx(try_from = "Flag")]
    pub abnormal: bool,
}

/// A channel's latest measured reading (updated every minute).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = LatestReading)]
pub struct LatestRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    /// In the quantity's wire unit.
    pub value: i64,
    /// When it was taken (ms since the epoch).
    pub at: i64,
}

/// A day's maximum of one channel (China days), for trends.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = DailyMax)]
pub struct DailyMaxRow {
    pub node: String,
    pub channel: String,
    /// `YYYY-MM-DD`, China time.
    #[sqlx(skip)]
    pub day: String,
    /// Start of the day, ms since the epoch.
    pub day_start: i64,
    /// The day's maximum, in the quantity's wire unit.
    pub max: i64,
    /// Readings that day.
    pub count: i64,
}

/// A reading to keep with the open tickets of its channel.
#[derive(Debug, Clone)]
pub struct LinkedReading<'a> {
    pub site: &'a str,
    pub node: &'a str,
    pub channel: &'a str,
    pub quantity: &'a str,
    pub value: i32,
    pub status: &'a str,
    pub level: &'a str,
    pub abnormal: bool,
    pub at: u64,
}

impl Store {
    /// Keeps a reading with every open ticket on its channel; returns how
    /// many tickets it was linked to (0 when none is open).
    pub async fn link_reading(&self, r: &LinkedReading<'_>) -> Result<u64, StoreError> {
        let mut b = self.batch().await?;
        let n = b.link_reading(r).await?;
        b.commit().await?;
        Ok(n)
    }

    /// A ticket's linked readings, the newest `limit`, oldest first.
    pub async fn ticket_readings(
        &self,
        ticket_id: i64,
        limit: i64,
    ) -> Result<Vec<TicketReadingRow>, StoreError> {
        let mut rows: Vec<TicketReadingRow> = query_as(
            "SELECT id, ticket_id, at, quantity, value, status, level, abnormal FROM ticket_readings \
             WHERE ticket_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(ticket_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Merges hourly aggregates into `channel_hourly`, in one transaction.
    pub async fn merge_rollups(&self, rows: &[(RollupKey, RollupAgg)]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (k, a) in rows {
            query(
                "INSERT INTO channel_hourly (site, node, channel, quantity, hour, min, max, sum, count) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, node, channel, hour) DO UPDATE SET \
                 quantity = excluded.quantity, \
                 min = CASE WHEN excluded.min < channel_hourly.min THEN excluded.min ELSE channel_hourly.min END, \
                 max = CASE WHEN excluded.max > channel_hourly.max THEN excluded.max ELSE channel_hourly.max END, \
                 sum = channel_hourly.sum + excluded.sum, count = channel_hourly.count + excluded.count",
            )
            .bind(&k.site)
            .bind(&k.node)
            .bind(&k.channel)
            .bind(&k.quantity)
            .bind(k.hour)
            .bind(a.min)
            .bind(a.max)
            .bind(a.sum)
            .bind(a.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records each channel's latest reading, keeping a newer one stored.
    pub async fn save_latest(
        &self,
        rows: &[((String, String, String), RollupLast)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for ((site, node, channel), (quantity, value, at)) in rows {
            query(
                "INSERT INTO channel_latest (site, node, channel, quantity, value, at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (site, node, channel) DO UPDATE SET quantity = excluded.quantity, \
                 value = excluded.value, at = excluded.at WHERE excluded.at >= channel_latest.at",
            )
            .bind(site)
            .bind(node)
            .bind(channel)
            .bind(quantity)
            .bind(*value)
            .bind(*at as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest reading of every channel of some sites (`None` = all).
    pub async fn latest_in(&self, sites: Option<&[String]>) -> Result<Vec<LatestRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        Ok(query_as(&format!(
            "SELECT site, node, channel, quantity, value, at FROM channel_latest \
             WHERE (?1 IS NULL OR {site_in}) ORDER BY site, node, channel"
        ))
        .bind(sites_json(sites))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Each channel's daily maximum of `quantity` at a site over `[from, to)`
    /// (ms, aligned to China days by the caller), oldest day first.
    pub async fn daily_max(
        &self,
        site: &str,
        quantity: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<DailyMaxRow>, StoreError> {
        // time::day_start_cst, in SQL: China days start at 16:00 UTC.
        use crate::domain::time::{CST_OFFSET_MS as CST, DAY_MS as DAY};
        let mut rows: Vec<DailyMaxRow> = query_as(&format!(
            "SELECT node, channel, ((hour + {CST}) / {DAY}) * {DAY} - {CST} AS day_start, \
             MAX(max) AS max, CAST(SUM(count) AS BIGINT) AS count FROM channel_hourly \
             WHERE site = ? AND quantity = ? AND hour >= ? AND hour < ? \
             GROUP BY node, channel, ((hour + {CST}) / {DAY}) ORDER BY day_start, node, channel"
        ))
        .bind(site)
        .bind(quantity)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for r in &mut rows {
            r.day = crate::domain::time::day_cst(r.day_start);
        }
        Ok(rows)
    }
}
