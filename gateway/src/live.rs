//! The configuration in force, kept live (生效配置): the file's plus the
//! registry's, published on `watch` channels that the pipeline, the HTTP
//! API and the broker's gate read. An API registration reloads at once;
//! changes made by another process (`gateway node add` while the gateway
//! runs) are noticed by a cheap read of the registry's version every
//! [`POLL`].

use crate::config::Config;
use crate::ingest::gate::Access;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

/// How often the registry's version is read.
pub const POLL: Duration = Duration::from_secs(2);

struct Inner {
    base: Arc<Config>,
    store: Store,
    gateway_login: Option<(String, String)>,
    config: watch::Sender<Arc<Config>>,
    access: watch::Sender<Arc<Access>>,
    /// The registry version last published; serialises reloads.
    version: Mutex<i64>,
}

/// A handle on the live configuration; cheap to clone.
#[derive(Clone)]
pub struct Live(Arc<Inner>);

impl Live {
    /// Reads the registry and publishes the configuration in force.
    /// `gateway_login` is the login the gate lets do everything.
    pub async fn load(
        base: Arc<Config>,
        store: Store,
        gateway_login: Option<(String, String)>,
    ) -> Result<Live, StoreError> {
        let reg = store.registry().await?;
        let config = Arc::new(crate::store::registry::effective(&base, &reg));
        let access = Arc::new(Access::build(
            &config,
            &reg,
            gateway_login.clone(),
            base.mqtt.anonymous_config_nodes,
        ));
        Ok(Live(Arc::new(Inner {
            base,
            store,
            gateway_login,
            config: watch::Sender::new(config),
            access: watch::Sender::new(access),
            version: Mutex::new(reg.version),
        })))
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.0.config.borrow().clone()
    }

    /// The configuration file's, without registrations.
    pub fn base(&self) -> &Arc<Config> {
        &self.0.base
    }

    /// Follows the configuration in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.0.config.subscribe()
    }

    /// Follows what the gate allows.
    pub fn access(&self) -> watch::Receiver<Arc<Access>> {
        self.0.access.subscribe()
    }

    /// Re-reads the registry and publishes the result if it changed.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut version = self.0.version.lock().await;
        let reg = self.0.store.registry().await?;
        if reg.version == *version {
            return Ok(());
        }
        let config = Arc::new(crate::store::registry::effective(&self.0.base, &reg));
        let access = Arc::new(Access::build(
            &config,
            &reg,
            self.0.gateway_login.clone(),
            self.0.base.mqtt.anonymous_config_nodes,
        ));
        // Access first: a node registered is allowed in before the pipeline
        // expects it; a node revoked is cut off before the pipeline forgets it.
        self.0.access.send_replace(access);
        self.0.config.send_replace(config);
        tracing::info!(
            from = *version,
            to = reg.version,
            "registry changed; configuration in force updated"
        );
        *version = reg.version;
        Ok(())
    }

    /// Reloads whenever the registry's version moves, until `shutdown`.
    pub async fn follow_store(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let seen = *self.0.version.lock().await;
            match self.0.store.registry_version().await {
                Ok(v) if v != seen => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "cannot reload the registry; trying again");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read the registry version"),
            }
        }
    }
}
