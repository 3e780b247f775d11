//! Users, roles and jurisdictions (用户、角色、管辖范围), and the secrets
//! that prove who is calling: argon2id password hashes and random bearer
//! tokens, stored only as SHA-256 hashes. Pure helpers; the store keeps
//! the rows and `api` checks every request.

pub mod credentials;

use crate::domain::ticket::Role;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long a login lasts: one duty shift and a half.
pub const SESSION_MS: u64 = 12 * 3_600_000;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Someone who has logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub role: Role,
    /// The sites this user sees and acts in; none (null) = every site
    /// (管理员, or a bureau covering all institutions).
    pub sites: Option<Vec<String>>,
}

impl User {
    /// Whether `site` is within this user's jurisdiction.
    pub fn covers(&self, site: &str) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == site))
    }
}

/// `*` or a comma-separated list, as stored.
pub fn parse_sites(s: &str) -> Option<Vec<String>> {
    if s.trim() == "*" {
        None
    } else {
        Some(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// A role from its code.
pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "duty" => Some(Role::Duty),
        "site_manager" => Some(Role::SiteManager),
        "inspector" => Some(Role::Inspector),
        "admin" => Some(Role::Admin),
        "installer" => Some(Role::Installer),
        _ => None,
    }
}

/// The code of a role.
pub const fn role_code(r: Role) -> &'static str {
    match r {
        Role::Duty => "duty",
        Role::SiteManager => "site_manager",
        Role::Inspector => "inspector",
        Role::Admin => "admin",
        Role::Installer => "installer",
    }
}

/// An argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "password must have at least {MIN_PASSWORD} characters"
        ));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new random bearer token (256 bits, hex).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What is stored of a token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short").is_err());
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn jurisdiction() {
        let u = |sites| User {
            id: 1,
            login: "x".into(),
            name: "x".into(),
            role: Role::Duty,
            sites,
        };
        assert!(u(None).covers("anything"));
        assert!(u(parse_sites("home_a, home_b")).covers("home_b"));
        assert!(!u(parse_sites("home_a")).covers("home_b"));
        assert_eq!(parse_sites("*"), None);
        assert_eq!(parse_role("inspector"), Some(Role::Inspector));
        assert_eq!(parse_role("root"), None);
        assert_eq!(parse_role("installer"), Some(Role::Installer));
        assert_eq!(role_code(Role::Installer), "installer");
    }
}
