//! lockgate persistence: one store over SQLite (embedded default) or PostgreSQL, chosen by URL.
//!
//! Every row belongs to a locking system. Administrable objects live in one
//! `objects` table (indexed projection columns plus a JSON body), with their
//! references, tags and events beside them. Writes run in one transaction
//! each (`BEGIN IMMEDIATE` on SQLite); updates are optimistic on `version`.

pub mod devices;
pub mod directory;
pub mod events;
pub mod licences;
pub mod lifecycle;
pub mod objects;
pub mod outbox;
pub mod persons;
pub mod plugin_kv;
pub mod reconciliation;
pub mod scim;
mod sql;
pub mod sso;
pub mod systems;
pub mod tokens;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lockgate_model::{ObjectKind, ValidationErrors};
use sqlx::{
    Any, AnyPool, Transaction,
    any::{AnyPoolOptions, install_default_drivers},
};

pub use directory::{DirectorySync, DirectorySyncReport, SyncSkip, SyncedPerson};
pub use objects::{Actor, HiddenCounts, Scope, SearchPage, SearchQuery, Sort, Stored, Summary};
pub use systems::Bootstrap;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything that can go wrong in the store, in terms the API can map to a response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: i64 },
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    #[error("version mismatch: the object is at version {current}")]
    VersionMismatch { current: i64 },
    #[error("{message}")]
    InUse { message: String },
    #[error("{message}")]
    Refused { message: String },
    #[error("unsupported database URL '{0}': use sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    ImportFile(#[from] lockgate_model::employee_csv::FileError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A job transition the rules of `DOMAIN.md` §4 do not allow; nothing was written.
    #[error(transparent)]
    JobRefused(#[from] lockgate_engine::jobs::TransitionRefused),
}

impl StoreError {
    pub(crate) fn not_found(kind: ObjectKind, id: i64) -> Self {
        StoreError::NotFound {
            kind: kind.as_str(),
            id,
        }
    }
}

/// Who changes what, where, and when: the argument group of a write. The application layer
/// (`lockgate-app`) builds it from the request and its injected clock.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub system: lockgate_model::system::LockingSystem,
    /// The caller's domains: objects outside them are not found.
    pub scope: Scope,
    pub actor: Actor,
    pub now: DateTime<Utc>,
}

impl WriteContext {
    /// lockgate itself changing `system` at `now`, in every domain.
    pub fn system(system: &lockgate_model::system::LockingSystem, now: DateTime<Utc>) -> Self {
        Self {
            system: system.clone(),
            scope: Scope::all(),
            actor: Actor::system(),
            now,
        }
    }

    /// The same change in every domain (lockgate's own follow-ups of a caller's change).
    pub fn unscoped(&self) -> Self {
        Self {
            scope: Scope::all(),
            ..self.clone()
        }
    }
}

/// How an update is recorded: the If-Match version, the event's action, and whether
/// lockgate itself changes the object (`trusted`: fields it maintains may change and the
/// kind's transition checks are skipped).
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    pub expected_version: Option<i64>,
    pub action: &'a str,
    pub trusted: bool,
}

impl<'a> Edit<'a> {
    /// An administrator's change (event `updated`).
    pub fn by_admin(expected_version: Option<i64>) -> Self {
        Edit {
            expected_version,
            action: "updated",
            trusted: false,
        }
    }

    /// An administrator's change recorded as `action`.
    pub fn action(action: &'a str) -> Self {
        Edit {
            expected_version: None,
            action,
            trusted: false,
        }
    }

    /// lockgate's own change recorded as `action`.
    pub fn trusted(action: &'a str) -> Self {
        Edit {
            expected_version: None,
            action,
            trusted: true,
        }
    }
}

/// A write transaction (see [`Store::write_tx`]); the application layer holds one across
/// the steps of a use case and commits it.
pub type Tx = Transaction<'static, Any>;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connection settings for [`Store::connect`]. Its `Debug` shows the URL's scheme only
/// (the URL may hold a password).
#[derive(Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.split(':').next().unwrap_or("");
        f.debug_struct("ConnectOptions")
            .field("url", &format_args!("{scheme}:…"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The database behind lockgate.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Backend of a database URL.
pub fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        // Neither the user-info nor the query (either may hold a password).
        Err(StoreError::UnsupportedUrl(
            url.split('@')
                .next_back()
                .unwrap_or("")
                .split('?')
                .next()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect(),
        ))
    }
}

impl Store {
    /// Connect; an SQLite file is created when missing and switched to WAL.
    pub async fn connect(opts: &ConnectOptions) -> Result<Store> {
        install_default_drivers();
        let backend = backend_of(&opts.url)?;
        let mut url = opts.url.clone();
        if backend == Backend::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::Executor::execute(&mut *conn, pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, backend })
    }

    /// Apply pending migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Check the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Begin a write transaction: `BEGIN IMMEDIATE` on SQLite takes the write
    /// lock up front, so concurrent writers queue instead of failing mid-way.
    /// Hold the system's change lock until the transaction ends: reconciliations and job
    /// transitions of one system run one at a time (SQLite's `BEGIN IMMEDIATE` already
    /// serialises every writer; PostgreSQL locks the system's row).
    pub async fn lock_system(tx: &mut Tx, system_id: i64) -> Result<()> {
        if !tx.backend_name().eq_ignore_ascii_case("sqlite") {
            sqlx::query("SELECT id FROM locking_systems WHERE id = $1 FOR UPDATE")
                .bind(system_id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn write_tx(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Timestamp format stored in the database (sortable text, UTC, microseconds).
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp '{s}': {e}")))
}

/// An optional stored timestamp.
pub(crate) fn opt_ts(v: Option<String>) -> Result<Option<DateTime<Utc>>> {
    v.as_deref().map(parse_ts).transpose()
}

/// Case-folded form used for search and uniqueness.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Map a unique-constraint violation to a conflict on `field`; other errors pass through.
pub(crate) fn map_unique(e: sqlx::Error, field: &str, value: &str) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict {
            field: field.into(),
            message: format!("'{value}' is already in use"),
        };
    }
    StoreError::Db(e)
}
