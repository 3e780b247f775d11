//! RabbitMQ password hashes of node credentials (issue 16): written when a
//! password is issued, read by `gateway rabbitmq-sync`.

use super::{query, query_as, Store, StoreError};
use std::collections::HashMap;

impl Store {
    /// Records `username`'s RabbitMQ hash (replacing an older one).
    pub async fn set_rabbit_hash(
        &self,
        username: &str,
        password_hash: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO node_rabbit_hashes (username, password_hash, set_at) VALUES (?, ?, ?) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, set_at = excluded.set_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(at as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every recorded RabbitMQ hash, by username.
    pub async fn rabbit_hashes(&self) -> Result<HashMap<String, String>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<(String, String)> =
            query_as("SELECT username, password_hash FROM node_rabbit_hashes")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(rows.into_iter().collect())
    }
}
