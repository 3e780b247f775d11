//! RabbitMQ users and permissions for the nodes (issue 16: nodes on a
//! RabbitMQ cluster), as `crate::ingest::mosquitto` does for Mosquitto: `gateway
//! rabbitmq-sync` writes them through the management API, `gateway
//! rabbitmq-export` as a definitions file for `rabbitmqctl
//! import_definitions`.
//!
//! Each node logs in as `{site}.{node}` (also its client id) and may
//! publish only `fire/v1/{site}/{node}/{telemetry,status,event,cmd/ack}`
//! and subscribe only to its own `cmd`. RabbitMQ's MQTT plugin maps topics
//! to routing keys on `amq.topic` (`/` → `.`), and checks topic
//! permissions (regular expressions over routing keys) on publish (write)
//! and subscribe (read); plain permissions cover the node's own session
//! queues `mqtt-subscription-{client id}qos{0,1}`.
//!
//! Why a sync and not only a definitions file: importing definitions adds
//! and updates users but never deletes one, so a revoked node would keep
//! its login. The sync deletes every user tagged `fire-node` that has no
//! active credential and closes its connections.
//!
//! Passwords: RabbitMQ's internal database accepts only its own hashes
//! (`rabbit_password_hashing_sha256`: base64 of a 4-byte salt followed by
//! SHA-256(salt ‖ password)), not the `$7$` hash the registry keeps for
//! Mosquitto, so the registry keeps this hash as well, made when the
//! password is issued (`store::rabbit`). Pure functions, but for [`sync`].

use crate::auth::credentials::NoRandomness;
use crate::store::registry::Registry;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// The tag on every node user: what the sync may delete.
pub const NODE_TAG: &str = "fire-node";
/// The tag on the gateway's own user.
pub const GATEWAY_TAG: &str = "fire-gateway";
/// The exchange the MQTT plugin publishes to (`mqtt.exchange`).
pub const MQTT_EXCHANGE: &str = "amq.topic";
/// RabbitMQ's name for the hash [`password_hash`] makes.
pub const HASHING: &str = "rabbit_password_hashing_sha256";

/// RabbitMQ's hash of `password` with a new random salt.
pub fn password_hash(password: &str) -> Result<String, NoRandomness> {
    let mut salt = [0u8; 4];
    getrandom::fill(&mut salt).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(password_hash_with(password, salt))
}

/// RabbitMQ's hash of `password` with the given salt.
pub fn password_hash_with(password: &str, salt: [u8; 4]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut raw = salt.to_vec();
    raw.extend_from_slice(&h.finalize());
    STANDARD.encode(raw)
}

/// Whether `password` matches a hash from [`password_hash`].
pub fn verify(password: &str, hash: &str) -> bool {
    let Ok(raw) = STANDARD.decode(hash) else {
        return false;
    };
    let Some(salt) = raw.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) else {
        return false;
    };
    crate::auth::credentials::constant_time_eq(
        password_hash_with(password, salt).as_bytes(),
        hash.as_bytes(),
    )
}

/// A user as RabbitMQ should have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUser {
    pub name: String,
    pub password_hash: String,
    pub tag: &'static str,
    /// configure, write, read: regular expressions over resource names.
    pub permissions: [String; 3],
    /// write, read: regular expressions over routing keys on [`MQTT_EXCHANGE`].
    pub topic: [String; 2],
}

/// A literal inside a regular expression (ids are `[a-z0-9_-]`; the
/// username's `.` and anything unexpected are escaped).
fn literal(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The user of node `node` of site `site`.
pub fn node_user(site: &str, node: &str, password_hash: &str) -> BrokerUser {
    let name = crate::ingest::mosquitto::node_username(site, node);
    let queues = format!("mqtt-subscription-{}qos[01]", literal(&name));
    let prefix = format!("fire\\.v1\\.{}\\.{}", literal(site), literal(node));
    BrokerUser {
        password_hash: password_hash.to_string(),
        tag: NODE_TAG,
        permissions: [
            format!("^{queues}$"),
            format!("^({}|{queues})$", literal(MQTT_EXCHANGE)),
            format!("^({}|{queues})$", literal(MQTT_EXCHANGE)),
        ],
        topic: [
            format!("^{prefix}\\.(telemetry|status|event|cmd\\.ack)$"),
            format!("^{prefix}\\.cmd$"),
        ],
        name,
    }
}

/// The gateway's own user: everything in the virtual host (the replicas
/// declare their partition queues and exchanges), every contract topic to
/// read, commands to write.
pub fn gateway_user(name: &str, password_hash: &str) -> BrokerUser {
    BrokerUser {
        name: name.to_string(),
        password_hash: password_hash.to_string(),
        tag: GATEWAY_TAG,
        permissions: [".*".into(), ".*".into(), ".*".into()],
        topic: [
            "^fire\\.v1\\.[a-z0-9_-]+\\.[a-z0-9_-]+\\.cmd$".into(),
            "^fire\\.v1\\.".into(),
        ],
    }
}

/// What RabbitMQ should hold for a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub users: Vec<BrokerUser>,
    /// Active credentials without a RabbitMQ hash (issued before the
    /// gateway kept one): left as they are in RabbitMQ; rotate them.
    pub without_hash: Vec<String>,
    /// Every site, each bound to its partition.
    pub sites: Vec<String>,
}

/// The users for every active credential of `reg` (with `hashes` by
/// username) and, with `gateway`, the gateway's own (name, hash).
pub fn plan(
    reg: &Registry,
    hashes: &HashMap<String, String>,
    gateway: Option<(&str, &str)>,
) -> Plan {
    let mut out = Plan::default();
    if let Some((name, hash)) = gateway {
        out.users.push(gateway_user(name, hash));
    }
    for c in reg
        .credentials
        .iter()
        .filter(|c| c.revoked_at.is_none() && !c.password_hash.is_empty())
    {
        match hashes.get(&c.username) {
            Some(h) => out.users.push(node_user(&c.site, &c.node, h)),
            None => out.without_hash.push(c.username.clone()),
        }
    }
    out
}

/// The plan as a RabbitMQ definitions file (users, permissions, topic
/// permissions, and the ingest topology with a binding per site) for
/// `rabbitmqctl import_definitions` or the management UI's import.
/// Importing never deletes: revocations need [`sync`].
pub fn definitions(plan: &Plan, vhost: &str) -> Value {
    let mut out = users_definitions(plan, vhost);
    let sites: Vec<&str> = plan.sites.iter().map(String::as_str).collect();
    let topology = topology_definitions(vhost, PARTITIONS, &sites);
    for key in ["exchanges", "queues", "bindings"] {
        out[key] = topology[key].clone();
    }
    out
}

fn users_definitions(plan: &Plan, vhost: &str) -> Value {
    let users: Vec<Value> = plan
        .users
        .iter()
        .map(|u| {
            json!({"name": u.name, "password_hash": u.password_hash,
                   "hashing_algorithm": HASHING, "tags": [u.tag], "limits": {}})
        })
        .collect();
    let permissions: Vec<Value> = plan
        .users
        .iter()
        .map(|u| {
            json!({"user": u.name, "vhost": vhost, "configure": u.permissions[0],
                   "write": u.permissions[1], "read": u.permissions[2]})
        })
        .collect();
    let topic: Vec<Value> = plan
        .users
        .iter()
        .map(|u| {
            json!({"user": u.name, "vhost": vhost, "exchange": MQTT_EXCHANGE,
                   "write": u.topic[0], "read": u.topic[1]})
        })
        .collect();
    json!({"users": users, "vhosts": [{"name": vhost}], "permissions": permissions,
           "topic_permissions": topic})
}

/// One management-API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

/// A user RabbitMQ has now (from `GET /api/users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub tags: Vec<String>,
}

/// Parses `GET /api/users` (tags are a list since 3.9, a comma-separated
/// string before).
pub fn parse_users(body: &str) -> Result<Vec<Existing>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let list = v.as_array().ok_or("not a list of users")?;
    Ok(list
        .iter()
        .filter_map(|u| {
            let name = u["name"].as_str()?.to_string();
            let tags = match &u["tags"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => s.split(',').map(|t| t.trim().to_string()).collect(),
                _ => Vec::new(),
            };
            Some(Existing { name, tags })
        })
        .collect())
}

/// Percent-encodes a path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The requests that bring RabbitMQ from `existing` to `plan`, and the
/// node users they delete (whose connections are then closed). Users not
/// tagged [`NODE_TAG`] are never deleted; nor are `plan.without_hash`.
pub fn sync_requests(
    plan: &Plan,
    existing: &[Existing],
    vhost: &str,
) -> (Vec<Request>, Vec<String>) {
    let v = segment(vhost);
    let mut out = Vec::new();
    for u in &plan.users {
        let name = segment(&u.name);
        out.push(Request {
            method: "PUT",
            path: format!("/api/users/{name}"),
            body: Some(
                json!({"password_hash": u.password_hash, "hashing_algorithm": HASHING,
                              "tags": u.tag}),
            ),
        });
        out.push(Request {
            method: "PUT",
            path: format!("/api/permissions/{v}/{name}"),
            body: Some(
                json!({"configure": u.permissions[0], "write": u.permissions[1],
                              "read": u.permissions[2]}),
            ),
        });
        out.push(Request {
            method: "PUT",
            path: format!("/api/topic-permissions/{v}/{name}"),
            body: Some(json!({"exchange": MQTT_EXCHANGE, "write": u.topic[0],
                              "read": u.topic[1]})),
        });
    }
    let keep: BTreeSet<&str> = plan
        .users
        .iter()
        .map(|u| u.name.as_str())
        .chain(plan.without_hash.iter().map(String::as_str))
        .collect();
    let mut deleted = Vec::new();
    for e in existing {
        if e.tags.iter().any(|t| t == NODE_TAG) && !keep.contains(e.name.as_str()) {
            out.push(Request {
                method: "DELETE",
                path: format!("/api/users/{}", segment(&e.name)),
                body: None,
            });
            deleted.push(e.name.clone());
        }
    }
    (out, deleted)
}

/// Connections (by name) of the given users, from `GET /api/connections`.
pub fn connections_of(body: &str, users: &[String]) -> Vec<String> {
    let Ok(Value::Array(list)) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    list.iter()
        .filter(|c| {
            c["user"]
                .as_str()
                .is_some_and(|u| users.iter().any(|x| x == u))
        })
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub users: usize,
    pub deleted: Vec<String>,
    pub connections_closed: usize,
    pub without_hash: Vec<String>,
}

/// Applies `plan` through the management API at `base` (e.g.
/// `http://127.0.0.1:15672`) as the administrator `admin` (name, password).
pub async fn sync(
    client: &crate::tls::HttpClient,
    base: &str,
    admin: (&str, &str),
    vhost: &str,
    plan: &Plan,
) -> Result<SyncReport, String> {
    let base = base.trim_end_matches('/');
    let auth = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", admin.0, admin.1))
    );
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let auth = auth.clone();
        let url = format!("{base}{path}");
        async move {
            let m = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let mut r = client
                .request(m, &url)
                .header("authorization", auth)
                .header("content-type", "application/json");
            if let Some(b) = body {
                r = r.body(b.to_string());
            }
            let resp = r.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if !(200..300).contains(&status) {
                return Err(format!("{method} {path}: HTTP {status}: {text:.300}"));
            }
            Ok::<String, String>(text)
        }
    };
    let users = call("GET", "/api/users?columns=name,tags".into(), None).await?;
    let existing = parse_users(&users)?;
    let (requests, deleted) = sync_requests(plan, &existing, vhost);
    for r in requests {
        call(r.method, r.path, r.body).await?;
    }
    // The ingest topology and a binding per site (idempotent).
    let sites: Vec<&str> = plan.sites.iter().map(String::as_str).collect();
    call(
        "POST",
        "/api/definitions".into(),
        Some(topology_definitions(vhost, PARTITIONS, &sites)),
    )
    .await?;
    // Deleting a user does not end its open connections: close them. The
    // connection list comes from statistics, a few seconds behind.
    let mut closed = 0;
    if !deleted.is_empty() {
        let list = call("GET", "/api/connections?columns=name,user".into(), None).await?;
        for name in connections_of(&list, &deleted) {
            call(
                "DELETE",
                format!("/api/connections/{}", segment(&name)),
                None,
            )
            .await?;
            closed += 1;
        }
    }
    Ok(SyncReport {
        users: plan.users.len(),
        deleted,
        connections_closed: closed,
        without_hash: plan.without_hash.clone(),
    })
}

/// How many partition queues carry the sites' messages (issue 16). Fixed:
/// changing it moves sites between partitions, which needs every replica
/// stopped (ARCHITECTURE.md, high availability).
pub const PARTITIONS: u32 = 16;
/// The topic exchange every partition queue is bound to, fed from
/// [`MQTT_EXCHANGE`] by exchange-to-exchange bindings.
pub const INGEST_EXCHANGE: &str = "fire.ingest";
/// Where messages of sites no partition is bound for end up (the ingest
/// exchange's alternate exchange), and its queue.
pub const UNKNOWN_EXCHANGE: &str = "fire.unknown";

/// The partition queue's name: `fire.ingest.p07`.
pub fn partition_queue(p: u32) -> String {
    format!("{INGEST_EXCHANGE}.p{p:02}")
}

/// The partition of a site: FNV-1a (32 bits) of its id, modulo `partitions`.
/// Stable across replicas, builds and platforms (no `std` hasher, whose
/// output may change between Rust releases).
pub fn partition_of(site: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in site.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// The ingest topology as RabbitMQ definitions: the ingest exchange with
/// its alternate exchange and queue for unknown sites, the bindings from
/// the MQTT exchange for the four node → gateway kinds (a command the
/// gateway sends is not ingested again), `partitions` quorum queues with
/// single active consumer, and a binding `fire.v1.{site}.#` to its
/// partition for each of `sites`. Declaring it again changes nothing: the
/// replicas declare the same at start and when a site is registered.
pub fn topology_definitions(vhost: &str, partitions: u32, sites: &[&str]) -> Value {
    let exchanges = json!([
        {"name": INGEST_EXCHANGE, "vhost": vhost, "type": "topic", "durable": true,
         "auto_delete": false, "internal": true,
         "arguments": {"alternate-exchange": UNKNOWN_EXCHANGE}},
        {"name": UNKNOWN_EXCHANGE, "vhost": vhost, "type": "fanout", "durable": true,
         "auto_delete": false, "internal": true, "arguments": {}}
    ]);
    let mut queues = vec![
        json!({"name": UNKNOWN_EXCHANGE, "vhost": vhost, "durable": true,
        "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}),
    ];
    for p in 0..partitions {
        queues.push(
            json!({"name": partition_queue(p), "vhost": vhost, "durable": true,
            "auto_delete": false,
            "arguments": {"x-queue-type": "quorum", "x-single-active-consumer": true}}),
        );
    }
    let mut bindings = vec![json!({"source": UNKNOWN_EXCHANGE, "vhost": vhost,
        "destination": UNKNOWN_EXCHANGE, "destination_type": "queue", "routing_key": "",
        "arguments": {}})];
    for kind in ["telemetry", "status", "event", "cmd.ack"] {
        bindings.push(json!({"source": MQTT_EXCHANGE, "vhost": vhost,
            "destination": INGEST_EXCHANGE, "destination_type": "exchange",
            "routing_key": format!("fire.v1.*.*.{kind}"), "arguments": {}}));
    }
    for site in sites {
        bindings.push(json!({"source": INGEST_EXCHANGE, "vhost": vhost,
            "destination": partition_queue(partition_of(site, partitions)),
            "destination_type": "queue",
            "routing_key": format!("fire.v1.{site}.#"), "arguments": {}}));
    }
    json!({"vhosts": [{"name": vhost}], "exchanges": exchanges, "queues": queues,
           "bindings": bindings})
}

/// The plan for the registry in `store` and the gateway's own login from
/// `config` (`mqtt.username`, `mqtt.password`; without a password the
/// gateway's user is left out). Errors in 简体中文 for the operator.
pub async fn plan_from_store(
    store: &crate::store::Store,
    config: &crate::config::Config,
) -> Result<Plan, String> {
    let reg = store
        .registry()
        .await
        .map_err(|e| format!("无法读取节点登记：{e}"))?;
    let hashes = store
        .rabbit_hashes()
        .await
        .map_err(|e| format!("无法读取 RabbitMQ 密码散列：{e}"))?;
    let user = config
        .mqtt
        .username
        .clone()
        .unwrap_or_else(|| "fire-gateway".into());
    let gateway = match config.mqtt.password.as_deref() {
        Some(p) => Some((user, password_hash(p).map_err(|e| e.to_string())?)),
        None => None,
    };
    let mut out = plan(
        &reg,
        &hashes,
        gateway.as_ref().map(|(u, h)| (u.as_str(), h.as_str())),
    );
    out.sites = crate::store::registry::effective(config, &reg)
        .sites
        .iter()
        .map(|s| s.id.clone())
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::registry::Credential;

    #[test]
    fn hash_is_rabbitmqs_salted_sha256() {
        // RabbitMQ's own example ("test12", salt 0x908DC60A) from its
        // password-hashing documentation.
        assert_eq!(
            password_hash_with("test12", [0x90, 0x8D, 0xC6, 0x0A]),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
        // A hash RabbitMQ 3.10 made itself: its default user `guest`.
        assert!(verify(
            "guest",
            "frp14wM5BIKz+GQprUDYIJmjB9GAi5oNiF+dHl2WJ4qIR5UH"
        ));
        let h = password_hash("s3cret").unwrap();
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cret!", &h));
        assert!(!verify("s3cret", "not base64!"));
        assert!(!verify("s3cret", "AAA="));
    }

    #[test]
    fn node_user_may_touch_only_its_own_topics() {
        let u = node_user("home_a", "n01", "H");
        assert_eq!(u.name, "home_a.n01");
        assert_eq!(
            u.topic[0],
            r"^fire\.v1\.home_a\.n01\.(telemetry|status|event|cmd\.ack)$"
        );
        assert_eq!(u.topic[1], r"^fire\.v1\.home_a\.n01\.cmd$");
        assert_eq!(u.permissions[0], r"^mqtt-subscription-home_a\.n01qos[01]$");
        assert_eq!(
            u.permissions[1],
            r"^(amq\.topic|mqtt-subscription-home_a\.n01qos[01])$"
        );
    }

    fn cred(node: &str, revoked: bool) -> Credential {
        Credential {
            username: format!("home_a.{node}"),
            site: "home_a".into(),
            node: node.into(),
            password_hash: "$7$x".into(),
            created_at: 1,
            rotated_at: 1,
            revoked_at: revoked.then_some(2),
        }
    }

    #[test]
    fn plan_and_sync_delete_only_revoked_node_users() {
        let reg = Registry {
            credentials: vec![cred("n01", false), cred("n02", true), cred("n03", false)],
            ..Default::default()
        };
        let hashes: HashMap<String, String> = [
            ("home_a.n01".to_string(), "H1".to_string()),
            ("home_a.n02".to_string(), "H2".to_string()),
        ]
        .into();
        let p = plan(&reg, &hashes, Some(("fire-gateway", "G")));
        let names: Vec<&str> = p.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["fire-gateway", "home_a.n01"]);
        assert_eq!(p.without_hash, ["home_a.n03"]);

        let existing = parse_users(
            r#"[{"name":"guest","tags":["administrator"]},
                {"name":"home_a.n01","tags":["fire-node"]},
                {"name":"home_a.n02","tags":["fire-node"]},
                {"name":"home_a.n03","tags":"fire-node"},
                {"name":"other.n09","tags":["monitoring"]}]"#,
        )
        .unwrap();
        let (reqs, deleted) = sync_requests(&p, &existing, "/");
        assert_eq!(deleted, ["home_a.n02"]);
        let lines: Vec<String> = reqs
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            lines,
            [
                "PUT /api/users/fire-gateway",
                "PUT /api/permissions/%2F/fire-gateway",
                "PUT /api/topic-permissions/%2F/fire-gateway",
                "PUT /api/users/home_a.n01",
                "PUT /api/permissions/%2F/home_a.n01",
                "PUT /api/topic-permissions/%2F/home_a.n01",
                "DELETE /api/users/home_a.n02",
            ]
        );
        assert_eq!(
            reqs[3].body,
            Some(json!({"password_hash": "H1", "hashing_algorithm": HASHING, "tags": NODE_TAG}))
        );
        let d = definitions(&p, "/");
        assert_eq!(d["users"][1]["name"], "home_a.n01");
        assert_eq!(
            d["topic_permissions"][1]["read"],
            r"^fire\.v1\.home_a\.n01\.cmd$"
        );
        assert_eq!(
            connections_of(
                r#"[{"name":"127.0.0.1:5 -> 127.0.0.1:6","user":"home_a.n02"},{"name":"x","user":"home_a.n01"}]"#,
                &deleted
            ),
            ["127.0.0.1:5 -> 127.0.0.1:6"]
        );
        assert!(parse_users("{}").is_err());
    }

    #[test]
    fn sites_map_to_stable_partitions() {
        // FNV-1a reference values ("" and "a" from the FNV test vectors).
        assert_eq!(partition_of("", u32::MAX), 0x811c_9dc5);
        assert_eq!(partition_of("a", u32::MAX), 0xe40c_292c);
        assert_eq!(partition_of("home_a", 1), 0);
        let p = partition_of("home_a", PARTITIONS);
        assert!(p < PARTITIONS);
        assert_eq!(partition_queue(7), "fire.ingest.p07");
        let d = topology_definitions("/", PARTITIONS, &["home_a"]);
        assert_eq!(
            d["queues"].as_array().unwrap().len(),
            1 + PARTITIONS as usize
        );
        let last = d["bindings"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["routing_key"], "fire.v1.home_a.#");
        assert_eq!(last["destination"], partition_queue(p));
        assert_eq!(
            d["queues"][1]["arguments"]["x-single-active-consumer"],
            true
        );
    }

    #[test]
    fn the_shipped_topology_is_the_codes() {
        let shipped: Value = serde_json::from_str(include_str!(
            "../../../deploy/cluster/rabbitmq/topology.json"
        ))
        .unwrap();
        assert_eq!(shipped, topology_definitions("/", PARTITIONS, &[]));
    }
}
