//! What the alarm path refuses to keep or follow blindly, and tells the
//! duty desk instead (issue 14): a node's `(boot, seq)` sequence restarted
//! where the window could not follow it, readings past the node's channel
//! cap, another quantity on a channel where an alarm stands
//! ([`crate::ingest::node_limits`]). Pure, like the rest of the step.

use super::{input, Core};
use crate::alarms::pipeline::effects::Note;
use crate::alarms::runtime::{CAUSE_QUANTITY_CHANGED, CAUSE_SEQ_RESTART};
use crate::ingest::node_limits::Admission;
use crate::store::AlarmKey;
use rules::Disposition;
use wire::{Telemetry, Topic};

impl Core {
    /// The duty desk's notice that a node's sequence restarted where the
    /// window could not follow it: a log row and a node-level record of
    /// kind 设备故障, raised and settled at once (nothing to reset).
    pub(super) fn seq_restarted(
        &mut self,
        topic: &Topic,
        from: (u32, u32),
        to: (u32, u32),
        now: u64,
    ) {
        tracing::warn!(
            site = %topic.site, node = %topic.node,
            from_boot = from.0, from_seq = from.1, boot = to.0, seq = to.1,
            "node's (boot, seq) sequence restarted where the window could not follow it (board swap, boot counter reset, or a leap): accepted after consistent messages"
        );
        let key = AlarmKey {
            site: topic.site.to_string(),
            node: topic.node.to_string(),
            channel: String::new(),
            cause: CAUSE_SEQ_RESTART.to_string(),
        };
        self.notice(key, None, None, now);
    }

    /// A record for the duty desk that needs no action of the rules:
    /// logged, raised (kind 设备故障, no ticket) and settled at once.
    fn notice(&mut self, key: AlarmKey, q: Option<wire::Quantity>, value: Option<i32>, now: u64) {
        let transition = if key.cause == CAUSE_SEQ_RESTART {
            "seq_restart"
        } else {
            "quantity_changed"
        };
        self.log(
            &key,
            transition,
            Some("fault"),
            value,
            Disposition::Notify,
            now,
            "system",
        );
        let raised = input(key.clone(), "fault", "fault", q, value, None, now, false);
        self.raise(raised, None);
        self.settle(&key, "cleared", value, now);
    }

    /// Takes out of a telemetry message the readings the rules must not
    /// take ([`crate::ingest::node_limits`]): new channels past the node's cap, and
    /// another quantity on a channel where an alarm stands. Each reason is
    /// counted once per message and logged; the first refused quantity
    /// change on a channel is told to the duty desk.
    pub(super) fn admit(&mut self, topic: &Topic, t: &mut Telemetry, judged: bool, now: u64) {
        let mut refused: [Option<String>; 2] = [None, None];
        let mut notices = Vec::new();
        let runtime = &mut self.runtime;
        t.ch.retain(|r| {
            let a = runtime.admit(&topic.site, &topic.node, r, judged);
            match a {
                Admission::Known | Admission::Fresh => return true,
                Admission::ChannelLimit => {
                    refused[0].get_or_insert_with(|| {
                        format!(
                            "channel {} refused: the node already has {} channels",
                            r.id,
                            crate::ingest::node_limits::MAX_NODE_CHANNELS
                        )
                    });
                }
                Admission::QuantityChanged { first } => {
                    refused[1].get_or_insert_with(|| {
                        format!(
                            "channel {} now reports {} while an alarm stands on it: refused until the alarm is reset",
                            r.id,
                            r.q.as_str()
                        )
                    });
                    if first {
                        notices.push((r.id.clone(), r.q, r.v));
                    }
                }
            }
            false
        });
        for (detail, reason) in refused
            .into_iter()
            .zip(["channel_limit", "quantity_changed"])
        {
            if let Some(detail) = detail {
                self.note(Note::Drop {
                    source: format!("{}/{}", topic.site, topic.node),
                    reason,
                    detail,
                });
            }
        }
        for (ch, q, v) in notices {
            let key = AlarmKey {
                site: topic.site.to_string(),
                node: topic.node.to_string(),
                channel: ch.to_string(),
                cause: CAUSE_QUANTITY_CHANGED.to_string(),
            };
            self.notice(key, Some(q), Some(v), now);
        }
    }
}
