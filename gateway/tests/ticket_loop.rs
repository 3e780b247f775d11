//! The hazard closed loop on a ticket opened by a real alarm: walked to
//! 已销号 only by the right roles, only after review, and only once the
//! telemetry has been normal for the proof period after the rectification
//! report; every step recorded. Both through the store (time passed in) and
//! through `POST /api/v1/tickets/{id}/transitions`.

mod common;

use common::db::TestDb;
use gateway::alarms::pipeline::Pipeline;
use gateway::api::{router, AppState};
use gateway::config::Config;
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
use gateway::store::{Actor, AlarmFilter, Store, TransitionError};
use gateway::tickets::{Action, Grade, Policy, Rectification, Refusal, Role};
use std::sync::Arc;

const H: u64 = 3_600_000;

fn now() -> u64 {
    gateway::domain::time::now_ms()
}

async fn alarm_with_ticket(db: &TestDb) -> (Pipeline, Store, i64, i64) {
    let config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let (tx, _) = tokio::sync::broadcast::channel(64);
    let p = Pipeline::new(
        Arc::new(config),
        store.clone(),
        None,
        Arc::new(Metrics::default()),
        tx,
    );
    let mut p = p;
    let t0 = now() - 200 * H;
    let send = |seq: u32, v: i32, at: u64| {
        Inbound {
        topic: "fire/v1/home_a/n01/telemetry".into(),
        payload: format!(r#"{{"boot":1,"seq":{seq},"ts":{at},"ch":[{{"id":"rc1","q":"residual_current","v":{v},"s":"ok"}}]}}"#)
            .into_bytes()
            .into(),
        arrived_ms: at,
        ack: None,
    }
    };
    p.handle(&send(1, 620, t0)).await;
    let alarm = store.alarms(AlarmFilter::Standing, 10).await.unwrap()[0].clone();
    (
        p,
        store,
        alarm.id,
        alarm.ticket_id.expect("the alarm opened a ticket"),
    )
}

fn plan(deadline: u64) -> Rectification {
    Rectification {
        responsible_unit: "阳光养老院后勤科".into(),
        responsible_person: "王主任".into(),
        measures: "更换厨房回路老化电缆，加装漏电保护".into(),
        funds: "3000 元，机构自筹".into(),
        deadline,
        contingency_plan: "整改期间每日两次巡查，回路限负荷".into(),
    }
}

async fn the_demo_alarm_ticket_walks_to_closed_only_by_the_right_roles_and_after_the_data_period(
    db: TestDb,
) {
    let (mut p, store, alarm_id, ticket) = alarm_with_ticket(&db).await;
    let policy = Policy::default();
    let t = now() - 190 * H;
    let step = |name: &'static str, role: Role| Actor {
        name,
        role,
        note: "",
    };
    let duty = step("值班员小李", Role::Duty);
    let manager = step("王主任", Role::SiteManager);

    let refused = store
        .transition_ticket(
            ticket,
            &Action::Register {
                grade: Grade::General,
            },
            &step("admin", Role::Admin),
            &policy,
            t,
        )
        .await;
    assert!(
        matches!(refused, Err(TransitionError::Refused(Refusal::Role { .. }))),
        "{refused:?}"
    );
    store
        .transition_ticket(
            ticket,
            &Action::Register {
                grade: Grade::General,
            },
            &duty,
            &policy,
            t,
        )
        .await
        .unwrap();
    let start = Action::StartRectification {
        plan: plan(t + 240 * H),
    };
    assert!(matches!(
        store
            .transition_ticket(ticket, &start, &duty, &policy, t)
            .await,
        Err(TransitionError::Refused(Refusal::Role { .. }))
    ));
    store
        .transition_ticket(ticket, &start, &manager, &policy, t + H)
        .await
        .unwrap();
    store
        .transition_ticket(
            ticket,
            &Action::ReportRectified,
            &manager,
            &policy,
            t + 2 * H,
        )
        .await
        .unwrap();
    // After the report, the loop still leaks: that reading is kept with the ticket.
    let reading = |seq: u32, v: i32, at: u64| {
        Inbound {
        topic: "fire/v1/home_a/n01/telemetry".into(),
        payload: format!(r#"{{"boot":1,"seq":{seq},"ts":{at},"ch":[{{"id":"rc1","q":"residual_current","v":{v},"s":"ok"}}]}}"#)
            .into_bytes()
            .into(),
        arrived_ms: at,
        ack: None,
    }
    };
    p.handle(&reading(2, 640, t + 2 * H + 30 * 60_000)).await;
    store
        .transition_ticket(
            ticket,
            &Action::Review { passed: true },
            &manager,
            &policy,
            t + 3 * H,
        )
        .await
        .unwrap();

    // The alarm is still latched: the data does not prove the fix, and the
    // refusal names the offending alarm.
    let refused = store
        .transition_ticket(ticket, &Action::Close, &manager, &policy, t + 100 * H)
        .await;
    match refused {
        Err(TransitionError::Refused(Refusal::DataNotProven { reason })) => {
            assert!(
                reason.contains("仍存在：n01/rc1 剩余电流报警 620 mA"),
                "{reason}"
            );
            // …and the abnormal reading after the rectification report.
            assert!(
                reason.contains("整改后异常读数：") && reason.contains("剩余电流 640 mA（报警）"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }

    // The leakage is back to normal and the latched alarm is reset at t + 4 h…
    p.handle(&reading(3, 120, t + 4 * H)).await;
    p.reset(alarm_id, "值班员小李", t + 4 * H).await.unwrap();
    p.handle(&reading(4, 110, t + 5 * H)).await;
    // …but 72 h of normal data are needed after that.
    let early = store
        .transition_ticket(ticket, &Action::Close, &manager, &policy, t + 50 * H)
        .await;
    assert!(
        matches!(
            early,
            Err(TransitionError::Refused(Refusal::DataNotProven { .. }))
        ),
        "{early:?}"
    );
    let closed = store
        .transition_ticket(ticket, &Action::Close, &manager, &policy, t + 77 * H)
        .await
        .unwrap();
    assert_eq!(closed.status, "closed");
    assert_eq!(closed.responsible_person.as_deref(), Some("王主任"));

    // The ticket carries the readings of its open life: the one that raised
    // the alarm, the leak after the report, the normal value while the alarm
    // was still latched, and the first reading after the reset.
    let readings = store.ticket_readings(ticket, 100).await.unwrap();
    let kept: Vec<(i64, &str, bool)> = readings
        .iter()
        .map(|r| (r.value, r.level.as_str(), r.abnormal))
        .collect();
    assert_eq!(
        kept,
        [
            (620, "alarm", true),
            (640, "alarm", true),
            (120, "alarm", true),
            (110, "normal", false)
        ]
    );

    // The ledger (台账) shows the closed hazard with its 五落实.
    let query = gateway::store::LedgerQuery {
        site: Some("home_a".into()),
        sites: None,
        from: None,
        to: None,
        status: gateway::store::TicketFilter::Closed,
        grade: Some("general".into()),
        limit: 100,
    };
    let rows = store.ledger(&query).await.unwrap();
    let csv = gateway::tickets::ledger::csv(&rows, |_| "阳光养老院".into());
    let line = csv.lines().nth(1).expect("one ledger row");
    for want in [
        "阳光养老院",
        "一般隐患",
        "已销号",
        "王主任",
        "更换厨房回路老化电缆",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
    // The monthly figures count it opened and closed, with its time to 销号.
    let opened = store.ticket(ticket).await.unwrap().unwrap().0;
    let figures = store
        .report_figures(
            Some("home_a"),
            opened.opened_at,
            closed.closed_at.unwrap() + 1,
        )
        .await
        .unwrap();
    let (site, n_opened, n_closed, _, open_at_end, mean_hours) = figures.tickets[0].clone();
    assert_eq!(
        (site.as_str(), n_opened, n_closed, open_at_end),
        ("home_a", 1, 1, 0)
    );
    let hours = (closed.closed_at.unwrap() - opened.opened_at) as f64 / 3_600_000.0;
    assert!(
        (mean_hours.unwrap() - hours).abs() < 1e-6,
        "{mean_hours:?} vs {hours}"
    );
    assert_eq!(figures.alarms[0].2, 1, "{:?}", figures.alarms);

    let (_, events, _) = store.ticket(ticket).await.unwrap().unwrap();
    let trail: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.to_status.as_deref(), e.role.as_deref()))
        .collect();
    assert_eq!(
        trail,
        [
            ("opened", Some("pending_registration"), None),
            ("register", Some("registered"), Some("duty")),
            (
                "start_rectification",
                Some("rectifying"),
                Some("site_manager")
            ),
            (
                "report_rectified",
                Some("pending_review"),
                Some("site_manager")
            ),
            ("review", Some("pending_review"), Some("site_manager")),
            ("close", Some("closed"), Some("site_manager")),
        ]
    );
}

async fn transitions_over_http_answer_403_409_and_200(db: TestDb) {
    let (_p, store, _alarm, ticket) = alarm_with_ticket(&db).await;
    let config =
        Config::from_toml("[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n").unwrap();
    let mut tokens = std::collections::HashMap::new();
    for (login, role) in [
        ("xiaoli", Role::Duty),
        ("wang", Role::SiteManager),
        ("ju", Role::Inspector),
    ] {
        store
            .add_user(login, login, role, None, "a-long-password", now())
            .await
            .unwrap();
        tokens.insert(
            login,
            store
                .login(login, "a-long-password", now())
                .await
                .unwrap()
                .unwrap()
                .0,
        );
    }
    let (events, _) = tokio::sync::broadcast::channel(16);
    let (commands, _) = tokio::sync::mpsc::channel(4);
    let config = Arc::new(config);
    let live = gateway::live::Live::load(config.clone(), store.clone(), None)
        .await
        .unwrap();
    let app = router(AppState {
        config,
        store,
        metrics: Arc::new(Metrics::default()),
        stream: events.clone(),
        events,
        commands,
        live,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let post = |who: &str, body: String| {
        let url = format!("http://{addr}/api/v1/tickets/{ticket}/transitions");
        let token = tokens[who].clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let (s, b) = post(
        "ju",
        r#"{"step":{"action":"register","grade":"major"}}"#.into(),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("无权"), "{b}");
    let (s, b) = post(
        "xiaoli",
        r#"{"note":"夜班发现","step":{"action":"register","grade":"major"}}"#.into(),
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str(), b["grade"].as_str()),
        (200, Some("registered"), Some("major")),
        "{b}"
    );
    // A 重大 hazard is listed (挂牌督办) by the bureau before rectification.
    let deadline = now() + 720 * H;
    let (s, b) = post(
        "wang",
        format!(
            r#"{{"step":{{"action":"start_rectification","plan":{{"responsible_unit":"后勤科","responsible_person":"王主任","measures":"更换电缆","funds":"3000 元","deadline":{deadline},"contingency_plan":"每日巡查"}}}}}}"#
        ),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = post(
        "ju",
        format!(r#"{{"step":{{"action":"list","supervisor":"区民政局","document_no":"民安督〔2026〕7号","deadline":{deadline}}}}}"#),
    )
    .await;
    assert_eq!(
        (s, b["status_label"].as_str()),
        (200, Some("已挂牌")),
        "{b}"
    );
    let (s, b) = post("xiaoli", r#"{"step":{"action":"fly"}}"#.into()).await;
    assert_eq!(s, 400, "{b}");
}

async fn pipeline(db: &TestDb, config: &str) -> (Pipeline, Store) {
    let store = Store::open(&db.url).await.unwrap();
    let (tx, _) = tokio::sync::broadcast::channel(256);
    let mut p = Pipeline::new(
        Arc::new(Config::from_toml(config).unwrap()),
        store.clone(),
        None,
        Arc::new(Metrics::default()),
        tx,
    );
    p.start(1_790_000_000_000, "config:test").await.unwrap();
    (p, store)
}

fn reading(node: &str, ch: &str, seq: u32, v: i32, at: u64) -> Inbound {
    Inbound {
        topic: format!("fire/v1/home_a/{node}/telemetry"),
        payload: format!(r#"{{"boot":1,"seq":{seq},"ts":{at},"ch":[{{"id":"{ch}","q":"residual_current","v":{v},"s":"ok"}}]}}"#)
            .into_bytes()
            .into(),
        arrived_ms: at,
        ack: None,
    }
}

const CONFIG: &str = r#"
offline_after_secs = 60
[[sites]]
id = "home_a"
name = "阳光养老院"
[[sites.nodes]]
id = "n01"
location = "3号楼"
[[sites.nodes.channels]]
id = "bed1"
location = "301 卧室回路"
grade = "major"
[[sites.nodes]]
id = "n02"
"#;

async fn a_bedroom_circuit_configured_major_opens_a_major_ticket(db: TestDb) {
    let (mut p, store) = pipeline(&db, CONFIG).await;
    let t0 = 1_790_000_000_000;
    p.handle(&reading("n01", "bed1", 1, 650, t0)).await;
    p.handle(&reading("n01", "rc9", 2, 650, t0)).await;
    let tickets = store
        .tickets(&gateway::store::TicketFilter::Open, 10)
        .await
        .unwrap();
    let grade = |ch: &str| {
        tickets
            .iter()
            .find(|t| t.channel == ch)
            .map(|t| t.grade.clone())
    };
    assert_eq!(grade("bed1").as_deref(), Some("major"));
    assert_eq!(grade("rc9").as_deref(), Some("general"));
}

async fn a_hazard_recurring_after_closing_reopens_its_ticket(db: TestDb) {
    let (mut p, store) = pipeline(&db, CONFIG).await;
    let policy = Policy::default();
    let t0 = 1_790_000_000_000;
    p.handle(&reading("n02", "rc1", 1, 650, t0)).await;
    p.handle(&reading("n02", "rc1", 2, 100, t0 + H)).await;
    let alarm = store.alarms(AlarmFilter::All, 10).await.unwrap()[0].clone();
    let ticket = alarm.ticket_id.unwrap();
    p.reset(alarm.id, "小李", t0 + 2 * H).await.unwrap();
    let m = Actor {
        name: "王主任",
        role: Role::SiteManager,
        note: "",
    };
    store
        .transition_ticket(
            ticket,
            &Action::Register {
                grade: Grade::General,
            },
            &m,
            &policy,
            t0 + 3 * H,
        )
        .await
        .unwrap();
    store
        .transition_ticket(
            ticket,
            &Action::StartRectification {
                plan: plan(t0 + 100 * H),
            },
            &m,
            &policy,
            t0 + 3 * H,
        )
        .await
        .unwrap();
    store
        .transition_ticket(ticket, &Action::ReportRectified, &m, &policy, t0 + 4 * H)
        .await
        .unwrap();
    store
        .transition_ticket(
            ticket,
            &Action::Review { passed: true },
            &m,
            &policy,
            t0 + 5 * H,
        )
        .await
        .unwrap();
    store
        .transition_ticket(ticket, &Action::Close, &m, &policy, t0 + 80 * H)
        .await
        .unwrap();
    // Ten days later the leakage is back: the same ticket reopens.
    p.handle(&reading("n02", "rc1", 3, 700, t0 + 320 * H)).await;
    let t = store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!((t.0.status.as_str(), t.0.alarm_count), ("rectifying", 2));
    assert_eq!(t.1.last().map(|e| e.action.as_str()), Some("reopened"));
    assert_eq!(
        store
            .tickets(&gateway::store::TicketFilter::All, 10)
            .await
            .unwrap()
            .len(),
        1,
        "no second ticket"
    );
}

async fn a_node_offline_past_the_limit_gets_a_ticket_and_deadlines_escalate(db: TestDb) {
    let (mut p, store) = pipeline(&db, CONFIG).await;
    let t0 = 1_790_000_000_000;
    p.handle(&reading("n01", "rc1", 1, 100, t0)).await;
    p.handle(&reading("n02", "rc1", 1, 100, t0)).await;
    // n02 keeps reporting; n01 is silent. Offline after 60 s, ticket after 30 min.
    let mut seq = 1;
    for m in 1..=32u64 {
        for s in (0..60).step_by(20) {
            seq += 1;
            let at = t0 + (m - 1) * 60_000 + s * 1000;
            p.handle(&reading("n02", "rc1", seq, 100, at)).await;
            p.tick(at).await;
        }
    }
    let offline = store.alarms(AlarmFilter::Standing, 10).await.unwrap();
    let n01 = offline
        .iter()
        .find(|a| a.node == "n01" && a.cause == "offline")
        .expect("offline alarm");
    let ticket = n01.ticket_id.expect("a 离线 ticket after 30 min");
    let (t, ..) = store.ticket(ticket).await.unwrap().unwrap();
    assert!(t.number.starts_with("LX"), "{}", t.number);
    assert_eq!(t.category, "offline");

    // A deadline that passes is flagged and escalated once.
    let m = Actor {
        name: "王主任",
        role: Role::SiteManager,
        note: "",
    };
    let policy = Policy::default();
    store
        .transition_ticket(
            ticket,
            &Action::Register {
                grade: Grade::General,
            },
            &m,
            &policy,
            t0 + 40 * 60_000,
        )
        .await
        .unwrap();
    store
        .transition_ticket(
            ticket,
            &Action::StartRectification {
                plan: plan(t0 + 2 * H),
            },
            &m,
            &policy,
            t0 + 41 * 60_000,
        )
        .await
        .unwrap();
    let overdue = store.mark_overdue(t0 + 3 * H).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].escalated_to.as_deref(), Some("民政局"));
    assert!(
        store.mark_overdue(t0 + 4 * H).await.unwrap().is_empty(),
        "once"
    );
}

crate::on_both_backends!(
    the_demo_alarm_ticket_walks_to_closed_only_by_the_right_roles_and_after_the_data_period,
    transitions_over_http_answer_403_409_and_200,
    a_bedroom_circuit_configured_major_opens_a_major_ticket,
    a_hazard_recurring_after_closing_reopens_its_ticket,
    a_node_offline_past_the_limit_gets_a_ticket_and_deadlines_escalate,
);
