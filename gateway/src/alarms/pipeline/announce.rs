//! After a commit: the batch's transitions noted in the log and its
//! events and counters announced, ticket counts.

use super::effects::{Announce, Note};
use super::Pipeline;
use crate::alarms::events::{AlarmView, GatewayEvent};
use crate::metrics::inc;
use crate::store::TicketOutcome;
use std::sync::atomic::Ordering;

impl Pipeline {
    pub(super) fn note(&mut self, n: Note, now: u64) {
        let m = &self.metrics;
        match n {
            Note::Received => inc(&m.messages_received),
            Note::Drop {
                source,
                reason,
                detail,
            } => {
                m.drop_message(reason);
                if !source.is_empty() {
                    self.drops.log(&source, reason, &detail, now);
                }
            }
            Note::ClockAhead { source } => {
                inc(&m.clock_ahead);
                self.drops.log(
                    &source,
                    "clock_ahead",
                    "timestamp in the future; arrival time used",
                    now,
                );
            }
            Note::SeqGaps(n) => {
                m.seq_gaps.fetch_add(n, Ordering::Relaxed);
            }
            Note::ReadingsLate(n) => {
                m.readings_late.fetch_add(n, Ordering::Relaxed);
            }
            Note::ReadingsAccepted(n) => {
                m.readings_accepted.fetch_add(n, Ordering::Relaxed);
            }
            Note::AlarmsCleared => inc(&m.alarms_cleared),
            Note::FaultsRaised => inc(&m.faults_raised),
            Note::NodeOffline => inc(&m.nodes_offline_events),
        }
    }

    /// Publishes what a committed batch did.
    pub(super) fn announce(&self, out: Vec<Announce>) {
        for a in out {
            match a {
                Announce::Raised {
                    row,
                    ticket,
                    counts,
                } => {
                    if counts {
                        inc(&self.metrics.alarms_raised);
                    }
                    self.count_ticket(&ticket, row.id);
                    tracing::info!(
                        site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause,
                        level = %row.level, value = ?row.value, suppressed = row.suppressed, "alarm raised"
                    );
                    let _ = self.events.send(GatewayEvent::AlarmRaised {
                        alarm: AlarmView::from(row),
                        ticket,
                    });
                }
                Announce::Settled { row, state } => {
                    tracing::info!(site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause, state, "alarm settled");
                    let _ = self.events.send(GatewayEvent::AlarmUpdated {
                        alarm: AlarmView::from(row),
                    });
                }
                Announce::Updated { row } => {
                    let _ = self.events.send(GatewayEvent::AlarmUpdated {
                        alarm: AlarmView::from(row),
                    });
                }
            }
        }
    }

    pub(super) fn count_ticket(&self, outcome: &Option<TicketOutcome>, alarm: i64) {
        match outcome {
            Some(TicketOutcome::Opened { number, .. }) => {
                inc(&self.metrics.tickets_opened);
                tracing::info!(ticket = %number, alarm, "hazard ticket opened");
            }
            Some(TicketOutcome::Reopened { number, .. }) => {
                inc(&self.metrics.tickets_reopened);
                tracing::warn!(ticket = %number, alarm, "hazard recurred: closed ticket reopened");
            }
            Some(TicketOutcome::Attached { number, .. }) => {
                inc(&self.metrics.tickets_attached);
                tracing::info!(ticket = %number, alarm, "alarm attached to the open ticket");
            }
            _ => {}
        }
    }
}
