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
//! never blocks one; it copies what it can.
//!
//! Copying is not enough to keep the WAL small. SQLite writes the WAL from its
//! start again only when a writer begins while every frame in it is already in
//! the database, and under steady load the writer has always committed more since
//! the last copy: the WAL then grows without end (800 MB in 20 s of sign-ins, each
//! page of it a new block the kernel zeroes first). So once the WAL holds
//! `sqliteWalRestartKib` (64 MiB by default), the task copies what it can once
//! more, then pauses the sign-in writer between two batches (its connection's
//! lock) and runs a `RESTART` checkpoint: it copies the few frames left, and the
//! next batch writes the WAL from its start, over blocks the file already has.
//!
//! Durability does not depend on this task: a commit is durable once its WAL
//! frames are synced (`wal_sync.rs`), and a checkpoint syncs the WAL before it
//! copies a frame and the database before the WAL is reused. Other connections
//! (the pool's) keep SQLite's automatic checkpoints.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::WriterSlot;
use crate::wal_sync::WalSync;

/// How often the task looks for new commits. At full load the writer commits a
/// few thousand pages in this time; a passive copy of them never blocks it.
const EVERY: Duration = Duration::from_millis(100);

/// The checkpoint connection's busy timeout. Only a restart waits (a passive
/// copy never does): for a reader still on an older snapshot (a long export, say)
/// or another writer, while the sign-in writer is paused. Past it the restart is
/// left to a later pass.
const RESTART_WAIT: Duration = Duration::from_millis(50);

const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
const RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";

/// The task's own connection, opened on first use and again after a failure.
struct Checkpointer {
    path: Arc<Path>,
    conn: Option<Connection>,
    /// Frames in the WAL (4 KiB each) past which it is restarted. At the default
    /// 64 MiB the writer is paused about once a second at full load, each time for
    /// the copy of what it wrote since the passive copy just before.
    restart_at: i64,
}

/// Starts the task; it ends when the store holding `sync` and `writer` is dropped.
pub fn spawn(path: &Path, restart_at: i64, sync: &Arc<WalSync>, writer: &Arc<WriterSlot>) {
    let sync = Arc::downgrade(sync);
    let writer = Arc::downgrade(writer);
    let path: Arc<Path> = path.into();
    tokio::spawn(async move {
        let mut checkpointer = Checkpointer {
            path,
            conn: None,
            restart_at,
        };
        let mut done = 0;
        let mut warned = false;
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(commits) = sync.upgrade().map(|sync| sync.commits()) else {
                break;
            };
            if commits == done {
                continue;
            }
            match pass(&mut checkpointer, &writer, &sync).await {
                Ok(()) => {
                    done = commits;
                    warned = false;
                }
                Err(e) => {
                    // Tried again next time; said once per run of failures.
                    if !warned {
                        tracing::warn!(error = %e, "the WAL checkpoint failed");
                        warned = true;
                    }
                }
            }
        }
    });
}

/// One pass: a passive copy, and a restart when the WAL has grown past
/// `restart_at`.
async fn pass(
    c: &mut Checkpointer,
    writer: &Weak<WriterSlot>,
    sync: &Weak<WalSync>,
) -> Result<(), PassError> {
    if c.run(PASSIVE).await?.frames < c.restart_at {
        return Ok(());
    }
    // What the writer committed during that copy, still without pausing it: the
    // pause below then covers only what it commits in the meantime.
    c.run(PASSIVE).await?;
    // Gone with the store: the loop stops at its next look at `sync`.
    if let Some(writer) = writer.upgrade() {
        let _paused = writer.lock().await;
        // Busy: a reader or writer outlasted RESTART_WAIT; a later pass tries again.
        if !c.run(RESTART).await?.busy {
            if let Some(sync) = sync.upgrade() {
                sync.restarted();
            }
        }
    }
    Ok(())
}

/// What a checkpoint reports.
struct Checkpointed {
    /// It could not finish (a reader or writer in the way).
    busy: bool,
    /// Frames in the WAL.
    frames: i64,
}

#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the checkpoint's thread stopped: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

impl Checkpointer {
    /// Runs one checkpoint (`sql`) on a blocking thread. A busy or partial
    /// checkpoint is finished by a later one; a failed connection is opened afresh
    /// next time.
    async fn run(&mut self, sql: &'static str) -> Result<Checkpointed, PassError> {
        let path = Arc::clone(&self.path);
        let mut conn = self.conn.take();
        let (conn, frames) = tokio::task::spawn_blocking(move || {
            let frames = checkpoint(&mut conn, &path, sql);
            (conn, frames)
        })
        .await?;
        if frames.is_ok() {
            self.conn = conn;
        }
        Ok(frames?)
    }
}

fn checkpoint(
    conn: &mut Option<Connection>,
    path: &Path,
    sql: &str,
) -> rusqlite::Result<Checkpointed> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(crate::readers::open(path, RESTART_WAIT)?),
    };
    // Columns: busy, frames in the WAL, frames copied.
    conn.query_row(sql, [], |row| {
        Ok(Checkpointed {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
        })
    })
}
