//! Counters of logins, lockouts and sessions closed under a client's feet
//! (`gateway_logins_total`, `gateway_login_lockouts_total`,
//! `gateway_event_streams_closed_total`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Outcomes of `POST /api/v1/login`, label values of `gateway_logins_total{outcome=…}`.
pub const LOGIN_OUTCOMES: &[&str] = &[
    "ok",
    "bad_credentials",
    // Refused unchecked: the login is locked after repeated failures.
    "throttled_login",
    // Refused unchecked: the peer address is locked.
    "throttled_peer",
    // No password-hashing slot within the wait (a flood from many places).
    "busy",
];

#[derive(Default)]
pub struct AuthMetrics {
    logins: [AtomicU64; 5],
    lockouts_login: AtomicU64,
    lockouts_peer: AtomicU64,
    /// Event streams closed because their session ended (expired, revoked,
    /// logged out, user disabled).
    pub streams_closed: AtomicU64,
}

impl AuthMetrics {
    /// Counts one login attempt by outcome (a code of [`LOGIN_OUTCOMES`]).
    pub fn login(&self, outcome: &str) {
        if let Some(i) = LOGIN_OUTCOMES.iter().position(|o| *o == outcome) {
            self.logins[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a lockout of a login (`peer` = false) or a peer address.
    pub fn lockout(&self, peer: bool) {
        let c = if peer {
            &self.lockouts_peer
        } else {
            &self.lockouts_login
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP gateway_logins_total Login attempts, by outcome.\n# TYPE gateway_logins_total counter");
        for (i, o) in LOGIN_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "gateway_logins_total{{outcome=\"{o}\"}} {}",
                self.logins[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP gateway_login_lockouts_total Lockouts after repeated failed logins, by what was locked.\n# TYPE gateway_login_lockouts_total counter");
        for (scope, v) in [
            ("login", &self.lockouts_login),
            ("peer", &self.lockouts_peer),
        ] {
            let _ = writeln!(
                out,
                "gateway_login_lockouts_total{{scope=\"{scope}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_event_streams_closed_total Event streams closed because their session ended.\n# TYPE gateway_event_streams_closed_total counter\ngateway_event_streams_closed_total {}",
            self.streams_closed.load(Ordering::Relaxed)
        );
    }
}
