//! `gateway user list|disable|enable|passwd|sessions revoke`: the user
//! administration of the API (`/api/v1/users…`) from the command line,
//! for the operator on the gateway's machine. Audited as actor `cli`.

use crate::store::{By, Store, UserAdminError};

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserOp {
    List,
    Disable(String),
    Enable(String),
    /// Login and the new password.
    Passwd(String, String),
    RevokeSessions(String),
}

const CLI: By<'static> = By {
    name: "cli",
    role: "admin",
};

/// Runs `op`; `Ok` is what to print, `Err` the message and exit code.
pub async fn run(store: &Store, op: UserOp, now: u64) -> Result<String, (String, u8)> {
    let failed = |login: &str, e: UserAdminError| match e {
        UserAdminError::NotFound => (format!("no user {login:?}"), 2),
        UserAdminError::Password(p) => (format!("password refused: {p}"), 2),
        UserAdminError::Store(e) => (format!("database: {e}"), 1),
    };
    match op {
        UserOp::List => {
            let users = store
                .users(now)
                .await
                .map_err(|e| (format!("database: {e}"), 1))?;
            let mut out = format!(
                "{:<20} {:<14} {:<9} {:>8}  {:<24} name\n",
                "login", "role", "state", "sessions", "sites"
            );
            for u in users {
                let sites = u.sites.map_or("*".to_string(), |s| s.join(","));
                out.push_str(&format!(
                    "{:<20} {:<14} {:<9} {:>8}  {:<24} {}\n",
                    u.login,
                    u.role,
                    if u.disabled { "disabled" } else { "active" },
                    u.sessions,
                    sites,
                    u.name
                ));
            }
            Ok(out)
        }
        UserOp::Disable(login) => store
            .set_disabled(&login, true, CLI, now)
            .await
            .map(|()| format!("user {login} disabled; its sessions are closed"))
            .map_err(|e| failed(&login, e)),
        UserOp::Enable(login) => store
            .set_disabled(&login, false, CLI, now)
            .await
            .map(|()| format!("user {login} enabled"))
            .map_err(|e| failed(&login, e)),
        UserOp::Passwd(login, password) => store
            .set_password(&login, &password, CLI, now)
            .await
            .map(|()| format!("password of {login} changed; its sessions are closed"))
            .map_err(|e| failed(&login, e)),
        UserOp::RevokeSessions(login) => store
            .revoke_sessions(&login, CLI, now)
            .await
            .map(|n| format!("{n} session(s) of {login} closed"))
            .map_err(|e| failed(&login, e)),
    }
}
