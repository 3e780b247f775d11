//! Sessions and user administration (会话与用户管理): logout, pruning of
//! expired sessions, and the changes an administrator makes to a user
//! (disable, enable, new password, revoke sessions), each audited in the
//! same transaction. Password hashing runs on a blocking thread, never on
//! the async workers that carry alarms.

use super::{append_audit, query, query_as, AuditEntry, Flag, Store, StoreError};
use serde::Serialize;

/// A user as an administrator sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserRow {
    pub id: i64,
    pub login: String,
    pub name: String,
    /// duty, site_manager, inspector, installer, admin.
    pub role: String,
    /// The sites covered; null = every site.
    pub sites: Option<Vec<String>>,
    /// A disabled user cannot log in, and its sessions are closed.
    pub disabled: bool,
    /// ms since the epoch.
    pub created_at: i64,
    /// Sessions that have not expired.
    pub sessions: i64,
}

/// Why a change to a user was not made.
#[derive(Debug, thiserror::Error)]
pub enum UserAdminError {
    #[error("no such user")]
    NotFound,
    #[error("{0}")]
    Password(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UserAdminError {
    fn from(e: sqlx::Error) -> Self {
        UserAdminError::Store(StoreError::Db(e))
    }
}

/// Who made a change, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    pub name: &'a str,
    pub role: &'a str,
}

/// Checks `password` against `stored` on a blocking thread; with no stored
/// hash (unknown or disabled login) against a dummy one, so that the
/// answer takes as long either way.
pub async fn verify_off_worker(password: &str, stored: Option<String>) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match stored {
            Some(hash) => crate::auth::verify_password(&password, &hash),
            None => {
                let dummy = DUMMY.get_or_init(|| {
                    crate::auth::hash_password("dummy-password-never-used").unwrap_or_default()
                });
                let _ = crate::auth::verify_password(&password, dummy);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Hashes a new password on a blocking thread.
async fn hash_off_worker(password: &str) -> Result<String, String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| e.to_string())?
}

type UserTuple = (i64, String, String, String, String, Flag, i64, i64);

impl Store {
    /// Ends the session of `token` (logout); `false` if there was none.
    pub async fn logout(&self, token: &str) -> Result<bool, StoreError> {
        let done = query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(crate::auth::token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes sessions that have expired by `now`; returns how many.
    pub async fn prune_sessions(&self, now: u64) -> Result<u64, StoreError> {
        let done = query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Every user, by login, with its live sessions at `now`.
    pub async fn users(&self, now: u64) -> Result<Vec<UserRow>, StoreError> {
        let rows: Vec<UserTuple> = query_as(
            "SELECT u.id, u.login, u.name, u.role, u.sites, u.disabled, u.created_at, \
             (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > ?) \
             FROM users u ORDER BY u.login",
        )
        .bind(now as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, login, name, role, sites, disabled, created_at, sessions)| UserRow {
                    id,
                    login,
                    name,
                    role,
                    sites: crate::auth::parse_sites(&sites),
                    disabled: disabled.into(),
                    created_at,
                    sessions,
                },
            )
            .collect())
    }

    /// One user by login.
    pub async fn user_row(&self, login: &str, now: u64) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .users(now)
            .await?
            .into_iter()
            .find(|u| u.login == login))
    }

    /// Disables (closing every session) or enables a user.
    pub async fn set_disabled(
        &self,
        login: &str,
        disabled: bool,
        by: By<'_>,
        now: u64,
    ) -> Result<(), UserAdminError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let sql = if disabled {
            "UPDATE users SET disabled = TRUE WHERE login = ? RETURNING id"
        } else {
            "UPDATE users SET disabled = FALSE WHERE login = ? RETURNING id"
        };
        let id: Option<(i64,)> = query_as(sql).bind(login).fetch_optional(&mut *tx).await?;
        let (id,) = id.ok_or(UserAdminError::NotFound)?;
        let mut closed = 0;
        if disabled {
            closed = query("DELETE FROM sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let entry = AuditEntry {
            at: now,
            actor: by.name,
            role: by.role,
            action: if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            subject: format!("user:{login}"),
            details: serde_json::json!({ "sessions_closed": closed }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password and closes every session of the user.
    pub async fn set_password(
        &self,
        login: &str,
        password: &str,
        by: By<'_>,
        now: u64,
    ) -> Result<(), UserAdminError> {
        let hash = hash_off_worker(password)
            .await
            .map_err(UserAdminError::Password)?;
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let id: Option<(i64,)> =
            query_as("UPDATE users SET password_hash = ? WHERE login = ? RETURNING id")
                .bind(&hash)
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
        let (id,) = id.ok_or(UserAdminError::NotFound)?;
        close_sessions(&mut tx, id, login, by, now, "user.password").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes every session of a user (all its tokens get 401); returns how many.
    pub async fn revoke_sessions(
        &self,
        login: &str,
        by: By<'_>,
        now: u64,
    ) -> Result<u64, UserAdminError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let id: Option<(i64,)> = query_as("SELECT id FROM users WHERE login = ?")
            .bind(login)
            .fetch_optional(&mut *tx)
            .await?;
        let (id,) = id.ok_or(UserAdminError::NotFound)?;
        let closed = close_sessions(&mut tx, id, login, by, now, "user.sessions.revoke").await?;
        tx.commit().await?;
        Ok(closed)
    }
}

/// Deletes every session of user `id` and audits it as `action` (a new
/// password, a revocation); returns how many were closed.
async fn close_sessions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    login: &str,
    by: By<'_>,
    now: u64,
    action: &'static str,
) -> Result<u64, UserAdminError> {
    let closed = query("DELETE FROM sessions WHERE user_id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let entry = AuditEntry {
        at: now,
        actor: by.name,
        role: by.role,
        action,
        subject: format!("user:{login}"),
        details: serde_json::json!({ "sessions_closed": closed }).to_string(),
    };
    append_audit(tx, &entry).await?;
    Ok(closed)
}
