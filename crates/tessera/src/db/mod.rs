//! Storage: one `sqlx::Any` code path for SQLite and PostgreSQL, with embedded reversible
//! migrations (one folder per database where their DDL differs).
//!
//! Queries use `$1`-style placeholders, which both drivers accept, and only the types `Any`
//! carries: integers (timestamps as Unix seconds), text (UUIDs, JSON), blobs and booleans.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::DatabaseConfig;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Per-connection SQLite settings: WAL so readers never wait for the writer, enforced foreign
/// keys, and a busy timeout so concurrent writers queue instead of failing.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                              PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Which database a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default, one instance only.
    Sqlite,
    /// Shared state for any number of instances.
    Postgres,
}

/// Whether connecting may create a missing SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Create the file and its folder (`serve`, `migrate up`).
    IfMissing,
    /// Report a missing file as an error (`check`, `migrate status`).
    Never,
}

/// What can go wrong with the database, phrased for an operator.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's reason.
        source: sqlx::Error,
    },
    /// `check` or `migrate status` on a SQLite file that was never created.
    #[error(
        "SQLite database {} does not exist yet; `tessera migrate up` or `tessera serve` creates it",
        .0.display()
    )]
    Missing(PathBuf),
    /// The folder for the SQLite file could not be made.
    #[error("cannot create the folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A migration failed or the applied history does not match the binary.
    #[error("migration failed: {0}")]
    Migrate(#[from] MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// One applied-or-pending migration, for `tessera migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationState {
    /// Version number (the file prefix).
    pub version: i64,
    /// Human-readable name.
    pub description: String,
    /// Whether it has been applied.
    pub applied: bool,
    /// Applied, but the file in this binary differs from what was applied.
    pub modified: bool,
}

/// The connection pool and what it points at.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite admits one writer at a time and makes the others sleep and retry; writers of
    /// this process queue here instead, in order and without sleeping. Unused on PostgreSQL.
    writer: Arc<Mutex<()>>,
}

/// A parameter of a list's statements (see [`Db::paginate`]).
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A text value.
    Text(&'a str),
    /// An integer value.
    Int(i64),
}

/// The jobs that run on one instance at a time, each under its own PostgreSQL advisory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Sealing and expiring the audit chain.
    AuditChain,
    /// Deleting what can no longer matter (ended sessions, expired deny-list entries).
    Cleanup,
    /// Adding and retiring signing keys.
    KeyRotation,
}

impl Job {
    /// The advisory-lock key: fixed numbers, so instances of different versions agree.
    fn lock_key(self) -> i64 {
        match self {
            Self::KeyRotation => 7_465_737_365,
            Self::Cleanup => 7_465_737_366,
            Self::AuditChain => 7_465_737_367,
        }
    }
}

/// A write transaction: on SQLite it also holds this process's writer turn until it ends.
pub struct WriteTx {
    // Declared first so it ends (commit or rollback on drop) before the turn is released.
    tx: Transaction<'static, Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Makes the writes permanent.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Db {
    /// Connects according to the config; SQLite files and folders are created when `create`
    /// allows it.
    pub async fn connect(config: &DatabaseConfig, create: Create) -> Result<Self, DbError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let url = config.url.expose();
        let backend = if config.url.is_postgres() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let mut connect_url = url.to_string();
        if backend == Backend::Sqlite {
            connect_url = prepare_sqlite(&connect_url, create)?;
        }
        let connect_error = |source| DbError::Connect {
            url: config.url.redacted(),
            source,
        };
        let options = AnyConnectOptions::from_str(&connect_url)
            .map_err(connect_error)?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            // A ping before every checkout doubles the round trips of every query; a dead
            // connection shows itself on its next query instead, and is then dropped.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(Self {
            pool,
            backend,
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// Begins a transaction that writes. Multi-step writes on request paths use this rather
    /// than `pool().begin()`, so SQLite writers wait their turn instead of failing busy.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let turn = self.write_turn().await;
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Begins the write transaction of one run of a singleton `job`, holding its lock until
    /// the transaction ends; `None` when another instance holds it (its run covers this one).
    /// SQLite serves one instance, whose jobs need no lock.
    pub async fn try_job_lock(&self, job: Job) -> Result<Option<WriteTx>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(job.lock_key())
                .fetch_one(&mut *tx)
                .await?;
            if !ours {
                return Ok(None);
            }
        }
        Ok(Some(tx))
    }

    /// Like [`try_job_lock`](Self::try_job_lock), but waits for another instance's run to end
    /// instead of skipping: each run must see what the previous one left.
    pub async fn job_lock(&self, job: Job) -> Result<WriteTx, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(job.lock_key())
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// One page of a count-then-page list: `count_sql` (`SELECT COUNT(*) …`) gives the total,
    /// `rows_sql` (a `SELECT … ORDER BY …`, completed here with `LIMIT` and `OFFSET`) the page,
    /// each row read by `row`. Both statements take `params` as `$1`, `$2`, ….
    pub async fn paginate<T>(
        &self,
        count_sql: &str,
        rows_sql: &str,
        params: &[Param<'_>],
        (limit, offset): (i64, i64),
        row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<(Vec<T>, i64), sqlx::Error> {
        let count = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql.to_owned()));
        let total: i64 = params
            .iter()
            .fold(count, |q, p| match *p {
                Param::Text(text) => q.bind(text),
                Param::Int(n) => q.bind(n),
            })
            .fetch_one(&self.pool)
            .await?;
        let next = params.len() + 1;
        let sql = format!("{rows_sql} LIMIT ${next} OFFSET ${}", next + 1);
        let rows = params
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, p| match *p {
                Param::Text(text) => q.bind(text),
                Param::Int(n) => q.bind(n),
            })
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(row).collect::<Result<_, _>>()?;
        Ok((items, total))
    }

    /// This process's turn to write, for single-statement writes outside a transaction;
    /// `None` (nothing to wait for) on PostgreSQL. Hold it until the statement has run.
    pub async fn write_turn(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(Arc::clone(&self.writer).lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later queries fail. Used at shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Cheapest possible round trip.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Applies every pending migration; returns the versions applied now.
    pub async fn migrate_up(&self) -> Result<Vec<i64>, DbError> {
        let before = self.applied_versions().await.unwrap_or_default();
        self.migrator().run(&self.pool).await?;
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Reverts the `steps` most recently applied migrations; returns the versions reverted.
    pub async fn migrate_down(&self, steps: usize) -> Result<Vec<i64>, DbError> {
        let applied = self.applied_versions().await?;
        let keep = applied.len().saturating_sub(steps);
        let target = if keep == 0 { 0 } else { applied[keep - 1] };
        self.migrator().undo(&self.pool, target).await?;
        Ok(applied[keep..].iter().rev().copied().collect())
    }

    /// Every migration this binary knows, with whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, DbError> {
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table(&self.migrator().table_name)
            .await?;
        let applied = conn
            .list_applied_migrations(&self.migrator().table_name)
            .await?;
        Ok(self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| {
                let done = applied.iter().find(|a| a.version == m.version);
                MigrationState {
                    version: m.version,
                    description: m.description.to_string(),
                    applied: done.is_some(),
                    modified: done.is_some_and(|a| a.checksum != m.checksum),
                }
            })
            .collect())
    }

    /// Whether every migration of this binary is applied, unmodified, and nothing newer is.
    pub async fn schema_is_current(&self) -> Result<bool, DbError> {
        let mut conn = self.pool.acquire().await?;
        let applied = match conn
            .list_applied_migrations(&self.migrator().table_name)
            .await
        {
            Ok(applied) => applied,
            // No bookkeeping table: nothing was ever applied.
            Err(MigrateError::Execute(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let known: Vec<_> = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .collect();
        Ok(applied.len() == known.len()
            && known.iter().all(|m| {
                applied
                    .iter()
                    .any(|a| a.version == m.version && a.checksum == m.checksum)
            }))
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, DbError> {
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table(&self.migrator().table_name)
            .await?;
        let mut versions: Vec<i64> = conn
            .list_applied_migrations(&self.migrator().table_name)
            .await?
            .into_iter()
            .map(|m| m.version)
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }
}

/// Makes sure the SQLite file may be opened as asked and returns the URL to connect with.
fn prepare_sqlite(url: &str, create: Create) -> Result<String, DbError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(url.to_owned());
    };
    match create {
        Create::IfMissing => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        Create::Never if !path.exists() => return Err(DbError::Missing(path)),
        Create::Never => {}
    }
    let mode = match create {
        Create::IfMissing => "rwc",
        Create::Never => "rw",
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}mode={mode}"))
}

/// The file behind a `sqlite:` URL, or `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(Path::new(path).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_map_to_files() {
        assert_eq!(
            sqlite_file("sqlite://./data/tessera.db"),
            Some(PathBuf::from("./data/tessera.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/t.db?cache=shared"),
            Some(PathBuf::from("/var/lib/t.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn both_databases_have_the_same_migration_versions() {
        let versions = |m: &Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, format!("{}", m.description)))
                .collect()
        };
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
        assert!(
            SQLITE_MIGRATIONS
                .iter()
                .filter(|m| m.migration_type.is_up_migration())
                .count()
                >= 1
        );
        assert!(
            SQLITE_MIGRATIONS
                .iter()
                .all(|m| m.migration_type.is_reversible()),
            "every migration has a down script"
        );
    }
}
