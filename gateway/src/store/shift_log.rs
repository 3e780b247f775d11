//! The shift log (交接班记录): append-only handover notes per site, audited.

use super::audit::{append_audit, AuditEntry};
use super::{query_as, sites_json, Store, StoreError};
use serde::Serialize;

/// A handover note (交接班记录).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = ShiftNote)]
pub struct ShiftNoteRow {
    pub id: i64,
    /// When it was written (ms since the epoch).
    pub at: i64,
    pub site: String,
    /// Who wrote it.
    pub author: String,
    /// Their role code.
    pub role: String,
    pub text: String,
}

impl Store {
    /// Appends a handover note and audits it.
    pub async fn add_shift_note(
        &self,
        site: &str,
        author: &str,
        role: &str,
        text: &str,
        at: u64,
    ) -> Result<ShiftNoteRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: ShiftNoteRow = query_as(
            "INSERT INTO shift_log (at, site, author, role, text) VALUES (?, ?, ?, ?, ?) \
             RETURNING id, at, site, author, role, text",
        )
        .bind(at as i64)
        .bind(site)
        .bind(author)
        .bind(role)
        .bind(text)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: author,
            role,
            action: "shift.note",
            subject: format!("site:{site}"),
            details: serde_json::json!({ "note": row.id, "text": text }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Handover notes of some sites (`None` = every site), newest first.
    pub async fn shift_notes_in(
        &self,
        sites: Option<&[String]>,
        site: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ShiftNoteRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT id, at, site, author, role, text FROM shift_log \
             WHERE (?1 IS NULL OR {site_in}) AND (?3 IS NULL OR site = ?3) ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .bind(site)
            .fetch_all(&self.pool)
            .await?)
    }
}
