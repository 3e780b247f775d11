//! `[tickets]`: the hazard closed loop's figures (隐患闭环).

use serde::Deserialize;

/// The hazard closed loop's figures (隐患闭环).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct TicketsConfig {
    /// Hours the telemetry must stay normal after the rectification report
    /// before a sensor-sourced ticket can be closed.
    pub proof_hours: u32,
    /// Days before the deadline by which an extension must be requested.
    pub extension_notice_days: u32,
    /// Days after closing within which a recurrence reopens the ticket.
    pub reopen_window_days: u32,
    /// Minutes a node (or a whole site) may stay offline before a 离线 ticket opens.
    pub offline_ticket_after_mins: u32,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        let p = crate::domain::ticket::Policy::default();
        TicketsConfig {
            proof_hours: (p.proof_period_ms / 3_600_000) as u32,
            extension_notice_days: (p.extension_notice_ms / 86_400_000) as u32,
            reopen_window_days: (p.reopen_window_ms / 86_400_000) as u32,
            offline_ticket_after_mins: 30,
        }
    }
}

impl TicketsConfig {
    /// As the state machine's policy.
    pub fn policy(&self) -> crate::domain::ticket::Policy {
        crate::domain::ticket::Policy {
            proof_period_ms: u64::from(self.proof_hours) * 3_600_000,
            extension_notice_ms: u64::from(self.extension_notice_days) * 86_400_000,
            reopen_window_ms: u64::from(self.reopen_window_days) * 86_400_000,
        }
    }
}
