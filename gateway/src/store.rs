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

use serde::Serialize;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use std::time::Duration;

mod batch;
mod evidence;
mod rabbit;
mod registry;
mod sessions;

pub use batch::{Batch, Relevel, Settle};
pub use sessions::{By, UserAdminError, UserRow};

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
    #[error("database: no answer within the commit timeout")]
    Timeout,
    /// A PostgreSQL URL whose `sslmode` would not verify the server.
    #[error("database URL: {0}")]
    Tls(String),
}

/// Identity of an alarm cause on a channel (or a node, with `channel` empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AlarmKey {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
}

/// An alarm being raised or updated.
#[derive(Debug, Clone)]
pub struct AlarmInput {
    pub key: AlarmKey,
    /// `electrical_fire`, `fire_facility`, `fault` or `offline`.
    pub kind: &'static str,
    /// `pre_alarm`, `alarm`, `fault` or `offline`.
    pub level: &'static str,
    pub quantity: Option<&'static str>,
    pub value: Option<i32>,
    pub setpoint: Option<i32>,
    pub at: u64,
    /// Raised while its root cause stands (node offline, supply failure,
    /// site uplink lost): recorded, shown as suppressed, no ticket.
    pub suppressed: bool,
}

/// One rule transition for the append-only alarm log.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    pub at: u64,
    pub key: &'a AlarmKey,
    /// `raised`, `cleared`, `fault_raised`, `offline`, `uplink_lost`, …
    pub transition: &'static str,
    pub level: Option<&'static str>,
    pub value: Option<i32>,
    /// `notify`, `suppressed` or `flapping`.
    pub disposition: &'static str,
    /// `system`, or the operator who acted.
    pub actor: &'a str,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AlarmLogRow {
    pub id: i64,
    pub at: i64,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
    pub transition: String,
    pub level: Option<String>,
    pub value: Option<i64>,
    pub disposition: String,
    pub actor: String,
}

/// A recorded change of rule settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RuleChangeRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub scope: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What a ticket opened for an alarm looks like.
#[derive(Debug, Clone)]
pub struct TicketSpec {
    /// `sensor_alarm`, `sensor_fault`, `offline`.
    pub source: &'static str,
    /// `electrical_fire` (电气火灾隐患), `device_fault` (设备故障), ….
    pub category: &'static str,
    /// `general` (一般隐患) or `major` (重大隐患).
    pub grade: &'static str,
    /// Number prefix: `YH` for hazards, `GZ` for faults.
    pub prefix: &'static str,
    pub title: String,
    pub location: String,
    /// A ticket on the same key closed less than this long ago is reopened
    /// instead of opening a new one (the hazard came back).
    pub reopen_window_ms: u64,
}

/// What happened to the ticket when an alarm was raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum TicketOutcome {
    Opened {
        id: i64,
        number: String,
    },
    /// The hazard recurred within the window after 销号: its ticket is back in 整改中.
    Reopened {
        id: i64,
        number: String,
    },
    Attached {
        id: i64,
        number: String,
    },
    AlreadyLinked {
        id: i64,
    },
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AlarmRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    /// Empty for node- and site-level alarms (offline, supply, uplink).
    pub channel: String,
    /// {quantity}_high, {quantity}_low, {quantity}_rise, fault, offline, supply, uplink.
    pub cause: String,
    #[schema(schema_with = crate::api::openapi::alarm_kind)]
    pub kind: String,
    #[schema(schema_with = crate::api::openapi::alarm_level)]
    pub level: String,
    #[schema(schema_with = crate::api::openapi::alarm_state)]
    pub state: String,
    #[schema(schema_with = crate::api::openapi::quantity)]
    pub quantity: Option<String>,
    /// In the quantity's wire unit.
    pub value: Option<i64>,
    pub setpoint: Option<i64>,
    pub peak: Option<i64>,
    pub raised_at: i64,
    pub updated_at: i64,
    pub cleared_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub ticket_id: Option<i64>,
    /// Raised while its root cause (node offline, supply failure, site uplink
    /// lost) stood: shown, not notified, no ticket.
    #[sqlx(try_from = "Flag")]
    pub suppressed: bool,
    /// The channel is flapping (抖动): its swings are logged, not notified.
    #[sqlx(try_from = "Flag")]
    pub flapping: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TicketRow {
    pub id: i64,
    /// 编号: YH… hazards, GZ… device faults, LX… nodes or sites offline.
    pub number: String,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub cause: String,
    #[schema(schema_with = crate::api::openapi::ticket_source)]
    pub source: String,
    #[schema(schema_with = crate::api::openapi::ticket_category)]
    pub category: String,
    #[schema(value_type = crate::ticket::Grade)]
    pub grade: String,
    #[schema(value_type = crate::ticket::Status)]
    pub status: String,
    pub title: String,
    pub location: String,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub alarm_count: i64,
    pub last_alarm_at: i64,
    #[sqlx(try_from = "Flag")]
    pub sensor_sourced: bool,
    /// 时限 in force.
    pub deadline: Option<i64>,
    pub responsible_unit: Option<String>,
    pub responsible_person: Option<String>,
    pub measures: Option<String>,
    pub funds: Option<String>,
    pub contingency_plan: Option<String>,
    pub supervisor: Option<String>,
    pub document_no: Option<String>,
    pub listed_at: Option<i64>,
    pub delisted_at: Option<i64>,
    pub rectified_at: Option<i64>,
    #[sqlx(try_from = "Flag")]
    pub reviewed: bool,
    pub extension_requested: Option<i64>,
    /// When the deadline was found passed (逾期).
    pub overdue_at: Option<i64>,
    /// Who the overdue ticket was escalated to.
    pub escalated_to: Option<String>,
}

impl TicketRow {
    /// What the closed loop's state machine needs of this ticket.
    pub fn machine(&self) -> crate::ticket::Ticket {
        use crate::ticket::{Grade, Status};
        let at = |t: Option<i64>| t.map(|d| d.max(0) as u64);
        crate::ticket::Ticket {
            status: Status::from_code(&self.status).unwrap_or(Status::PendingRegistration),
            grade: Grade::from_code(&self.grade).unwrap_or(Grade::General),
            sensor_sourced: self.sensor_sourced,
            deadline: at(self.deadline),
            rectified_at: at(self.rectified_at),
            extension_requested: at(self.extension_requested),
            reviewed: self.reviewed,
            closed_at: at(self.closed_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TicketEventRow {
    pub id: i64,
    pub ticket_id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Option<crate::ticket::Status>)]
    pub from_status: Option<String>,
    #[schema(value_type = Option<crate::ticket::Status>)]
    pub to_status: Option<String>,
    pub note: String,
    pub role: Option<String>,
    /// The step as JSON.
    pub details: Option<String>,
}

/// Which alarms to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmFilter {
    /// Not cleared: active or latched awaiting reset.
    Standing,
    Active,
    Latched,
    Cleared,
    All,
}

/// Raw figures of a monthly report, per site.
#[derive(Debug, Clone)]
pub struct ReportFigures {
    /// (site, alarm kind, count raised in the period).
    pub alarms: Vec<(String, String, i64)>,
    /// (site, opened, closed, overdue, open at the end, mean hours to close).
    pub tickets: Vec<(String, i64, i64, i64, i64, Option<f64>)>,
    /// 重大 hazards open at some point in the period.
    pub major: Vec<TicketRow>,
}

/// A note or file attached to a ticket as evidence.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Evidence)]
pub struct EvidenceRow {
    pub id: i64,
    pub ticket_id: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    #[schema(schema_with = crate::api::openapi::evidence_kind)]
    pub kind: String,
    pub media_type: Option<String>,
    pub size: Option<i64>,
    /// SHA-256; GET /api/v1/evidence/{hash}.
    pub content_hash: Option<String>,
    pub note: String,
}

/// A reading kept with an open ticket (关联读数).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = TicketReading)]
pub struct TicketReadingRow {
    pub id: i64,
    pub ticket_id: i64,
    /// When the reading was taken (ms since the epoch).
    pub at: i64,
    pub quantity: String,
    /// In the quantity's wire unit.
    pub value: i64,
    /// The channel status on the wire: ok, open, short, range, fault.
    pub status: String,
    /// The rules' level after this reading: normal, pre_alarm, alarm.
    pub level: String,
    /// Status not ok, or level not normal.
    #[sqlx(try_from = "Flag")]
    pub abnormal: bool,
}

/// One notification delivery attempt, to log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NotificationLog {
    /// When it was attempted (ms since the epoch).
    pub at: i64,
    pub site: String,
    /// The channel's name; `-` when the site has no route for the tier.
    pub channel: String,
    /// What it was about: `alarm:12:raised:duty`, `alarm:12:escalated:manager`,
    /// `ticket:3:overdue:bureau`, …
    pub subject: String,
    pub alarm_id: Option<i64>,
    pub ticket_id: Option<i64>,
    /// delivered, rate_limited, refused, failed, gave_up, unrouted.
    pub outcome: String,
    /// The vendor's code and message.
    pub detail: String,
    /// How many messages the send carried (a group: “…等 N 条报警”).
    pub group_size: i64,
    pub attempt: i64,
    pub text: String,
}

/// A logged notification delivery attempt (推送记录).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Notification)]
pub struct NotificationRow {
    pub id: i64,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub log: NotificationLog,
}

/// A channel's latest measured reading (updated every minute).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = LatestReading)]
pub struct LatestRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    /// In the quantity's wire unit.
    pub value: i64,
    /// When it was taken (ms since the epoch).
    pub at: i64,
}

/// A day's maximum of one channel (China days), for trends.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = DailyMax)]
pub struct DailyMaxRow {
    pub node: String,
    pub channel: String,
    /// `YYYY-MM-DD`, China time.
    #[sqlx(skip)]
    pub day: String,
    /// Start of the day, ms since the epoch.
    pub day_start: i64,
    /// The day's maximum, in the quantity's wire unit.
    pub max: i64,
    /// Readings that day.
    pub count: i64,
}

/// A handover note (交接班记录).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = ShiftNote)]
pub struct ShiftNoteRow {
    pub id: i64,
    /// When it was written (ms since the epoch).
    pub at: i64,
    pub site: String,
    /// Who wrote it.
    pub author: String,
    /// Their role code.
    pub role: String,
    pub text: String,
}

/// A node self-test (自检) as recorded.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SelfTestRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    /// `command` or `test_key` ([`crate::selftest::Trigger`]).
    pub mode: String,
    pub requested_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `passed` or `failed`.
    pub result: String,
    /// Per-channel results, a JSON array of [`crate::selftest::ChannelResult`].
    pub channels: String,
    /// Why the whole test failed, when it is not one channel's reason.
    pub reason: Option<String>,
}

/// A learned baseline as recorded (JSON of [`crate::baseline::Baseline`]
/// and [`crate::baseline::Recommendation`]).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BaselineRow {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub learned_at: i64,
    pub baseline: String,
    pub recommendation: Option<String>,
}

/// A setpoint change as recorded; the newest per channel is in force.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = SetpointChange)]
pub struct SetpointRow {
    pub id: i64,
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub pre_alarm: Option<i64>,
    pub alarm: i64,
    /// `recommendation` (推荐定值 applied) or `manual`.
    pub source: String,
    pub applied_by: String,
    pub role: String,
    pub applied_at: i64,
}

/// A channel's first hour of readings (`channel_hourly`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChannelFirst {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: String,
    pub first_hour: i64,
}

const SETPOINT_COLUMNS: &str =
    "id, site, node, channel, quantity, pre_alarm, alarm, source, applied_by, role, applied_at";

const SELFTEST_COLUMNS: &str =
    "id, site, node, mode, requested_by, started_at, finished_at, result, channels, reason";

/// A reading to keep with the open tickets of its channel.
#[derive(Debug, Clone)]
pub struct LinkedReading<'a> {
    pub site: &'a str,
    pub node: &'a str,
    pub channel: &'a str,
    pub quantity: &'a str,
    pub value: i32,
    pub status: &'a str,
    pub level: &'a str,
    pub abnormal: bool,
    pub at: u64,
}

/// Filters of the ledger export.
#[derive(Debug, Clone)]
pub struct LedgerQuery {
    pub site: Option<String>,
    /// The caller's jurisdiction: only these sites (`None` = every site).
    pub sites: Option<Vec<String>>,
    /// Opened at or after (ms).
    pub from: Option<i64>,
    /// Opened before (ms).
    pub to: Option<i64>,
    pub status: TicketFilter,
    pub grade: Option<String>,
    pub limit: i64,
}

/// Which tickets to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketFilter {
    Open,
    Closed,
    All,
    Status(String),
}

impl TicketFilter {
    /// `open`, `closed`, `all`, or one status code of [`TICKET_STATUSES`].
    pub fn parse(s: &str) -> Option<TicketFilter> {
        match s {
            "open" => Some(TicketFilter::Open),
            "closed" => Some(TicketFilter::Closed),
            "all" => Some(TicketFilter::All),
            code if TICKET_STATUSES.iter().any(|(c, _)| *c == code) => {
                Some(TicketFilter::Status(code.to_string()))
            }
            _ => None,
        }
    }

    /// The SQL condition, with `placeholder` where a status code is bound,
    /// and the code to bind there.
    fn condition(&self, placeholder: &str) -> (String, Option<&str>) {
        match self {
            TicketFilter::Open => ("status <> 'closed'".into(), None),
            TicketFilter::Closed => ("status = 'closed'".into(), None),
            TicketFilter::All => ("1 = 1".into(), None),
            TicketFilter::Status(s) => (format!("status = {placeholder}"), Some(s.as_str())),
        }
    }
}

/// Ticket statuses of the closed loop, in order, with their Chinese names.
pub const TICKET_STATUSES: &[(&str, &str)] = &[
    ("pending_registration", "待登记"),
    ("registered", "已登记"),
    ("listed", "已挂牌"),
    ("rectifying", "整改中"),
    ("pending_review", "待复查"),
    ("pending_acceptance", "待验收"),
    ("closed", "已销号"),
];

/// The status a ticket opened from telemetry starts in.
pub const INITIAL_STATUS: &str = "pending_registration";

const ALARM_COLUMNS: &str =
    "id, site, node, channel, cause, kind, level, state, quantity, value, setpoint, peak, \
     raised_at, updated_at, cleared_at, acked_at, acked_by, ticket_id, suppressed, flapping";
const TICKET_COLUMNS: &str =
    "id, number, site, node, channel, cause, source, category, grade, status, title, \
     location, opened_at, updated_at, closed_at, alarm_count, last_alarm_at, sensor_sourced, deadline, \
     responsible_unit, responsible_person, measures, funds, contingency_plan, supervisor, document_no, \
     listed_at, delisted_at, rectified_at, reviewed, extension_requested, overdue_at, escalated_to";

/// Why a ticket transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no such ticket")]
    NotFound,
    #[error("{0}")]
    Refused(#[from] crate::ticket::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TransitionError {
    fn from(e: sqlx::Error) -> Self {
        TransitionError::Store(StoreError::Db(e))
    }
}

/// Who acts on a ticket, and why.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub role: crate::ticket::Role,
    pub note: &'a str,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user with this login exists")]
    Exists,
    #[error("{0}")]
    Password(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UserError {
    fn from(e: sqlx::Error) -> Self {
        UserError::Store(StoreError::Db(e))
    }
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
}

/// An entry for the hash-chained audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: u64,
    pub actor: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub subject: String,
    pub details: String,
}

async fn append_audit(tx: &mut Transaction<'_, Any>, e: &AuditEntry<'_>) -> Result<(), StoreError> {
    let last: Option<(i64, String)> =
        query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, crate::audit::GENESIS.to_string()),
    };
    let at = e.at as i64;
    let hash = crate::audit::hash(
        &prev, id, at, e.actor, e.role, e.action, &e.subject, &e.details,
    );
    query(
        "INSERT INTO audit_log (id, at, actor, role, action, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(at)
    .bind(e.actor)
    .bind(e.role)
    .bind(e.action)
    .bind(&e.subject)
    .bind(&e.details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH`, created if needed, or
    /// `postgres://…`) and runs the backend's migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            if !rest.starts_with(':') && !rest.is_empty() {
                let path = rest.split('?').next().unwrap_or(rest);
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
        Ok(Store {
            pool: pool.clone(),
            shared: pool,
            reserved,
            backend,
            audit_lock: Default::default(),
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
        self.shared.close().await;
        self.reserved.close().await;
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Raises (or updates) the standing alarm for `a.key`; with a ticket spec,
    /// links it to the open ticket for the same key, opening one if there is
    /// none. One transaction.
    pub async fn raise(
        &self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        // A concurrent writer may win the unique index between our read and
        // insert; the second attempt then finds its row and attaches.
        match self.raise_once(a, ticket).await {
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.raise_once(a, ticket).await
            }
            other => other,
        }
    }

    async fn raise_once(
        &self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let mut b = self.batch().await?;
        let out = b.raise(a, ticket).await?;
        b.commit().await?;
        Ok(out)
    }

    /// Moves the standing alarm for `key` to `latched` or `cleared`. Returns
    /// the row, or `None` when nothing was standing.
    pub async fn settle(
        &self,
        key: &AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let mut b = self.batch().await?;
        let row = b.settle(key, state, value, at).await?;
        b.commit().await?;
        Ok(row)
    }

    /// Changes the level of a standing alarm (e.g. 报警 back to 预警).
    pub async fn set_level(
        &self,
        key: &AlarmKey,
        level: &'static str,
        value: i32,
        at: u64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.set_level(key, level, value, at).await?;
        b.commit().await
    }

    /// Appends a rule transition to the alarm log.
    pub async fn log_transition(&self, e: &LogEntry<'_>) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.log_transition(e).await?;
        b.commit().await
    }

    /// The alarm log of a site (and node), newest first.
    pub async fn alarm_log(
        &self,
        site: &str,
        node: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlarmLogRow>, StoreError> {
        Ok(query_as(
            "SELECT id, at, site, node, channel, cause, transition, level, value, disposition, actor FROM alarm_log \
             WHERE site = ? AND (? IS NULL OR node = ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(site)
        .bind(node)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One alarm by id.
    pub async fn alarm(&self, id: i64) -> Result<Option<AlarmRow>, StoreError> {
        Ok(
            query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Standing alarms with `cause` (e.g. every node's `offline`), of one site or all.
    pub async fn standing_with_cause(
        &self,
        site: Option<&str>,
        cause: &str,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE (? IS NULL OR site = ?) AND cause = ? AND state <> 'cleared' ORDER BY id"
        );
        Ok(query_as(&sql)
            .bind(site)
            .bind(site)
            .bind(cause)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Marks standing alarms of a site with `cause` suppressed (their root
    /// cause is now reported higher up, e.g. the site's uplink).
    pub async fn suppress_standing(
        &self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError> {
        let mut b = self.batch().await?;
        let n = b.suppress_standing(site, cause, at).await?;
        b.commit().await?;
        Ok(n)
    }

    /// Marks the standing alarm for `key` as flapping or not.
    pub async fn set_flapping(
        &self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let mut b = self.batch().await?;
        let row = b.set_flapping(key, flapping, at).await?;
        b.commit().await?;
        Ok(row)
    }

    /// Standing alarms of a node (or, with `node` empty, of a site's
    /// node-level causes) that were raised suppressed.
    pub async fn suppressed_standing(
        &self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        // Read in a transaction of its own, rolled back when dropped.
        self.batch().await?.suppressed_standing(site, node).await
    }

    /// Lifts the suppression of a standing alarm once its root cause has
    /// gone; with a ticket spec, links it to a ticket as a new raise would.
    pub async fn unsuppress(
        &self,
        id: i64,
        ticket: Option<&TicketSpec>,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        self.link_ticket(id, ticket, true, at).await
    }

    /// Links a standing alarm to a ticket (opening, attaching or reopening
    /// one), optionally lifting its suppression first.
    pub async fn link_ticket(
        &self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let mut b = self.batch().await?;
        let out = b.link_ticket(id, ticket, unsuppress, at).await?;
        b.commit().await?;
        Ok(out)
    }

    /// Standing node- or site-level offline alarms raised before `before`,
    /// not suppressed and without a ticket: due a 离线 ticket.
    pub async fn offline_due_ticket(&self, before: u64) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE cause IN ('offline', 'uplink') AND state <> 'cleared' \
             AND suppressed = FALSE AND ticket_id IS NULL AND raised_at <= ? ORDER BY id"
        );
        Ok(query_as(&sql)
            .bind(before as i64)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Flags open tickets whose deadline has passed (逾期) and escalates
    /// each to its supervising unit (or the bureau), once; returns them.
    pub async fn mark_overdue(&self, now: u64) -> Result<Vec<TicketRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let due: Vec<TicketRow> = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE status <> 'closed' AND deadline IS NOT NULL \
             AND deadline < ? AND overdue_at IS NULL ORDER BY id"
        ))
        .bind(now as i64)
        .fetch_all(&mut *tx)
        .await?;
        for t in &due {
            let to = t
                .supervisor
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "民政局".to_string());
            query(
                "UPDATE tickets SET overdue_at = ?, escalated_to = ?, updated_at = ? WHERE id = ?",
            )
            .bind(now as i64)
            .bind(&to)
            .bind(now as i64)
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
            add_event(
                &mut tx,
                t.id,
                now as i64,
                "overdue",
                None,
                None,
                &format!("escalated to {to}"),
            )
            .await?;
            let entry = AuditEntry {
                at: now,
                actor: "system",
                role: "system",
                action: "ticket.overdue",
                subject: format!("ticket:{}", t.id),
                details: serde_json::json!({ "deadline": t.deadline, "escalated_to": to })
                    .to_string(),
            };
            append_audit(&mut tx, &entry).await?;
        }
        let ids: Vec<i64> = due.iter().map(|t| t.id).collect();
        let mut out = Vec::new();
        for id in ids {
            out.push(
                query_as(&format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?,
            );
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Compares the rule settings in force with those last recorded and
    /// records every difference as a change by `actor` (审计). Returns the
    /// changes recorded.
    pub async fn sync_rule_settings(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
        actor: &str,
        at: u64,
    ) -> Result<Vec<RuleChangeRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let old: Vec<(String, String)> = query_as("SELECT scope, settings FROM rule_settings")
            .fetch_all(&mut *tx)
            .await?;
        let old: std::collections::BTreeMap<String, String> = old.into_iter().collect();
        let mut changes = Vec::new();
        let scopes: std::collections::BTreeSet<&String> =
            old.keys().chain(settings.keys()).collect();
        for scope in scopes {
            let (before, after) = (old.get(scope), settings.get(scope));
            if before == after {
                continue;
            }
            let id: i64 = query_scalar(
                "INSERT INTO rule_changes (at, actor, scope, old, new) VALUES (?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(at as i64)
            .bind(actor)
            .bind(scope)
            .bind(before)
            .bind(after)
            .fetch_one(&mut *tx)
            .await?;
            match after {
                Some(new) => {
                    query(
                        "INSERT INTO rule_settings (scope, settings, updated_at) VALUES (?, ?, ?) \
                         ON CONFLICT (scope) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                    )
                    .bind(scope)
                    .bind(new)
                    .bind(at as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    query("DELETE FROM rule_settings WHERE scope = ?")
                        .bind(scope)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let entry = AuditEntry {
                at,
                actor,
                role: "config",
                action: "rules.change",
                subject: format!("rules:{scope}"),
                details: serde_json::json!({ "old": before, "new": after }).to_string(),
            };
            append_audit(&mut tx, &entry).await?;
            changes.push(RuleChangeRow {
                id,
                at: at as i64,
                actor: actor.to_string(),
                scope: scope.clone(),
                old: before.cloned(),
                new: after.cloned(),
            });
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// Recorded rule changes, newest first.
    pub async fn rule_changes(&self, limit: i64) -> Result<Vec<RuleChangeRow>, StoreError> {
        Ok(query_as(
            "SELECT id, at, actor, scope, old, new FROM rule_changes ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Standing alarms, newest first; `limit` caps the list.
    pub async fn alarms(
        &self,
        filter: AlarmFilter,
        limit: i64,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        self.alarms_in(filter, None, limit).await
    }

    /// Alarms of some sites only (`None` = every site), newest first: the
    /// jurisdiction is applied in the query, before the limit.
    pub async fn alarms_in(
        &self,
        filter: AlarmFilter,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let cond = match filter {
            AlarmFilter::Standing => "state <> 'cleared'",
            AlarmFilter::Active => "state = 'active'",
            AlarmFilter::Latched => "state = 'latched'",
            AlarmFilter::Cleared => "state = 'cleared'",
            AlarmFilter::All => "1 = 1",
        };
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE {cond} \
             AND (?1 IS NULL OR {site_in}) ORDER BY raised_at DESC, id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Saves a channel's rule state (JSON of `rules::ChannelState`).
    pub async fn save_channel_state(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        quantity: &str,
        state: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.save_channel_state(site, node, channel, quantity, state, at)
            .await?;
        b.commit().await
    }

    /// Every node's saved de-duplication window: (site, node, state).
    pub async fn node_seqs(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(query_as("SELECT site, node, state FROM node_seq")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every saved channel state: (site, node, channel, quantity, state JSON).
    pub async fn channel_states(
        &self,
    ) -> Result<Vec<(String, String, String, String, String)>, StoreError> {
        Ok(
            query_as("SELECT site, node, channel, quantity, state FROM channel_state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Keeps a reading with every open ticket on its channel; returns how
    /// many tickets it was linked to (0 when none is open).
    pub async fn link_reading(&self, r: &LinkedReading<'_>) -> Result<u64, StoreError> {
        let mut b = self.batch().await?;
        let n = b.link_reading(r).await?;
        b.commit().await?;
        Ok(n)
    }

    /// A ticket's linked readings, the newest `limit`, oldest first.
    pub async fn ticket_readings(
        &self,
        ticket_id: i64,
        limit: i64,
    ) -> Result<Vec<TicketReadingRow>, StoreError> {
        let mut rows: Vec<TicketReadingRow> = query_as(
            "SELECT id, ticket_id, at, quantity, value, status, level, abnormal FROM ticket_readings \
             WHERE ticket_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(ticket_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Logs notification delivery attempts, in one transaction.
    pub async fn log_notifications(&self, rows: &[NotificationLog]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for r in rows {
            query(
                "INSERT INTO notification_log (at, site, channel, subject, alarm_id, ticket_id, outcome, detail, \
                 group_size, attempt, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.at)
            .bind(&r.site)
            .bind(&r.channel)
            .bind(&r.subject)
            .bind(r.alarm_id)
            .bind(r.ticket_id)
            .bind(&r.outcome)
            .bind(&r.detail)
            .bind(r.group_size)
            .bind(r.attempt)
            .bind(&r.text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether an alarm's first notice was delivered somewhere.
    pub async fn notified(&self, alarm_id: i64) -> Result<bool, StoreError> {
        let n: i64 = query_scalar(
            "SELECT COUNT(*) FROM notification_log WHERE alarm_id = ? AND outcome = 'delivered'",
        )
        .bind(alarm_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Notification attempts of some sites (`None` = every site), newest first.
    pub async fn notifications_in(
        &self,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT id, at, site, channel, subject, alarm_id, ticket_id, outcome, detail, group_size, attempt, text \
             FROM notification_log WHERE (?1 IS NULL OR {site_in}) ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Merges hourly aggregates into `channel_hourly`, in one transaction.
    pub async fn merge_rollups(
        &self,
        rows: &[(crate::rollup::Key, crate::rollup::Agg)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (k, a) in rows {
            query(
                "INSERT INTO channel_hourly (site, node, channel, quantity, hour, min, max, sum, count) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, node, channel, hour) DO UPDATE SET \
                 quantity = excluded.quantity, \
                 min = CASE WHEN excluded.min < channel_hourly.min THEN excluded.min ELSE channel_hourly.min END, \
                 max = CASE WHEN excluded.max > channel_hourly.max THEN excluded.max ELSE channel_hourly.max END, \
                 sum = channel_hourly.sum + excluded.sum, count = channel_hourly.count + excluded.count",
            )
            .bind(&k.site)
            .bind(&k.node)
            .bind(&k.channel)
            .bind(&k.quantity)
            .bind(k.hour)
            .bind(a.min)
            .bind(a.max)
            .bind(a.sum)
            .bind(a.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records each channel's latest reading, keeping a newer one stored.
    pub async fn save_latest(
        &self,
        rows: &[((String, String, String), crate::rollup::Last)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for ((site, node, channel), (quantity, value, at)) in rows {
            query(
                "INSERT INTO channel_latest (site, node, channel, quantity, value, at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (site, node, channel) DO UPDATE SET quantity = excluded.quantity, \
                 value = excluded.value, at = excluded.at WHERE excluded.at >= channel_latest.at",
            )
            .bind(site)
            .bind(node)
            .bind(channel)
            .bind(quantity)
            .bind(*value)
            .bind(*at as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest reading of every channel of some sites (`None` = all).
    pub async fn latest_in(&self, sites: Option<&[String]>) -> Result<Vec<LatestRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        Ok(query_as(&format!(
            "SELECT site, node, channel, quantity, value, at FROM channel_latest \
             WHERE (?1 IS NULL OR {site_in}) ORDER BY site, node, channel"
        ))
        .bind(sites_json(sites))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Weekly counts since `from` (a week start), for some sites (`None` =
    /// all): (week start, what, count), where `what` is an alarm kind, or
    /// `opened`/`closed`/`overdue` for tickets. Weeks start Monday 00:00
    /// China time.
    pub async fn weekly_counts(
        &self,
        sites: Option<&[String]>,
        from: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        // time::week_start_cst, in SQL (times are never negative here).
        use crate::time::{WEEK_MS as WEEK, WEEK_SQL_SHIFT_MS as SHIFT};
        let bucket = |col: &str| format!("((({col} + {SHIFT}) / {WEEK}) * {WEEK} - {SHIFT})");
        let site_in = self.backend.site_in("?1");
        let mut out = Vec::new();
        let alarms = format!(
            "SELECT {b} AS w, kind, COUNT(*) FROM alarms WHERE raised_at >= ?2 AND (?1 IS NULL OR {site_in}) \
             GROUP BY {b}, kind",
            b = bucket("raised_at")
        );
        out.extend(
            query_as::<(i64, String, i64)>(&alarms)
                .bind(sites_json(sites))
                .bind(from)
                .fetch_all(&self.pool)
                .await?,
        );
        for (what, col) in [
            ("opened", "opened_at"),
            ("closed", "closed_at"),
            ("overdue", "overdue_at"),
        ] {
            let sql = format!(
                "SELECT {b} AS w, COUNT(*) FROM tickets WHERE {col} >= ?2 AND (?1 IS NULL OR {site_in}) GROUP BY {b}",
                b = bucket(col)
            );
            let rows: Vec<(i64, i64)> = query_as(&sql)
                .bind(sites_json(sites))
                .bind(from)
                .fetch_all(&self.pool)
                .await?;
            out.extend(rows.into_iter().map(|(w, n)| (w, what.to_string(), n)));
        }
        Ok(out)
    }

    /// The figures behind each site's risk grade, for sites with any.
    pub async fn risk_figures(
        &self,
        since: i64,
    ) -> Result<std::collections::BTreeMap<String, crate::risk::Figures>, StoreError> {
        let tickets: Vec<(String, i64, i64, i64, i64)> = query_as(
            "SELECT site, COUNT(*), \
             COUNT(CASE WHEN category IN ('electrical_fire', 'fire_facility') THEN 1 END), \
             COUNT(CASE WHEN category IN ('electrical_fire', 'fire_facility') AND grade = 'major' THEN 1 END), \
             COUNT(CASE WHEN overdue_at IS NOT NULL THEN 1 END) \
             FROM tickets WHERE status <> 'closed' GROUP BY site",
        )
        .fetch_all(&self.pool)
        .await?;
        let alarms: Vec<(String, i64)> = query_as(
            "SELECT site, COUNT(*) FROM alarms WHERE raised_at >= ? AND level = 'alarm' \
             AND kind IN ('electrical_fire', 'fire_facility') GROUP BY site",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::BTreeMap<String, crate::risk::Figures> = Default::default();
        for (site, open, hazards, major, overdue) in tickets {
            let f = out.entry(site).or_default();
            (f.open, f.hazards, f.major, f.overdue) = (open, hazards, major, overdue);
        }
        for (site, n) in alarms {
            out.entry(site).or_default().recent_alarms = n;
        }
        Ok(out)
    }

    /// Each channel's daily maximum of `quantity` at a site over `[from, to)`
    /// (ms, aligned to China days by the caller), oldest day first.
    pub async fn daily_max(
        &self,
        site: &str,
        quantity: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<DailyMaxRow>, StoreError> {
        // time::day_start_cst, in SQL: China days start at 16:00 UTC.
        use crate::time::{CST_OFFSET_MS as CST, DAY_MS as DAY};
        let mut rows: Vec<DailyMaxRow> = query_as(&format!(
            "SELECT node, channel, ((hour + {CST}) / {DAY}) * {DAY} - {CST} AS day_start, \
             MAX(max) AS max, CAST(SUM(count) AS BIGINT) AS count FROM channel_hourly \
             WHERE site = ? AND quantity = ? AND hour >= ? AND hour < ? \
             GROUP BY node, channel, ((hour + {CST}) / {DAY}) ORDER BY day_start, node, channel"
        ))
        .bind(site)
        .bind(quantity)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for r in &mut rows {
            r.day = crate::time::day_cst(r.day_start);
        }
        Ok(rows)
    }

    /// Appends a handover note and audits it.
    pub async fn add_shift_note(
        &self,
        site: &str,
        author: &str,
        role: &str,
        text: &str,
        at: u64,
    ) -> Result<ShiftNoteRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: ShiftNoteRow = query_as(
            "INSERT INTO shift_log (at, site, author, role, text) VALUES (?, ?, ?, ?, ?) \
             RETURNING id, at, site, author, role, text",
        )
        .bind(at as i64)
        .bind(site)
        .bind(author)
        .bind(role)
        .bind(text)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: author,
            role,
            action: "shift.note",
            subject: format!("site:{site}"),
            details: serde_json::json!({ "note": row.id, "text": text }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Handover notes of some sites (`None` = every site), newest first.
    pub async fn shift_notes_in(
        &self,
        sites: Option<&[String]>,
        site: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ShiftNoteRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT id, at, site, author, role, text FROM shift_log \
             WHERE (?1 IS NULL OR {site_in}) AND (?3 IS NULL OR site = ?3) ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .bind(site)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records a self-test starting (and who asked, in the audit log).
    pub async fn start_selftest(
        &self,
        site: &str,
        node: &str,
        mode: &str,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<i64, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let (id,): (i64,) = query_as(
            "INSERT INTO selftests (site, node, mode, requested_by, started_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(site)
        .bind(node)
        .bind(mode)
        .bind(by)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "node.selftest",
            subject: format!("node:{site}/{node}"),
            details: serde_json::json!({ "selftest": id, "mode": mode }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Records a self-test's end, once.
    pub async fn finish_selftest(
        &self,
        id: i64,
        at: u64,
        passed: bool,
        channels_json: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.finish_selftest(id, at, passed, channels_json, reason)
            .await?;
        b.commit().await
    }

    pub async fn selftest(&self, id: i64) -> Result<Option<SelfTestRow>, StoreError> {
        let sql = format!("SELECT {SELFTEST_COLUMNS} FROM selftests WHERE id = ?");
        Ok(query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    /// Self-tests of some sites (`None` = every site), newest first;
    /// `node` narrows to one node of `site`.
    pub async fn selftests_in(
        &self,
        sites: Option<&[String]>,
        site: Option<&str>,
        node: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SelfTestRow>, StoreError> {
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {SELFTEST_COLUMNS} FROM selftests \
             WHERE (?1 IS NULL OR {site_in}) AND (?3 IS NULL OR site = ?3) AND (?4 IS NULL OR node = ?4) \
             ORDER BY id DESC LIMIT ?2"
        );
        Ok(query_as(&sql)
            .bind(sites_json(sites))
            .bind(limit)
            .bind(site)
            .bind(node)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Residual-current and temperature channels with their first hour of
    /// readings, for the channels with no learned baseline yet.
    pub async fn channels_to_learn(&self) -> Result<Vec<ChannelFirst>, StoreError> {
        Ok(query_as(
            "SELECT h.site, h.node, h.channel, MIN(h.quantity) AS quantity, MIN(h.hour) AS first_hour \
             FROM channel_hourly h \
             WHERE h.quantity IN ('residual_current', 'temperature') AND NOT EXISTS (SELECT 1 FROM baselines b \
               WHERE b.site = h.site AND b.node = h.node AND b.channel = h.channel) \
             GROUP BY h.site, h.node, h.channel",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A channel's hourly rollups in `[from, to)`.
    pub async fn channel_hours(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<crate::baseline::Hour>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = query_as(
            "SELECT hour, min, max, sum, count FROM channel_hourly \
             WHERE site = ? AND node = ? AND channel = ? AND hour >= ? AND hour < ? ORDER BY hour",
        )
        .bind(site)
        .bind(node)
        .bind(channel)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, min, max, sum, count)| crate::baseline::Hour {
                hour,
                min,
                max,
                sum,
                count,
            })
            .collect())
    }

    /// Records a learned baseline, once per channel (a second record is a
    /// no-op: the first one stands).
    pub async fn save_baseline(&self, row: &BaselineRow) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.save_baseline(row).await?;
        b.commit().await
    }

    /// Learned baselines of one site.
    pub async fn baselines(&self, site: &str) -> Result<Vec<BaselineRow>, StoreError> {
        Ok(query_as(
            "SELECT site, node, channel, quantity, learned_at, baseline, recommendation \
             FROM baselines WHERE site = ? ORDER BY node, channel",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a setpoint change, with its audit record, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_setpoint(
        &self,
        site: &str,
        node: &str,
        channel: &str,
        quantity: &str,
        pre_alarm: Option<i64>,
        alarm: i64,
        source: &str,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<SetpointRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let old: Option<SetpointRow> = query_as(&format!(
            "SELECT {SETPOINT_COLUMNS} FROM setpoints WHERE site = ? AND node = ? AND channel = ? \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(site)
        .bind(node)
        .bind(channel)
        .fetch_optional(&mut *tx)
        .await?;
        let row: SetpointRow = query_as(&format!(
            "INSERT INTO setpoints (site, node, channel, quantity, pre_alarm, alarm, source, applied_by, role, applied_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SETPOINT_COLUMNS}"
        ))
        .bind(site)
        .bind(node)
        .bind(channel)
        .bind(quantity)
        .bind(pre_alarm)
        .bind(alarm)
        .bind(source)
        .bind(by)
        .bind(role)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "rule.setpoint",
            subject: format!("channel:{site}/{node}/{channel}"),
            details: serde_json::json!({
                "quantity": quantity,
                "source": source,
                "old": old.map(|o| serde_json::json!({ "pre_alarm": o.pre_alarm, "alarm": o.alarm })),
                "new": { "pre_alarm": pre_alarm, "alarm": alarm },
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The setpoints in force: the newest change per channel.
    pub async fn setpoints_in_force(&self) -> Result<Vec<SetpointRow>, StoreError> {
        Ok(query_as(&format!(
            "SELECT {SETPOINT_COLUMNS} FROM setpoints s WHERE id = \
             (SELECT MAX(id) FROM setpoints t WHERE t.site = s.site AND t.node = s.node AND t.channel = s.channel) \
             ORDER BY site, node, channel"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the site manager's sign-off of a commissioning report (the
    /// report itself is kept as signed), with its audit record.
    pub async fn sign_commissioning(
        &self,
        site: &str,
        by: &str,
        role: &str,
        note: &str,
        report: &crate::commissioning::Report,
        at: u64,
    ) -> Result<crate::commissioning::SignOff, StoreError> {
        let sha = report.sha256();
        let json = serde_json::to_string(report).unwrap_or_default();
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: crate::commissioning::SignOff = query_as(
            "INSERT INTO commissioning_signoffs (site, signed_by, signed_at, note, report_sha256, report) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id, site, signed_by, signed_at, note, report_sha256",
        )
        .bind(site)
        .bind(by)
        .bind(at as i64)
        .bind(note)
        .bind(&sha)
        .bind(&json)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor: by,
            role,
            action: "commissioning.sign_off",
            subject: format!("site:{site}"),
            details: serde_json::json!({
                "signoff": row.id, "report_sha256": sha, "note": note,
                "channels": report.channels, "selftest_passed": report.selftest_passed,
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A site's commissioning sign-offs, oldest first.
    pub async fn commissioning_signoffs(
        &self,
        site: &str,
    ) -> Result<Vec<crate::commissioning::SignOff>, StoreError> {
        Ok(query_as(
            "SELECT id, site, signed_by, signed_at, note, report_sha256 FROM commissioning_signoffs \
             WHERE site = ? ORDER BY id",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends one operator action to the hash-chained audit log.
    pub async fn audit(&self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        let mut b = self.batch().await?;
        b.audit(e).await?;
        b.commit().await
    }

    /// Verifies the audit chain: how many records are intact and the head
    /// hash (note it down: a truncation at the end is only caught by
    /// comparing with a head noted before), or where it breaks.
    pub async fn verify_audit(
        &self,
    ) -> Result<Result<(u64, String), crate::audit::Broken>, StoreError> {
        let records = self.audit_records().await?;
        Ok(crate::audit::verify(&records).map(|n| {
            (
                n,
                records
                    .last()
                    .map_or(crate::audit::GENESIS.to_string(), |r| r.hash.clone()),
            )
        }))
    }

    /// Creates a user; the password is hashed here (argon2id).
    pub async fn add_user(
        &self,
        login: &str,
        name: &str,
        role: crate::ticket::Role,
        sites: Option<&[String]>,
        password: &str,
        at: u64,
    ) -> Result<i64, UserError> {
        let hash = crate::auth::hash_password(password).map_err(UserError::Password)?;
        let sites = sites.map_or("*".to_string(), |s| s.join(","));
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let id: i64 = query_scalar(
            "INSERT INTO users (login, name, role, sites, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(login)
        .bind(name)
        .bind(crate::auth::role_code(role))
        .bind(&sites)
        .bind(&hash)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Exists,
            e => UserError::Store(e.into()),
        })?;
        let entry = AuditEntry {
            at,
            actor: "admin",
            role: "admin",
            action: "user.add",
            subject: format!("user:{login}"),
            details: serde_json::json!({ "name": name, "role": crate::auth::role_code(role), "sites": sites }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Checks a login and opens a session; returns the bearer token and the user.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        now: u64,
    ) -> Result<Option<(String, crate::auth::User)>, StoreError> {
        let row: Option<(i64, String, String, String, String, Flag)> = query_as(
            "SELECT id, name, role, sites, password_hash, disabled FROM users WHERE login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        // Verified on a blocking thread (argon2 is tens of ms of CPU); a
        // disabled or unknown login against a dummy hash, so timing does
        // not tell which logins exist.
        let stored = match &row {
            Some((.., hash, Flag(false))) => Some(hash.clone()),
            _ => None,
        };
        let ok = sessions::verify_off_worker(password, stored).await;
        let Some((id, name, role, sites, _, _)) = row.filter(|_| ok) else {
            return Ok(None);
        };
        let Some(role) = crate::auth::parse_role(&role) else {
            return Ok(None);
        };
        let token =
            crate::auth::new_token().map_err(|e| StoreError::Db(sqlx::Error::Protocol(e)))?;
        query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(crate::auth::token_hash(&token))
            .bind(id)
            .bind(now as i64)
            .bind((now + crate::auth::SESSION_MS) as i64)
            .execute(&self.pool)
            .await?;
        self.prune_sessions(now).await?;
        let user = crate::auth::User {
            id,
            login: login.to_string(),
            name,
            role,
            sites: crate::auth::parse_sites(&sites),
        };
        Ok(Some((token, user)))
    }

    /// The user a bearer token belongs to, while the session lasts.
    pub async fn user_by_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<crate::auth::User>, StoreError> {
        let row: Option<(i64, String, String, String, String)> = query_as(
            "SELECT u.id, u.login, u.name, u.role, u.sites FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = FALSE",
        )
        .bind(crate::auth::token_hash(token))
        .bind(now as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(id, login, name, role, sites)| {
            Some(crate::auth::User {
                id,
                login,
                name,
                role: crate::auth::parse_role(&role)?,
                sites: crate::auth::parse_sites(&sites),
            })
        }))
    }

    /// The whole audit log, in order.
    pub async fn audit_records(&self) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        Ok(query_as(
            "SELECT id, at, actor, role, action, subject, details, prev_hash, hash FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the duty officer's acknowledgement (确认) of an alarm; the first
    /// acknowledgement counts. `None` when there is no such alarm.
    pub async fn ack(&self, id: i64, by: &str, at: u64) -> Result<Option<AlarmRow>, StoreError> {
        self.ack_as(id, by, "duty", at).await
    }

    /// [`Store::ack`] by someone in `role` (a role code), for the audit trail.
    pub async fn ack_as(
        &self,
        id: i64,
        by: &str,
        role: &str,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let first =
            query("UPDATE alarms SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL")
                .bind(at as i64)
                .bind(by)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if first > 0 {
            let entry = AuditEntry {
                at,
                actor: by,
                role,
                action: "alarm.ack",
                subject: format!("alarm:{id}"),
                details: "{}".into(),
            };
            append_audit(&mut tx, &entry).await?;
        }
        let row = query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Since when the channel behind a ticket has been normal: no standing
    /// alarm, pre-alarm or fault on it, and its node not offline or on
    /// battery. `None` while anything stands.
    async fn normal_since(
        tx: &mut Transaction<'_, Any>,
        t: &TicketRow,
    ) -> Result<Option<u64>, StoreError> {
        let (standing, last_cleared): (i64, Option<i64>) = query_as(
            "SELECT COUNT(CASE WHEN state <> 'cleared' THEN 1 END), MAX(cleared_at) FROM alarms \
             WHERE site = ? AND node = ? AND (channel = ? OR channel = '')",
        )
        .bind(&t.site)
        .bind(&t.node)
        .bind(&t.channel)
        .fetch_one(&mut **tx)
        .await?;
        if standing > 0 {
            return Ok(None);
        }
        Ok(Some(last_cleared.unwrap_or(t.opened_at).max(0) as u64))
    }

    /// Drives a ticket one step through the closed loop: checks the step
    /// with the pure state machine (role, status, data proof), then records
    /// the new state and the step (who, role, when, why, what) in one
    /// transaction.
    pub async fn transition_ticket(
        &self,
        id: i64,
        action: &crate::ticket::Action,
        actor: &Actor<'_>,
        policy: &crate::ticket::Policy,
        now: u64,
    ) -> Result<TicketRow, TransitionError> {
        use crate::ticket::{self, Action, DataProof};
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let row: TicketRow = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(TransitionError::NotFound)?;
        let current = row.machine();
        let proof = DataProof {
            normal_since: Self::normal_since(&mut tx, &row).await?,
        };
        let next = match ticket::apply(&current, action, actor.role, proof, policy, now) {
            Ok(n) => n,
            // Name the offending alarms, so the person sees what the data says.
            Err(ticket::Refusal::DataNotProven { reason }) => {
                let standing: Vec<AlarmRow> = query_as(&format!(
                    "SELECT {ALARM_COLUMNS} FROM alarms WHERE site = ? AND node = ? AND (channel = ? OR channel = '') \
                     AND state <> 'cleared' ORDER BY id"
                ))
                .bind(&row.site)
                .bind(&row.node)
                .bind(&row.channel)
                .fetch_all(&mut *tx)
                .await?;
                let offending: Vec<String> = standing
                    .iter()
                    .map(|a| {
                        let q = a.quantity.as_deref().unwrap_or("");
                        let value = a
                            .value
                            .map(|v| format!(" {}", crate::labels::value(q, v)))
                            .unwrap_or_default();
                        let place = if a.channel.is_empty() {
                            a.node.clone()
                        } else {
                            format!("{}/{}", a.node, a.channel)
                        };
                        format!(
                            "{place} {}{}{value}（{}，{}起）",
                            crate::labels::quantity(q),
                            crate::labels::level(&a.level),
                            crate::labels::alarm_state(&a.state),
                            crate::time::minute_cst(a.raised_at)
                        )
                    })
                    .collect();
                let mut reason = if offending.is_empty() {
                    reason
                } else {
                    format!("{reason}；仍存在：{}", offending.join("；"))
                };
                // And the abnormal readings since the rectification report.
                let since = row.rectified_at.unwrap_or(row.opened_at);
                let readings: Vec<TicketReadingRow> = query_as(
                    "SELECT id, ticket_id, at, quantity, value, status, level, abnormal FROM ticket_readings \
                     WHERE ticket_id = ? AND at >= ? AND abnormal = TRUE ORDER BY at DESC, id DESC LIMIT 5",
                )
                .bind(id)
                .bind(since)
                .fetch_all(&mut *tx)
                .await?;
                if !readings.is_empty() {
                    let listed: Vec<String> = readings
                        .iter()
                        .map(|r| {
                            let what = if r.status != "ok" {
                                format!("传感器{}", crate::labels::channel_status(&r.status))
                            } else {
                                crate::labels::level(&r.level).to_string()
                            };
                            format!(
                                "{} {} {}（{what}）",
                                crate::time::minute_cst(r.at),
                                crate::labels::quantity(&r.quantity),
                                crate::labels::value(&r.quantity, r.value),
                            )
                        })
                        .collect();
                    reason = format!("{reason}；整改后异常读数：{}", listed.join("；"));
                }
                return Err(ticket::Refusal::DataNotProven { reason }.into());
            }
            Err(e) => return Err(e.into()),
        };
        let at = now as i64;
        let opt = |v: Option<u64>| v.map(|x| x as i64);
        query(
            "UPDATE tickets SET status = ?, grade = ?, deadline = ?, rectified_at = ?, reviewed = ?, \
             extension_requested = ?, closed_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(next.status.code())
        .bind(next.grade.code())
        .bind(opt(next.deadline))
        .bind(opt(next.rectified_at))
        .bind(next.reviewed)
        .bind(opt(next.extension_requested))
        .bind(opt(next.closed_at))
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        match action {
            Action::StartRectification { plan } => {
                query(
                    "UPDATE tickets SET responsible_unit = ?, responsible_person = ?, measures = ?, funds = ?, \
                     contingency_plan = ? WHERE id = ?",
                )
                .bind(&plan.responsible_unit)
                .bind(&plan.responsible_person)
                .bind(&plan.measures)
                .bind(&plan.funds)
                .bind(&plan.contingency_plan)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            Action::List {
                supervisor,
                document_no,
                ..
            } => {
                query("UPDATE tickets SET supervisor = ?, document_no = ?, listed_at = ? WHERE id = ?")
                    .bind(supervisor)
                    .bind(document_no)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            // 摘牌: a listed hazard is delisted when accepted.
            Action::Accept { passed: true } => {
                query("UPDATE tickets SET delisted_at = ? WHERE id = ?")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        let details = serde_json::to_string(action).unwrap_or_default();
        query(
            "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note, role, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(at)
        .bind(actor.name)
        .bind(action.code())
        .bind(current.status.code())
        .bind(next.status.code())
        .bind(actor.note)
        .bind(serde_json::to_value(actor.role).ok().and_then(|v| v.as_str().map(str::to_string)))
        .bind(&details)
        .execute(&mut *tx)
        .await?;
        let role = serde_json::to_value(actor.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let entry = AuditEntry {
            at: now,
            actor: actor.name,
            role: &role,
            action: &format!("ticket.{}", action.code()),
            subject: format!("ticket:{id}"),
            details: serde_json::json!({ "from": current.status.code(), "to": next.status.code(), "step": action, "note": actor.note }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        let row = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Tickets, newest first.
    pub async fn tickets(
        &self,
        filter: &TicketFilter,
        limit: i64,
    ) -> Result<Vec<TicketRow>, StoreError> {
        self.tickets_in(filter, None, limit).await
    }

    /// Tickets of some sites only (`None` = every site), newest first: the
    /// jurisdiction is applied in the query, before the limit.
    pub async fn tickets_in(
        &self,
        filter: &TicketFilter,
        sites: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<TicketRow>, StoreError> {
        let (cond, status) = filter.condition("?3");
        let site_in = self.backend.site_in("?1");
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE {cond} \
             AND (?1 IS NULL OR {site_in}) ORDER BY opened_at DESC, id DESC LIMIT ?2"
        );
        let q = query_as(&sql).bind(sites_json(sites)).bind(limit);
        let q = match status {
            Some(s) => q.bind(s),
            None => q,
        };
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Tickets for the ledger (台账), oldest first, filtered by site, the
    /// caller's jurisdiction, the period they were opened in, status and
    /// grade; the jurisdiction is applied in the query, before the limit.
    pub async fn ledger(&self, q: &LedgerQuery) -> Result<Vec<TicketRow>, StoreError> {
        let (status_cond, status) = q.status.condition("?7");
        let site_in = self.backend.site_in("?6");
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE {status_cond} AND (?1 IS NULL OR site = ?1) \
             AND (?6 IS NULL OR {site_in}) \
             AND (?2 IS NULL OR opened_at >= ?2) AND (?3 IS NULL OR opened_at < ?3) AND (?4 IS NULL OR grade = ?4) \
             ORDER BY opened_at, id LIMIT ?5"
        );
        let query = query_as(&sql)
            .bind(q.site.as_deref())
            .bind(q.from)
            .bind(q.to)
            .bind(q.grade.as_deref())
            .bind(q.limit)
            .bind(sites_json(q.sites.as_deref()));
        let query = match status {
            Some(s) => query.bind(s),
            None => query,
        };
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Figures of the monthly report for `[from, to)`, per site (one site,
    /// or all when `site` is `None`).
    pub async fn report_figures(
        &self,
        site: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<ReportFigures, StoreError> {
        let alarms: Vec<(String, String, i64)> = query_as(
            "SELECT site, kind, COUNT(*) FROM alarms WHERE raised_at >= ? AND raised_at < ? AND (? IS NULL OR site = ?) \
             GROUP BY site, kind ORDER BY site, kind",
        )
        .bind(from)
        .bind(to)
        .bind(site)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        let tickets: Vec<(String, i64, i64, i64, i64, Option<f64>)> = query_as(
            "SELECT site, \
               COUNT(CASE WHEN opened_at >= ?1 AND opened_at < ?2 THEN 1 END), \
               COUNT(CASE WHEN closed_at >= ?1 AND closed_at < ?2 THEN 1 END), \
               COUNT(CASE WHEN overdue_at IS NOT NULL AND overdue_at < ?2 AND (closed_at IS NULL OR closed_at >= ?1) THEN 1 END), \
               COUNT(CASE WHEN opened_at < ?2 AND (closed_at IS NULL OR closed_at >= ?2) THEN 1 END), \
               CAST(AVG(CASE WHEN closed_at >= ?1 AND closed_at < ?2 THEN (closed_at - opened_at) / 3600000.0 END) AS DOUBLE PRECISION) \
             FROM tickets WHERE (?3 IS NULL OR site = ?3) GROUP BY site ORDER BY site",
        )
        .bind(from)
        .bind(to)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        let major = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE grade = 'major' AND opened_at < ? \
             AND (closed_at IS NULL OR closed_at >= ?) AND (? IS NULL OR site = ?) ORDER BY site, opened_at"
        ))
        .bind(to)
        .bind(from)
        .bind(site)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        Ok(ReportFigures {
            alarms,
            tickets,
            major,
        })
    }

    /// Attaches evidence to a ticket (the file, if any, is already stored
    /// under its content hash) and audits it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_evidence(
        &self,
        ticket_id: i64,
        actor: &str,
        role: &str,
        file: Option<(&str, i64, &str)>,
        note: &str,
        at: u64,
    ) -> Result<EvidenceRow, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let (media_type, size, hash) = match file {
            Some((m, n, h)) => (Some(m), Some(n), Some(h)),
            None => (None, None, None),
        };
        let id: i64 = query_scalar(
            "INSERT INTO ticket_evidence (ticket_id, at, actor, role, kind, media_type, size, content_hash, note) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ticket_id)
        .bind(at as i64)
        .bind(actor)
        .bind(role)
        .bind(if file.is_some() { "file" } else { "note" })
        .bind(media_type)
        .bind(size)
        .bind(hash)
        .bind(note)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            at,
            actor,
            role,
            action: "ticket.evidence",
            subject: format!("ticket:{ticket_id}"),
            details: serde_json::json!({ "media_type": media_type, "size": size, "sha256": hash, "note": note }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        let row = query_as(
            "SELECT id, ticket_id, at, actor, role, kind, media_type, size, content_hash, note FROM ticket_evidence WHERE id = ?",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A ticket's evidence, oldest first.
    pub async fn evidence(&self, ticket_id: i64) -> Result<Vec<EvidenceRow>, StoreError> {
        Ok(query_as(
            "SELECT id, ticket_id, at, actor, role, kind, media_type, size, content_hash, note FROM ticket_evidence \
             WHERE ticket_id = ? ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The media type of a stored file and the sites of the tickets it is
    /// evidence for (to check jurisdiction before serving it).
    pub async fn evidence_file(
        &self,
        hash: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let rows: Vec<(String, String)> = query_as(
            "SELECT e.media_type, t.site FROM ticket_evidence e JOIN tickets t ON t.id = e.ticket_id \
             WHERE e.content_hash = ? AND e.media_type IS NOT NULL",
        )
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        let Some((media, _)) = rows.first().cloned() else {
            return Ok(None);
        };
        Ok(Some((media, rows.into_iter().map(|(_, s)| s).collect())))
    }

    /// One ticket with its audit trail and linked alarms.
    pub async fn ticket(
        &self,
        id: i64,
    ) -> Result<Option<(TicketRow, Vec<TicketEventRow>, Vec<AlarmRow>)>, StoreError> {
        let ticket: Option<TicketRow> = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        let events = query_as(
            "SELECT id, ticket_id, at, actor, action, from_status, to_status, note, role, details FROM ticket_events \
             WHERE ticket_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let alarms = query_as(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE ticket_id = ? ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((ticket, events, alarms)))
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

async fn alarm_by_id(tx: &mut Transaction<'_, Any>, id: i64) -> Result<AlarmRow, StoreError> {
    Ok(
        query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut **tx)
            .await?,
    )
}

async fn open_or_attach(
    tx: &mut Transaction<'_, Any>,
    k: &AlarmKey,
    spec: &TicketSpec,
    alarm_id: i64,
    at: i64,
) -> Result<TicketOutcome, StoreError> {
    // The open ticket, if any (one per key by a partial unique index),
    // counted and found in one statement.
    let open: Option<(i64, String)> = query_as(
        "UPDATE tickets SET alarm_count = alarm_count + 1, last_alarm_at = ?, updated_at = ? \
         WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND status <> 'closed' RETURNING id, number",
    )
    .bind(at)
    .bind(at)
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((id, number)) = open {
        add_event(
            tx,
            id,
            at,
            "alarm_attached",
            None,
            None,
            &format!("alarm #{alarm_id}"),
        )
        .await?;
        return Ok(TicketOutcome::Attached { id, number });
    }
    let recent: Option<(i64, String)> = query_as(
        "SELECT id, number FROM tickets WHERE site = ? AND node = ? AND channel = ? AND cause = ? \
         AND status = 'closed' AND closed_at >= ? ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .bind(at.saturating_sub(spec.reopen_window_ms as i64))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((id, number)) = recent {
        query(
            "UPDATE tickets SET status = 'rectifying', closed_at = NULL, reviewed = FALSE, rectified_at = NULL, \
             alarm_count = alarm_count + 1, last_alarm_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(at)
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        let note = format!("hazard recurred: alarm #{alarm_id}");
        add_event(
            tx,
            id,
            at,
            "reopened",
            Some("closed"),
            Some("rectifying"),
            &note,
        )
        .await?;
        let entry = AuditEntry {
            at: at as u64,
            actor: "system",
            role: "system",
            action: "ticket.reopen",
            subject: format!("ticket:{id}"),
            details: serde_json::json!({ "alarm": alarm_id }).to_string(),
        };
        append_audit(tx, &entry).await?;
        return Ok(TicketOutcome::Reopened { id, number });
    }
    // The number needs the row id; insert with a placeholder unique to this
    // transaction, then set it.
    let placeholder = format!("pending-{alarm_id}-{at}");
    let id: i64 = query_scalar(
        "INSERT INTO tickets (number, site, node, channel, cause, source, category, grade, status, title, location, \
         opened_at, updated_at, alarm_count, last_alarm_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
    )
    .bind(&placeholder)
    .bind(&k.site)
    .bind(&k.node)
    .bind(&k.channel)
    .bind(&k.cause)
    .bind(spec.source)
    .bind(spec.category)
    .bind(spec.grade)
    .bind(INITIAL_STATUS)
    .bind(&spec.title)
    .bind(&spec.location)
    .bind(at)
    .bind(at)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    let number = format!(
        "{}{}-{id:05}",
        spec.prefix,
        crate::time::date_cst(at as u64)
    );
    query("UPDATE tickets SET number = ? WHERE id = ?")
        .bind(&number)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    add_event(
        tx,
        id,
        at,
        "opened",
        None,
        Some(INITIAL_STATUS),
        &format!("opened automatically by alarm #{alarm_id}"),
    )
    .await?;
    Ok(TicketOutcome::Opened { id, number })
}

async fn add_event(
    tx: &mut Transaction<'_, Any>,
    ticket_id: i64,
    at: i64,
    action: &str,
    from: Option<&str>,
    to: Option<&str>,
    note: &str,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note) \
         VALUES (?, ?, 'system', ?, ?, ?, ?)",
    )
    .bind(ticket_id)
    .bind(at)
    .bind(action)
    .bind(from)
    .bind(to)
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
