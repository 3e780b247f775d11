//! What evidence a ticket, and the gateway in all, hold: the figures the
//! evidence quotas (`crate::domain::ticket::evidence::check_quota`) are judged on.

use super::audit::{append_audit, AuditEntry};
use super::{query_as, query_scalar, Store, StoreError};
use crate::domain::ticket::EvidenceUsage as Usage;
use serde::Serialize;

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

/// A note or file attached to a ticket as evidence.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Evidence)]
pub struct EvidenceRow {
    pub id: i64,
    pub ticket_id: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    #[schema(schema_with = crate::domain::codes::evidence_kind)]
    pub kind: String,
    pub media_type: Option<String>,
    pub size: Option<i64>,
    /// SHA-256; GET /api/v1/evidence/{hash}.
    pub content_hash: Option<String>,
    pub note: String,
}

impl Store {
    /// Attaches evidence to a ticket (the file, if any, is already stored
    /// under its content hash) and audits it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_evidence(
        &self,
        ticket_id: i64,
        actor: &str,
        role: &str,
        file: Option<(&str, i64, &str)>,
        note: &str,
        at: u64,
    ) -> Result<EvidenceRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let (media_type, size, hash) = match file {
            Some((m, n, h)) => (Some(m), Some(n), Some(h)),
            None => (None, None, None),
        };
        let id: i64 = query_scalar(
            "INSERT INTO ticket_evidence (ticket_id, at, actor, role, kind, media_type, size, content_hash, note) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ticket_id)
        .bind(at as i64)
        .bind(actor)
        .bind(role)
        .bind(if file.is_some() { "file" } else { "note" })
        .bind(media_type)
        .bind(size)
        .bind(hash)
        .bind(note)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor,
            role,
            action: "ticket.evidence",
            subject: format!("ticket:{ticket_id}"),
            details: serde_json::json!({ "media_type": media_type, "size": size, "sha256": hash, "note": note }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        let row = query_as(
            "SELECT id, ticket_id, at, actor, role, kind, media_type, size, content_hash, note FROM ticket_evidence WHERE id = ?",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A ticket's evidence, oldest first.
    pub async fn evidence(&self, ticket_id: i64) -> Result<Vec<EvidenceRow>, StoreError> {
        Ok(query_as(
            "SELECT id, ticket_id, at, actor, role, kind, media_type, size, content_hash, note FROM ticket_evidence \
             WHERE ticket_id = ? ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The media type of a stored file and the sites of the tickets it is
    /// evidence for (to check jurisdiction before serving it).
    pub async fn evidence_file(
        &self,
        hash: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let rows: Vec<(String, String)> = query_as(
            "SELECT e.media_type, t.site FROM ticket_evidence e JOIN tickets t ON t.id = e.ticket_id \
             WHERE e.content_hash = ? AND e.media_type IS NOT NULL",
        )
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        let Some((media, _)) = rows.first().cloned() else {
            return Ok(None);
        };
        Ok(Some((media, rows.into_iter().map(|(_, s)| s).collect())))
    }
}
