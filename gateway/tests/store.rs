//! The store: an alarm opens a ticket; a re-raised alarm attaches to the
//! open ticket instead of opening another; a restarted gateway re-raising a
//! standing alarm updates it; the audit trail cannot be rewritten.

mod common;

use common::db::TestDb;
use gateway::store::*;

fn key(ch: &str) -> AlarmKey {
    AlarmKey {
        site: "home_a".into(),
        node: "n01".into(),
        channel: ch.into(),
        cause: "residual_current_high".into(),
    }
}

fn alarm(ch: &str, value: i32, at: u64) -> AlarmInput {
    AlarmInput {
        key: key(ch),
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(value),
        setpoint: Some(500),
        at,
        suppressed: false,
    }
}

fn spec() -> TicketSpec {
    TicketSpec {
        source: "sensor_alarm",
        category: "electrical_fire",
        grade: "general",
        prefix: "YH",
        title: "剩余电流超限".into(),
        location: "2号楼厨房配电箱".into(),
        reopen_window_ms: 90 * 86_400_000,
    }
}

async fn open_store(db: &TestDb) -> Store {
    Store::open(&db.url).await.expect("open")
}

const T0: u64 = 1_764_000_000_000;

async fn re_raised_alarm_attaches_to_the_open_ticket(db: TestDb) {
    let store = open_store(&db).await;

    let (a1, out) = store
        .raise(&alarm("rc1", 620, T0), Some(&spec()))
        .await
        .unwrap();
    let Some(TicketOutcome::Opened { id: ticket, number }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(number, "YH20251125-00001");
    assert_eq!(a1.ticket_id, Some(ticket));

    // The alarm clears (after an authorised reset), then the leakage returns.
    let cleared = store
        .settle(&key("rc1"), "cleared", Some(120), T0 + 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cleared.state.as_str(), cleared.cleared_at),
        ("cleared", Some((T0 + 1000) as i64))
    );
    let (a2, out) = store
        .raise(&alarm("rc1", 700, T0 + 2000), Some(&spec()))
        .await
        .unwrap();
    assert_ne!(a2.id, a1.id, "a new alarm record");
    assert_eq!(
        out,
        Some(TicketOutcome::Attached {
            id: ticket,
            number: number.clone()
        })
    );
    assert_eq!(a2.ticket_id, Some(ticket));

    // Another channel is another ticket.
    let (_, out) = store
        .raise(&alarm("rc2", 650, T0 + 3000), Some(&spec()))
        .await
        .unwrap();
    assert!(
        matches!(out, Some(TicketOutcome::Opened { ref number, .. }) if number == "YH20251125-00002"),
        "{out:?}"
    );

    let open = store.tickets(&TicketFilter::Open, 100).await.unwrap();
    assert_eq!(open.len(), 2);
    let (t, events, alarms) = store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(
        (t.alarm_count, t.status.as_str(), t.last_alarm_at),
        (2, "pending_registration", (T0 + 2000) as i64)
    );
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["opened", "alarm_attached"]);
    assert_eq!(
        alarms.iter().map(|a| a.value).collect::<Vec<_>>(),
        [Some(120), Some(700)]
    );
}

async fn a_restarted_gateway_updates_the_standing_alarm(db: TestDb) {
    let store = open_store(&db).await;
    let (a1, _) = store
        .raise(&alarm("rc1", 620, T0), Some(&spec()))
        .await
        .unwrap();
    store.close().await;

    // Restart: the rules state is gone, the alarm is raised again.
    let store = open_store(&db).await;
    let (a2, out) = store
        .raise(&alarm("rc1", 810, T0 + 5000), Some(&spec()))
        .await
        .unwrap();
    assert_eq!(a2.id, a1.id, "the same standing alarm");
    assert_eq!(
        out,
        Some(TicketOutcome::AlreadyLinked {
            id: a1.ticket_id.unwrap()
        })
    );
    assert_eq!(
        (a2.value, a2.peak, a2.raised_at),
        (Some(810), Some(810), T0 as i64)
    );
    assert_eq!(
        store.tickets(&TicketFilter::All, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.alarms(AlarmFilter::Standing, 10).await.unwrap().len(),
        1
    );
}

async fn latched_alarms_stand_until_cleared_and_ack_counts_once(db: TestDb) {
    let store = open_store(&db).await;
    let (a, _) = store.raise(&alarm("rc1", 620, T0), None).await.unwrap();
    assert_eq!(a.ticket_id, None);
    store
        .settle(&key("rc1"), "latched", Some(90), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.alarms(AlarmFilter::Latched, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.alarms(AlarmFilter::Standing, 10).await.unwrap().len(),
        1
    );
    assert!(store
        .alarms(AlarmFilter::Active, 10)
        .await
        .unwrap()
        .is_empty());

    let acked = store.ack(a.id, "张三", T0 + 30_000).await.unwrap().unwrap();
    assert_eq!(
        (acked.acked_by.as_deref(), acked.acked_at),
        (Some("张三"), Some((T0 + 30_000) as i64))
    );
    let again = store.ack(a.id, "李四", T0 + 60_000).await.unwrap().unwrap();
    assert_eq!(
        again.acked_by.as_deref(),
        Some("张三"),
        "the first acknowledgement counts"
    );
    assert!(store.ack(9999, "x", T0).await.unwrap().is_none());
    assert!(store
        .settle(&key("nothing"), "cleared", None, T0)
        .await
        .unwrap()
        .is_none());
}

async fn the_audit_trail_cannot_be_rewritten(db: TestDb) {
    let store = open_store(&db).await;
    store
        .raise(&alarm("rc1", 620, T0), Some(&spec()))
        .await
        .unwrap();
    let pool = store.pool();
    let upd = sqlx::query("UPDATE ticket_events SET note = 'forged'")
        .execute(pool)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM ticket_events").execute(pool).await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
    // A ticket is closed, never removed (its linked readings rely on it).
    let del = sqlx::query("DELETE FROM tickets").execute(pool).await;
    assert!(del
        .unwrap_err()
        .to_string()
        .contains("tickets are closed, never removed"));
}

async fn suppressed_alarms_get_their_ticket_when_the_root_cause_clears(db: TestDb) {
    let store = open_store(&db).await;
    let mut a = alarm("rc1", 620, T0);
    a.suppressed = true;
    let (row, out) = store.raise(&a, None).await.unwrap();
    assert!(row.suppressed && row.ticket_id.is_none() && out.is_none());
    let standing = store
        .suppressed_standing("home_a", Some("n01"))
        .await
        .unwrap();
    assert_eq!(standing.iter().map(|r| r.id).collect::<Vec<_>>(), [row.id]);
    let (row, out) = store
        .unsuppress(row.id, Some(&spec()), T0 + 10)
        .await
        .unwrap();
    assert!(!row.suppressed);
    assert!(matches!(out, Some(TicketOutcome::Opened { .. })), "{out:?}");
    assert!(store
        .suppressed_standing("home_a", None)
        .await
        .unwrap()
        .is_empty());
}

async fn rule_changes_are_recorded_once_and_cannot_be_rewritten(db: TestDb) {
    let store = open_store(&db).await;
    let mut settings = std::collections::BTreeMap::new();
    settings.insert(
        "home_a/n01/rc1 residual_current".to_string(),
        r#"{"alarm":500}"#.to_string(),
    );
    let first = store
        .sync_rule_settings(&settings, "config:gateway.toml", T0)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].old, None);
    assert!(
        store
            .sync_rule_settings(&settings, "config:gateway.toml", T0 + 1)
            .await
            .unwrap()
            .is_empty(),
        "unchanged"
    );
    settings.insert(
        "home_a/n01/rc1 residual_current".to_string(),
        r#"{"alarm":400}"#.to_string(),
    );
    let second = store
        .sync_rule_settings(&settings, "config:gateway.toml", T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        (second[0].old.as_deref(), second[0].new.as_deref()),
        (Some(r#"{"alarm":500}"#), Some(r#"{"alarm":400}"#))
    );
    settings.clear();
    let third = store
        .sync_rule_settings(&settings, "config:gateway.toml", T0 + 3)
        .await
        .unwrap();
    assert_eq!(third[0].new, None);
    assert_eq!(store.rule_changes(10).await.unwrap().len(), 3);
    let k = key("rc1");
    let entry = LogEntry {
        at: T0,
        key: &k,
        transition: "raised",
        level: Some("alarm"),
        value: Some(620),
        disposition: "suppressed",
        actor: "system",
    };
    store.log_transition(&entry).await.unwrap();
    let log = store.alarm_log("home_a", Some("n01"), 10).await.unwrap();
    assert_eq!(
        (log[0].transition.as_str(), log[0].disposition.as_str()),
        ("raised", "suppressed")
    );
    let pool = store.pool();
    assert!(sqlx::query("DELETE FROM rule_changes")
        .execute(pool)
        .await
        .is_err());
    assert!(sqlx::query("UPDATE alarm_log SET value = 1")
        .execute(pool)
        .await
        .is_err());
}

/// A self-test (自检) is recorded when it starts (audited) and completed
/// once; a finished record cannot change or be deleted; the list keeps to
/// the caller's sites.
async fn a_selftest_is_recorded_once_and_kept(db: TestDb) {
    let store = open_store(&db).await;
    let id = store
        .start_selftest("home_a", "n01", "command", "王工", "installer", T0)
        .await
        .unwrap();
    let other = store
        .start_selftest("home_b", "n01", "test_key", "李工", "installer", T0 + 1)
        .await
        .unwrap();
    let running = store.selftest(id).await.unwrap().unwrap();
    assert_eq!(
        (running.result.as_str(), running.finished_at),
        ("running", None)
    );
    let channels = r#"[{"channel":"rc1","quantity":"residual_current","passed":true,"latency_ms":80,"value":800,"judged_by":"gateway","reason":null}]"#;
    store
        .finish_selftest(id, T0 + 500, true, channels, None)
        .await
        .unwrap();
    // A second finish (a late duplicate) changes nothing.
    store
        .finish_selftest(id, T0 + 900, false, "[]", Some("x"))
        .await
        .unwrap();
    let done = store.selftest(id).await.unwrap().unwrap();
    assert_eq!(
        (
            done.result.as_str(),
            done.finished_at,
            done.channels.as_str()
        ),
        ("passed", Some((T0 + 500) as i64), channels)
    );
    let pool = store.pool();
    assert!(sqlx::query("UPDATE selftests SET result = 'failed'")
        .execute(pool)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM selftests")
        .execute(pool)
        .await
        .is_err());
    let mine = store
        .selftests_in(Some(&["home_a".to_string()]), None, None, 10)
        .await
        .unwrap();
    assert_eq!(mine.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    let all = store.selftests_in(None, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other, id]
    );
    let one = store
        .selftests_in(None, Some("home_b"), Some("n01"), 10)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let audit = store.audit_records().await.unwrap();
    assert!(
        audit.iter().any(|r| r.action == "node.selftest"),
        "starting a self-test is audited"
    );
}

/// An alarm like [`alarm`] on another site.
fn alarm_at(site: &str, ch: &str, at: u64) -> AlarmInput {
    let mut a = alarm(ch, 620, at);
    a.key.site = site.into();
    a
}

async fn the_pipeline_writes_while_the_api_holds_every_connection(db: TestDb) {
    use std::time::Duration;
    let store = open_store(&db).await;
    let pipeline = store.reserved();
    assert_eq!(pipeline.backend(), store.backend());

    // Ledger exports and reports in progress hold every connection of the
    // API's pool, each inside a read transaction.
    let max = store.pool().options().get_max_connections();
    let mut held = Vec::new();
    for _ in 0..max {
        let mut tx = store.pool().begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        held.push(tx);
    }
    assert!(
        store.pool().try_acquire().is_none(),
        "the API pool is spent"
    );
    // Through the API's pool a write now waits for a connection...
    assert!(
        tokio::time::timeout(
            Duration::from_millis(250),
            store.raise(&alarm("rc9", 620, T0), Some(&spec()))
        )
        .await
        .is_err(),
        "the shared pool has no connection to give"
    );

    // ...while the pipeline's reserved connections raise, open the ticket
    // and clear at once.
    let bound = Duration::from_secs(5);
    let (raised, out) =
        tokio::time::timeout(bound, pipeline.raise(&alarm("rc1", 620, T0), Some(&spec())))
            .await
            .expect("a write through the reserved pool is not starved")
            .unwrap();
    assert!(matches!(out, Some(TicketOutcome::Opened { .. })), "{out:?}");
    let cleared = tokio::time::timeout(
        bound,
        pipeline.settle(&key("rc1"), "cleared", Some(120), T0 + 1000),
    )
    .await
    .expect("reserved pool")
    .unwrap()
    .unwrap();
    assert_eq!(cleared.id, raised.id);
    // The audit chain is shared between the handles.
    pipeline
        .audit(&AuditEntry {
            at: T0 + 2000,
            actor: "system",
            role: "system",
            action: "test.reserved",
            subject: "pool".into(),
            details: "{}".into(),
        })
        .await
        .unwrap();

    // The exports end; the API sees what the pipeline wrote.
    drop(held);
    let (ticket, _, alarms) = store
        .ticket(raised.ticket_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.status, "pending_registration");
    assert_eq!(alarms[0].state, "cleared");
    assert!(store.verify_audit().await.unwrap().is_ok());

    // Closing either handle closes both pools.
    pipeline.close().await;
    assert!(store.pool().is_closed() && pipeline.pool().is_closed());
}

async fn the_ledger_keeps_to_the_jurisdiction_before_its_limit(db: TestDb) {
    let store = open_store(&db).await;
    // home_a's hazards are older than home_b's: the ledger lists oldest first.
    for (i, site) in ["home_a", "home_a", "home_b", "home_c"].iter().enumerate() {
        store
            .raise(
                &alarm_at(site, &format!("rc{i}"), T0 + i as u64 * 1000),
                Some(&spec()),
            )
            .await
            .unwrap();
    }
    let ledger = |sites: Option<Vec<String>>, limit| {
        let store = store.clone();
        async move {
            let q = LedgerQuery {
                site: None,
                sites,
                from: None,
                to: None,
                status: TicketFilter::All,
                grade: None,
                limit,
            };
            store
                .ledger(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.site)
                .collect::<Vec<_>>()
        }
    };
    let sites = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        ledger(None, 10).await,
        ["home_a", "home_a", "home_b", "home_c"]
    );
    // The limit counts the caller's rows only, not every site's.
    assert_eq!(ledger(sites(&["home_b"]), 1).await, ["home_b"]);
    assert_eq!(
        ledger(sites(&["home_c", "home_b"]), 10).await,
        ["home_b", "home_c"]
    );
    assert_eq!(ledger(sites(&["home_a"]), 1).await, ["home_a"]);
    assert!(ledger(sites(&[]), 10).await.is_empty());
    assert!(ledger(sites(&["elsewhere"]), 10).await.is_empty());
    // With one site asked for too, both apply.
    let q = LedgerQuery {
        site: Some("home_a".into()),
        sites: sites(&["home_b"]),
        from: None,
        to: None,
        status: TicketFilter::Open,
        grade: Some("general".into()),
        limit: 10,
    };
    assert!(store.ledger(&q).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_syncs_every_commit_to_disk() {
    let db = TestDb::sqlite();
    let store = open_store(&db).await;
    for pool in [store.pool(), store.reserved().pool()] {
        let mut conn = pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        // 2 = FULL: NORMAL in WAL mode can lose the last commits on power loss.
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((journal.as_str(), sync), ("wal", 2));
    }
}

crate::on_both_backends!(
    the_pipeline_writes_while_the_api_holds_every_connection,
    the_ledger_keeps_to_the_jurisdiction_before_its_limit,
    a_selftest_is_recorded_once_and_kept,
    re_raised_alarm_attaches_to_the_open_ticket,
    a_restarted_gateway_updates_the_standing_alarm,
    latched_alarms_stand_until_cleared_and_ack_counts_once,
    the_audit_trail_cannot_be_rewritten,
    suppressed_alarms_get_their_ticket_when_the_root_cause_clears,
    rule_changes_are_recorded_once_and_cannot_be_rewritten,
);
