//! SQLite connections for the read nearly every request makes (the session lookup
//! behind get-session and every authenticated route), run where the request runs.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement is a
//! hand-off to that thread and back, and its pool pings a connection on the way
//! back (sqlx 0.8 cannot turn that off), from a task spawned for it. For one
//! indexed lookup of some microseconds, those thread wake-ups were the largest
//! cost of get-session (about a quarter of the CPU under load, in `perf`). So the
//! lookup runs on a plain `rusqlite` connection (the same SQLite library, linked
//! once) on the calling thread, which it blocks for about as long as serialising
//! the answer takes. In WAL mode a reader never waits for the writer, so it does
//! not wait behind a sign-in batch or the cleanup either.
//!
//! Connections are opened when first needed and kept on a stack: at most one per
//! thread that reads at once. They are `query_only`: this path never writes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::db::{DbError, DbResult};

pub struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Reads the SQLite file at `path` (already created and migrated).
    pub fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Self {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = open(&self.path, self.busy_timeout)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    /// Runs `read` on a connection of its own. A connection whose read failed is
    /// closed rather than reused.
    pub fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> DbResult<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(unavailable)?,
        };
        let out = read(&conn).map_err(unavailable)?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(out)
    }
}

/// A connection of the server's own beside sqlx's pool, on the file at `path`
/// (already created and migrated); also the WAL checkpoint's (`wal_checkpoint.rs`).
pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

fn unavailable(e: rusqlite::Error) -> DbError {
    DbError::Unavailable(e.to_string())
}
