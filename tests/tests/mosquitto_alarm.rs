//! (a) A real Mosquitto with the deployment's configuration: QoS 1 telemetry
//! from a node → alarm and hazard ticket, visible over HTTP; a sensor fault
//! is a 设备故障 ticket, not a fire alarm; the node's Last Will marks it
//! offline; the ACL keeps a node to its own topics.

use e2e::*;
use gateway::alarms::events::GatewayEvent;
use std::time::Duration;
use wire::{ChannelStatus::Ok as OK, ChannelStatus::Open as OPEN, Quantity::*};

const WAIT: Duration = Duration::from_secs(20);

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<GatewayEvent>,
    what: &str,
) -> GatewayEvent {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Ok(ev)) => ev,
        other => panic!("waiting for {what}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_mosquitto_raises_alarm_and_opens_ticket() {
    let Stack {
        broker,
        config,
        gw,
        dir: _dir,
        token,
    } = stack(&[], "", |_| {}).await;
    let mut events = gw.events.subscribe();

    let users = node_users(&config);
    let (user, pass) = &users[0];
    assert_eq!(user, "home_a.n01");
    let status_topic = "fire/v1/home_a/n01/status".to_string();
    let node = MqttPeer::connect(
        broker.addr(),
        user,
        (user, pass),
        Some(status_topic.clone()),
    )
    .await;
    node.publish(
        &status_topic,
        br#"{"state":"online","fw":"0.1.0","boot":17}"#.to_vec(),
        true,
    )
    .await;

    // A healthy loop, then leakage past the 500 mA setpoint.
    let topic = "fire/v1/home_a/n01/telemetry";
    node.publish(
        topic,
        telemetry(
            17,
            0,
            1_764_000_000_000,
            &[
                ("rc1", ResidualCurrent, 150, OK),
                ("t1", Temperature, 300, OK),
            ],
        ),
        false,
    )
    .await;
    node.publish(
        topic,
        telemetry(
            17,
            1,
            1_764_000_001_000,
            &[
                ("rc1", ResidualCurrent, 620, OK),
                ("t1", Temperature, 301, OK),
            ],
        ),
        false,
    )
    .await;

    let ev = next_event(&mut events, "the alarm").await;
    let GatewayEvent::AlarmRaised { alarm, ticket } = ev else {
        panic!("expected an alarm, got {ev:?}")
    };
    assert_eq!(
        (
            alarm.row.site.as_str(),
            alarm.row.node.as_str(),
            alarm.row.channel.as_str()
        ),
        ("home_a", "n01", "rc1")
    );
    assert_eq!(
        (alarm.row.level.as_str(), alarm.row.kind.as_str()),
        ("alarm", "electrical_fire")
    );
    assert_eq!(
        (alarm.row.value, alarm.row.setpoint),
        (Some(620), Some(500))
    );
    let Some(gateway::store::TicketOutcome::Opened {
        id: ticket_id,
        number,
    }) = ticket
    else {
        panic!("expected a new ticket, got {ticket:?}")
    };
    assert!(number.starts_with("YH20251125-"), "{number}");

    // Visible over HTTP.
    let tickets = get_json(gw.http_addr, Some(&token), "/api/v1/tickets?status=open").await;
    let t = &tickets.as_array().unwrap()[0];
    assert_eq!(t["number"], number.as_str());
    assert_eq!(t["status"], "pending_registration");
    assert_eq!(t["status_label"], "待登记");
    assert_eq!(t["category_label"], "电气火灾隐患");
    let detail = get_json(
        gw.http_addr,
        Some(&token),
        &format!("/api/v1/tickets/{ticket_id}"),
    )
    .await;
    assert_eq!(detail["events"][0]["action"], "opened");
    assert_eq!(detail["alarms"][0]["value"], 620);
    assert_eq!(detail["alarms"][0]["value_display"], "620 mA");
    let alarms = get_json(gw.http_addr, Some(&token), "/api/v1/alarms?state=active").await;
    assert_eq!(alarms.as_array().unwrap().len(), 1);
    assert_eq!(alarms[0]["level_label"], "报警");

    // An open CT is a device fault (设备故障) with its own ticket, never a fire alarm.
    node.publish(
        topic,
        telemetry(
            17,
            2,
            1_764_000_002_000,
            &[
                ("rc1", ResidualCurrent, 0, OPEN),
                ("t1", Temperature, 301, OK),
            ],
        ),
        false,
    )
    .await;
    let ev = next_event(&mut events, "the fault").await;
    let GatewayEvent::AlarmRaised { alarm, ticket } = ev else {
        panic!("expected a fault, got {ev:?}")
    };
    assert_eq!(
        (alarm.row.kind.as_str(), alarm.row.level.as_str()),
        ("fault", "fault")
    );
    assert!(
        matches!(ticket, Some(gateway::store::TicketOutcome::Opened { ref number, .. }) if number.starts_with("GZ")),
        "{ticket:?}"
    );
    let faults = get_json(gw.http_addr, Some(&token), "/api/v1/tickets?status=open").await;
    assert_eq!(faults.as_array().unwrap().len(), 2);
    assert_eq!(
        gw.metrics
            .alarms_raised
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "a fault is not an alarm"
    );

    // The ACL: this node cannot publish as another node. The broker drops
    // it. Messages of one client arrive in order, so the first message the
    // gateway handles after this point is either the forbidden one (which
    // would raise an alarm on n02) or the allowed one.
    let before = gw
        .metrics
        .messages_received
        .load(std::sync::atomic::Ordering::Relaxed);
    node.publish(
        "fire/v1/home_a/n02/telemetry",
        telemetry(1, 0, 0, &[("rc1", ResidualCurrent, 900, OK)]),
        false,
    )
    .await;
    node.publish(
        topic,
        telemetry(17, 3, 1_764_000_003_000, &[("t1", Temperature, 301, OK)]),
        false,
    )
    .await;
    node.wait_acked(6, WAIT).await;
    wait_until(WAIT, "the node's next message", || {
        gw.metrics
            .messages_received
            .load(std::sync::atomic::Ordering::Relaxed)
            > before
    })
    .await;
    let standing = get_json(gw.http_addr, Some(&token), "/api/v1/alarms?state=all").await;
    assert!(
        standing
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["node"] != "n02"),
        "the ACL let a node publish as another: {standing}"
    );

    // Power loss: the broker publishes the Last Will; the node is offline.
    node.cut();
    loop {
        let ev = next_event(&mut events, "the node offline").await;
        if let GatewayEvent::AlarmRaised { alarm, .. } = ev {
            if alarm.row.kind == "offline" {
                assert_eq!(
                    (alarm.row.node.as_str(), alarm.row.channel.as_str()),
                    ("n01", "")
                );
                break;
            }
        }
    }
    let metrics = get_text(gw.http_addr, "/metrics").await;
    assert!(
        metrics.contains("gateway_node_offline_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_tickets_opened_total 2\n"),
        "{metrics}"
    );
    let health = get_json(gw.http_addr, None, "/healthz").await;
    assert_eq!(health["status"], "ok");
    gw.shutdown().await;
    drop(broker);
}
