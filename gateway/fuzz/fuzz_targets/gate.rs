//! The gate's hostile-input surface, fed arbitrary bytes as a client's
//! stream: framing (with the CONNECT and packet limits), the protocol level
//! read before parsing, CONNECT / PUBLISH / SUBSCRIBE parsing, the MQTT
//! string checks, the login decision and the ACL, the PUBACK filter, and
//! what a refusal would log. Nothing may panic, hang or read out of bounds.
//!
//! `cd gateway/fuzz && cargo +nightly fuzz run gate`

#![no_main]

use bytes::Bytes;
use gateway::ingest::gate::frame::{
    connect_fault, frame, protocol_level, publish_topic_fault, pubrel_pkid, without_pubacks,
    MAX_CONNECT, MAX_PACKET,
};
use gateway::ingest::gate::limits::{for_log, RefusalLog};
use gateway::ingest::gate::{Access, Principal};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::{Connect, Publish, Subscribe};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// home_a: n01 may log in anonymously, n02 has credentials; the gateway's
/// client id `fire-gateway`, its login `gw`.
static ACCESS: LazyLock<Access> = LazyLock::new(|| {
    let config = gateway::config::Config::from_toml(
        "[mqtt]\nclient_id = \"fire-gateway\"\n\
         [[sites]]\nid = \"home_a\"\nname = \"甲\"\n\
         [[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n",
    )
    .expect("config");
    let reg = gateway::commissioning::registry::Registry {
        version: 1,
        credentials: vec![gateway::commissioning::registry::Credential {
            username: "home_a.n02".into(),
            site: "home_a".into(),
            node: "n02".into(),
            password_hash: gateway::commissioning::credentials::hash_with(
                "pw-n02",
                b"saltsaltsalt",
                101,
            ),
            created_at: 1,
            rotated_at: 1,
            revoked_at: None,
        }],
        ..Default::default()
    };
    Access::build(&config, &reg, Some(("gw".into(), "gw-secret".into())), true)
});

fuzz_target!(|data: &[u8]| {
    let access = &*ACCESS;
    let mut log = RefusalLog::new(4, Duration::from_secs(60), 3);
    let now = Instant::now();
    let _ = without_pubacks(data);
    let mut principal = None;
    let mut rest = data;
    // As the gate reads a connection: the first frame under the CONNECT
    // limit, the rest under the packet limit.
    loop {
        let max = if principal.is_none() { MAX_CONNECT } else { MAX_PACKET };
        let Ok(Some(h)) = frame(rest, max) else {
            break;
        };
        let whole = Bytes::copy_from_slice(&rest[..h.len()]);
        match h.kind() {
            1 => {
                let _ = protocol_level(&whole, h);
                if let Ok(c) = Connect::read(h.fixed(), whole) {
                    let _ = connect_fault(&c);
                    let _ = for_log(&c.client_id);
                    match access.authenticate(&c) {
                        Ok(p) => {
                            assert!(access.still_valid(&p));
                            // A node's client id is its own `{site}.{node}`.
                            if let Principal::Node { site, node, .. } = &p {
                                assert_eq!(c.client_id, format!("{site}.{node}"));
                            }
                            assert_ne!(c.client_id, "fire-gateway");
                            principal = Some(p);
                        }
                        Err(_) => {
                            let who = c.login.as_ref().map_or("anonymous", |l| &l.username);
                            let _ = log.should_log(&format!("connect:{}", for_log(who)), now);
                        }
                    }
                }
            }
            3 => {
                if let Ok(p) = Publish::read(h.fixed(), whole) {
                    let _ = publish_topic_fault(&p.topic);
                    let _ = for_log(&p.topic);
                    if let Some(who) = &principal {
                        let _ = access.may_publish(who, &p.topic);
                    }
                }
            }
            6 => {
                let _ = pubrel_pkid(&whole, h);
            }
            8 => {
                if let Ok(s) = Subscribe::read(h.fixed(), whole) {
                    for f in &s.filters {
                        if let Some(who) = &principal {
                            let _ = access.may_subscribe(who, &f.path);
                        }
                    }
                }
            }
            _ => {}
        }
        rest = &rest[h.len()..];
    }
    assert!(log.len() <= 4);
});
