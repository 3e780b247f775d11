//! Start-up: the channels' saved rule state restored and reconciled with
//! the standing alarm rows.

use super::effects::{self, Effects};
use super::Pipeline;
use crate::store::{AlarmFilter, AlarmKey, AlarmRow, StoreError};
use std::collections::HashSet;
use wire::{ChannelId, NodeId, SiteId};

impl Pipeline {
    /// Restores the channels' rule state saved before a restart (levels,
    /// latches and flapping carry on, so an alarm that ends now can clear),
    /// reconciled with the standing alarm rows in both directions: a saved
    /// state that says a rule stands with no standing alarm behind it
    /// starts afresh (the next reading raises it again, with its record), and
    /// a standing channel alarm that no saved state stands for is cleared
    /// in the log as `reconciled` (a reading still past the setpoint raises
    /// it again). Both can only come from a database written before batch
    /// commits, or edited by hand.
    pub(super) async fn restore_channels(&mut self, now: u64) -> Result<(), StoreError> {
        let mut standing = self.store.alarms(AlarmFilter::Standing, i64::MAX).await?;
        standing.retain(|r| self.mine(&r.site));
        let rule_alarm = |r: &AlarmRow| {
            !r.channel.is_empty()
                && r.cause != crate::alarms::runtime::CAUSE_DEVICE_ALARM
                && r.cause != crate::alarms::runtime::CAUSE_INSULATION
        };
        let keys: HashSet<(String, String, String, String)> = standing
            .iter()
            .filter(|r| rule_alarm(r))
            .map(|r| {
                (
                    r.site.clone(),
                    r.node.clone(),
                    r.channel.clone(),
                    r.cause.clone(),
                )
            })
            .collect();
        let mut claimed: HashSet<(String, String, String, String)> = HashSet::new();
        let mut fx = Effects::default();
        for (site, node, channel, quantity, state) in self.store.channel_states().await? {
            if !self.mine(&site) {
                continue;
            }
            let parsed = (
                SiteId::new(&site),
                NodeId::new(&node),
                ChannelId::new(&channel),
                wire::Quantity::from_wire(&quantity),
            );
            let (Ok(s), Ok(n), Ok(c), Some(q)) = parsed else {
                continue;
            };
            let st = match serde_json::from_str::<rules::ChannelState>(&state) {
                Ok(st) => st,
                Err(e) => {
                    tracing::warn!(site, node, channel, error = %e, "saved channel state unreadable; starting afresh");
                    continue;
                }
            };
            let direction = self
                .core
                .runtime
                .rule(q, &s, &n, &c)
                .threshold
                .map(|t| t.direction)
                .unwrap_or_default();
            if st.is_flapping() {
                // While a channel flaps its swings are logged without moving
                // its record: the record and the state legitimately differ.
                for k in keys
                    .iter()
                    .filter(|k| k.0 == site && k.1 == node && k.2 == channel)
                {
                    claimed.insert(k.clone());
                }
                self.core.runtime.restore_channel(&s, &n, &c, q, st);
                continue;
            }
            let mut implied = Vec::new();
            if st.level() != rules::Level::Normal {
                implied.push(crate::alarms::runtime::threshold_cause(q, direction));
            }
            if st.fault().is_some() {
                implied.push(crate::alarms::runtime::CAUSE_FAULT.to_string());
            }
            if st.is_rate_raised() {
                implied.push(crate::alarms::runtime::rate_cause(q));
            }
            let key = |cause: &str| {
                (
                    site.clone(),
                    node.clone(),
                    channel.clone(),
                    cause.to_string(),
                )
            };
            if let Some(missing) = implied.iter().find(|c| !keys.contains(&key(c))) {
                tracing::warn!(site, node, channel, cause = %missing, "saved rule state stands for an alarm that has no record: the channel starts afresh");
                continue;
            }
            for c in &implied {
                claimed.insert(key(c));
            }
            self.core.runtime.restore_channel(&s, &n, &c, q, st);
        }
        for r in standing.iter().filter(|r| rule_alarm(r)) {
            let k = (
                r.site.clone(),
                r.node.clone(),
                r.channel.clone(),
                r.cause.clone(),
            );
            if claimed.contains(&k) {
                continue;
            }
            tracing::warn!(site = %r.site, node = %r.node, ch = %r.channel, cause = %r.cause, "standing alarm with no rule state behind it: cleared as reconciled");
            let key = AlarmKey {
                site: r.site.clone(),
                node: r.node.clone(),
                channel: r.channel.clone(),
                cause: r.cause.clone(),
            };
            fx.writes.push(effects::Effect::Log(effects::LogRow {
                at: now,
                key: key.clone(),
                transition: "reconciled",
                level: None,
                value: None,
                disposition: "notify",
                actor: "system".into(),
            }));
            fx.writes.push(effects::Effect::Settle {
                key,
                state: "cleared",
                value: None,
                at: now,
            });
        }
        if fx.needs_store() {
            let (_, out) = self.commit(fx).await?;
            self.announce(out);
        }
        Ok(())
    }
}
