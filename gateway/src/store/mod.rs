//! The transactional store: alarms (报警记录), hazard tickets (隐患工单) and
//! the ticket audit trail (留痕), through `sqlx` with migrations, in SQLite
//! (the default) or PostgreSQL (`database_url = "postgres://…"`).
//!
//! One body of code serves both through sqlx's `Any` driver. The SQL is
//! written once in the dialect both accept: `?`/`?N` placeholders are
//! rewritten to `$N` ([`portable`]), flags are compared with `TRUE`/`FALSE`,
//! new ids come back with `RETURNING id`, aggregates are cast to the types
//! `Any` maps. The one construct that differs, expanding a JSON list of
//! sites, is chosen per backend ([`Backend::site_in`]). Each backend has its
//! own migrations directory.
//!
//! "One standing alarm per (site, node, channel, cause)" and "one open ticket
//! per (site, node, channel, cause)" are enforced by partial unique indexes,
//! so they hold even with several writers; the code here attaches to what is
//! already open instead of opening another.
//!
//! This file holds the handle ([`Store`]: the pools, the backend,
//! migrations) and the portable SQL helpers; each aggregate has its own
//! file with its rows, re-exported here: `alarms`, `tickets`, `audit`,
//! `sessions` (users and sessions), `registry`, `readings` (linked
//! readings, rollups, latest), `reports` (ledger, monthly, weekly, risk),
//! `notifications`, `shift_log`, `commissioning` (self-tests, baselines,
//! setpoints, sign-offs), `rules` (rule settings, channel states),
//! `evidence`, `rabbit`, `partitions` (ingest partitions' fences), and `batch` (one pipeline batch in one
//! transaction).

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use std::time::Duration;

mod alarms;
mod audit;
mod batch;
mod commissioning;
mod evidence;
mod local;
mod notifications;
mod partitions;
mod rabbit;
mod readings;
pub mod registry;
mod reports;
mod rules;
mod sessions;
mod shift_log;
mod tickets;

pub use alarms::{AlarmFilter, AlarmInput, AlarmKey, AlarmLogRow, AlarmRow, LogEntry};
pub use audit::AuditEntry;
pub use batch::{Batch, BatchWrite, Relevel, Settle};
pub use commissioning::{
    BaselineRow, ChannelFirst, HourRow, SelfTestRow, SetpointRow, SignOff, SignedReport,
};
pub use evidence::EvidenceRow;
pub use local::{
    ready, transaction as local_transaction, LocalBatch, LocalWriter, Submitted, TaskWriter,
};
pub use notifications::{NotificationLog, NotificationRow};
pub use partitions::{Fence, Leader, PartitionRow};
pub use readings::{
    DailyMaxRow, LatestRow, LinkedReading, RollupAgg, RollupKey, RollupLast, TicketReadingRow,
};
pub use reports::{LedgerQuery, ReportFigures};
pub use rules::RuleChangeRow;
pub use sessions::UserError;
pub use sessions::{By, UserAdminError, UserRow};
pub use shift_log::ShiftNoteRow;
pub use tickets::{
    Actor, TicketEventRow, TicketFilter, TicketOutcome, TicketRow, TicketSpec, TransitionError,
    INITIAL_STATUS,
};

/// The store's error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB")]
    Url(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Local(#[from] rusqlite::Error),
    #[error("database writer: {0}")]
    Writer(String),
    #[error("database: no answer within the commit timeout")]
    Timeout,
    /// A PostgreSQL URL whose `sslmode` would not verify the server.
    #[error("database URL: {0}")]
    Tls(String),
    /// Another replica has taken the partition since this one did
    /// ([`Batch::fence`]): the batch must not be committed, nor retried.
    #[error("partition {partition} was taken over (epoch {epoch}, now {current:?})")]
    Fenced {
        partition: u32,
        epoch: i64,
        current: Option<i64>,
    },
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The pool this handle's queries run on: the shared one, or the
    /// reserved one for a handle from [`Store::reserved`].
    pool: AnyPool,
    /// The shared pool: HTTP API, notifier, live configuration.
    shared: AnyPool,
    /// Connections only the pipeline uses ([`Store::reserved`]), so that
    /// API requests (ledger exports, monthly reports) holding every shared
    /// connection cannot hold up the writing of alarms and tickets.
    reserved: AnyPool,
    backend: Backend,
    /// Serialises appends to the hash-chained audit log in this process.
    audit_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The pipeline's SQLite writer ([`LocalWriter`]) on a database file;
    /// `None` on PostgreSQL and in-memory SQLite.
    local: Option<LocalWriter>,
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH`, created if needed, or
    /// `postgres://…`) and runs the backend's migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut file = None;
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            if !rest.starts_with(':') && !rest.is_empty() {
                let path = rest.split('?').next().unwrap_or(rest);
                file = Some(std::path::PathBuf::from(path));
                if let Some(dir) = std::path::Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
            }
            // Create the file if missing, unless the URL says otherwise.
            let url = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // TLS verified (`sslmode=verify-full`) or none, never unverified.
            let url = crate::tls::postgres_url(url, None).map_err(StoreError::Tls)?;
            (Backend::Postgres, url)
        } else {
            return Err(StoreError::Url(crate::redact::url(url)));
        };
        let (shared_size, reserved_size) = match backend {
            Backend::Sqlite => (4, RESERVED_SQLITE),
            Backend::Postgres => (8, RESERVED_POSTGRES),
        };
        let pool = pool_options(backend)
            .max_connections(shared_size)
            .connect(&url)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        // The pipeline's own connections, opened once the schema is there
        // and kept open (min = max, never retired for age or idleness): a
        // PostgreSQL server that has since reached its connection limit
        // cannot refuse them later.
        let reserved = pool_options(backend)
            .max_connections(reserved_size)
            .min_connections(reserved_size)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect(&url)
            .await?;
        // SQLite's pipeline writer: a connection of its own on its thread.
        let local = match &file {
            Some(path) if backend == Backend::Sqlite => Some(LocalWriter::open(path)?),
            _ => None,
        };
        Ok(Store {
            pool: pool.clone(),
            shared: pool,
            reserved,
            backend,
            audit_lock: Default::default(),
            local,
        })
    }

    /// Starts a transaction. In SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
    /// writes fails with SQLITE_BUSY_SNAPSHOT, which no busy timeout cures,
    /// when another connection (the notifier, an API call) wrote between.
    async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Copies the SQLite write-ahead log back into the database without
    /// blocking readers or writers (PASSIVE); a no-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This handle's connection pool (the shared one, or the reserved one
    /// for a [`Store::reserved`] handle), for tools and benchmarks that
    /// load data in bulk.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes both pools (shared and reserved), waiting for connections
    /// to finish; from any handle.
    pub async fn close(&self) {
        if let Some(w) = &self.local {
            w.close().await;
        }
        self.shared.close().await;
        self.reserved.close().await;
    }

    /// The pipeline's SQLite writer, on a SQLite database file.
    pub fn local_writer(&self) -> Option<&LocalWriter> {
        self.local.as_ref()
    }

    /// The audit chain's lock, held by whoever appends to the chain until
    /// it commits: a batch on the [`LocalWriter`] takes it on the writer
    /// thread (`blocking_lock`), before it begins its transaction, as every
    /// other writer does.
    pub fn audit_lock(&self) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.audit_lock.clone()
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A handle on the same database whose queries run on the connections
    /// reserved for the pipeline, which no API request can take: every
    /// method works on it unchanged. It shares the audit chain's lock with
    /// this handle; closing either closes both pools.
    pub fn reserved(&self) -> Store {
        Store {
            pool: self.reserved.clone(),
            ..self.clone()
        }
    }
}

/// Connections reserved for the pipeline in SQLite: it is one task writing
/// one transaction at a time, and SQLite takes one writer at a time anyway.
const RESERVED_SQLITE: u32 = 2;
/// Connections reserved for the pipeline in PostgreSQL.
const RESERVED_POSTGRES: u32 = 2;

/// Options shared by both pools of a backend (the caller sets the size).
fn pool_options(backend: Backend) -> AnyPoolOptions {
    let options = match backend {
        Backend::Sqlite => AnyPoolOptions::new().after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets the API read while the pipeline writes.
                // FULL sync: every commit syncs the WAL to disk before it
                // returns, so a committed alarm or ticket survives a power
                // cut; NORMAL in WAL mode survives a process crash but can
                // lose the last commits on power loss or an OS crash.
                // No automatic checkpoints: one landing inside a commit
                // made opening a ticket take 12-20 ms at p99; the gateway
                // checkpoints every minute instead ([`Store::checkpoint`]),
                // and SQLite does when the last connection closes.
                // Statement journals in memory: a many-row statement
                // inside a transaction keeps one (to undo just itself on
                // a constraint error), and in a temporary file each of
                // its page writes was a system call — a tenth of an alarm
                // storm's database time.
                sqlx::raw_sql(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                     PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;",
                )
                .execute(conn)
                .await?;
                Ok(())
            })
        }),
        Backend::Postgres => AnyPoolOptions::new(),
    };
    options.acquire_timeout(Duration::from_secs(30))
}

/// A site list as the JSON array the queries expand ([`Backend::site_in`]).
fn sites_json(sites: Option<&[String]>) -> Option<String> {
    sites.map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()))
}

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `site IN (the sites of the JSON array bound at `param`)`.
    fn site_in(self, param: &str) -> String {
        match self {
            Backend::Sqlite => format!("site IN (SELECT value FROM json_each({param}))"),
            Backend::Postgres => {
                format!("site IN (SELECT json_array_elements_text(CAST({param} AS json)))")
            }
        }
    }
}

/// A flag column: BOOLEAN in PostgreSQL, an integer 0/1 in SQLite (which
/// the `Any` driver hands over as an integer).
struct Flag(bool);

impl sqlx::Type<Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <bool as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <bool as sqlx::Type<Any>>::compatible(ty) || <i64 as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match <bool as sqlx::Decode<Any>>::decode(value.clone()) {
            Ok(b) => Ok(Flag(b)),
            Err(_) => Ok(Flag(<i64 as sqlx::Decode<Any>>::decode(value)? != 0)),
        }
    }
}

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

/// Rewrites SQLite-style placeholders to the `$N` form both backends
/// accept: `?N` becomes `$N`, and a bare `?` takes the number after the
/// largest one so far (SQLite's own rule). Quoted text is left alone.
pub fn portable(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut largest = 0u32;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => largest + 1,
                };
                largest = largest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            (None, c) => out.push(c),
        }
    }
    out
}

fn query(sql: &str) -> sqlx::query::Query<'static, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(portable(sql)))
}

fn query_as<T>(sql: &str) -> sqlx::query::QueryAs<'static, Any, T, AnyArguments>
where
    T: for<'r> sqlx::FromRow<'r, AnyRow>,
{
    sqlx::query_as(AssertSqlSafe(portable(sql)))
}

fn query_scalar<T>(sql: &str) -> sqlx::query::QueryScalar<'static, Any, T, AnyArguments>
where
    (T,): for<'r> sqlx::FromRow<'r, AnyRow>,
{
    sqlx::query_scalar(AssertSqlSafe(portable(sql)))
}

#[cfg(test)]
mod tests {
    use super::portable;

    #[test]
    fn placeholders_become_numbered() {
        assert_eq!(portable("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            portable("?1 IS NULL OR x = ?1 LIMIT ?2"),
            "$1 IS NULL OR x = $1 LIMIT $2"
        );
        // A bare ? after ?3 is ?4, as in SQLite.
        assert_eq!(portable("s = ?3 AND a = ?"), "s = $3 AND a = $4");
        assert_eq!(portable("a = '?' AND b = ?"), "a = '?' AND b = $1");
        assert_eq!(portable("\"we?ird\" = ?"), "\"we?ird\" = $1");
    }
}
