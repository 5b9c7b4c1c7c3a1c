//! The local SQLite store: one file in the app's data dir, WAL, foreign keys on,
//! migrations embedded in the binary.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/client");

pub const DB_FILE: &str = "guestpass.db";

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: String,
    /// This opening's CRDT actor (records): fresh and random every time the store is
    /// opened, never persisted. A data folder copied to another machine, or restored
    /// from a backup, therefore never writes under an actor that already wrote there
    /// (Automerge requires one writer per actor: two writers reusing one actor would
    /// number different changes alike and corrupt the documents). The cost is one
    /// 16-byte actor per opening in the documents it edits.
    actor: automerge::ActorId,
    /// Pulled changes a note takes before a snapshot replaces its log
    /// (`records/compact.rs`); tests lower it to exercise compaction often.
    compact_after: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Store {
    /// Opens (creating if absent) `guestpass.db` in `data_dir` and brings its schema up
    /// to date. A damaged or unwritable file is reported and left exactly as it was.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(DB_FILE);
        let shown = path.display().to_string();
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return Err(Error::DatabaseReadOnly {
                path: format!("{shown} ({e})"),
            });
        }
        // Two app instances starting at once on a new device: one creates the file,
        // switches it to WAL and migrates while the other waits. SQLite's own locking
        // does not cover that sequence (the WAL switch can answer BUSY at once, and
        // the migrator does not serialise processes); an OS file lock does.
        let _opening = lock_file(data_dir.join("guestpass.lock"), &shown).await?;
        check_header(&path)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| Error::Database(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL under WAL is durable across app crashes; only an OS crash can lose
            // the last transactions, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            // A second app instance waits for the writer instead of failing.
            .busy_timeout(Duration::from_secs(10))
            // Deleted content is overwritten, not just unlinked: a pushed change leaves
            // the outbox, an edited note's old document is replaced, and "remove my
            // data from this computer" must leave none of its text in the file.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|conn, _| Box::pin(async move { Ok(settled(conn).await) }))
            .connect_with(opts)
            .await
            .map_err(|e| Error::from_sqlx(&shown, e))?;
        if let Err(e) = MIGRATOR.run(&pool).await {
            // No file of the store stays open behind a refused open ("Try again").
            pool.close().await;
            return Err(match e {
                sqlx::migrate::MigrateError::Execute(inner) => Error::from_sqlx(&shown, inner),
                // An applied migration this build lacks: a newer app migrated the file.
                // The migrator checks that before it applies anything, so the file is
                // left exactly as it was.
                sqlx::migrate::MigrateError::VersionMissing(_) => Error::DatabaseTooNew {
                    path: shown.clone(),
                },
                other => Error::from_sqlx(&shown, sqlx::Error::Migrate(Box::new(other))),
            });
        }
        Ok(Self {
            pool,
            path: shown,
            actor: automerge::ActorId::random(),
            compact_after: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
                crate::records::COMPACT_AFTER,
            )),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    pub(crate) fn actor(&self) -> &automerge::ActorId {
        &self.actor
    }

    /// Compacts a note's log after `n` pulled changes instead of the default
    /// (for tests and benchmarks: the default makes it rare in short runs).
    #[doc(hidden)]
    pub fn set_compact_after(&self, n: i64) {
        self.compact_after
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn compact_after(&self) -> i64 {
        self.compact_after
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> Error {
        Error::from_sqlx(&self.path, e)
    }

    /// A write transaction that takes SQLite's write lock up front, so a
    /// read-then-write (e.g. "is there a guest yet?") cannot race another instance.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))
    }

    /// Closes every connection; when this returns, no file of the store is open.
    pub async fn close(&self) {
        // sqlx's close can return early: a connection dropped just before is handed
        // back by a task of its own, and may reach the idle queue after close swept
        // it. (A data dir then could not be remounted read-only: the files were
        // still open.) Closing again until no connection is left settles it.
        loop {
            self.pool.close().await;
            if self.pool.size() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Whether a connection handed back to the pool is fit to be used again. When a
/// write fails with SQLITE_FULL inside a transaction, SQLite may roll the whole
/// transaction back itself; sqlx's ROLLBACK for the dropped transaction then fails
/// ("no transaction is active") and it keeps counting the transaction as open, so
/// every later `BEGIN` on that connection is refused. Such a connection is closed
/// (the pool opens a fresh one) instead of poisoning the store until a restart.
async fn settled(conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::TransactionManager;
    type Tm = sqlx::sqlite::SqliteTransactionManager;
    if Tm::get_transaction_depth(conn) == 0 {
        return true;
    }
    // The dropped transaction's rollback is queued on this connection ahead of
    // this ping, so after it the depth is final.
    if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
        return false;
    }
    Tm::get_transaction_depth(conn) == 0
}

/// Holds an exclusive lock on `path` until dropped. A failure names the database
/// (`shown`), which is what the person knows, not the lock file beside it.
async fn lock_file(path: PathBuf, shown: &str) -> Result<std::fs::File> {
    let shown = shown.to_owned();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| Error::Database(e.to_string()))?
    .map_err(|e| Error::DatabaseReadOnly {
        path: format!("{shown} ({e})"),
    })
}

/// Refuses a non-empty file that is not SQLite before SQLite touches it: opening
/// in WAL mode would otherwise try to write to it.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let n = f.read(&mut header).unwrap_or(0);
            if n == 0 || (n == header.len() && &header == b"SQLite format 3\0") {
                Ok(())
            } else {
                Err(Error::DatabaseCorrupt {
                    path: path.display().to_string(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::DatabaseReadOnly {
            path: format!("{} ({e})", path.display()),
        }),
    }
}
