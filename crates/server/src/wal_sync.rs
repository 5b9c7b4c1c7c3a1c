//! Durability of the sign-in writer's commits on SQLite, paid outside the write lock.
//!
//! The writer's connection commits with `synchronous = NORMAL`: in WAL mode the
//! commit's frames are written to the WAL (the OS has them, a crash of the process
//! loses nothing) but not fsynced, so the write lock is free again at once and the
//! next batch can run while this one is made durable. Before any answer of a batch
//! goes out, [`WalSync::commit_durable`] fdatasyncs the WAL file: once that returns,
//! the batch survives a power cut too, as it did under `synchronous = FULL`.
//!
//! Group sync: every commit takes a number; a sync covers every commit numbered
//! before it started (their `write`s were done), so a batch whose commit was
//! covered by a sync that started after it answers without syncing again.
//!
//! SQLite's own checkpoints under `NORMAL` fsync the WAL before copying it into the
//! database and the database after, so a frame is never dropped before it is in the
//! database file. When the WAL is gone (SQLite removes it when the last connection
//! closes, after checkpointing everything), the database file is synced instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::db::{DbError, DbResult};

pub struct WalSync {
    wal: PathBuf,
    db: PathBuf,
    /// Commits counted so far (the last one's number).
    committed: AtomicU64,
    /// The highest commit number a finished sync covered; held while syncing, so
    /// syncs take turns and a waiter sees what the one before it covered.
    synced: tokio::sync::Mutex<u64>,
    /// Restarts of the WAL by the checkpoint task, for the metric.
    restarts: AtomicU64,
}

impl WalSync {
    pub fn new(db: &Path) -> Arc<Self> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Arc::new(Self {
            wal: PathBuf::from(wal),
            db: db.to_path_buf(),
            committed: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    /// Call right after a `COMMIT` returned on the `NORMAL` connection; returns once
    /// that commit is on disk.
    pub async fn commit_durable(self: &Arc<Self>) -> DbResult<()> {
        let mine = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= mine {
            return Ok(());
        }
        // Every commit counted by now has written its frames: this sync covers it.
        let upto = self.committed.load(Ordering::SeqCst);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.sync_files())
            .await
            .map_err(|e| DbError::Unavailable(format!("the WAL sync stopped: {e}")))?
            .map_err(|e| DbError::Unavailable(format!("syncing the WAL failed: {e}")))?;
        *synced = upto;
        Ok(())
    }

    /// Commits counted so far: the checkpoint task (`wal_checkpoint.rs`) runs when
    /// this moved.
    pub fn commits(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// The checkpoint task restarted the WAL (`wal_checkpoint.rs`).
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn sync_files(&self) -> std::io::Result<()> {
        match std::fs::File::open(&self.wal) {
            Ok(wal) => wal.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::File::open(&self.db)?.sync_data()
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sync_covers_every_commit_counted_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(&db, b"db").unwrap();
        std::fs::write(dir.path().join("x.db-wal"), b"wal").unwrap();
        let sync = WalSync::new(&db);
        sync.commit_durable().await.unwrap();
        assert_eq!(*sync.synced.lock().await, 1);
        // Another commit counted before this one syncs: one sync covers both.
        sync.committed.fetch_add(1, Ordering::SeqCst);
        sync.commit_durable().await.unwrap();
        assert_eq!(*sync.synced.lock().await, 3);
        // No WAL (SQLite removed it): the database file is synced instead.
        std::fs::remove_file(dir.path().join("x.db-wal")).unwrap();
        sync.commit_durable().await.unwrap();
        assert_eq!(*sync.synced.lock().await, 4);
        // Neither file: the sign-in is not answered as durable.
        std::fs::remove_file(&db).unwrap();
        assert!(sync.commit_durable().await.is_err());
    }
}
