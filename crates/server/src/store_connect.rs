//! Opening a database: the pools (sizes, pings, the SQLite pragmas), the embedded
//! migrations, and the stores' own connections for the session lookup and the
//! sign-in writer. Why the pools ping as they do: `store.rs`.

use std::str::FromStr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::coalesce::Coalescer;
use crate::db::{Db, DbError, DbResult};
use crate::pg_readers::PgReaders;
use crate::readers::Readers;
use crate::store::{PostgresStore, SqliteStore};
use crate::store_sessions::{PG_LOOKUPS_ALONE, PG_LOOKUP_BATCH};

/// How a database is opened (`Config::store_options`).
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How long to wait for a connection, and SQLite's busy timeout.
    pub timeout: Duration,
    /// SQLite: the WAL's frames past which the checkpoint task restarts it
    /// (`wal_checkpoint.rs`, `sqliteWalRestartKib`).
    pub wal_restart_frames: i64,
}

/// Opens the database named by `url`, runs the embedded migrations, and returns it.
pub async fn connect(url: &str, options: StoreOptions) -> DbResult<Db> {
    let timeout = options.timeout;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    // Only a connection left idle a while may have been cut
                    // (database restarted): test that one, not every busy one.
                    if meta.idle_for > PG_PING_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await?;
        crate::store::PG_MIGRATIONS.run(&pool).await?;
        Ok(Arc::new(PostgresStore {
            pool,
            readers: PgReaders::new(options, PG_READERS, timeout, PG_PING_IDLE),
            lookups: Coalescer::new(PG_LOOKUPS_ALONE, PG_LOOKUP_BATCH),
            claim_lapse_ms: AtomicI64::new(DEFAULT_CLAIM_LAPSE_MS),
            cleanup_children: tokio::sync::OnceCell::new(),
        }))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(open_sqlite(url, options).await?))
    } else {
        Err(DbError::Unavailable(
            "unsupported database URL: expected sqlite://… or postgres://…".into(),
        ))
    }
}

/// The SQLite store, with its writer's WAL sync and checkpoint task.
pub(crate) async fn open_sqlite(url: &str, options: StoreOptions) -> DbResult<SqliteStore> {
    let (timeout, restart_at) = (options.timeout, options.wal_restart_frames);
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(timeout)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_CONNECTIONS)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .after_release(|conn, _| Box::pin(async move { Ok(settled(conn).await) }))
        .connect_with(options.clone())
        .await?;
    crate::store::SQLITE_MIGRATIONS.run(&pool).await?;
    let wal_sync = crate::wal_sync::WalSync::new(options.get_filename());
    let writer = Arc::new(tokio::sync::Mutex::new(None));
    crate::wal_checkpoint::spawn(options.get_filename(), restart_at, &wal_sync, &writer);
    Ok(SqliteStore {
        pool,
        writer,
        wal_sync,
        record_writes: tokio::sync::Mutex::new(()),
        readers: Readers::new(options.get_filename().to_path_buf(), timeout),
        claim_lapse_ms: AtomicI64::new(DEFAULT_CLAIM_LAPSE_MS),
    })
}

/// Until `set_email_claim_lapse` is called: `emailClaimDays`' default.
const DEFAULT_CLAIM_LAPSE_MS: i64 = crate::config::DEFAULT_EMAIL_CLAIM_DAYS as i64 * 86_400_000;

/// A pooled PostgreSQL connection idle longer than this is pinged before use.
const PG_PING_IDLE: Duration = Duration::from_secs(1);

/// Session lookups on PostgreSQL at once, beside the pool's 10 connections.
const PG_READERS: usize = 8;

/// Each SQLite connection is a thread of sqlx's; readers in WAL mode never wait
/// for the writer, so a few suffice on a small machine.
const SQLITE_CONNECTIONS: u32 = 8;

/// Whether a connection handed back to the pool is fit to be used again. A
/// transaction whose ROLLBACK failed (SQLite had already rolled it back itself, or
/// the request was dropped mid-statement) is still counted as open by sqlx, and
/// the connection may still hold SQLite's write lock: every other writer then
/// waits out its busy timeout and answers 503. Such a connection is closed
/// (closing ends any transaction) and the pool opens a fresh one.
async fn settled(conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::TransactionManager;
    type Tm = sqlx::sqlite::SqliteTransactionManager;
    if Tm::get_transaction_depth(conn) == 0 {
        return true;
    }
    // A dropped transaction's rollback is queued on this connection ahead of this
    // ping, so after it the depth is final.
    if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
        return false;
    }
    let clean = Tm::get_transaction_depth(conn) == 0;
    if !clean {
        tracing::warn!("closed a database connection left inside a transaction");
    }
    clean
}
