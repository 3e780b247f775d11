//! Ingest partitions and their fences (issue 16): which replica holds each
//! partition, since which epoch. Taking a partition bumps its epoch; a
//! batch committed for a partition checks, inside its own transaction,
//! that the epoch is still the one its replica took ([`Batch::fence`]), so
//! a replica that lost its consumer but still reaches the database cannot
//! commit once another replica has taken the partition over.

use super::{query_as, Batch, Store, StoreError};

/// A partition held at an epoch: what a batch is fenced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub partition: u32,
    pub epoch: i64,
}

/// Who holds a partition.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartitionRow {
    pub partition: i32,
    pub epoch: i64,
    pub holder: String,
    pub taken_at: i64,
}

impl Store {
    /// Takes `partition` for `holder`: its epoch goes up by one (from 1 the
    /// first time). On PostgreSQL the update waits for any batch of the
    /// previous holder still being committed (it holds the row `FOR
    /// SHARE`): what that batch wrote is committed before this answers, so
    /// the state the new holder loads next includes it.
    pub async fn take_partition(
        &self,
        partition: u32,
        holder: &str,
        at: u64,
    ) -> Result<Fence, StoreError> {
        let mut tx = self.begin().await?;
        let (epoch,): (i64,) = query_as(
            "INSERT INTO partition_epoch (partition, epoch, holder, taken_at) VALUES (?, 1, ?, ?) \
             ON CONFLICT (partition) DO UPDATE SET epoch = partition_epoch.epoch + 1, \
             holder = excluded.holder, taken_at = excluded.taken_at RETURNING epoch",
        )
        .bind(partition as i32)
        .bind(holder)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Fence { partition, epoch })
    }

    /// Every partition ever taken, by number.
    pub async fn partitions(&self) -> Result<Vec<PartitionRow>, StoreError> {
        Ok(query_as(
            "SELECT partition, epoch, holder, taken_at FROM partition_epoch ORDER BY partition",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Batch {
    /// Refuses the batch ([`StoreError::Fenced`]) unless `fence` is still
    /// its partition's epoch. On PostgreSQL the row is read `FOR SHARE`, so
    /// no one can take the partition until this transaction ends.
    pub async fn fence(&mut self, fence: Fence) -> Result<(), StoreError> {
        let lock = if self.sqlite { "" } else { " FOR SHARE" };
        let current: Option<(i64,)> = query_as(&format!(
            "SELECT epoch FROM partition_epoch WHERE partition = ?{lock}"
        ))
        .bind(fence.partition as i32)
        .fetch_optional(&mut *self.tx)
        .await?;
        match current {
            Some((epoch,)) if epoch == fence.epoch => Ok(()),
            other => Err(StoreError::Fenced {
                partition: fence.partition,
                epoch: fence.epoch,
                current: other.map(|(e,)| e),
            }),
        }
    }
}

/// The advisory lock whose holder runs the cluster's once-only jobs
/// (`fire` in ASCII, then 1).
const LEADER_LOCK: i64 = 0x6669_7265_0001;

/// This replica's hold on the cluster's once-only jobs: a PostgreSQL
/// session holding an advisory lock. If the replica dies its session ends,
/// the lock is free, and another replica takes it at its next try.
pub struct Leader {
    conn: sqlx::AnyConnection,
}

impl Leader {
    /// Whether the session (and so the lock) is still there.
    pub async fn alive(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}

impl Store {
    /// Tries to become the leader for the once-only jobs; `None` while
    /// another replica's session holds the lock. PostgreSQL only: a single
    /// gateway on SQLite is its own leader and never asks.
    pub async fn try_lead(&self) -> Result<Option<Leader>, StoreError> {
        let mut conn = self.shared.acquire().await?.detach();
        let (got,): (bool,) = query_as("SELECT pg_try_advisory_lock(?)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(Leader { conn }))
    }
}

impl Store {
    /// Records `replica` as alive at `now` and answers how many replicas
    /// (itself included) were seen since `since`.
    pub async fn replicas_alive(
        &self,
        replica: &str,
        now: u64,
        since: u64,
    ) -> Result<u32, StoreError> {
        let mut tx = self.begin().await?;
        super::query(
            "INSERT INTO replica_seen (replica, seen_at) VALUES (?, ?) \
             ON CONFLICT (replica) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(replica)
        .bind(now as i64)
        .execute(&mut *tx)
        .await?;
        let (n,): (i64,) = query_as("SELECT COUNT(*) FROM replica_seen WHERE seen_at >= ?")
            .bind(since as i64)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n.max(1) as u32)
    }
}
