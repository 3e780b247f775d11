//! The hash-chained audit log: appending an entry in the caller's
//! transaction (serialised in this process), verification, and the records.

use super::{query, query_as, Store, StoreError};
use sqlx::{Any, Transaction};

/// An entry for the hash-chained audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: u64,
    pub actor: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub subject: String,
    pub details: String,
}

pub(super) async fn append_audit(
    tx: &mut Transaction<'_, Any>,
    e: &AuditEntry<'_>,
) -> Result<(), StoreError> {
    let last: Option<(i64, String)> =
        query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, crate::domain::audit::GENESIS.to_string()),
    };
    let at = e.at as i64;
    let hash = crate::domain::audit::hash(
        &prev, id, at, e.actor, e.role, e.action, &e.subject, &e.details,
    );
    query(
        "INSERT INTO audit_log (id, at, actor, role, action, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(at)
    .bind(e.actor)
    .bind(e.role)
    .bind(e.action)
    .bind(&e.subject)
    .bind(&e.details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Appends one operator action to the hash-chained audit log.
    pub async fn audit(&self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.audit(e).await?;
        b.commit().await
    }

    /// Verifies the audit chain: how many records are intact and the head
    /// hash (note it down: a truncation at the end is only caught by
    /// comparing with a head noted before), or where it breaks.
    pub async fn verify_audit(
        &self,
    ) -> Result<Result<(u64, String), crate::domain::audit::Broken>, StoreError> {
        let records = self.audit_records().await?;
        Ok(crate::domain::audit::verify(&records).map(|n| {
            (
                n,
                records
                    .last()
                    .map_or(crate::domain::audit::GENESIS.to_string(), |r| {
                        r.hash.clone()
                    }),
            )
        }))
    }

    /// The whole audit log, in order.
    pub async fn audit_records(
        &self,
    ) -> Result<Vec<crate::domain::audit::AuditRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, at, actor, role, action, subject, details, prev_hash, hash FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
