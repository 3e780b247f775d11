//! RabbitMQ's hash of a node password (issue 16) is kept when the password
//! is issued, on SQLite and PostgreSQL alike: it verifies with the issued
//! password, a rotation replaces it, and the plan for `rabbitmq-sync` uses
//! it (and leaves out the node once revoked).

mod common;

use common::db::TestDb;
use gateway::commissioning::registry::Actor;
use gateway::config::{Config, NodeConfig, SiteConfig};

const CLI: Actor<'static> = Actor {
    name: "cli:test",
    role: "admin",
};

async fn issued_passwords_leave_a_rabbitmq_hash(db: TestDb) {
    let store = gateway::store::Store::open(&db.url).await.unwrap();
    let config = Config {
        sites: vec![SiteConfig {
            id: "home_a".into(),
            name: "阳光养老院".into(),
            rules: Default::default(),
            nodes: vec![NodeConfig {
                id: "n01".into(),
                location: "1号楼配电箱".into(),
                ..Default::default()
            }],
        }],
        ..Default::default()
    };
    assert!(store.rabbit_hashes().await.unwrap().is_empty());

    let first = gateway::commissioning::registry::rotate(&store, &config, "home_a", "n01", CLI, 1)
        .await
        .unwrap();
    let hashes = store.rabbit_hashes().await.unwrap();
    let hash = hashes.get("home_a.n01").expect("a hash for home_a.n01");
    assert!(gateway::ingest::rabbitmq::verify(&first.password, hash));

    let second = gateway::commissioning::registry::rotate(&store, &config, "home_a", "n01", CLI, 2)
        .await
        .unwrap();
    let hashes = store.rabbit_hashes().await.unwrap();
    assert_eq!(hashes.len(), 1);
    let hash = &hashes["home_a.n01"];
    assert!(gateway::ingest::rabbitmq::verify(&second.password, hash));
    assert!(!gateway::ingest::rabbitmq::verify(&first.password, hash));

    let plan = gateway::ingest::rabbitmq::plan_from_store(&store, &config)
        .await
        .unwrap();
    let names: Vec<&str> = plan.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["home_a.n01"], "no mqtt.password: no gateway user");
    assert_eq!(plan.sites, ["home_a"]);

    gateway::commissioning::registry::revoke(&store, &config, "home_a", "n01", CLI, 3)
        .await
        .unwrap();
    let plan = gateway::ingest::rabbitmq::plan_from_store(&store, &config)
        .await
        .unwrap();
    assert!(plan.users.is_empty(), "{plan:?}");
    store.close().await;
}

on_both_backends!(issued_passwords_leave_a_rabbitmq_hash);
