//! Users, sessions and user administration (会话与用户管理): creating a
//! user, login and bearer-token lookup, logout, pruning of expired sessions, and the changes an administrator makes to a user
//! (disable, enable, new password, revoke sessions), each audited in the
//! same transaction. Password hashing runs on a blocking thread, never on
//! the async workers that carry alarms.

use super::audit::{append_audit, AuditEntry};
use super::{query, query_as, query_scalar, Flag, Store, StoreError};
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

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user with this login exists")]
    Exists,
    #[error("{0}")]
    Password(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UserError {
    fn from(e: sqlx::Error) -> Self {
        UserError::Store(StoreError::Db(e))
    }
}

impl Store {
    /// Creates a user; the password is hashed here (argon2id).
    pub async fn add_user(
        &self,
        login: &str,
        name: &str,
        role: crate::domain::ticket::Role,
        sites: Option<&[String]>,
        password: &str,
        at: u64,
    ) -> Result<i64, UserError> {
        let hash = crate::auth::hash_password(password).map_err(UserError::Password)?;
        let sites = sites.map_or("*".to_string(), |s| s.join(","));
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let id: i64 = query_scalar(
            "INSERT INTO users (login, name, role, sites, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(login)
        .bind(name)
        .bind(crate::auth::role_code(role))
        .bind(&sites)
        .bind(&hash)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Exists,
            e => UserError::Store(e.into()),
        })?;
        let entry = AuditEntry {
            at,
            actor: "admin",
            role: "admin",
            action: "user.add",
            subject: format!("user:{login}"),
            details: serde_json::json!({ "name": name, "role": crate::auth::role_code(role), "sites": sites }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Checks a login and opens a session; returns the bearer token and the user.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        now: u64,
    ) -> Result<Option<(String, crate::auth::User)>, StoreError> {
        let row: Option<(i64, String, String, String, String, Flag)> = query_as(
            "SELECT id, name, role, sites, password_hash, disabled FROM users WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        // Verified on a blocking thread (argon2 is tens of ms of CPU); a
        // disabled or unknown login against a dummy hash, so timing does
        // not tell which logins exist.
        let stored = match &row {
            Some((.., hash, Flag(false))) => Some(hash.clone()),
            _ => None,
        };
        let ok = verify_off_worker(password, stored).await;
        let Some((id, name, role, sites, _, _)) = row.filter(|_| ok) else {
            return Ok(None);
        };
        let Some(role) = crate::auth::parse_role(&role) else {
            return Ok(None);
        };
        let token =
            crate::auth::new_token().map_err(|e| StoreError::Db(sqlx::Error::Protocol(e)))?;
        query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(crate::auth::token_hash(&token))
            .bind(id)
            .bind(now as i64)
            .bind((now + crate::auth::SESSION_MS) as i64)
            .execute(&self.pool)
            .await?;
        self.prune_sessions(now).await?;
        let user = crate::auth::User {
            id,
            login: login.to_string(),
            name,
            role,
            sites: crate::auth::parse_sites(&sites),
        };
        Ok(Some((token, user)))
    }

    /// The user a bearer token belongs to, while the session lasts.
    pub async fn user_by_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<crate::auth::User>, StoreError> {
        let row: Option<(i64, String, String, String, String)> = query_as(
            "SELECT u.id, u.login, u.name, u.role, u.sites FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = FALSE",
        )
        .bind(crate::auth::token_hash(token))
        .bind(now as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(id, login, name, role, sites)| {
            Some(crate::auth::User {
                id,
                login,
                name,
                role: crate::auth::parse_role(&role)?,
                sites: crate::auth::parse_sites(&sites),
            })
        }))
    }
}
