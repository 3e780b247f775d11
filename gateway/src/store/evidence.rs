//! What evidence a ticket, and the gateway in all, hold: the figures the
//! evidence quotas (`crate::evidence::check_quota`) are judged on.

use super::{query_as, query_scalar, Store, StoreError};
use crate::evidence::Usage;

impl Store {
    /// Evidence on ticket `ticket_id` (entries, files, bytes) and the bytes
    /// of every stored file, each distinct file counted once.
    pub async fn evidence_usage(&self, ticket_id: i64) -> Result<Usage, StoreError> {
        let (entries, files, bytes): (i64, i64, i64) = query_as(
            "SELECT COUNT(*), \
             CAST(COALESCE(SUM(CASE WHEN kind = 'file' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(size), 0) AS BIGINT) \
             FROM ticket_evidence WHERE ticket_id = ?",
        )
        .bind(ticket_id)
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM \
             (SELECT MAX(size) AS size FROM ticket_evidence WHERE kind = 'file' GROUP BY content_hash) files",
        )
        .fetch_one(&self.pool)
        .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Usage {
            entries: n(entries),
            files: n(files),
            bytes: n(bytes),
            total_bytes: n(total),
        })
    }

    /// Whether a file with this SHA-256 is already stored (then an upload
    /// of the same bytes costs no space in all).
    pub async fn evidence_hash_known(&self, hash: &str) -> Result<bool, StoreError> {
        let n: i64 = query_scalar("SELECT COUNT(*) FROM ticket_evidence WHERE content_hash = ?")
            .bind(hash)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }
}
