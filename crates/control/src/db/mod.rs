//! Storage plumbing: one connection type over SQLite and PostgreSQL, the
//! r2d2 pool, per-backend embedded migrations, and write transactions that
//! never fail with `SQLITE_BUSY` under concurrent requests.
//!
//! Nothing here knows about HTTP; `store` builds queries on top of it.

pub mod schema;
pub mod webhook_schema;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::QueryResult;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long an SQLite connection waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// How often the pool's checkpointer copies the WAL back into the database
/// file (see [`Checkpointer`]).
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL frames past which the checkpointer makes the log start over (see
/// [`Checkpointer`]): about a second of writes at 5,000 token verifies/s,
/// 40 MB of WAL at 4 KiB pages.
const SQLITE_RESTART_FRAMES: i64 = 10_000;

/// WAL pages at which a commit checkpoints by itself: only reached when the
/// checkpointer falls behind or is gone (SQLite's default is 1 000).
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// SQLite's own automatic checkpoint threshold, kept where no checkpointer runs.
const SQLITE_DEFAULT_AUTOCHECKPOINT_PAGES: u32 = 1_000;

/// One connection of either backend; diesel's query builder runs on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<DbManager>;
pub type PooledDb = PooledConnection<DbManager>;

/// A parsed `TANDEM_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("database url must start with sqlite:// or postgres:// (got scheme {0:?})")]
    Scheme(String),
    #[error("cannot create the directory for the SQLite file: {0}")]
    Directory(#[from] std::io::Error),
    #[error("cannot open the database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database setup failed: {0}")]
    Migrations(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, DbSetupError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        let scheme = url.split("://").next().unwrap_or_default();
        Err(DbSetupError::Scheme(scheme.chars().take(20).collect()))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

/// r2d2 manager that opens the configured backend and nothing else (diesel's
/// generic manager would try every backend in turn, and SQLite accepts any
/// string as a file name).
#[derive(Debug, Clone)]
pub struct DbManager {
    url: DatabaseUrl,
    /// SQLite: the pool's checkpointer, stopped when the pool is dropped.
    checkpointer: Option<Arc<Checkpointer>>,
}

/// Checkpoints an SQLite file's WAL from a thread of its own.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses its
/// threshold: that commit copies the WAL into the database file and syncs
/// it (several milliseconds) while this process's write turn
/// ([`sqlite_writer`]) is held, so every writer queued behind it waits too.
/// With one-token verifies that was under 1 % of commits; a batch of tokens
/// per commit made it the p99 (one slow commit in ~45 delays five tokens).
/// A passive checkpoint blocks neither readers nor writers, so here it runs
/// every [`SQLITE_CHECKPOINT_EVERY`] on a connection of its own, and commits
/// checkpoint themselves only past [`SQLITE_AUTOCHECKPOINT_PAGES`].
///
/// Passive checkpoints alone never let the log start over under a steady
/// stream of commits: SQLite writes the WAL from its start again only when a
/// transaction begins with every frame copied back, and a commit always
/// lands while a checkpoint runs. The WAL then grew to the commits'
/// threshold, and one commit a second (at 5,000 verifies/s) ran the
/// checkpoint inside itself: 5 to 12 ms with its syncs, every writer of the
/// process waiting (the p99 of single verifies on SQLite). So once the log
/// passes [`SQLITE_RESTART_FRAMES`], the checkpointer takes the process's
/// write turn right after a passive checkpoint and runs another: it copies
/// only the frames of the last few milliseconds, and the next transaction
/// starts the log over. Writers wait for that short second pass only.
#[derive(Debug)]
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Runs on `conn` (the connection that switched the file to WAL).
    fn start(mut conn: SqliteConnection) -> Result<Checkpointer, DbSetupError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SQLITE_CHECKPOINT_EVERY)
                {
                    let done = checkpoint(&mut conn).and_then(|log| {
                        if log.frames < SQLITE_RESTART_FRAMES {
                            return Ok(log);
                        }
                        let _turn = sqlite_writer();
                        checkpoint(&mut conn)
                    });
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| {
                DbSetupError::Migrations(format!("cannot start the SQLite checkpointer: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// What `PRAGMA wal_checkpoint` reports.
#[derive(diesel::QueryableByName, Debug)]
struct WalLog {
    /// Frames in the log.
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = log)]
    frames: i64,
}

/// One passive checkpoint.
fn checkpoint(conn: &mut SqliteConnection) -> Result<WalLog, diesel::result::Error> {
    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Pg)
                .map_err(diesel::r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_string_lossy();
                let mut conn = SqliteConnection::establish(&path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // Set on every connection: these pragmas are per connection.
                // (WAL mode is a property of the file, set once in `connect`.)
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA wal_autocheckpoint = {};",
                    if self.checkpointer.is_some() {
                        SQLITE_AUTOCHECKPOINT_PAGES
                    } else {
                        SQLITE_DEFAULT_AUTOCHECKPOINT_PAGES
                    }
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    /// A connection handed back while its thread unwinds from a panic may be
    /// inside a transaction the panic interrupted (our `BEGIN`s are raw SQL,
    /// unknown to diesel): it is closed instead of pooled, so the next
    /// request never meets "current transaction is aborted" or "cannot start
    /// a transaction within a transaction". Diesel's own transaction state
    /// is checked too.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        if std::thread::panicking() {
            tracing::warn!("a database connection was dropped by a panic; closing it");
            return true;
        }
        match conn {
            DbConnection::Pg(c) => {
                use diesel::connection::{AnsiTransactionManager, TransactionManager};
                let status = <AnsiTransactionManager as TransactionManager<PgConnection>>::transaction_manager_status_mut(c);
                !matches!(status.transaction_depth(), Ok(None))
            }
            DbConnection::Sqlite(_) => false,
        }
    }
}

/// Opens the pool and applies pending migrations of the backend.
pub fn connect(url: &str, max_size: u32) -> Result<(DbPool, DatabaseUrl), DbSetupError> {
    let url = DatabaseUrl::parse(url)?;
    let mut checkpointer = None;
    if let DatabaseUrl::Sqlite(path) = &url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Switch the file to WAL once, before the pool opens connections
        // concurrently (changing the journal mode needs an exclusive lock).
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| {
            DbSetupError::Migrations(format!("cannot open {}: {e}", path.display()))
        })?;
        // Another process opening the same file (a second replica starting
        // at the same moment) can make the switch fail with "database is
        // locked" without waiting out the busy timeout: it is tried again.
        retrying_races("enabling WAL", || {
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL;"
            ))
            .map_err(|e| format!("cannot enable WAL: {e}"))
        })
        .map_err(DbSetupError::Migrations)?;
        checkpointer = Some(Arc::new(Checkpointer::start(conn)?));
    }
    let pool = Pool::builder()
        .max_size(max_size.max(1))
        .connection_timeout(Duration::from_secs(10))
        .build(DbManager {
            url: url.clone(),
            checkpointer,
        })?;
    let mut conn = pool.get()?;
    run_migrations(&mut conn)?;
    Ok((pool, url))
}

/// Opens one connection to `url` without running migrations (for tools that
/// only read, such as `tandem audit verify`).
pub fn open(url: &str) -> Result<DbConnection, DbSetupError> {
    let manager = DbManager {
        url: DatabaseUrl::parse(url)?,
        checkpointer: None,
    };
    manager
        .connect()
        .map_err(|e| DbSetupError::Migrations(format!("cannot open the database: {e}")))
}

/// Key of the PostgreSQL advisory lock that serializes migrations of
/// replicas starting together (any constant shared by all replicas).
const MIGRATION_LOCK: i64 = 0x7461_6e64_656d; // "tandem"
/// Attempts at a start-up step another process starting on the same
/// database can make fail (switching to WAL, migrating).
const MIGRATION_ATTEMPTS: u32 = 10;

/// Runs `step` until it succeeds, at most [`MIGRATION_ATTEMPTS`] times,
/// waiting a little longer after each failure.
fn retrying_races<T>(what: &str, mut step: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut attempt = 1;
    loop {
        match step() {
            Err(e) if attempt < MIGRATION_ATTEMPTS => {
                tracing::info!(attempt, error = %e, "{what} raced with another process; trying again");
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Applies pending migrations. Several replicas may start at once on one
/// database: on PostgreSQL they take turns under an advisory lock; on
/// SQLite the loser of a race fails on the schema the winner created, and
/// simply tries again (and then finds nothing pending).
fn run_migrations(conn: &mut DbConnection) -> Result<(), DbSetupError> {
    let applied =
        retrying_races("migrating", || migrate_once(conn)).map_err(DbSetupError::Migrations)?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

fn migrate_once(conn: &mut DbConnection) -> Result<usize, String> {
    match conn {
        DbConnection::Pg(c) => {
            let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK})");
            c.batch_execute(&lock).map_err(|e| e.to_string())?;
            let applied = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len())
                .map_err(|e| e.to_string());
            let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})");
            let _ = c.batch_execute(&unlock);
            applied
        }
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| e.to_string()),
    }
}

/// Serializes this process's SQLite writers. SQLite admits one writer at a
/// time anyway; without this, a writer that finds the lock taken sleeps in
/// SQLite's busy handler (1 ms, then 2, 5, 10 … ms) instead of being woken
/// when the lock is free, which made the latency tail of concurrent writes
/// (token verifies in a connect storm) several milliseconds long. Other
/// processes on the same file still meet the busy timeout as before.
/// Never held across an await, and write transactions do not nest.
static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the process's SQLite write turn (see [`SQLITE_WRITER`]); hold it
/// around an SQLite write that does not go through [`write_tx`].
pub fn sqlite_writer() -> std::sync::MutexGuard<'static, ()> {
    SQLITE_WRITER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` in a write transaction.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`, so it takes the
/// write lock up front (waiting up to the busy timeout) instead of failing
/// with `SQLITE_BUSY` when a read turns into a write. On PostgreSQL it is an
/// ordinary transaction; callers retry on unique violations where a race is
/// expected.
pub fn write_tx<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Pg(_) => conn.transaction(f),
        DbConnection::Sqlite(_) => {
            let _writer = sqlite_writer();
            conn.batch_execute("BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(value) => match conn.batch_execute("COMMIT") {
                    Ok(()) => Ok(value),
                    Err(e) => {
                        let _ = conn.batch_execute("ROLLBACK");
                        Err(e.into())
                    }
                },
                Err(e) => {
                    let _ = conn.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        }
    }
}

/// Runs `f` in a read-only transaction that sees one consistent snapshot
/// (PostgreSQL: `REPEATABLE READ READ ONLY`; SQLite in WAL mode: a deferred
/// transaction, whose first read fixes the snapshot). Takes no write lock.
pub fn read_tx<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    let begin = match conn {
        DbConnection::Pg(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        DbConnection::Sqlite(_) => "BEGIN DEFERRED",
    };
    conn.batch_execute(begin)?;
    match f(conn) {
        Ok(value) => {
            conn.batch_execute("COMMIT")?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Writes a row by key: `update` first; if it touched nothing, `insert`.
/// Each try is its own write transaction; when a concurrent writer inserts
/// the same key first (a unique violation), the update is tried once more.
pub fn upsert(
    conn: &mut DbConnection,
    mut update: impl FnMut(&mut DbConnection) -> QueryResult<usize>,
    mut insert: impl FnMut(&mut DbConnection) -> QueryResult<usize>,
) -> QueryResult<()> {
    let first = write_tx(conn, |c| {
        if update(c)? == 0 {
            insert(c)?;
        }
        Ok(())
    });
    match first {
        Err(e) if is_unique_violation(&e) => write_tx(conn, |c| update(c).map(|_| ())),
        other => other,
    }
}

/// Whether the error is a unique-constraint violation (a lost race).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests;

/// Cheap liveness probe of the database.
pub fn ping(conn: &mut DbConnection) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT 1").execute(conn).map(|_| ())
}

#[cfg(test)]
mod identity_migration_tests;
