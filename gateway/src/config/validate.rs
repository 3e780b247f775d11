//! The semantic checks of a whole configuration, each problem with its path.

use super::{BrokerMode, Config, ConfigIssue, RuleOverride};
use std::collections::BTreeMap;
use wire::{ChannelId, NodeId, Quantity, SiteId};

impl Config {
    /// Every semantic problem, each with its path.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let mut issue = |path: String, message: String| out.push(ConfigIssue { path, message });

        if let Some(c) = &self.cluster {
            if !c.amqp_url.starts_with("amqp://") {
                issue(
                    "cluster.amqp_url".into(),
                    "must be an amqp:// address of the RabbitMQ cluster".into(),
                );
            }
            if c.replica.is_empty() || c.replica.len() > 64 {
                issue("cluster.replica".into(), "must be 1–64 characters".into());
            }
            if c.prefetch == 0 {
                issue("cluster.prefetch".into(), "must be at least 1".into());
            }
            if !self.storage.database_url().starts_with("postgres") {
                // Partition fences and the shared state live in one
                // database every replica reaches.
                issue(
                    "storage.database_url".into(),
                    "a cluster's replicas share one PostgreSQL database".into(),
                );
            }
            if self.mqtt.broker != BrokerMode::External {
                issue(
                    "mqtt.broker".into(),
                    "a replica sends commands through the cluster's broker: \"external\"".into(),
                );
            }
        }
        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 64 {
            issue("mqtt.client_id".into(), "must be 1–64 characters".into());
        }
        if self.mqtt.external_tls && self.mqtt.broker != BrokerMode::External {
            issue(
                "mqtt.external_tls".into(),
                "applies to an external broker only (mqtt.broker = \"external\"); \
                 the embedded broker's TLS listener is configured under [mqtt.tls]"
                    .into(),
            );
        }
        if self.mqtt.broker == BrokerMode::External && self.mqtt.host.is_empty() {
            issue(
                "mqtt.host".into(),
                "is required for an external broker".into(),
            );
        }
        for (field, message) in self.mqtt.limits.issues() {
            issue(format!("mqtt.limits.{field}"), message);
        }
        if let Some(tls) = &self.mqtt.tls {
            if self.mqtt.broker != BrokerMode::Embedded {
                issue(
                    "mqtt.tls".into(),
                    "is for the embedded broker's gate; an external broker has its own TLS".into(),
                );
            }
            for message in tls.issues() {
                issue("mqtt.tls".into(), message);
            }
        } else if !self.mqtt.plain && self.mqtt.broker == BrokerMode::Embedded {
            issue(
                "mqtt.plain".into(),
                "is off and [mqtt.tls] is not configured: nodes would have no port to connect to"
                    .into(),
            );
        }
        if self.mqtt.keep_alive_secs < 5 {
            issue("mqtt.keep_alive_secs".into(), "must be at least 5".into());
        }
        if !(1..=60).contains(&self.http.session_recheck_secs) {
            issue(
                "http.session_recheck_secs".into(),
                "must be 1–60: a revoked session's event stream must close within a minute".into(),
            );
        }
        if !(1..=100_000).contains(&self.storage.batch_max_messages) {
            issue(
                "storage.batch_max_messages".into(),
                "must be between 1 and 100000".into(),
            );
        }
        if self.storage.batch_max_ms > 1000 {
            issue(
                "storage.batch_max_ms".into(),
                "must be at most 1000 (ms)".into(),
            );
        }
        if !(24..=24 * 90).contains(&self.commissioning.baseline_hours) {
            issue(
                "commissioning.baseline_hours".into(),
                "must be 24–2160: at least a day of the building's rhythm, at most a season".into(),
            );
        }
        if self.http.max_connections == 0 || self.http.max_connections > 65_536 {
            issue(
                "http.max_connections".into(),
                "must be 1–65536 (and within the process's LimitNOFILE)".into(),
            );
        }
        if self.http.max_connections_per_peer == 0 {
            issue(
                "http.max_connections_per_peer".into(),
                "must be at least 1".into(),
            );
        }
        if !(1..=300).contains(&self.http.header_read_timeout_secs) {
            issue(
                "http.header_read_timeout_secs".into(),
                "must be 1–300".into(),
            );
        }
        if self.http.evidence_quota_mib == 0 {
            issue(
                "http.evidence_quota_mib".into(),
                "must be at least 1".into(),
            );
        }
        if !(5..=600).contains(&self.commissioning.selftest_window_secs) {
            issue(
                "commissioning.selftest_window_secs".into(),
                "must be 5–600: long enough for a node to answer, short enough that a real alarm is not judged as a test for long".into(),
            );
        }
        if let Some(url) = &self.storage.database_url {
            let known = ["sqlite://", "postgres://", "postgresql://"];
            if !known.iter().any(|k| url.starts_with(k)) {
                issue(
                    "storage.database_url".into(),
                    "must start with sqlite:// or postgres://".into(),
                );
            } else if !url.starts_with("sqlite://") {
                if let Err(e) = crate::tls::postgres_url(url, None) {
                    issue("storage.database_url".into(), e);
                }
                if let Some(ca) = crate::tls::postgres_root_cert(url) {
                    if let Err(e) = crate::tls::read_ca_file(&ca) {
                        issue("storage.database_url".into(), format!("sslrootcert: {e}"));
                    }
                }
            }
        }
        if let Some(files) = &self.http.tls {
            if files.client_ca_file.is_some() {
                issue(
                    "http.tls.client_ca_file".into(),
                    "the console and API ask for no client certificates; remove it".into(),
                );
            }
            if let Err(e) = files
                .read()
                .and_then(|m| crate::tls::server::server_config(&m))
            {
                issue("http.tls".into(), e.to_string());
            }
        }
        if let Some(ca) = &self.tls.extra_ca_file {
            if let Err(e) = crate::tls::read_ca_file(ca) {
                issue("tls.extra_ca_file".into(), e.to_string());
            }
        } else if self.uses_tls() {
            // Only the system store to trust: it had better hold something
            // (slim images come without `ca-certificates`).
            if crate::tls::roots(&self.tls).is_ok_and(|r| r.store.is_empty()) {
                issue(
                    "tls".into(),
                    "https/TLS is configured but no CA is trusted: the system store is empty \
                     (apt-get install -y ca-certificates) and tls.extra_ca_file is not set"
                        .into(),
                );
            }
        }
        if let Some(sink) = &self.sink {
            if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
                issue(
                    "sink.url".into(),
                    "must be an http:// or https:// URL".into(),
                );
            }
            if sink.bucket.is_empty() {
                issue("sink.bucket".into(), "must not be empty".into());
            }
            if sink.batch_size == 0 {
                issue("sink.batch_size".into(), "must be at least 1".into());
            }
            if sink.retry_max_ms < 500 {
                issue("sink.retry_max_ms".into(), "must be at least 500".into());
            }
            if sink.spool_segment_bytes < 4096 {
                issue(
                    "sink.spool_segment_bytes".into(),
                    "must be at least 4096".into(),
                );
            }
            if sink.spool_max_bytes < sink.spool_segment_bytes.saturating_mul(2) {
                issue(
                    "sink.spool_max_bytes".into(),
                    "must be at least twice spool_segment_bytes (a full spool drops whole segments)"
                        .into(),
                );
            }
        }
        if self.tickets.proof_hours == 0 {
            issue(
                "tickets.proof_hours".into(),
                "must be at least 1: closing a sensor ticket needs the data to prove the fix"
                    .into(),
            );
        }
        if self.offline_after_secs < 10 {
            issue("offline_after_secs".into(), "must be at least 10".into());
        }
        // Each level's overrides, merged over the levels above, must make a
        // rule that is safe for its quantity.
        let mut check_level =
            |path: &str, overrides: &BTreeMap<String, RuleOverride>, site: &str, node: &str| {
                for name in overrides.keys() {
                    let path = format!("{path}rules.{name}");
                    match Quantity::from_wire(name) {
                        None => issue(path, "unknown quantity".into()),
                        Some(q) => {
                            if let Err(e) = self.rule_for(q, site, node, "").validate_for(q) {
                                issue(path, e.to_string());
                            }
                        }
                    }
                }
            };
        check_level("", &self.rules, "", "");
        for (si, site) in self.sites.iter().enumerate() {
            check_level(&format!("sites[{si}]."), &site.rules, &site.id, "");
            for (ni, node) in site.nodes.iter().enumerate() {
                check_level(
                    &format!("sites[{si}].nodes[{ni}]."),
                    &node.rules,
                    &site.id,
                    &node.id,
                );
            }
        }
        let mut site_ids = std::collections::HashSet::new();
        for (si, site) in self.sites.iter().enumerate() {
            let sp = format!("sites[{si}]");
            if SiteId::new(&site.id).is_err() {
                issue(
                    format!("{sp}.id"),
                    format!("must match {}", SiteId::PATTERN),
                );
            } else if !site_ids.insert(site.id.as_str()) {
                issue(
                    format!("{sp}.id"),
                    format!("duplicate site id {:?}", site.id),
                );
            }
            let mut node_ids = std::collections::HashSet::new();
            for (ni, node) in site.nodes.iter().enumerate() {
                let np = format!("{sp}.nodes[{ni}]");
                if NodeId::new(&node.id).is_err() {
                    issue(
                        format!("{np}.id"),
                        format!("must match {}", NodeId::PATTERN),
                    );
                } else if !node_ids.insert(node.id.as_str()) {
                    issue(
                        format!("{np}.id"),
                        format!("duplicate node id {:?}", node.id),
                    );
                }
                let mut ch_ids = std::collections::HashSet::new();
                for (ci, ch) in node.channels.iter().enumerate() {
                    let cp = format!("{np}.channels[{ci}]");
                    if ChannelId::new(&ch.id).is_err() {
                        issue(
                            format!("{cp}.id"),
                            format!("must match {}", ChannelId::PATTERN),
                        );
                    } else if !ch_ids.insert(ch.id.as_str()) {
                        issue(
                            format!("{cp}.id"),
                            format!("duplicate channel id {:?}", ch.id),
                        );
                    }
                    match (
                        ch.quantity.as_deref().map(Quantity::from_wire),
                        ch.rule != RuleOverride::default(),
                    ) {
                        (Some(None), _) => {
                            issue(format!("{cp}.quantity"), "unknown quantity".into())
                        }
                        (Some(Some(q)), true) => {
                            if let Err(e) =
                                self.rule_for(q, &site.id, &node.id, &ch.id).validate_for(q)
                            {
                                issue(format!("{cp}.rule"), e.to_string());
                            }
                        }
                        (None, true) => issue(
                            format!("{cp}.quantity"),
                            "is required when the channel overrides its rule".into(),
                        ),
                        (_, false) => {}
                    }
                }
                for (ci, ch) in node.channels.iter().enumerate() {
                    if let Some(g) = ch
                        .grade
                        .as_deref()
                        .filter(|g| !matches!(*g, "general" | "major"))
                    {
                        issue(
                            format!("{np}.channels[{ci}].grade"),
                            format!("{g:?} must be general or major"),
                        );
                    }
                }
                if let Some(secs) = node.offline_after_secs.filter(|s| *s < 10) {
                    issue(
                        format!("{np}.offline_after_secs"),
                        format!("{secs} s is shorter than the 10 s minimum"),
                    );
                }
            }
        }
        out.extend(crate::config::modbus::validate(self));
        if let Some(n) = &self.notify {
            n.validate(&mut out);
        }
        self.northbound
            .validate(&|s| self.sites.iter().any(|c| c.id == s), &mut out);
        out
    }

    /// Whether any outgoing connection is configured with TLS.
    fn uses_tls(&self) -> bool {
        let sink = self
            .sink
            .as_ref()
            .is_some_and(|s| s.url.starts_with("https://"));
        let notify = self
            .notify
            .as_ref()
            .is_some_and(|n| n.channels.iter().any(|c| c.url.starts_with("https://")));
        let db = self
            .storage
            .database_url
            .as_deref()
            .is_some_and(|u| u.contains("sslmode=verify-full"));
        let mqtt = self.mqtt.broker == BrokerMode::External && self.mqtt.external_tls;
        sink || notify || db || mqtt
    }
}
