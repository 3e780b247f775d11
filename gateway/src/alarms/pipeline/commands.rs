//! Requests from the API (reset, setpoints, self-test) and the pipeline's
//! own slower duties that change rule state (baselines). Each goes through
//! the same evaluate-then-commit step as messages.

use super::effects::{AuditRow, Effect};
use super::eval::input;
use super::{Command, Pipeline, ResetError, SelfTestError, SetpointError};
use crate::alarms::runtime::{alarm_kind, ResetRefused, CAUSE_INSULATION};
use crate::alarms::selftest::{SelfTest, Trigger};
use crate::metrics::inc;
use crate::store::{AlarmKey, AlarmRow, StoreError};
use rules::Disposition;
use wire::{ChannelId, NodeId, SiteId, Topic, TopicKind};

impl Pipeline {
    pub(super) async fn command(&mut self, cmd: Command) {
        // A command acts on the committed state.
        self.drain().await;
        match cmd {
            Command::Reset {
                alarm_id,
                by,
                role,
                reply,
            } => {
                let result = self
                    .reset_as(alarm_id, &by, role, crate::domain::time::now_ms())
                    .await;
                let _ = reply.send(result);
            }
            Command::ApplySetpoints {
                site,
                node,
                channel,
                pre_alarm,
                alarm,
                source,
                by,
                role,
                reply,
            } => {
                let now = crate::domain::time::now_ms();
                let result = self
                    .apply_setpoints(
                        &site, &node, &channel, pre_alarm, alarm, source, &by, role, now,
                    )
                    .await;
                let _ = reply.send(result);
            }
            Command::SelfTest {
                site,
                node,
                by,
                role,
                reply,
            } => {
                let now = crate::domain::time::now_ms();
                let result = self.start_selftest(&site, &node, &by, role, now).await;
                let _ = reply.send(result);
                self.finish_selftests(now).await;
            }
        }
    }

    /// Ends the self-tests that are over at `now` (see [`super::eval::Core`]).
    async fn finish_selftests(&mut self, now: u64) {
        if let Err(e) = self
            .evaluate_and_commit(|core| {
                core.finish_selftests(now);
                core.finish()
            })
            .await
        {
            tracing::error!(error = %e, "store: cannot record a self-test result; tried again next tick");
        }
    }

    /// Puts a recorded setpoint change into the rules (at start-up, and
    /// when applied). A row the rules refuse (a limit tightened since) is
    /// logged and left out.
    pub(super) fn use_setpoint(&mut self, sp: &crate::store::SetpointRow) -> bool {
        let parsed = (
            SiteId::new(&sp.site),
            NodeId::new(&sp.node),
            ChannelId::new(&sp.channel),
            wire::Quantity::from_wire(&sp.quantity),
        );
        let (Ok(s), Ok(n), Ok(c), Some(q)) = parsed else {
            return false;
        };
        let base = self.config().rule_for(q, &s, &n, &c);
        match crate::alarms::baseline::check(q, &base, sp.pre_alarm, sp.alarm, None) {
            Ok(rule) => {
                self.core.runtime.set_rule(q, &s, &n, &c, rule);
                true
            }
            Err(e) => {
                tracing::warn!(site = %sp.site, node = %sp.node, ch = %sp.channel, reason = %e, "recorded setpoint no longer valid; the configured rule applies");
                false
            }
        }
    }

    /// Applies setpoints to a channel at `now`: checked against the rules'
    /// limits and the channel's learned baseline, recorded with its audit
    /// record, judged by from the next reading, and pushed to the node.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_setpoints(
        &mut self,
        site: &str,
        node: &str,
        channel: &str,
        pre_alarm: Option<i64>,
        alarm: i64,
        source: &str,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<crate::store::SetpointRow, SetpointError> {
        let (Ok(s), Ok(n), Ok(c)) = (
            SiteId::new(site),
            NodeId::new(node),
            ChannelId::new(channel),
        ) else {
            return Err(SetpointError::NotFound);
        };
        // The quantity: as the rules know the channel, or as it is
        // registered or configured (after a restart, before its first reading).
        let q = match self.core.runtime.channel_rule(&s, &n, &c) {
            Some((q, _)) => q,
            None => self
                .config()
                .node(site, node)
                .and_then(|(_, nc)| nc.channels.iter().find(|x| x.id == channel))
                .and_then(|x| x.quantity.as_deref())
                .and_then(wire::Quantity::from_wire)
                .ok_or(SetpointError::NotFound)?,
        };
        let baseline = self
            .store
            .baselines(site)
            .await?
            .into_iter()
            .find(|b| b.node == node && b.channel == channel && b.quantity == q.as_str())
            .and_then(|b| {
                serde_json::from_str::<crate::alarms::baseline::Baseline>(&b.baseline).ok()
            });
        let base = self.config().rule_for(q, &s, &n, &c);
        crate::alarms::baseline::check(q, &base, pre_alarm, alarm, baseline.as_ref())
            .map_err(SetpointError::Refused)?;
        let row = self
            .store
            .apply_setpoint(
                site,
                node,
                channel,
                q.as_str(),
                pre_alarm,
                alarm,
                source,
                by,
                role,
                now,
            )
            .await?;
        self.use_setpoint(&row);
        tracing::info!(
            site,
            node,
            ch = channel,
            ?pre_alarm,
            alarm,
            by,
            "setpoints applied (audited)"
        );
        self.push_setpoint(&row);
        Ok(row)
    }

    /// Sends a channel's setpoints to its node (`config`). The node keeps
    /// them in RAM; they are sent again whenever it comes back online.
    fn push_setpoint(&self, sp: &crate::store::SetpointRow) {
        let (Some(commander), Ok(s), Ok(n)) = (
            &self.commander,
            SiteId::new(&sp.site),
            NodeId::new(&sp.node),
        ) else {
            return;
        };
        let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
        let cmd = serde_json::json!({
            "id": format!("cfg-{}", sp.id),
            "op": "config",
            "ch": sp.channel,
            "pre_alarm": sp.pre_alarm,
            "alarm": sp.alarm,
        })
        .to_string();
        if let Err(e) = commander.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, cmd) {
            tracing::warn!(error = %e, "config command to the node not queued; sent again when it comes online");
        }
    }

    /// A node came (back) online: its setpoints applied at run time are
    /// sent again (the node keeps them in RAM only).
    pub(super) async fn push_node_setpoints(&mut self, site: &str, node: &str) {
        if self.commander.is_none() {
            return;
        }
        match self.store.setpoints_in_force().await {
            Ok(rows) => {
                for sp in rows.iter().filter(|r| r.site == site && r.node == node) {
                    self.push_setpoint(sp);
                }
            }
            Err(e) => {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot read the setpoints in force");
            }
        }
    }

    /// Learns the baseline of every residual-current and temperature
    /// channel whose observation window has ended, once, and records it
    /// with its recommended setpoints. A loop whose natural leakage is
    /// itself a hazard gets a 一般隐患 ticket (线路绝缘老化嫌疑).
    pub async fn learn_baselines(&mut self, now: u64) -> Result<(), StoreError> {
        let window_ms = i64::from(self.baseline_hours) * 3_600_000;
        for ch in self.store.channels_to_learn().await? {
            if ch.first_hour + window_ms > now as i64 {
                continue;
            }
            let (Ok(s), Ok(n), Ok(c), Some(q)) = (
                SiteId::new(&ch.site),
                NodeId::new(&ch.node),
                ChannelId::new(&ch.channel),
                wire::Quantity::from_wire(&ch.quantity),
            ) else {
                continue;
            };
            let hours = self
                .store
                .channel_hours(
                    &ch.site,
                    &ch.node,
                    &ch.channel,
                    ch.first_hour,
                    ch.first_hour + window_ms,
                )
                .await?;
            let (b, learned) = match crate::alarms::baseline::learn(
                q,
                &hours,
                ch.first_hour,
                self.baseline_hours,
                now as i64,
            ) {
                Ok(b) => (b, true),
                Err(crate::alarms::baseline::NotLearned::Learning { .. }) => continue,
                Err(crate::alarms::baseline::NotLearned::Insufficient { baseline, needed }) => {
                    // Recorded as it is, so the installer sees why: a loop
                    // silent for most of the window has no baseline.
                    tracing::warn!(site = %ch.site, node = %ch.node, ch = %ch.channel, hours = baseline.hours, needed, "too few hours of readings for a baseline");
                    (baseline, false)
                }
            };
            let rule = self.core.runtime.rule(q, &s, &n, &c);
            let rec = if learned {
                crate::alarms::baseline::recommend(q, &b, &rule)
            } else {
                None
            };
            let row = crate::store::BaselineRow {
                site: ch.site.clone(),
                node: ch.node.clone(),
                channel: ch.channel.clone(),
                quantity: ch.quantity.clone(),
                learned_at: now as i64,
                baseline: serde_json::to_string(&b).unwrap_or_default(),
                recommendation: rec.as_ref().and_then(|r| serde_json::to_string(r).ok()),
            };
            let hazard = rec.and_then(|r| r.hazard);
            let config = self.config().clone();
            self.evaluate_and_commit(|core| {
                core.push(Effect::SaveBaseline(row));
                if let Some(what) = hazard {
                    insulation_hazard(core, &config, &ch, q, b.p95, what, now);
                }
                core.finish()
            })
            .await?;
            tracing::info!(site = %ch.site, node = %ch.node, ch = %ch.channel, p50 = b.p50, p95 = b.p95, hours = b.hours, "baseline learned");
        }
        Ok(())
    }

    /// Starts a self-test of `site/node` at `now`: records it, puts the
    /// node's readings on scratch rule state, and sends `selftest` on its
    /// `cmd` topic — or, for a Modbus device (no command path), opens the
    /// window for the installer to press the detector's test key.
    pub async fn start_selftest(
        &mut self,
        site: &str,
        node: &str,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<i64, SelfTestError> {
        let (Ok(s), Ok(n)) = (SiteId::new(site), NodeId::new(node)) else {
            return Err(SelfTestError::NotFound);
        };
        if self.config().node(site, node).is_none() {
            return Err(SelfTestError::NotFound);
        }
        let key = (site.to_string(), node.to_string());
        if self.core.selftests.contains_key(&key) {
            return Err(SelfTestError::Running);
        }
        let modbus = self
            .config()
            .modbus
            .connections
            .iter()
            .flat_map(|c| c.devices.iter())
            .any(|d| d.site == site && d.node == node);
        let trigger = if modbus {
            Trigger::TestKey
        } else {
            Trigger::Command
        };
        let mode = match trigger {
            Trigger::Command => "command",
            Trigger::TestKey => "test_key",
        };
        let id = self
            .store
            .start_selftest(site, node, mode, by, role, now)
            .await?;
        let online = self.core.runtime.is_online(&s, &n);
        let channels = self
            .core
            .runtime
            .node_channels(&s, &n)
            .into_iter()
            .map(|(c, q, st)| (c.as_str().to_string(), q, st))
            .collect();
        let test = SelfTest::new(
            id,
            site,
            node,
            trigger,
            channels,
            online,
            now,
            self.selftest_window_ms,
        );
        tracing::info!(site, node, id, mode, online, by, "self-test started");
        if online {
            self.core.runtime.begin_test(&s, &n);
            if let (Trigger::Command, Some(commander)) = (trigger, &self.commander) {
                let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
                let cmd = format!(r#"{{"id":"{}","op":"selftest"}}"#, test.cmd_id);
                if let Err(e) = commander.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, cmd)
                {
                    // The node will not answer; the test fails at the deadline saying so.
                    tracing::warn!(error = %e, "self-test command to the node not queued");
                }
            }
        }
        self.core.selftests.insert(key, test);
        Ok(id)
    }

    /// An authorised reset of a latched channel alarm (复位): released in
    /// the rules, cleared in the store, logged with who did it, and sent to
    /// the node so its local sounder stops too.
    pub async fn reset(
        &mut self,
        alarm_id: i64,
        by: &str,
        now: u64,
    ) -> Result<AlarmRow, ResetError> {
        self.reset_as(alarm_id, by, "duty", now).await
    }

    /// [`Pipeline::reset`] by someone in `role` (a role code), for the audit trail.
    pub async fn reset_as(
        &mut self,
        alarm_id: i64,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<AlarmRow, ResetError> {
        let row = self
            .store
            .alarm(alarm_id)
            .await?
            .ok_or(ResetError::NotFound)?;
        let (Ok(s), Ok(n), Ok(c)) = (
            SiteId::new(&row.site),
            NodeId::new(&row.node),
            ChannelId::new(&row.channel),
        ) else {
            return Err(ResetError::NotLatched);
        };
        // A channel that now reports another quantity cannot come back in
        // band: its standing alarm, latched or not, is released by this
        // authorised reset (see `node_limits`).
        let other_quantity = row.state != "cleared"
            && !row.channel.is_empty()
            && self.core.runtime.quantity_changed(&s, &n, &c);
        if (row.state != "latched" && !other_quantity) || row.channel.is_empty() {
            return Err(ResetError::NotLatched);
        }
        let audit = AuditRow {
            at: now,
            actor: by.to_string(),
            role: role.to_string(),
            action: "alarm.reset",
            subject: format!("alarm:{alarm_id}"),
            details: serde_json::json!({ "site": row.site, "node": row.node, "channel": row.channel, "cause": row.cause }).to_string(),
        };
        let mut refused = None;
        self.evaluate_and_commit(|core| {
            match core.runtime.reset(&s, &n, &c, now) {
                Ok(change) => {
                    let changes = vec![change];
                    core.mark_dirty(&changes, now);
                    core.apply_as(changes, now, by);
                    if other_quantity {
                        // Whatever stood on the channel (a threshold, a rate
                        // alarm, a fault) goes with the released state.
                        let key = AlarmKey {
                            site: row.site.clone(),
                            node: row.node.clone(),
                            channel: row.channel.clone(),
                            cause: row.cause.clone(),
                        };
                        core.settle(&key, "cleared", None, now);
                    }
                }
                // After a gateway restart the rule state is new: the store's
                // latched record is what stands, and the operator releases it.
                Err(ResetRefused::UnknownChannel) => {
                    let key = AlarmKey {
                        site: row.site.clone(),
                        node: row.node.clone(),
                        channel: row.channel.clone(),
                        cause: row.cause.clone(),
                    };
                    core.log(&key, "reset", None, None, Disposition::Notify, now, by);
                    core.settle(&key, "cleared", None, now);
                }
                Err(ResetRefused::NotReleasable) => {
                    refused = Some(ResetError::StillActive);
                    return core.finish();
                }
            }
            core.push(Effect::Audit(audit));
            core.finish()
        })
        .await?;
        if let Some(e) = refused {
            return Err(e);
        }
        if let Some(commander) = &self.commander {
            let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
            let cmd = format!(r#"{{"id":"reset-{alarm_id}","op":"reset"}}"#);
            match commander.try_publish(
                topic.clone(),
                rumqttc::QoS::AtLeastOnce,
                false,
                cmd.clone(),
            ) {
                Ok(()) => {
                    let entry = crate::store::AuditEntry {
                        at: now,
                        actor: by,
                        role,
                        action: "node.cmd",
                        subject: format!("node:{}/{}", row.site, row.node),
                        details: serde_json::json!({ "topic": topic, "payload": cmd }).to_string(),
                    };
                    self.store.audit(&entry).await?;
                }
                Err(e) => tracing::warn!(error = %e, "reset command to the node not queued"),
            }
        }
        tracing::info!(alarm = alarm_id, by, "alarm reset");
        self.store
            .alarm(alarm_id)
            .await?
            .ok_or(ResetError::NotFound)
    }
}

/// A loop whose natural leakage is itself a hazard: one finding in the
/// alarm record (raised and settled at once: nothing to reset) and a
/// 一般隐患 ticket 线路绝缘老化嫌疑 for the closed loop.
fn insulation_hazard(
    core: &mut super::eval::Core,
    config: &crate::config::Config,
    ch: &crate::store::ChannelFirst,
    q: wire::Quantity,
    natural: i64,
    what: String,
    now: u64,
) {
    let key = AlarmKey {
        site: ch.site.clone(),
        node: ch.node.clone(),
        channel: ch.channel.clone(),
        cause: CAUSE_INSULATION.to_string(),
    };
    let (site_name, loc) = config.place(&key.site, &key.node, &key.channel);
    let spec = crate::store::TicketSpec {
        source: "baseline",
        category: alarm_kind(q),
        grade: "general",
        prefix: "YH",
        reopen_window_ms: config.tickets.policy().reopen_window_ms,
        title: format!("{site_name} {} {} 线路绝缘老化嫌疑", ch.node, ch.channel),
        location: loc,
    };
    core.log(
        &key,
        "baseline_hazard",
        Some("pre_alarm"),
        i32::try_from(natural).ok(),
        Disposition::Notify,
        now,
        "baseline",
    );
    tracing::warn!(site = %ch.site, node = %ch.node, ch = %ch.channel, natural, "{what}");
    let input = input(
        key.clone(),
        alarm_kind(q),
        "pre_alarm",
        Some(q),
        i32::try_from(natural).ok(),
        None,
        now,
        false,
    );
    core.raise(input, Some(spec));
    core.settle(&key, "cleared", None, now);
}
