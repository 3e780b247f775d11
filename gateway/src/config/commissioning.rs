//! `[commissioning]`: installer commissioning (安装调试).

use serde::Deserialize;

/// How long a self-test waits by default for every channel.
pub const SELFTEST_WINDOW_MS: u64 = 60_000;
/// Default baseline observation window.
pub const BASELINE_WINDOW_HOURS: u32 = 7 * 24;

/// Installer commissioning (安装调试).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct CommissioningConfig {
    /// How long a self-test (自检) waits for every channel's test alarm.
    pub selftest_window_secs: u32,
    /// How long each loop's natural leakage and temperature are learned
    /// after its first reading (基线学习), hours; default 168 (7 days).
    pub baseline_hours: u32,
}

impl Default for CommissioningConfig {
    fn default() -> Self {
        CommissioningConfig {
            selftest_window_secs: (SELFTEST_WINDOW_MS / 1000) as u32,
            baseline_hours: BASELINE_WINDOW_HOURS,
        }
    }
}
