//! The hash-chained audit trail (留痕): operator actions are recorded, and
//! `gateway audit verify` fails, naming the record, when anyone edits or
//! deletes a past record in the database.

use gateway::store::{Actor, AlarmInput, AlarmKey, Store, TicketSpec};
use gateway::ticket::{Action, Grade, Policy, Role};
use std::process::Command;

const T0: u64 = 1_790_000_000_000;

async fn populated(dir: &tempfile::TempDir) -> String {
    let url = format!(
        "sqlite://{}",
        dir.path().join("data").join("gateway.db").display()
    );
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

fn verify(dir: &tempfile::TempDir) -> (Option<i32>, String) {
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
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

async fn tamper(url: &str, sql: &str) {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    // Whoever tampers with the file can drop the triggers; the chain still tells.
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn verify_passes_on_an_intact_trail() {
    let dir = tempfile::tempdir().unwrap();
    populated(&dir).await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact: 3 records"), "{out}");
}

#[tokio::test]
async fn editing_a_past_record_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = populated(&dir).await;
    tamper(&url, "UPDATE audit_log SET actor = '别人' WHERE id = 2").await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("record 2") && out.contains("changed"), "{out}");
}

#[tokio::test]
async fn deleting_a_past_record_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = populated(&dir).await;
    tamper(&url, "DELETE FROM audit_log WHERE id = 1").await;
    let (code, out) = verify(&dir);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("record 2") && out.contains("expected record 1"),
        "{out}"
    );
}

#[tokio::test]
async fn plain_sql_cannot_edit_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let url = populated(&dir).await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
        .execute(&pool)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM audit_log")
        .execute(&pool)
        .await
        .is_err());
}
