//! The hash-chained audit trail (留痕): operator actions are recorded, and
//! `gateway audit verify` fails, naming the record, when anyone edits or
//! deletes a past record in the database.

mod common;

use common::db::TestDb;
use gateway::store::{Actor, AlarmInput, AlarmKey, Store, TicketSpec};
use gateway::tickets::{Action, Grade, Policy, Role};
use std::process::Command;

const T0: u64 = 1_790_000_000_000;

async fn populated(db: &TestDb) -> String {
    let url = db.url.clone();
    let store = Store::open(&url).await.unwrap();
    let key = AlarmKey {
        site: "home_a".into(),
        node: "n01".into(),
        channel: "rc1".into(),
        cause: "residual_current_high".into(),
    };
    let input = AlarmInput {
        key,
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(620),
        setpoint: Some(500),
        at: T0,
        suppressed: false,
    };
    let spec = TicketSpec {
        source: "sensor_alarm",
        category: "electrical_fire",
        grade: "general",
        prefix: "YH",
        title: "剩余电流超限".into(),
        location: String::new(),
        reopen_window_ms: 0,
    };
    let (alarm, _) = store.raise(&input, Some(&spec)).await.unwrap();
    store.ack(alarm.id, "值班员小李", T0 + 1000).await.unwrap();
    let ticket = alarm.ticket_id.unwrap();
    let actor = Actor {
        name: "小李",
        role: Role::Duty,
        note: "夜班登记",
    };
    store
        .transition_ticket(
            ticket,
            &Action::Register {
                grade: Grade::General,
            },
            &actor,
            &Policy::default(),
            T0 + 2000,
        )
        .await
        .unwrap();
    let mut settings = std::collections::BTreeMap::new();
    settings.insert(
        "rules.residual_current".to_string(),
        r#"{"alarm":400}"#.to_string(),
    );
    store
        .sync_rule_settings(&settings, "config:gateway.toml", T0 + 3000)
        .await
        .unwrap();
    let records = store.audit_records().await.unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["alarm.ack", "ticket.register", "rules.change"]);
    store.close().await;
    url
}

fn verify(db: &TestDb) -> (Option<i32>, String) {
    let config = db.dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\ndatabase_url = \"{}\"\n",
            db.dir.path().join("data").display(),
            db.url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn tamper(db: &TestDb, sql: &str) {
    let store = Store::open(&db.url).await.unwrap();
    let pool = store.pool();
    // Whoever tampers with the database can drop the triggers; the chain still tells.
    let drop = if db.is_postgres() {
        "DROP TRIGGER audit_log_append_only ON audit_log"
    } else {
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete"
    };
    sqlx::raw_sql(drop).execute(pool).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .unwrap();
    store.close().await;
}

async fn verify_passes_on_an_intact_trail(db: TestDb) {
    populated(&db).await;
    let (code, out) = verify(&db);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact: 3 records"), "{out}");
}

async fn editing_a_past_record_is_caught_and_named(db: TestDb) {
    populated(&db).await;
    tamper(&db, "UPDATE audit_log SET actor = '别人' WHERE id = 2").await;
    let (code, out) = verify(&db);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("record 2") && out.contains("changed"), "{out}");
}

async fn deleting_a_past_record_is_caught_and_named(db: TestDb) {
    populated(&db).await;
    tamper(&db, "DELETE FROM audit_log WHERE id = 1").await;
    let (code, out) = verify(&db);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("record 2") && out.contains("expected record 1"),
        "{out}"
    );
}

async fn plain_sql_cannot_edit_the_trail(db: TestDb) {
    let url = populated(&db).await;
    let store = Store::open(&url).await.unwrap();
    let pool = store.pool();
    assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
        .execute(pool)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM audit_log")
        .execute(pool)
        .await
        .is_err());
}

crate::on_both_backends!(
    verify_passes_on_an_intact_trail,
    editing_a_past_record_is_caught_and_named,
    deleting_a_past_record_is_caught_and_named,
    plain_sql_cannot_edit_the_trail,
);
