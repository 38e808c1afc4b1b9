//! The control plane's store: calls, transcripts, AI usage, leads, tokens.
//!
//! One [`Store`] talks to MySQL/MariaDB or a SQLite file through sqlx's
//! `Any` driver, so every query is written once; where the two dialects
//! differ (upserts, the integer type of a sum) [`Dialect`] supplies the
//! fragment. Times are milliseconds since the Unix epoch.
//!
//! # Layout
//! - `event.rs`: [`StoreEvent`], what a call produces, with idempotent keys.
//! - `write.rs`: applying a batch of events in one transaction.
//! - `spool.rs`: the fsync'd append-only file events wait in during an outage.
//! - `ends.rs`: the journal that makes a call's end durable before its
//!   socket closes.
//! - `writer.rs`: the writer task and the [`Recorder`] calls hold.
//! - `calls.rs`, `leads.rs`, `stats.rs`, `tokens.rs`: the API's queries.
//! - `migrate.rs`: the embedded migrations of `sql/mysql` and `sql/sqlite`.
//!
//! # Concurrency
//! Calls never wait on the database: they hand events to the writer task
//! through a bounded queue (see [`Recorder`]). The writer is the only task
//! that writes events; the API reads through the same connection pool.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

mod calls;
mod ends;
mod event;
mod leads;
mod migrate;
mod spool;
mod stats;
mod tokens;
mod write;
mod writer;

pub use calls::{AiRow, SegmentRow};
pub use calls::{CallDetail, CallFilter, CallRow, Lookup, Registration, TurnRow};
pub use ends::EndsJournal;
pub use event::{AiRequest, CallEnd, CallStart, Lead, Segment, StoreEvent, Turn};
pub use leads::LeadRow;
pub use leads::{LeadFilter, LeadPatch, LeadStatus};
pub use stats::V2v;
pub use stats::{ProviderCost, Stats};
pub use tokens::{Principal, Role, TokenInfo};
pub use writer::{Orphans, Recorder, WriterHandle, WriterStats, spawn_node_writer, spawn_writer};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed or the database's history does not match ours.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The spool file could not be read or written.
    #[error("spool {path}: {source}")]
    Spool {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pagination cursor was not one we issued.
    #[error("bad cursor")]
    BadCursor,
    /// No such row for this tenant.
    #[error("not found")]
    NotFound,
    /// The requested lead status change is not allowed.
    #[error("a lead cannot go from {from} to {to}")]
    Transition {
        /// The current status.
        from: &'static str,
        /// The requested one.
        to: &'static str,
    },
    /// The row already exists.
    #[error("already exists")]
    Conflict,
}

impl StoreError {
    /// Whether the database is away (retry later) rather than refusing this
    /// statement (retrying would fail the same way).
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Db(e) => is_outage(e),
            _ => false,
        }
    }
}

/// Whether `e` says the database is (for now) unable to take writes,
/// rather than refusing this statement for good.
pub(crate) fn is_outage(e: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = e {
        // SQLite: busy or locked by another process, I/O error, disk full,
        // cannot open the file (primary result codes 5, 6, 10, 13, 14).
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) & 0xff;
            return matches!(code, 5 | 6 | 10 | 13 | 14);
        }
        // MySQL: lock wait timeout, deadlock, server shutting down,
        // read-only (a fail-over in progress), too many connections.
        if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            return matches!(my.number(), 1205 | 1213 | 1053 | 1290 | 1836 | 1040);
        }
        return false;
    }
    !matches!(
        e,
        sqlx::Error::Database(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
    )
}

/// Which SQL the database speaks where MySQL and SQLite differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// `INSERT ... <this>` that ignores a row whose key exists.
    pub(crate) fn ignore_duplicate(self, key: &str) -> String {
        match self {
            Dialect::MySql => format!(" ON DUPLICATE KEY UPDATE {key} = {key}"),
            Dialect::Sqlite => " ON CONFLICT DO NOTHING".to_string(),
        }
    }

    /// The start of an upsert's assignment list on `key`.
    pub(crate) fn on_duplicate(self, key: &str) -> String {
        match self {
            Dialect::MySql => " ON DUPLICATE KEY UPDATE ".to_string(),
            Dialect::Sqlite => format!(" ON CONFLICT({key}) DO UPDATE SET "),
        }
    }

    /// The value an upsert tried to insert into `column`.
    pub(crate) fn new_value(self, column: &str) -> String {
        match self {
            Dialect::MySql => format!("VALUES({column})"),
            Dialect::Sqlite => format!("excluded.{column}"),
        }
    }

    /// An integer expression as a 64-bit integer (MySQL sums are decimals).
    pub(crate) fn int(self, expr: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
            Dialect::Sqlite => expr.to_string(),
        }
    }
}

/// A connection pool and its dialect.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Set-up still owed to a database that was away at start-up; done
    /// before the first write that reaches it.
    pending: Arc<tokio::sync::Mutex<Option<Setup>>>,
}

/// What a daemon does to a database before writing to it.
#[derive(Debug, Clone)]
struct Setup {
    migrate: bool,
    tenant: String,
}

impl Store {
    /// Connects to `url` (`sqlite://FILE`, created if missing, or
    /// `mysql://...`). Fails at once if the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let (dialect, url, options) = pool_options(url);
        let pool = options.connect(&url).await?;
        Ok(Store {
            pool,
            dialect,
            pending: Arc::default(),
        })
    }

    /// The daemon's way in: connects, migrates (if `migrate`) and adds the
    /// default tenant. If the database is away, the store is returned all
    /// the same, with that set-up owed: calls are answered and their
    /// events spooled until it returns.
    pub async fn open(url: &str, migrate: bool, tenant: &str) -> Result<Store, StoreError> {
        let setup = Setup {
            migrate,
            tenant: tenant.to_string(),
        };
        match Store::connect(url).await {
            Ok(store) => {
                store.set_up(&setup).await?;
                Ok(store)
            }
            Err(e) if e.is_outage() => {
                tracing::warn!(error = %e, "database unreachable at start-up: answering calls and spooling their records until it returns");
                let (dialect, url, options) = pool_options(url);
                let pool = options.connect_lazy(&url)?;
                Ok(Store {
                    pool,
                    dialect,
                    pending: Arc::new(tokio::sync::Mutex::new(Some(setup))),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn set_up(&self, setup: &Setup) -> Result<(), StoreError> {
        if setup.migrate {
            let n = self.migrate().await?;
            if n > 0 {
                tracing::info!(applied = n, "store migrated");
            }
        }
        self.ensure_tenant(&setup.tenant).await
    }

    /// Does the set-up owed since start-up, if any; an error means the
    /// database is still away (or refuses the migration).
    pub(crate) async fn ready(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.lock().await;
        if let Some(setup) = pending.as_ref() {
            self.set_up(setup).await?;
            tracing::info!("database reachable: set-up done");
            *pending = None;
        }
        Ok(())
    }

    /// True when the database answered at [`Store::open`] (nothing owed).
    pub(crate) fn reached_at_open(&self) -> bool {
        self.pending.try_lock().is_ok_and(|p| p.is_none())
    }

    /// The dialect of this database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for queries.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The pool settings for `url`, its dialect and the URL sqlx takes.
fn pool_options(url: &str) -> (Dialect, String, AnyPoolOptions) {
    sqlx::any::install_default_drivers();
    let (dialect, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.trim_start_matches("//");
        let sep = if rest.contains('?') { '&' } else { '?' };
        (Dialect::Sqlite, format!("sqlite://{rest}{sep}mode=rwc"))
    } else {
        (Dialect::MySql, url.to_string())
    };
    let options = AnyPoolOptions::new()
        .max_connections(if dialect == Dialect::Sqlite { 4 } else { 8 })
        .acquire_timeout(Duration::from_secs(3))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    // WAL lets the API read while the writer writes.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        });
    (dialect, url, options)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Raw statements for tests and benches. Not part of the API.
#[doc(hidden)]
pub mod testing {
    use sqlx::{AssertSqlSafe, Connection};

    use super::{Store, StoreError, StoreEvent};

    /// Runs one statement of fixed text; returns the rows it changed.
    pub async fn execute(store: &Store, sql: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(AssertSqlSafe(sql.to_string()))
            .execute(store.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// The single integer a query of fixed text returns.
    pub async fn scalar(store: &Store, sql: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
            .fetch_one(store.pool())
            .await?)
    }

    /// Writes events directly (as the writer does); returns how many the
    /// database refused.
    pub async fn write(store: &Store, events: &[StoreEvent]) -> Result<usize, StoreError> {
        Ok(store.write_batch(events).await?.len())
    }

    /// A connection of its own holding `BEGIN EXCLUSIVE` on a SQLite file:
    /// to every other connection the database is locked, as it is while
    /// another process writes to it.
    pub struct SqliteLock(sqlx::AnyConnection);

    impl std::fmt::Debug for SqliteLock {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SqliteLock")
        }
    }

    impl SqliteLock {
        /// Takes the lock on the SQLite database at `url`.
        pub async fn take(url: &str) -> Result<SqliteLock, StoreError> {
            let (_, url, _) = super::pool_options(url);
            let mut c = sqlx::AnyConnection::connect(&url).await?;
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await?;
            Ok(SqliteLock(c))
        }

        /// Lets go.
        pub async fn release(mut self) -> Result<(), StoreError> {
            sqlx::query("COMMIT").execute(&mut self.0).await?;
            Ok(())
        }
    }
}
