//! The tombstone horizon (DESIGN.md §3a) on both databases: the whole log of a
//! record whose latest change is a tombstone older than the horizon is deleted,
//! and the user's `pruned_through` is raised to the highest position deleted, so
//! a cursor below it (which may have missed that tombstone) gets CURSOR_EXPIRED.
//! Each user is pruned in its own transaction under its head lock (as a push
//! takes it), so a change pushed meanwhile to such a record keeps it alive.

use std::collections::HashSet;

use crate::db::DbResult;
use crate::store::{PostgresStore, SqliteStore};

/// Users whose old tombstones one prune round handles.
const PRUNE_USERS_PER_ROUND: i64 = 100;

/// `t` is the latest change of its record: nothing after it in the same record.
macro_rules! latest {
    () => {
        "NOT EXISTS (SELECT 1 FROM record_changes n WHERE n.user_id = t.user_id \
         AND n.collection = t.collection AND n.record_id = t.record_id AND n.seq > t.seq)"
    };
}

macro_rules! prune_store {
    ($store:ty, $begin:literal) => {
        impl $store {
            pub(crate) async fn prune_old_tombstones(&self, cutoff: i64) -> DbResult<u64> {
                let mut deleted = 0u64;
                loop {
                    let users: Vec<String> = sqlx::query_scalar(concat!(
                        "SELECT DISTINCT t.user_id FROM record_changes t ",
                        "WHERE t.deleted = TRUE AND t.created_at < $1 AND ",
                        latest!(),
                        " LIMIT $2"
                    ))
                    .bind(cutoff)
                    .bind(PRUNE_USERS_PER_ROUND)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut round = 0u64;
                    for user in &users {
                        round += self.prune_user(user, cutoff).await?;
                    }
                    deleted += round;
                    // A short round was the last; a round that deleted nothing
                    // (raced by pushes) must not spin.
                    if (users.len() as i64) < PRUNE_USERS_PER_ROUND || round == 0 {
                        return Ok(deleted);
                    }
                }
            }

            /// One user's old tombstones, under the user's head lock (so a
            /// change pushed meanwhile to such a record keeps it alive).
            async fn prune_user(&self, user_id: &str, cutoff: i64) -> DbResult<u64> {
                let mut tx = self.pool.begin_with($begin).await?;
                let head: Option<(i64, i64, i64)> = sqlx::query_as(
                    "UPDATE record_heads SET next_seq = next_seq WHERE user_id = $1 \
                     RETURNING records, bytes, pruned_through",
                )
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((records, bytes, pruned_through)) = head else {
                    return Ok(0);
                };
                let gone: Vec<(i64, String, String, i64)> = sqlx::query_as(concat!(
                    "DELETE FROM record_changes WHERE user_id = $1 AND (collection, record_id) IN ",
                    "(SELECT t.collection, t.record_id FROM record_changes t WHERE t.user_id = $1 ",
                    "AND t.deleted = TRUE AND t.created_at < $2 AND ",
                    latest!(),
                    ") RETURNING seq, collection, record_id, CAST(length(change) AS BIGINT)"
                ))
                .bind(user_id)
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?;
                if gone.is_empty() {
                    return Ok(0);
                }
                let gone_records = gone
                    .iter()
                    .map(|(_, c, r, _)| (c.as_str(), r.as_str()))
                    .collect::<HashSet<_>>()
                    .len();
                let gone_bytes: i64 = gone.iter().map(|g| g.3).fold(0, i64::saturating_add);
                let horizon = gone.iter().map(|g| g.0).max().unwrap_or(0).max(pruned_through);
                sqlx::query(
                    "UPDATE record_heads SET records = $2, bytes = $3, pruned_through = $4 \
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .bind((records - i64::try_from(gone_records).unwrap_or(i64::MAX)).max(0))
                .bind((bytes - gone_bytes).max(0))
                .bind(horizon)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(gone.len() as u64)
            }
        }
    };
}

prune_store!(SqliteStore, "BEGIN IMMEDIATE");
prune_store!(PostgresStore, "BEGIN");
