//! The node registry in the store, on both backends: sites and nodes are
//! added once (duplicate ids refused, against the file and the registry),
//! credentials are stored only as `$7$` hashes, rotate and revoke, and every
//! change is audited and moves the registry's version.

mod common;

use common::db::TestDb;
use gateway::commissioning::registry::*;
use gateway::config::Config;
use gateway::store::Store;

const CLI: Actor<'static> = Actor {
    name: "cli:test",
    role: "admin",
};

fn base() -> Config {
    Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap()
}

fn new_node(site: &str, id: &str) -> NewNode {
    NewNode {
        site: site.into(),
        id: id.into(),
        location: Location {
            building: "1号楼".into(),
            floor: "2层".into(),
            room: "201".into(),
            panel: "AL-2".into(),
        },
        channels: vec![
            ChannelSpec::parse("rc1:residual_current:ct=1000").unwrap(),
            ChannelSpec::parse("t1:temperature:ntc").unwrap(),
        ],
    }
}

async fn add_duplicate_rotate_revoke(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let base = base();
    let v0 = store.registry_version().await.unwrap();

    // Sites: new ids only.
    add_site(&store, &base, "home_c", "康宁养老院", CLI, 1)
        .await
        .unwrap();
    for (id, origin) in [("home_a", "配置文件"), ("home_c", "已登记")] {
        let e = add_site(&store, &base, id, "x", CLI, 2).await.unwrap_err();
        assert!(matches!(e, RegError::DuplicateSite(..)), "{e}");
        assert!(e.to_string().contains(origin), "{e}");
    }

    // Nodes: a known site, new ids only (the file's and registered ones).
    let (node, issued) = add_node(&store, &base, &new_node("home_c", "n07"), CLI, 3)
        .await
        .unwrap();
    assert_eq!(node.channels.len(), 2);
    assert_eq!(issued.username, "home_c.n07");
    let e = add_node(&store, &base, &new_node("home_c", "n07"), CLI, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegError::DuplicateNode {
                origin: "已登记",
                ..
            }
        ),
        "{e}"
    );
    let e = add_node(&store, &base, &new_node("home_a", "n01"), CLI, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegError::DuplicateNode {
                origin: "配置文件中已有",
                ..
            }
        ),
        "{e}"
    );
    let e = add_node(&store, &base, &new_node("home_x", "n01"), CLI, 4)
        .await
        .unwrap_err();
    assert!(matches!(e, RegError::UnknownSite(_)), "{e}");
    let mut bad = new_node("home_c", "n09");
    bad.location.room = "2\n01".into();
    let e = add_node(&store, &base, &bad, CLI, 4).await.unwrap_err();
    assert!(e.to_string().starts_with("房间"), "{e}");

    // Only the hash is stored, and it verifies the password shown once.
    let reg = store.registry().await.unwrap();
    let cred = &reg.credentials[0];
    assert_eq!(cred.username, "home_c.n07");
    assert!(cred.password_hash.starts_with("$7$101$"));
    assert!(!cred.password_hash.contains(&issued.password));
    assert!(gateway::commissioning::credentials::verify(
        &issued.password,
        &cred.password_hash
    ));
    assert!(effective(&base, &reg).node("home_c", "n07").is_some());

    // Rotation: the old password stops verifying.
    let rotated = rotate(&store, &base, "home_c", "n07", CLI, 5)
        .await
        .unwrap();
    let reg = store.registry().await.unwrap();
    let cred = &reg.credentials[0];
    assert!(!gateway::commissioning::credentials::verify(
        &issued.password,
        &cred.password_hash
    ));
    assert!(gateway::commissioning::credentials::verify(
        &rotated.password,
        &cred.password_hash
    ));
    assert_eq!(cred.rotated_at, 5);
    // A node of the file gets its first credentials the same way.
    rotate(&store, &base, "home_a", "n01", CLI, 6)
        .await
        .unwrap();
    let e = rotate(&store, &base, "home_a", "n99", CLI, 6)
        .await
        .unwrap_err();
    assert!(matches!(e, RegError::UnknownNode(..)), "{e}");

    // Revocation: out of force, credential dead, id never reused.
    revoke(&store, &base, "home_c", "n07", CLI, 7)
        .await
        .unwrap();
    let reg = store.registry().await.unwrap();
    assert!(effective(&base, &reg).node("home_c", "n07").is_none());
    let cred = reg
        .credentials
        .iter()
        .find(|c| c.username == "home_c.n07")
        .unwrap();
    assert_eq!(cred.revoked_at, Some(7));
    let e = rotate(&store, &base, "home_c", "n07", CLI, 8)
        .await
        .unwrap_err();
    assert!(matches!(e, RegError::Revoked(..)), "{e}");
    let e = add_node(&store, &base, &new_node("home_c", "n07"), CLI, 8)
        .await
        .unwrap_err();
    assert!(matches!(e, RegError::DuplicateNode { .. }), "{e}");
    let e = revoke(&store, &base, "home_c", "n07", CLI, 8)
        .await
        .unwrap_err();
    assert!(matches!(e, RegError::Revoked(..)), "{e}");
    // Revoking a node of the file without credentials leaves a revoked
    // one, so that an anonymous login can no longer speak for it.
    let base2 = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"甲\"\n[[sites.nodes]]\nid = \"n02\"\n",
    )
    .unwrap();
    revoke(&store, &base2, "home_a", "n02", CLI, 9)
        .await
        .unwrap();
    let reg = store.registry().await.unwrap();
    let access = gateway::ingest::gate::Access::build(&effective(&base2, &reg), &reg, None, true);
    let mut anonymous = rumqttc::mqttbytes::v4::Connect::new("home_a.n02");
    anonymous.login = None;
    assert!(access.authenticate(&anonymous).is_err());

    // Listing: the file's node and the registered one, with their state.
    let listed = list(&store, &base, None).await.unwrap();
    let states: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|n| (n.id.as_str(), n.origin, n.credential))
        .collect();
    assert_eq!(
        states,
        [
            ("n01", "config", "active"),
            ("n07", "registered", "revoked")
        ]
    );

    // Every change moved the version and left an audit record; the chain holds.
    assert!(store.registry_version().await.unwrap() >= v0 + 6);
    let actions: Vec<String> = store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "site.add",
            "node.add",
            "node.credentials.rotate",
            "node.credentials.rotate",
            "node.revoke",
            "node.revoke"
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
    assert!(!format!("{:?}", store.audit_records().await.unwrap()).contains(&rotated.password));
}

crate::on_both_backends!(add_duplicate_rotate_revoke);
