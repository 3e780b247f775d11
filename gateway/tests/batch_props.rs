//! The alarm path's pure evaluation step: evaluating a sequence of
//! messages in batches of any size asks for exactly the same alarms,
//! levels, tickets, log rows, lines and counters, in the same order, as
//! evaluating it one message at a time — and leaves every channel in the
//! same rule state. No database: `Core::step` does no I/O.

mod common;

use gateway::alarms::pipeline::effects::{Effects, StateRow};
use gateway::alarms::pipeline::eval::Core;
use gateway::config::Config;
use gateway::ingest::Inbound;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const T0: u64 = 1_790_000_000_000;

fn config() -> Arc<Config> {
    Arc::new(
        Config::from_toml(
            "[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n",
        )
        .unwrap(),
    )
}

/// One message of the generated sequence.
#[derive(Debug, Clone)]
enum Msg {
    /// Telemetry from node `n` with rc1 (mA) and t1 (0.1 °C), or a faulted rc1.
    Telemetry { n: u8, rc: i32, t: i32, fault: bool },
    /// A node's own alarm event on rc1.
    Event { n: u8, level: u8 },
    /// A Last Will, or the node back online.
    Status { n: u8, online: bool },
    /// Something that is not the contract.
    Garbage,
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    prop_oneof![
        8 => (0u8..2, 0i32..800, 150i32..700, proptest::bool::weighted(0.05))
            .prop_map(|(n, rc, t, fault)| Msg::Telemetry { n, rc, t, fault }),
        1 => (0u8..2, 0u8..3).prop_map(|(n, level)| Msg::Event { n, level }),
        1 => (0u8..2, any::<bool>()).prop_map(|(n, online)| Msg::Status { n, online }),
        1 => Just(Msg::Garbage),
    ]
}

/// The wire messages for a sequence: each node's own boot/seq, time moving
/// 2 s a message.
fn inbound(seq: &[Msg]) -> Vec<Inbound> {
    let mut next = [0u32; 2];
    seq.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = T0 + i as u64 * 2_000;
            let (topic, payload) = match m {
                Msg::Telemetry { n, rc, t, fault } => {
                    let s = next[*n as usize];
                    next[*n as usize] += 1;
                    let status = if *fault { "open" } else { "ok" };
                    (
                        format!("fire/v1/home_a/n0{}/telemetry", n + 1),
                        format!(
                            r#"{{"boot":1,"seq":{s},"ts":{at},"ch":[{{"id":"rc1","q":"residual_current","v":{rc},"s":"{status}"}},{{"id":"t1","q":"temperature","v":{t},"s":"ok"}}]}}"#
                        ),
                    )
                }
                Msg::Event { n, level } => {
                    let s = next[*n as usize];
                    next[*n as usize] += 1;
                    let level = ["normal", "pre_alarm", "alarm"][*level as usize];
                    (
                        format!("fire/v1/home_a/n0{}/event", n + 1),
                        format!(
                            r#"{{"boot":1,"seq":{s},"ts":{at},"ch":"rc1","level":"{level}","v":650}}"#
                        ),
                    )
                }
                Msg::Status { n, online } => (
                    format!("fire/v1/home_a/n0{}/status", n + 1),
                    if *online {
                        r#"{"state":"online","fw":"1.0.0"}"#.to_string()
                    } else {
                        r#"{"state":"offline"}"#.to_string()
                    },
                ),
                Msg::Garbage => ("fire/v1/home_a/n01/telemetry".into(), "{\"boot\":".into()),
            };
            Inbound {
                topic,
                payload: payload.into_bytes().into(),
                arrived_ms: at,
                ack: None,
            }
        })
        .collect()
}

/// What a run asked for, comparable: everything in order, and the last
/// saved state of each channel.
type Summary = (
    String,
    BTreeMap<(String, String, String), String>,
    Vec<String>,
);

/// Every channel's rule state in memory.
fn rule_states(core: &Core) -> Vec<String> {
    let mut out = Vec::new();
    for n in ["n01", "n02"] {
        for c in ["rc1", "t1"] {
            let st = core.runtime().channel_state(
                &wire::SiteId::new("home_a").unwrap(),
                &wire::NodeId::new(n).unwrap(),
                &wire::ChannelId::new(c).unwrap(),
            );
            out.push(format!("{n}/{c}: {st:?}"));
        }
    }
    out
}

fn summary(all: &[Effects], core: &Core) -> Summary {
    let mut parts = [
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    let mut last: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for fx in all {
        for w in &fx.writes {
            parts[0].push_str(&format!("{w:?}\n"));
        }
        for l in &fx.lines {
            parts[1].push_str(&format!("{l:?}\n"));
        }
        for r in &fx.rollups {
            parts[2].push_str(&format!("{r:?}\n"));
        }
        for n in &fx.notes {
            parts[3].push_str(&format!("{n:?}\n"));
        }
        for p in &fx.push_setpoints {
            parts[4].push_str(&format!("{p:?}\n"));
        }
        for StateRow {
            site,
            node,
            channel,
            state,
            ..
        } in &fx.states
        {
            last.insert((site.clone(), node.clone(), channel.clone()), state.clone());
        }
    }
    (parts.join("--\n"), last, rule_states(core))
}

/// Evaluates `msgs` split by `sizes` (cycled), with the dead-man tick
/// between batches as the pipeline runs it; `batched` = each split at once,
/// else one message at a time within it.
fn run(msgs: &[Inbound], sizes: &[usize], batched: bool) -> Summary {
    let mut core = Core::new(config(), true);
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < msgs.len() {
        let n = sizes[k % sizes.len()].max(1).min(msgs.len() - i);
        if batched {
            out.push(core.step(&msgs[i..i + n]));
        } else {
            for m in &msgs[i..i + n] {
                out.push(core.step(std::slice::from_ref(m)));
            }
        }
        out.push(core.tick(msgs[i + n - 1].arrived_ms));
        i += n;
        k += 1;
    }
    summary(&out, &core)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn batches_of_any_size_ask_for_what_one_at_a_time_does(
        seq in proptest::collection::vec(msg_strategy(), 1..120),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let msgs = inbound(&seq);
        // Ticks come between batches: compare with ticks at the same points.
        let one_by_one = run(&msgs, &sizes, false);
        let batched = run(&msgs, &sizes, true);
        prop_assert_eq!(&one_by_one.0, &batched.0);
        // The same channels' states are saved; a batch saves each one's
        // state as the batch leaves it (later, never earlier, than one at a
        // time would), and the rule state itself ends the same.
        prop_assert_eq!(
            one_by_one.1.keys().collect::<Vec<_>>(),
            batched.1.keys().collect::<Vec<_>>()
        );
        prop_assert_eq!(one_by_one.2, batched.2);
    }
}

#[test]
fn a_storm_raises_alarms_and_tickets_in_the_effects() {
    let seq: Vec<Msg> = (0..40)
        .map(|i| Msg::Telemetry {
            n: (i % 2) as u8,
            rc: if i % 4 < 2 { 100 } else { 700 },
            t: 250,
            fault: false,
        })
        .collect();
    let msgs = inbound(&seq);
    let mut core = Core::new(config(), false);
    let fx = core.step(&msgs);
    let raises = fx
        .writes
        .iter()
        .filter(|w| {
            matches!(
                w,
                gateway::alarms::pipeline::effects::Effect::Raise {
                    ticket: Some(_),
                    ..
                }
            )
        })
        .count();
    assert!(raises >= 2, "alarms with tickets asked for: {fx:?}");
    // One saved state per channel that moved, however many readings.
    let mut keys: Vec<_> = fx.states.iter().map(|s| (&s.node, &s.channel)).collect();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "channel states coalesced per batch");
    assert!(fx.lines.is_empty(), "no sink, no lines");
}

// ---------------------------------------------------------------------------
// The effect writer: a batch's effects written at once (in rounds, many
// rows a statement) leave the database as writing each message's effects
// in its own transaction does — on SQLite and PostgreSQL.

/// The same two nodes with alarms that do not latch and no flapping
/// suppression, so a storm is a stream of raises and clears, each with its
/// ticket attached and its readings linked.
fn storm_config() -> Arc<Config> {
    Arc::new(
        Config::from_toml(
            "[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n\
             [rules.residual_current]\nlatch_alarm = false\nflap_transitions = 0\n\
             [rules.temperature]\npre_alarm = 500\nalarm = 550\nlatch_alarm = false\nflap_transitions = 0\n",
        )
        .unwrap(),
    )
}

/// Every row the alarm path writes, without ids (the two runs number rows
/// in different orders), tickets named by their key; a multiset, sorted.
async fn database(store: &gateway::store::Store) -> Vec<String> {
    use sqlx::Row;
    let pool = store.pool();
    let mut out = Vec::new();
    let queries = [
        "SELECT 'alarm', a.site, a.node, a.channel, a.cause, a.kind, a.level, a.state, a.quantity, \
         CAST(a.value AS TEXT), CAST(a.setpoint AS TEXT), CAST(a.peak AS TEXT), CAST(a.raised_at AS TEXT), \
         CAST(a.updated_at AS TEXT), CAST(a.cleared_at AS TEXT), CAST(a.suppressed AS TEXT), \
         CAST(a.flapping AS TEXT), t.site || '/' || t.node || '/' || t.channel || '/' || t.cause \
         FROM alarms a LEFT JOIN tickets t ON t.id = a.ticket_id",
        "SELECT 'ticket', site, node, channel, cause, status, CAST(alarm_count AS TEXT), \
         CAST(last_alarm_at AS TEXT), CAST(opened_at AS TEXT), CAST(updated_at AS TEXT), source, category, grade \
         FROM tickets",
        "SELECT 'event', t.site || '/' || t.node || '/' || t.channel || '/' || t.cause, CAST(e.at AS TEXT), \
         e.actor, e.action, e.from_status, e.to_status FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id",
        "SELECT 'reading', t.site || '/' || t.node || '/' || t.channel || '/' || t.cause, CAST(r.at AS TEXT), \
         r.quantity, CAST(r.value AS TEXT), r.status, r.level, CAST(r.abnormal AS TEXT) \
         FROM ticket_readings r JOIN tickets t ON t.id = r.ticket_id",
        "SELECT 'log', CAST(at AS TEXT), site, node, channel, cause, transition, level, CAST(value AS TEXT), \
         disposition, actor FROM alarm_log",
        "SELECT 'state', site, node, channel, quantity, state FROM channel_state",
    ];
    for q in queries {
        for row in sqlx::query(q).fetch_all(pool).await.unwrap() {
            let cols: Vec<String> = (0..row.len())
                .map(|i| {
                    row.try_get::<Option<String>, _>(i)
                        .unwrap()
                        .unwrap_or_default()
                })
                .collect();
            out.push(cols.join("|"));
        }
    }
    out.sort();
    out
}

/// Writes `fx` in one transaction.
async fn commit(store: &gateway::store::Store, fx: &Effects, config: &Config) {
    let mut b = store.batch().await.unwrap();
    gateway::alarms::pipeline::effects::write(&mut b, fx, config)
        .await
        .unwrap();
    b.commit().await.unwrap();
}

/// The rows that carry ids — alarms, ticket numbers, the hash-chained
/// audit log — with their ids: two writers of the same batches must number
/// them alike.
async fn numbered(store: &gateway::store::Store) -> Vec<String> {
    use sqlx::Row;
    let mut out = Vec::new();
    let queries = [
        "SELECT 'alarm', CAST(id AS TEXT), site, node, channel, cause, state, CAST(ticket_id AS TEXT) FROM alarms ORDER BY alarms.id",
        "SELECT 'ticket', CAST(id AS TEXT), number, status FROM tickets ORDER BY tickets.id",
        "SELECT 'audit', CAST(id AS TEXT), action, subject, details, hash FROM audit_log ORDER BY audit_log.id",
    ];
    for q in queries {
        for row in sqlx::query(q).fetch_all(store.pool()).await.unwrap() {
            let cols: Vec<String> = (0..row.len())
                .map(|i| {
                    row.try_get::<Option<String>, _>(i)
                        .unwrap()
                        .unwrap_or_default()
                })
                .collect();
            out.push(cols.join("|"));
        }
    }
    out
}

/// Writes `fx` in one transaction on the store's SQLite writer thread
/// (rusqlite), as the pipeline does on SQLite.
async fn commit_local(store: &gateway::store::Store, fx: &Effects, config: &Arc<Config>) {
    let writer = store
        .local_writer()
        .expect("a SQLite database file has its writer thread");
    let (fx, config) = (fx.clone(), config.clone());
    writer
        .run(std::time::Duration::from_secs(30), move |conn| {
            gateway::store::local_transaction(conn, |b| {
                gateway::store::ready(gateway::alarms::pipeline::effects::write(b, &fx, &config))
            })
            .map(|_| ())
        })
        .await
        .unwrap()
        .unwrap();
}

/// `msgs` evaluated and written as one batch by the SQLite writer thread
/// into a fresh database: its rows ([`database`]) and [`numbered`] rows.
async fn written_by_the_local_writer(msgs: &[Inbound], url: &str) -> (Vec<String>, Vec<String>) {
    let config = storm_config();
    let last = msgs.last().map(|m| m.arrived_ms).unwrap_or(T0);
    let store = gateway::store::Store::open(url).await.unwrap();
    let mut core = Core::new(config.clone(), false);
    commit_local(&store, &core.step(msgs), &config).await;
    commit_local(&store, &core.tick(last), &config).await;
    let rows = (database(&store).await, numbered(&store).await);
    store.close().await;
    rows
}

/// `msgs` evaluated and written as one batch, and one message at a time,
/// each into a fresh database from `open`.
async fn written_both_ways(msgs: &[Inbound], urls: [String; 2]) -> (Vec<String>, Vec<String>) {
    let config = storm_config();
    let last = msgs.last().map(|m| m.arrived_ms).unwrap_or(T0);
    let whole = gateway::store::Store::open(&urls[0]).await.unwrap();
    let mut core = Core::new(config.clone(), false);
    commit(&whole, &core.step(msgs), &config).await;
    commit(&whole, &core.tick(last), &config).await;
    let single = gateway::store::Store::open(&urls[1]).await.unwrap();
    let mut core = Core::new(config.clone(), false);
    for m in msgs {
        commit(&single, &core.step(std::slice::from_ref(m)), &config).await;
    }
    commit(&single, &core.tick(last), &config).await;
    (database(&whole).await, database(&single).await)
}

fn storm_strategy() -> impl Strategy<Value = Msg> {
    prop_oneof![
        12 => (0u8..2, 0i32..800, 150i32..700, proptest::bool::weighted(0.03))
            .prop_map(|(n, rc, t, fault)| Msg::Telemetry { n, rc, t, fault }),
        1 => (0u8..2, 0u8..3).prop_map(|(n, level)| Msg::Event { n, level }),
        1 => (0u8..2, any::<bool>()).prop_map(|(n, online)| Msg::Status { n, online }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_written_at_once_leaves_the_database_as_one_at_a_time_does(
        seq in proptest::collection::vec(storm_strategy(), 1..160),
    ) {
        let msgs = inbound(&seq);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (whole, single, whole_numbered, local) = rt.block_on(async {
            let (a, b, c) = (common::db::TestDb::sqlite(), common::db::TestDb::sqlite(), common::db::TestDb::sqlite());
            let (whole, single) = written_both_ways(&msgs, [a.url.clone(), b.url.clone()]).await;
            let mut whole_numbered = whole.clone();
            let store = gateway::store::Store::open(&a.url).await.unwrap();
            whole_numbered.extend(numbered(&store).await);
            let (mut local, local_numbered) = written_by_the_local_writer(&msgs, &c.url).await;
            local.extend(local_numbered);
            (whole, single, whole_numbered, local)
        });
        prop_assert!(whole.iter().any(|r| r.starts_with("alarm|")) || seq.len() < 20);
        prop_assert_eq!(&whole, &single);
        // The pipeline's SQLite writer (rusqlite, one-row statements)
        // leaves the same rows as the sqlx writer, numbered alike.
        prop_assert_eq!(&local, &whole_numbered);
    }
}

/// The same on PostgreSQL, for one long storm (a fresh database each way).
#[tokio::test]
async fn a_storm_written_at_once_on_postgres_leaves_what_one_at_a_time_does() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let seq: Vec<Msg> = (0..400)
        .map(|_| Msg::Telemetry {
            n: next(2) as u8,
            rc: next(800) as i32,
            t: 150 + next(550) as i32,
            fault: next(50) == 0,
        })
        .collect();
    let msgs = inbound(&seq);
    let (a, b) = (
        common::db::TestDb::postgres().await,
        common::db::TestDb::postgres().await,
    );
    let (whole, single) = written_both_ways(&msgs, [a.url.clone(), b.url.clone()]).await;
    // Numbered as the pipeline's SQLite writer numbers them: alarm ids
    // given in the order alarms were raised, not written.
    let store = gateway::store::Store::open(&a.url).await.unwrap();
    let whole_numbered = numbered(&store).await;
    store.close().await;
    let c = common::db::TestDb::sqlite();
    let (_, local_numbered) = written_by_the_local_writer(&msgs, &c.url).await;
    assert_eq!(whole_numbered, local_numbered);
    let alarms = whole.iter().filter(|r| r.starts_with("alarm|")).count();
    let linked = whole.iter().filter(|r| r.starts_with("reading|")).count();
    assert!(
        alarms > 50 && linked > 50,
        "a storm: {alarms} alarms, {linked} linked readings"
    );
    assert_eq!(whole, single);
}
