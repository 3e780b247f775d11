//! `[cluster]`: this gateway is one replica of a cluster (issue 16),
//! taking its nodes' messages from RabbitMQ's ingest partitions over AMQP
//! instead of an MQTT subscription. Absent: a single gateway, as ever.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The broker's AMQP address with the gateway's login,
    /// `amqp://fire-gateway:PASSWORD@10.0.0.11:5672/%2f`.
    pub amqp_url: String,
    /// This replica's name (unique in the cluster): its consumers' tags and
    /// the holder recorded with each partition it takes.
    pub replica: String,
    /// Unacknowledged messages per partition (about one batch).
    pub prefetch: u16,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            amqp_url: String::new(),
            replica: String::new(),
            prefetch: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{BrokerMode, Config};

    fn paths(c: &Config) -> Vec<String> {
        c.validate().into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn a_replica_needs_postgresql_an_external_broker_and_a_name() {
        let mut c: Config = toml::from_str(
            "[cluster]\namqp_url = \"amqp://gw:pw@10.0.0.11:5672/%2f\"\nreplica = \"gw1\"\n",
        )
        .unwrap();
        assert_eq!(c.cluster.as_ref().unwrap().prefetch, 1000);
        let p = paths(&c);
        assert!(p.contains(&"storage.database_url".to_string()), "{p:?}");
        assert!(p.contains(&"mqtt.broker".to_string()), "{p:?}");
        c.storage.database_url = Some("postgres://gw:pw@10.0.0.21:5432/fire".into());
        c.mqtt.broker = BrokerMode::External;
        c.mqtt.host = "10.0.0.11".into();
        assert!(paths(&c).is_empty(), "{:?}", c.validate());
        let cl = c.cluster.as_mut().unwrap();
        cl.replica.clear();
        cl.amqp_url = "http://x".into();
        cl.prefetch = 0;
        let p = paths(&c);
        for field in ["cluster.replica", "cluster.amqp_url", "cluster.prefetch"] {
            assert!(p.contains(&field.to_string()), "{field}: {p:?}");
        }
        // Unknown keys are refused, not ignored.
        assert!(toml::from_str::<Config>("[cluster]\nreplicas = 2\n").is_err());
    }
}
