//! A pipeline's share of the sites (issue 16): on a cluster each replica
//! runs one pipeline per ingest partition it is the active consumer of,
//! scoped to that partition's sites and fenced with the epoch it took the
//! partition at. A scoped pipeline knows only its sites (its configuration
//! is narrowed to them, so the dead-man timers watch only their nodes),
//! restores only their state, commits every batch under its fence, and
//! stops for good once fenced off (another replica has taken the
//! partition; the broker has already handed it the unacknowledged
//! messages). Jobs that span every site (overdue tickets) are not a
//! partition's: the replica runs them once across the cluster.

use super::Pipeline;
use crate::config::Config;
use crate::ingest::rabbitmq::partition_of;
use crate::store::{Fence, StoreError};
use std::sync::Arc;

/// One partition's sites (those [`partition_of`] puts in it, registered
/// later ones included), held at an epoch.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub fence: Fence,
    /// How many partitions there are.
    pub partitions: u32,
}

impl Scope {
    pub fn contains(&self, site: &str) -> bool {
        partition_of(site, self.partitions) == self.fence.partition
    }
}

/// `config` with only the sites of `scope`.
pub fn narrowed(config: &Config, scope: &Scope) -> Arc<Config> {
    let mut c = config.clone();
    c.sites.retain(|s| scope.contains(&s.id));
    Arc::new(c)
}

impl Pipeline {
    /// Scopes the pipeline to `scope` (see the module docs). Before
    /// [`Pipeline::start`].
    pub fn with_scope(mut self, scope: Scope) -> Self {
        let config = narrowed(self.config(), &scope);
        self.scope = Some(scope);
        self.reconfigure(config, crate::domain::time::now_ms());
        self
    }

    /// Whether `site` is this pipeline's (every site when unscoped).
    pub(super) fn mine(&self, site: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(site))
    }

    /// The fence batches are committed under, when scoped.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.scope.as_ref().map(|s| s.fence)
    }

    /// Whether another replica has taken the partition: the pipeline stops.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Notes a fenced-off commit (`e`); answers whether it was one.
    pub(super) fn check_fenced(&mut self, e: &StoreError) -> bool {
        if let StoreError::Fenced {
            partition,
            epoch,
            current,
        } = e
        {
            if !self.fenced {
                tracing::warn!(partition, epoch, ?current, "partition taken over by another replica: this pipeline stops, its uncommitted messages are the new holder's");
                self.metrics
                    .cluster_batches_fenced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.fenced = true;
        }
        self.fenced
    }
}
