//! Rule state kept across restarts: the audited rule settings, each
//! channel's saved state and each node's (boot, seq) de-duplication window.

use super::audit::{append_audit, AuditEntry};
use super::{query, query_as, query_scalar, Store, StoreError};
use serde::Serialize;

/// A recorded change of rule settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RuleChangeRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub scope: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Store {
    /// Compares the rule settings in force with those last recorded and
    /// records every difference as a change by `actor` (审计). Returns the
    /// changes recorded.
    pub async fn sync_rule_settings(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
        actor: &str,
        at: u64,
    ) -> Result<Vec<RuleChangeRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let old: Vec<(String, String)> = query_as("SELECT scope, settings FROM rule_settings")
            .fetch_all(&mut *tx)
            .await?;
        let old: std::collections::BTreeMap<String, String> = old.into_iter().collect();
        let mut changes = Vec::new();
        let scopes: std::collections::BTreeSet<&String> =
            old.keys().chain(settings.keys()).collect();
        for scope in scopes {
            let (before, after) = (old.get(scope), settings.get(scope));
            if before == after {
                continue;
            }
            let id: i64 = query_scalar(
                "INSERT INTO rule_changes (at, actor, scope, old, new) VALUES (?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(at as i64)
            .bind(actor)
            .bind(scope)
            .bind(before)
            .bind(after)
            .fetch_one(&mut *tx)
            .await?;
            match after {
                Some(new) => {
                    query(
                        "INSERT INTO rule_settings (scope, settings, updated_at) VALUES (?, ?, ?) \
                         ON CONFLICT (scope) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                    )
                    .bind(scope)
                    .bind(new)
                    .bind(at as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    query("DELETE FROM rule_settings WHERE scope = ?")
                        .bind(scope)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let entry = AuditEntry {
                at,
                actor,
                role: "config",
                action: "rules.change",
                subject: format!("rules:{scope}"),
                details: serde_json::json!({ "old": before, "new": after }).to_string(),
            };
            append_audit(&mut tx, &entry).await?;
            changes.push(RuleChangeRow {
                id,
                at: at as i64,
                actor: actor.to_string(),
                scope: scope.clone(),
                old: before.cloned(),
                new: after.cloned(),
            });
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// Recorded rule changes, newest first.
    pub async fn rule_changes(&self, limit: i64) -> Result<Vec<RuleChangeRow>, StoreError> {
        Ok(query_as(
            "SELECT id, at, actor, scope, old, new FROM rule_changes ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Saves a channel's rule state (JSON of `rules::ChannelState`).
    pub async fn save_channel_state(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        quantity: &str,
        state: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.save_channel_state(site, node, channel, quantity, state, at)
            .await?;
        b.commit().await
    }

    /// Every node's saved de-duplication window: (site, node, state).
    pub async fn node_seqs(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(query_as("SELECT site, node, state FROM node_seq")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every saved channel state: (site, node, channel, quantity, state JSON).
    pub async fn channel_states(
        &self,
    ) -> Result<Vec<(String, String, String, String, String)>, StoreError> {
        Ok(
            query_as("SELECT site, node, channel, quantity, state FROM channel_state")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
