//! The SQLite WAL's checkpoints, off the sign-in writer's path.
//!
//! By default the connection whose commit takes the WAL past 1000 pages copies
//! the WAL into the database file right then (fsync the WAL, copy, fsync the
//! database) before it runs anything else. On the sign-in writer that is every
//! batch queued behind it waiting some milliseconds, a few times a second at full
//! load: most of sign-in's p99. So the writer turns its automatic checkpoints off
//! (`wal_autocheckpoint = 0`, `store_guests.rs`) and this task checkpoints
//! instead, on a connection of its own, whenever the writer has committed since
//! the last time. A `PASSIVE` checkpoint never waits for a writer or a reader and
//! never blocks one; it copies what it can, and SQLite restarts the WAL from its
//! start once everything in it is in the database, so the WAL stays small.
//!
//! Durability does not depend on this task: a commit is durable once its WAL
//! frames are synced (`wal_sync.rs`), and a checkpoint syncs the WAL before it
//! copies a frame and the database before the WAL is reused. Other connections
//! (the pool's) keep SQLite's automatic checkpoints, so the WAL is bounded even if
//! this task stopped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use crate::wal_sync::WalSync;

/// How often the task looks for new commits. At full load the writer commits a
/// few hundred pages in this time: a short copy, never a large one.
const EVERY: Duration = Duration::from_millis(100);

/// Starts the task; it ends when the store holding `sync` is dropped.
pub fn spawn(path: PathBuf, busy_timeout: Duration, sync: &Arc<WalSync>) {
    let sync = Arc::downgrade(sync);
    tokio::spawn(async move {
        let mut conn: Option<Connection> = None;
        let mut done = 0;
        let mut warned = false;
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(commits) = commits(&sync) else { break };
            if commits == done {
                continue;
            }
            let path = path.clone();
            let ran = tokio::task::spawn_blocking(move || {
                let result = checkpoint(&mut conn, &path, busy_timeout);
                (conn, result)
            })
            .await;
            let Ok((kept, result)) = ran else { break };
            conn = kept;
            match result {
                Ok(()) => {
                    done = commits;
                    warned = false;
                }
                Err(e) => {
                    // Tried again next time; said once per run of failures.
                    conn = None;
                    if !warned {
                        tracing::warn!(error = %e, "the WAL checkpoint failed");
                        warned = true;
                    }
                }
            }
        }
    });
}

fn commits(sync: &Weak<WalSync>) -> Option<u64> {
    sync.upgrade().map(|sync| sync.commits())
}

fn checkpoint(
    conn: &mut Option<Connection>,
    path: &Path,
    busy_timeout: Duration,
) -> rusqlite::Result<()> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(crate::readers::open(path, busy_timeout)?),
    };
    // Returns (busy, frames in the WAL, frames copied); a busy or partial
    // checkpoint is finished by a later one.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
