//! Commissioning records: node self-tests (自检), learned baselines (基线学习)
//! and the hours they are learned from, setpoint changes (定值修改) and the
//! commissioning sign-offs.

use super::audit::{append_audit, AuditEntry};
use super::{query_as, sites_json, Store, StoreError};
use serde::Serialize;

/// A node self-test (自检) as recorded.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SelfTestRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    /// `command` or `test_key` ([`crate::alarms::selftest::Trigger`]).
    pub mode: String,
    pub requested_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `passed` or `failed`.
    pub result: String,
    /// Per-channel results, a JSON array of [`crate::alarms::selftest::ChannelResult`].
    pub channels: String,
    /// Why the whole test failed, when it is not one channel's reason.
    pub reason: Option<String>,
}

/// A learned baseline as recorded (JSON of [`crate::alarms::baseline::Baseline`]
/// and [`crate::alarms::baseline::Recommendation`]).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BaselineRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub learned_at: i64,
    pub baseline: String,
    pub recommendation: Option<String>,
}

/// A setpoint change as recorded; the newest per channel is in force.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = SetpointChange)]
pub struct SetpointRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub pre_alarm: Option<i64>,
    pub alarm: i64,
    /// `recommendation` (推荐定值 applied) or `manual`.
    pub source: String,
    pub applied_by: String,
    pub role: String,
    pub applied_at: i64,
}

/// The site manager's sign-off (验收签字).
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow, utoipa::ToSchema)]
pub struct SignOff {
    pub id: i64,
    pub site: String,
    pub signed_by: String,
    pub signed_at: i64,
    pub note: String,
    /// SHA-256 of the report's canonical JSON at signing.
    pub report_sha256: String,
}

/// A commissioning report as signed: its SHA-256, its JSON, and the
/// figures the audit record repeats.
#[derive(Debug, Clone)]
pub struct SignedReport {
    pub sha256: String,
    pub json: String,
    pub channels: usize,
    pub selftest_passed: usize,
}

/// One hour of a channel (a `channel_hourly` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRow {
    /// Start of the hour, ms.
    pub hour: i64,
    pub min: i64,
    pub max: i64,
    pub sum: i64,
    pub count: i64,
}

/// A channel's first hour of readings (`channel_hourly`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChannelFirst {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub first_hour: i64,
}

pub(super) const SETPOINT_COLUMNS: &str =
    "id, site, node, channel, quantity, pre_alarm, alarm, source, applied_by, role, applied_at";

pub(super) const SELFTEST_COLUMNS: &str =
    "id, site, node, mode, requested_by, started_at, finished_at, result, channels, reason";

impl Store {
    /// Records a self-test starting (and who asked, in the audit log).
    pub async fn start_selftest(
        &self,
        site: &str,
        node: &str,
        mode: &str,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<i64, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let (id,): (i64,) = query_as(
            "INSERT INTO selftests (site, node, mode, requested_by, started_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(site)
        .bind(node)
        .bind(mode)
        .bind(by)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "node.selftest",
            subject: format!("node:{site}/{node}"),
            details: serde_json::json!({ "selftest": id, "mode": mode }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records a self-test's end, once.
    pub async fn finish_selftest(
        &self,
        id: i64,
        at: u64,
        passed: bool,
        channels_json: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.finish_selftest(id, at, passed, channels_json, reason)
            .await?;
        b.commit().await
    }

    pub async fn selftest(&self, id: i64) -> Result<Option<SelfTestRow>, StoreError> {
        let sql = format!("SELECT {SELFTEST_COLUMNS} FROM selftests WHERE id = ?");
        Ok(query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    /// Self-tests of some sites (`None` = every site), newest first;
    /// `node` narrows to one node of `site`.
    pub async fn selftests_in(
        &self,
        sites: Option<&[String]>,
        site: Option<&str>,
        node: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SelfTestRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {SELFTEST_COLUMNS} FROM selftests \
             WHERE (?1 IS NULL OR {site_in}) AND (?3 IS NULL OR site = ?3) AND (?4 IS NULL OR node = ?4) \
             ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .bind(site)
            .bind(node)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Residual-current and temperature channels with their first hour of
    /// readings, for the channels with no learned baseline yet.
    pub async fn channels_to_learn(&self) -> Result<Vec<ChannelFirst>, StoreError> {
        Ok(query_as(
            "SELECT h.site, h.node, h.channel, MIN(h.quantity) AS quantity, MIN(h.hour) AS first_hour \
             FROM channel_hourly h \
             WHERE h.quantity IN ('residual_current', 'temperature') AND NOT EXISTS (SELECT 1 FROM baselines b \
               WHERE b.site = h.site AND b.node = h.node AND b.channel = h.channel) \
             GROUP BY h.site, h.node, h.channel",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A channel's hourly rollups in `[from, to)`.
    pub async fn channel_hours(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourRow>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = query_as(
            "SELECT hour, min, max, sum, count FROM channel_hourly \
             WHERE site = ? AND node = ? AND channel = ? AND hour >= ? AND hour < ? ORDER BY hour",
        )
        .bind(site)
        .bind(node)
        .bind(channel)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, min, max, sum, count)| HourRow {
                hour,
                min,
                max,
                sum,
                count,
            })
            .collect())
    }

    /// Records a learned baseline, once per channel (a second record is a
    /// no-op: the first one stands).
    pub async fn save_baseline(&self, row: &BaselineRow) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.save_baseline(row).await?;
        b.commit().await
    }

    /// Learned baselines of one site.
    pub async fn baselines(&self, site: &str) -> Result<Vec<BaselineRow>, StoreError> {
        Ok(query_as(
            "SELECT site, node, channel, quantity, learned_at, baseline, recommendation \
             FROM baselines WHERE site = ? ORDER BY node, channel",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a setpoint change, with its audit record, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_setpoint(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        quantity: &str,
        pre_alarm: Option<i64>,
        alarm: i64,
        source: &str,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<SetpointRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let old: Option<SetpointRow> = query_as(&format!(
            "SELECT {SETPOINT_COLUMNS} FROM setpoints WHERE site = ? AND node = ? AND channel = ? \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(site)
        .bind(node)
        .bind(channel)
        .fetch_optional(&mut *tx)
        .await?;
        let row: SetpointRow = query_as(&format!(
            "INSERT INTO setpoints (site, node, channel, quantity, pre_alarm, alarm, source, applied_by, role, applied_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SETPOINT_COLUMNS}"
        ))
        .bind(site)
        .bind(node)
        .bind(channel)
        .bind(quantity)
        .bind(pre_alarm)
        .bind(alarm)
        .bind(source)
        .bind(by)
        .bind(role)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "rule.setpoint",
            subject: format!("channel:{site}/{node}/{channel}"),
            details: serde_json::json!({
                "quantity": quantity,
                "source": source,
                "old": old.map(|o| serde_json::json!({ "pre_alarm": o.pre_alarm, "alarm": o.alarm })),
                "new": { "pre_alarm": pre_alarm, "alarm": alarm },
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The setpoints in force: the newest change per channel.
    pub async fn setpoints_in_force(&self) -> Result<Vec<SetpointRow>, StoreError> {
        Ok(query_as(&format!(
            "SELECT {SETPOINT_COLUMNS} FROM setpoints s WHERE id = \
             (SELECT MAX(id) FROM setpoints t WHERE t.site = s.site AND t.node = s.node AND t.channel = s.channel) \
             ORDER BY site, node, channel"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the site manager's sign-off of a commissioning report (the
    /// report itself is kept as signed), with its audit record.
    pub async fn sign_commissioning(
        &self,
        site: &str,
        by: &str,
        role: &str,
        note: &str,
        report: &SignedReport,
        at: u64,
    ) -> Result<SignOff, StoreError> {
        let sha = &report.sha256;
        let json = &report.json;
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: SignOff = query_as(
            "INSERT INTO commissioning_signoffs (site, signed_by, signed_at, note, report_sha256, report) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id, site, signed_by, signed_at, note, report_sha256",
        )
        .bind(site)
        .bind(by)
        .bind(at as i64)
        .bind(note)
        .bind(sha)
        .bind(json)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "commissioning.sign_off",
            subject: format!("site:{site}"),
            details: serde_json::json!({
                "signoff": row.id, "report_sha256": sha, "note": note,
                "channels": report.channels, "selftest_passed": report.selftest_passed,
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A site's commissioning sign-offs, oldest first.
    pub async fn commissioning_signoffs(&self, site: &str) -> Result<Vec<SignOff>, StoreError> {
        Ok(query_as(
            "SELECT id, site, signed_by, signed_at, note, report_sha256 FROM commissioning_signoffs \
             WHERE site = ? ORDER BY id",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?)
    }
}
