//! What the evaluation step asks for, as data ([`Effects`]), and the writer
//! that carries a batch's effects out in ONE database transaction.
//!
//! The evaluation step ([`super::core`]) never touches the database: it
//! decides, and records here what must be written (alarm rows, the alarm
//! log, tickets, channel states, linked readings, self-test results, audit
//! records), what goes to the metrics sink, and which counters move. The
//! pipeline writes the writes with [`write`] inside one [`Batch`]; only once
//! that commits are lines handed to the sink, counters moved, events
//! published and messages acknowledged ([`Announce`]).

use super::specs;
use crate::config::Config;
use crate::store::{
    AlarmInput, AlarmKey, AlarmRow, AuditEntry, BaselineRow, BatchWrite, LinkedReading, LogEntry,
    Relevel, Settle, StoreError, TicketOutcome, TicketSpec,
};
use std::collections::{HashMap, VecDeque};

/// One alarm-log row (owned).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub at: u64,
    pub key: AlarmKey,
    pub transition: &'static str,
    pub level: Option<&'static str>,
    pub value: Option<i32>,
    pub disposition: &'static str,
    pub actor: String,
}

/// A reading kept with the open tickets of its channel (owned).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: &'static str,
    pub value: i32,
    pub status: &'static str,
    pub level: &'static str,
    pub abnormal: bool,
    pub at: u64,
}

/// An audit record (owned).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub at: u64,
    pub actor: String,
    pub role: String,
    pub action: &'static str,
    pub subject: String,
    pub details: String,
}

/// One write to the database, in the order decided.
#[derive(Debug, Clone)]
pub enum Effect {
    Log(LogRow),
    /// Raise or update the standing alarm, with its ticket.
    Raise {
        input: AlarmInput,
        ticket: Option<TicketSpec>,
    },
    /// Latch or clear the standing alarm.
    Settle {
        key: AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    },
    SetLevel {
        key: AlarmKey,
        level: &'static str,
        value: i32,
        at: u64,
    },
    /// Flag the standing alarm as flapping; with nothing standing, raise
    /// `fallback` (no ticket) and flag that.
    FlappingStarted {
        key: AlarmKey,
        fallback: AlarmInput,
        at: u64,
    },
    /// Clear the flapping flag (no event: a settle or raise follows).
    FlappingEnded {
        key: AlarmKey,
        at: u64,
    },
    /// Mark a site's standing alarms of `cause` suppressed.
    SuppressStanding {
        site: String,
        cause: &'static str,
        at: u64,
    },
    /// A root cause is gone: the node's suppressed standing alarms are
    /// shown again and get the ticket they would have had.
    ReleaseSuppressed {
        site: String,
        node: String,
        at: u64,
    },
    LinkReading(LinkRow),
    FinishSelfTest {
        id: i64,
        at: u64,
        passed: bool,
        channels: String,
        reason: Option<String>,
    },
    Audit(AuditRow),
    SaveBaseline(BaselineRow),
}

/// A channel's rule state to keep (the last of the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: &'static str,
    /// `rules::ChannelState` as JSON.
    pub state: String,
    pub at: u64,
}

/// A node's de-duplication window to keep (the last of the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqRow {
    pub site: String,
    pub node: String,
    pub state: String,
}

/// A message's lines for the metrics sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines {
    pub source: String,
    pub boot: u32,
    pub seq: u32,
    pub count: u32,
    pub text: String,
}

/// A reading for the hourly rollups.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupAdd {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: &'static str,
    pub value: i32,
    pub at: u64,
}

/// A counter or a log line that moves only once the batch is committed
/// (a batch retried after a database fault is not counted twice).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Received,
    /// A dropped message: counted by reason, logged once per source a minute.
    Drop {
        source: String,
        reason: &'static str,
        detail: String,
    },
    ClockAhead {
        source: String,
    },
    SeqGaps(u64),
    ReadingsLate(u64),
    ReadingsAccepted(u64),
    AlarmsCleared,
    FaultsRaised,
    NodeOffline,
}

/// Everything one evaluation asks for.
#[derive(Debug, Default, Clone)]
pub struct Effects {
    pub writes: Vec<Effect>,
    pub states: Vec<StateRow>,
    pub seqs: Vec<SeqRow>,
    pub lines: Vec<Lines>,
    pub rollups: Vec<RollupAdd>,
    pub notes: Vec<Note>,
    /// Nodes back online, whose run-time setpoints are sent again.
    pub push_setpoints: Vec<(String, String)>,
}

impl Effects {
    /// Whether anything must be written to the database.
    pub fn needs_store(&self) -> bool {
        !self.writes.is_empty() || !self.states.is_empty() || !self.seqs.is_empty()
    }
}

/// What to tell the world once a batch is committed.
#[derive(Debug)]
pub enum Announce {
    Raised {
        row: AlarmRow,
        ticket: Option<TicketOutcome>,
        /// A fire alarm that counts (`gateway_alarms_raised_total`).
        counts: bool,
    },
    Settled {
        row: AlarmRow,
        state: &'static str,
    },
    Updated {
        row: AlarmRow,
    },
}

/// Writes a batch's database effects in the open transaction `b`, in
/// order; answers what to announce once it commits.
pub async fn write<B: BatchWrite>(
    b: &mut B,
    fx: &Effects,
    config: &Config,
) -> Result<Vec<Announce>, StoreError> {
    let mut out: Vec<(usize, Announce)> = Vec::new();
    // Log rows are appended many at a time; before anything that reads the
    // log (nothing in a batch does) they would have to be flushed.
    let logs: Vec<LogEntry<'_>> = fx
        .writes
        .iter()
        .filter_map(|e| match e {
            Effect::Log(l) => Some(LogEntry {
                at: l.at,
                key: &l.key,
                transition: l.transition,
                level: l.level,
                value: l.value,
                disposition: l.disposition,
                actor: &l.actor,
            }),
            _ => None,
        })
        .collect();
    b.log_transitions(&logs).await?;
    // Raises, settles, level changes and linked readings wait in their
    // channel's queue and are written in rounds, many rows a statement;
    // anything else is a barrier that writes them first, then itself.
    let mut rounds = Rounds::default();
    for (i, e) in fx.writes.iter().enumerate() {
        match e {
            Effect::Log(_) => {}
            Effect::Raise { input, .. } => rounds.push(&input.key, i),
            Effect::Settle { key, .. } | Effect::SetLevel { key, .. } => rounds.push(key, i),
            Effect::LinkReading(r) => rounds.push_link(&r.site, &r.node, &r.channel, i),
            _ => {
                rounds.write(b, &fx.writes, &mut out).await?;
                barrier(b, i, e, config, &mut out).await?;
            }
        }
    }
    rounds.write(b, &fx.writes, &mut out).await?;
    // Announced in the order decided (rounds reorder across channels).
    out.sort_by_key(|(i, _)| *i);
    let out: Vec<Announce> = out.into_iter().map(|(_, a)| a).collect();
    let states: Vec<(&str, &str, &str, &str, &str, u64)> = fx
        .states
        .iter()
        .map(|s| {
            (
                s.site.as_str(),
                s.node.as_str(),
                s.channel.as_str(),
                s.quantity,
                s.state.as_str(),
                s.at,
            )
        })
        .collect();
    b.save_channel_states(&states).await?;
    let seqs: Vec<(&str, &str, &str)> = fx
        .seqs
        .iter()
        .map(|s| (s.site.as_str(), s.node.as_str(), s.state.as_str()))
        .collect();
    b.save_node_seqs(&seqs).await?;
    Ok(out)
}

/// A slot of a channel's queue: one alarm change (none for readings that
/// come before the channel's first change in the batch) and the readings
/// to link after it. Round `r` writes the change before the links, so a
/// reading is linked to the tickets its channel has after the change that
/// preceded it, and a channel takes one round per change, not two.
struct Slot {
    change: Option<usize>,
    links: Vec<usize>,
}

/// Per-channel queues of the batchable writes (see [`write`]). Round `r`
/// takes the `r`-th slot of every queue: at most one change per channel,
/// so the rows of a round are independent and each kind goes in one
/// statement. A channel's own changes keep their order; announcements
/// carry the effect's index and are put back in order at the end.
#[derive(Default)]
struct Rounds<'a> {
    index: HashMap<(&'a str, &'a str, &'a str), usize>,
    queues: Vec<VecDeque<Slot>>,
}

impl<'a> Rounds<'a> {
    fn queue(&mut self, site: &'a str, node: &'a str, channel: &'a str) -> &mut VecDeque<Slot> {
        let next = self.queues.len();
        let q = *self.index.entry((site, node, channel)).or_insert(next);
        if q == next {
            self.queues.push(VecDeque::new());
        }
        &mut self.queues[q]
    }

    fn push(&mut self, key: &'a AlarmKey, i: usize) {
        self.queue(&key.site, &key.node, &key.channel)
            .push_back(Slot {
                change: Some(i),
                links: Vec::new(),
            });
    }

    fn push_link(&mut self, site: &'a str, node: &'a str, channel: &'a str, i: usize) {
        let q = self.queue(site, node, channel);
        match q.back_mut() {
            Some(slot) => slot.links.push(i),
            None => q.push_back(Slot {
                change: None,
                links: vec![i],
            }),
        }
    }

    /// Writes every queued change, round by round, and empties the queues.
    async fn write<B: BatchWrite>(
        &mut self,
        b: &mut B,
        writes: &[Effect],
        out: &mut Vec<(usize, Announce)>,
    ) -> Result<(), StoreError> {
        loop {
            let (mut raises, mut settles, mut levels, mut links) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for q in &mut self.queues {
                let Some(slot) = q.pop_front() else { continue };
                links.extend(slot.links);
                if let Some(i) = slot.change {
                    match &writes[i] {
                        Effect::Raise { input, ticket } => raises.push((i, input, ticket.as_ref())),
                        Effect::Settle {
                            key,
                            state,
                            value,
                            at,
                        } => settles.push((
                            i,
                            Settle {
                                key,
                                state,
                                value: *value,
                                at: *at,
                            },
                        )),
                        Effect::SetLevel {
                            key,
                            level,
                            value,
                            at,
                        } => levels.push(Relevel {
                            key,
                            level,
                            value: *value,
                            at: *at,
                        }),
                        _ => unreachable!("only alarm changes are queued"),
                    }
                }
            }
            if raises.is_empty() && settles.is_empty() && levels.is_empty() && links.is_empty() {
                break;
            }
            if !settles.is_empty() || !levels.is_empty() {
                let items: Vec<Settle<'_>> = settles.iter().map(|(_, s)| *s).collect();
                let rows = b.settle_and_relevel(&items, &levels).await?;
                for ((i, s), row) in settles.iter().zip(rows) {
                    if let Some(row) = row {
                        out.push((
                            *i,
                            Announce::Settled {
                                row,
                                state: s.state,
                            },
                        ));
                    }
                }
            }
            if !raises.is_empty() {
                let items: Vec<(&AlarmInput, Option<&TicketSpec>)> =
                    raises.iter().map(|(_, a, t)| (*a, *t)).collect();
                for ((i, input, _), (row, ticket)) in raises.iter().zip(b.raise_many(&items).await?)
                {
                    out.push((
                        *i,
                        Announce::Raised {
                            row,
                            ticket,
                            counts: counts(input),
                        },
                    ));
                }
            }
            if !links.is_empty() {
                let rows: Vec<LinkedReading<'_>> = links
                    .iter()
                    .filter_map(|&i| match &writes[i] {
                        Effect::LinkReading(r) => Some(LinkedReading {
                            site: &r.site,
                            node: &r.node,
                            channel: &r.channel,
                            quantity: r.quantity,
                            value: r.value,
                            status: r.status,
                            level: r.level,
                            abnormal: r.abnormal,
                            at: r.at,
                        }),
                        _ => None,
                    })
                    .collect();
                b.link_readings(&rows).await?;
            }
        }
        self.queues.clear();
        self.index.clear();
        Ok(())
    }
}

/// A fire alarm that counts (`gateway_alarms_raised_total`).
fn counts(input: &AlarmInput) -> bool {
    matches!(input.kind, "electrical_fire" | "fire_facility") && !input.suppressed
}

/// Writes one effect that is not batched by channel, in place.
async fn barrier<B: BatchWrite>(
    b: &mut B,
    i: usize,
    e: &Effect,
    config: &Config,
    out: &mut Vec<(usize, Announce)>,
) -> Result<(), StoreError> {
    match e {
        Effect::FlappingStarted { key, fallback, at } => {
            match b.set_flapping(key, true, *at).await? {
                Some(row) => out.push((i, Announce::Updated { row })),
                None => {
                    // Nothing stands (the last swing cleared it): one record
                    // for the flapping channel, without a ticket.
                    let (row, ticket) = b.raise(fallback, None).await?;
                    out.push((
                        i,
                        Announce::Raised {
                            row,
                            ticket,
                            counts: counts(fallback),
                        },
                    ));
                    if let Some(row) = b.set_flapping(key, true, *at).await? {
                        out.push((i, Announce::Updated { row }));
                    }
                }
            }
        }
        Effect::FlappingEnded { key, at } => {
            b.set_flapping(key, false, *at).await?;
        }
        Effect::SuppressStanding { site, cause, at } => {
            b.suppress_standing(site, cause, *at).await?;
        }
        Effect::ReleaseSuppressed { site, node, at } => {
            for row in b.suppressed_standing(site, Some(node)).await? {
                let spec = specs::released_ticket(config, &row);
                let (row, ticket) = b.link_ticket(row.id, spec.as_ref(), true, *at).await?;
                out.push((
                    i,
                    Announce::Raised {
                        row,
                        ticket,
                        counts: false,
                    },
                ));
            }
        }
        Effect::FinishSelfTest {
            id,
            at,
            passed,
            channels,
            reason,
        } => {
            b.finish_selftest(*id, *at, *passed, channels, reason.as_deref())
                .await?
        }
        Effect::Audit(a) => {
            b.audit(&AuditEntry {
                at: a.at,
                actor: &a.actor,
                role: &a.role,
                action: a.action,
                subject: a.subject.clone(),
                details: a.details.clone(),
            })
            .await?
        }
        Effect::SaveBaseline(row) => b.save_baseline(row).await?,
        Effect::Log(_)
        | Effect::Raise { .. }
        | Effect::Settle { .. }
        | Effect::SetLevel { .. }
        | Effect::LinkReading(_) => unreachable!("written in rounds"),
    }
    Ok(())
}
