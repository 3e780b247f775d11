//! Two gateway replicas on a real three-node RabbitMQ cluster and one
//! PostgreSQL (issue 16): a site's alarms are raised once, by the replica
//! active on its partition, which took the partition (epoch 1); an alarm
//! replica-a raises reaches a duty desk on replica-b's console (events
//! shared on `fire.events`); when replica-a stops, replica-b takes the
//! partition over (epoch 2), goes on from the committed state (channels
//! still in alarm raise nothing again) and raises the site's next alarm; a
//! batch under the old epoch is refused.

use e2e::rabbitmq::{RabbitCluster, ADMIN};
use e2e::*;
use gateway::config::cluster::ClusterConfig;
use gateway::ingest::rabbitmq::{partition_of, PARTITIONS};
use gateway::store::{AlarmFilter, Store, StoreError};
use std::time::Duration;
use wire::{ChannelStatus::Ok as OK, Quantity::*};

const WAIT: Duration = Duration::from_secs(30);

fn replica(
    name: &str,
    mqtt_port: u16,
    amqp_port: u16,
    db: &str,
    dir: &std::path::Path,
) -> gateway::config::Config {
    let mut c = gateway_config(mqtt_port, dir);
    c.storage.database_url = Some(db.into());
    c.mqtt.client_id = format!("fire-gateway-{name}");
    c.mqtt.username = Some(ADMIN.0.into());
    c.mqtt.password = Some(ADMIN.1.into());
    c.cluster = Some(ClusterConfig {
        amqp_url: format!("amqp://{}:{}@127.0.0.1:{amqp_port}/%2f", ADMIN.0, ADMIN.1),
        replica: name.into(),
        prefetch: 100,
    });
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    c
}

/// Standing alarms of `site` as (channel, cause).
async fn standing(store: &Store, site: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = store
        .alarms(AlarmFilter::Standing, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.site == site)
        .map(|a| (a.channel, a.cause))
        .collect();
    out.sort();
    out
}

async fn until_standing(store: &Store, site: &str, n: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while standing(store, site).await.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_partition_is_taken_over_from_the_committed_state() {
    let cluster = RabbitCluster::start();
    let pg = Postgres::start(false);
    let db = pg.url();
    let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_gateway(replica(
        "replica-a",
        cluster.nodes[0].mqtt_port,
        cluster.nodes[0].amqp_port,
        &db,
        da.path(),
    ))
    .await;
    let store = Store::open(&db).await.unwrap();

    // A node of home_a publishes through the third broker; `a` consumes
    // alone, so it becomes active on home_a's partition.
    let node = MqttPeer::connect(cluster.nodes[2].mqtt_addr(), "home_a.n01", ADMIN, None).await;
    let topic = "fire/v1/home_a/n01/telemetry";
    let p = partition_of("home_a", PARTITIONS);
    let seq = std::cell::Cell::new(0u32);
    let send = |v: i32, t: i32| {
        seq.set(seq.get() + 1);
        telemetry(
            1,
            seq.get(),
            0,
            &[("rc1", ResidualCurrent, v, OK), ("t1", Temperature, t, OK)],
        )
    };
    // Until the topology is declared, messages go nowhere: publish until
    // the alarm stands.
    let deadline = tokio::time::Instant::now() + WAIT;
    while standing(&store, "home_a").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alarm from replica-a"
        );
        node.publish(topic, send(700, 300), false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let b = start_gateway(replica(
        "replica-b",
        cluster.nodes[1].mqtt_port,
        cluster.nodes[1].amqp_port,
        &db,
        dbb.path(),
    ))
    .await;
    // A duty desk on replica-b's console.
    let token = admin_token(&b).await;
    let desk = follow_events(b.http_addr, &token).await;
    // Both replicas share their events (each has its queue on fire.events).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = cluster.mgmt(
            0,
            "GET",
            "/api/exchanges/%2F/fire.events/bindings/source",
            None,
        );
        let bound = serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .map(|v| v.len())
            .unwrap_or(0);
        if bound >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas not sharing events: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        node.publish(topic, send(710, 300), false).await;
    }
    // An alarm replica-a raises reaches the duty desk on replica-b.
    node.publish(topic, send(710, 900), false).await;
    until_standing(&store, "home_a", 2, "the temperature alarm on replica-a").await;
    wait_until(
        WAIT,
        "replica-a's alarm on replica-b's event stream",
        || {
            let seen = desk.lock().unwrap();
            seen.contains("event: alarm_raised") && seen.contains("\"channel\":\"t1\"")
        },
    )
    .await;
    node.wait_acked(u64::from(seq.get()), WAIT).await;
    let held = store.partitions().await.unwrap();
    let row = held
        .iter()
        .find(|r| r.partition == p as i32)
        .expect("home_a's partition taken");
    assert_eq!((row.holder.as_str(), row.epoch), ("replica-a", 1));

    // `a` stops: `b` becomes active on the partition, takes it, and goes on
    // from the committed state: rc1 and t1 still over their setpoints raise
    // nothing again; rc2 over its setpoint raises a third alarm, on `b`.
    // A command from the console goes to the pipeline of the site's
    // partition, whichever replica the person reached: replica-b does not
    // hold it and forwards it into the partition's queue, where replica-a
    // runs it and answers; replica-a's own pipeline then knows that
    // self-test is running.
    let selftest = |gw: std::net::SocketAddr, token: String| async move {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{gw}/api/v1/sites/home_a/nodes/n01/selftest"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = selftest(b.http_addr, token.clone()).await;
    assert_eq!(status, 202, "self-test through replica-b: {body}");
    let token_a = admin_token(&a).await;
    let (status, body) = selftest(a.http_addr, token_a).await;
    assert_eq!(
        status, 409,
        "the forwarded self-test runs on replica-a: {body}"
    );
    let metric = |gw: &gateway::app::Running, name: &str| {
        gw.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    };
    assert_eq!(metric(&b, "gateway_cluster_commands_forwarded_total"), "1");
    assert_eq!(metric(&a, "gateway_cluster_commands_run_total"), "1");
    assert_eq!(metric(&a, "gateway_cluster_commands_refused_total"), "0");
    a.shutdown().await;
    let with_rc2 = |v: i32| {
        seq.set(seq.get() + 1);
        telemetry(
            1,
            seq.get(),
            0,
            &[
                ("rc1", ResidualCurrent, 720, OK),
                ("t1", Temperature, 900, OK),
                ("rc2", ResidualCurrent, v, OK),
            ],
        )
    };
    for _ in 0..3 {
        node.publish(topic, with_rc2(100), false).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !standing(&store, "home_a")
        .await
        .iter()
        .any(|(channel, _)| channel == "rc2")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica-b raised nothing"
        );
        node.publish(topic, with_rc2(800), false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !desk.lock().unwrap().contains("\"channel\":\"rc2\"") {
        let seen = desk.lock().unwrap().clone();
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica-b's own alarm not on its event stream; it showed: {}",
            &seen[seen.len().saturating_sub(3000)..]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = store.partitions().await.unwrap();
    let row = held.iter().find(|r| r.partition == p as i32).unwrap();
    assert_eq!((row.holder.as_str(), row.epoch), ("replica-b", 2));
    // Now replica-b carries the site's commands out (replica-a's self-test
    // may still be running: 409 is replica-b's pipeline answering too).
    let (status, body) = selftest(b.http_addr, token.clone()).await;
    assert!(
        status == 202 || status == 409,
        "self-test through replica-b: {status} {body}"
    );
    // Exactly one residual-current alarm record and one ticket for it.
    let all = store.alarms(AlarmFilter::All, 1000).await.unwrap();
    let rc: Vec<_> = all
        .iter()
        .filter(|a| a.site == "home_a" && a.channel == "rc1")
        .collect();
    assert_eq!(rc.len(), 1, "raised once: {rc:?}");
    assert!(rc[0].ticket_id.is_some());
    let raised: Vec<_> = store
        .alarm_log("home_a", Some("n01"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.transition == "raised")
        .map(|l| format!("{}/{}", l.channel, l.cause))
        .collect();
    let mut once = raised.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        once.len(),
        raised.len(),
        "each alarm raised once: {raised:?}"
    );
    for want in [
        "rc1/residual_current_high",
        "t1/temperature_high",
        "rc2/residual_current_high",
    ] {
        assert!(raised.iter().any(|r| r == want), "{want} in {raised:?}");
    }
    // `a`'s epoch is fenced off.
    let mut batch = store.batch().await.unwrap();
    let old = gateway::store::Fence {
        partition: p,
        epoch: 1,
    };
    assert!(matches!(
        batch.fence(old).await,
        Err(StoreError::Fenced { .. })
    ));
    drop(batch);
    b.shutdown().await;
    store.close().await;
}
