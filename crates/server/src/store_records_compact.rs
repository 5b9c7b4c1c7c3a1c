//! Compaction of a record's log (DESIGN.md §3a), inside a push's transaction and
//! under the user's head lock. A device that pulled through position `s` pushes
//! a snapshot of the whole record with `compacts = <epoch>.<s>`; the server, still
//! without reading a byte of it:
//!
//! 1. deletes the record's changes at positions ≤ `s` (the snapshot holds them:
//!    the device pulled every one, as pulls never skip a late commit);
//! 2. moves the record's changes after `s` (pushed by other devices meanwhile,
//!    perhaps built on the deleted ones) to positions after the snapshot, so a
//!    device pulling from before `s` meets the snapshot before anything that
//!    depends on what it replaced. A device that had them already gets them
//!    again, which a CRDT ignores.
//!
//! A snapshot of another epoch (the server was restored since the device pulled)
//! compacts nothing and is kept as a plain change.

use std::collections::HashSet;

use crate::db::DbResult;
use crate::store::{PostgresStore, SqliteStore};
use crate::store_records::NewChange;

/// What compaction did to a push: bytes freed, and the positions (in log order)
/// of the changes to renumber after the push's own.
#[derive(Debug, Default)]
pub(crate) struct Compacted {
    pub freed_bytes: i64,
    pub moved: Vec<i64>,
}

macro_rules! compact_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Runs the compactions among `new` (at most one per record), before
            /// the push's changes are inserted at `next_seq…`.
            pub(crate) async fn compact_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                user_id: &str,
                new: &[&NewChange],
                next_seq: i64,
            ) -> DbResult<Compacted> {
                let mut done = Compacted::default();
                if new.iter().all(|c| c.compacts.is_none()) {
                    return Ok(done);
                }
                let epoch: Option<String> = sqlx::query_scalar(
                    "SELECT value FROM server_secrets WHERE name = 'records_epoch'",
                )
                .fetch_optional(&mut **tx)
                .await?;
                let mut seen = HashSet::new();
                for c in new {
                    let Some(k) = &c.compacts else { continue };
                    if epoch.as_deref() != Some(k.epoch.as_str())
                        || !seen.insert((c.collection.as_str(), c.record_id.as_str()))
                    {
                        continue;
                    }
                    // A cursor beyond the head claims positions not handed out yet.
                    let through = k.seq.min(next_seq - 1);
                    let sizes: Vec<i64> = sqlx::query_scalar(
                        "DELETE FROM record_changes WHERE user_id = $1 AND collection = $2 \
                         AND record_id = $3 AND seq <= $4 RETURNING CAST(length(change) AS BIGINT)",
                    )
                    .bind(user_id)
                    .bind(&c.collection)
                    .bind(&c.record_id)
                    .bind(through)
                    .fetch_all(&mut **tx)
                    .await?;
                    done.freed_bytes = sizes.into_iter().fold(done.freed_bytes, i64::saturating_add);
                    let later: Vec<i64> = sqlx::query_scalar(
                        "SELECT seq FROM record_changes WHERE user_id = $1 AND collection = $2 \
                         AND record_id = $3 AND seq > $4 ORDER BY seq",
                    )
                    .bind(user_id)
                    .bind(&c.collection)
                    .bind(&c.record_id)
                    .bind(through)
                    .fetch_all(&mut **tx)
                    .await?;
                    done.moved.extend(later);
                }
                done.moved.sort_unstable();
                Ok(done)
            }

            /// Renumbers `moved` (old positions, in order) from `from` on; returns
            /// the next free position.
            pub(crate) async fn renumber(
                tx: &mut sqlx::Transaction<'static, $db>,
                user_id: &str,
                moved: &[i64],
                from: i64,
            ) -> DbResult<i64> {
                let mut next = from;
                for old in moved {
                    sqlx::query("UPDATE record_changes SET seq = $3 WHERE user_id = $1 AND seq = $2")
                        .bind(user_id)
                        .bind(old)
                        .bind(next)
                        .execute(&mut **tx)
                        .await?;
                    next += 1;
                }
                Ok(next)
            }
        }
    };
}

compact_store!(SqliteStore, sqlx::Sqlite);
compact_store!(PostgresStore, sqlx::Postgres);
