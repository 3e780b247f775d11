//! The store: an alarm opens a ticket; a re-raised alarm attaches to the
//! open ticket instead of opening another; a restarted gateway re-raising a
//! standing alarm updates it; the audit trail cannot be rewritten.

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
    }
}

async fn open_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .expect("open")
}

const T0: u64 = 1_764_000_000_000;

#[tokio::test]
async fn re_raised_alarm_attaches_to_the_open_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;

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

#[tokio::test]
async fn a_restarted_gateway_updates_the_standing_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
    let (a1, _) = store
        .raise(&alarm("rc1", 620, T0), Some(&spec()))
        .await
        .unwrap();
    store.close().await;

    // Restart: the rules state is gone, the alarm is raised again.
    let store = open_store(&dir).await;
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

#[tokio::test]
async fn latched_alarms_stand_until_cleared_and_ack_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
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

#[tokio::test]
async fn the_audit_trail_cannot_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = open_store(&dir).await;
    store
        .raise(&alarm("rc1", 620, T0), Some(&spec()))
        .await
        .unwrap();
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let upd = sqlx::query("UPDATE ticket_events SET note = 'forged'")
        .execute(&pool)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM ticket_events")
        .execute(&pool)
        .await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
}
