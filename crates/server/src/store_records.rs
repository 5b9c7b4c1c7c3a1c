//! Record sync storage (DESIGN.md §3a) on SQLite and PostgreSQL: per user an
//! append-only log of opaque changes (`record_changes`) and its head
//! (`record_heads`: next position, usage, prune horizon). The server never reads
//! a change's bytes.
//!
//! Ordering: a push first locks the user's head row (`UPDATE … RETURNING`; on
//! PostgreSQL a row lock held to commit, on SQLite the one write lock), takes
//! its positions from `next_seq`, inserts, moves the head and commits. One
//! user's pushes therefore commit in the order of their positions, and a pull
//! by `seq > cursor` never skips a change that commits late. The prune of old
//! tombstones (`store_records_prune.rs`) takes the same lock, so it never deletes
//! a change a concurrent push just added.
//!
//! Every query is written once in the dialect both accept, as in `store.rs`;
//! lists are bound one by one with `QueryBuilder` (at most `PUSH_MAX_CHANGES`).

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::QueryBuilder;

use crate::db::{DbError, DbResult};
use crate::store::{PostgresStore, SqliteStore};

/// One validated, decoded change of a push.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub collection: String,
    pub record_id: String,
    pub change: Vec<u8>,
    pub deleted: bool,
    pub schema_version: i32,
    /// [`change_hash`] of the above.
    pub hash: String,
    /// A snapshot replacing the record's log through this cursor
    /// (`store_records_compact.rs`).
    pub compacts: Option<Compaction>,
}

/// A parsed `compacts` cursor.
#[derive(Debug, Clone)]
pub struct Compaction {
    pub epoch: String,
    pub seq: i64,
}

/// What one user may hold.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub max_records: i64,
    pub max_bytes: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Committed: `accepted` new changes, `duplicates` already held (or repeated
    /// within this push).
    Applied { accepted: u32, duplicates: u32 },
    /// Nothing written: the push would take the user to `records` / `bytes`.
    QuotaExceeded { records: i64, bytes: i64 },
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredChange {
    pub seq: i64,
    pub collection: String,
    pub record_id: String,
    pub change: Vec<u8>,
    pub deleted: bool,
    pub schema_version: i32,
}

/// One page of a user's log after a position, with what a cursor is checked
/// against. The head is read after the changes, so a prune that raced the read
/// shows in `pruned_through` (and the caller answers CURSOR_EXPIRED).
#[derive(Debug, Clone)]
pub struct PullPage {
    pub epoch: String,
    pub changes: Vec<StoredChange>,
    pub more: bool,
    /// The last position handed out (0: none yet).
    pub last_seq: i64,
    pub pruned_through: i64,
}

/// The identity of a change: hex SHA-256 over `collection, 0, id, 0, deleted
/// byte, schema_version (big-endian u32), change bytes`. The zero bytes keep
/// `("ab","c")` and `("a","bc")` apart (neither may contain a zero byte).
pub fn change_hash(
    collection: &str,
    record_id: &str,
    deleted: bool,
    schema_version: u32,
    change: &[u8],
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(collection.as_bytes());
    h.update([0]);
    h.update(record_id.as_bytes());
    h.update([0]);
    h.update([u8::from(deleted)]);
    h.update(schema_version.to_be_bytes());
    h.update(change);
    hex::encode(h.finalize())
}

/// A new epoch id: 96 random bits, hex (no `.`, so it splits off a cursor).
pub fn new_epoch_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A pull page holds at most this many change bytes (and at least one change),
/// so `limit` × 256 KiB never becomes one huge answer.
pub const PULL_MAX_BYTES: i64 = 4 * 1024 * 1024;

#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Appends the changes not already held, all or nothing, if the user stays
    /// within `quota`; committed (durable) when it returns `Applied`.
    async fn push(
        &self,
        user_id: &str,
        changes: &[NewChange],
        quota: Quota,
        now: i64,
    ) -> DbResult<PushOutcome>;

    /// Up to `limit` changes after position `after` (0: from the start).
    async fn pull(&self, user_id: &str, after: i64, limit: i64) -> DbResult<PullPage>;

    /// Starts a new epoch (after restoring a backup): every cursor handed out
    /// before is answered from the start with `reset`.
    async fn new_epoch(&self, now: i64) -> DbResult<String>;

    /// Deletes the log of every record whose latest change is a tombstone
    /// created before `cutoff`, raising each user's `pruned_through` to the
    /// highest position deleted and lowering its usage. Returns changes deleted.
    async fn prune_tombstones(&self, cutoff: i64) -> DbResult<u64>;

    /// PostgreSQL: this instance's `LISTEN` for pushes on other instances,
    /// connected before returning. SQLite (one process): `None`.
    async fn listen(
        &self,
        live: std::sync::Arc<crate::live::Live>,
    ) -> DbResult<Option<tokio::task::JoinHandle<()>>>;
}

/// The changes of a push that are new: not held already, and first of their
/// hash within the push.
fn fresh<'a>(changes: &'a [NewChange], held: &HashSet<String>) -> Vec<&'a NewChange> {
    let mut seen = HashSet::new();
    changes
        .iter()
        .filter(|c| !held.contains(&c.hash) && seen.insert(c.hash.as_str()))
        .collect()
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

macro_rules! record_store {
    ($store:ty, $db:ty, $begin:literal, $notify:expr) => {
        #[async_trait]
        impl RecordStore for $store {
            async fn push(
                &self,
                user_id: &str,
                changes: &[NewChange],
                quota: Quota,
                now: i64,
            ) -> DbResult<PushOutcome> {
                let _turn = self.record_write_turn().await;
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "INSERT INTO record_heads (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                // The lock that orders this user's pushes (see the module comment).
                let (next_seq, records, bytes): (i64, i64, i64) = sqlx::query_as(
                    "UPDATE record_heads SET next_seq = next_seq WHERE user_id = $1 \
                     RETURNING next_seq, records, bytes",
                )
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
                if changes.is_empty() {
                    return Ok(PushOutcome::Applied { accepted: 0, duplicates: 0 });
                }

                let mut q = QueryBuilder::<$db>::new("SELECT hash FROM record_changes WHERE user_id = ");
                q.push_bind(user_id).push(" AND hash IN (");
                let mut list = q.separated(", ");
                for c in changes {
                    list.push_bind(&c.hash);
                }
                q.push(")");
                let held: HashSet<String> =
                    q.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
                let new = fresh(changes, &held);
                let duplicates = as_u32(changes.len() - new.len());
                if new.is_empty() {
                    return Ok(PushOutcome::Applied { accepted: 0, duplicates });
                }

                // Records this push adds: distinct (collection, id) not in the log yet.
                let mut pushed: HashSet<(&str, &str)> = new
                    .iter()
                    .map(|c| (c.collection.as_str(), c.record_id.as_str()))
                    .collect();
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT DISTINCT collection, record_id FROM record_changes WHERE user_id = ",
                );
                q.push_bind(user_id).push(" AND (collection, record_id) IN (VALUES ");
                let mut list = q.separated(", ");
                for (collection, id) in &pushed {
                    list.push("(")
                        .push_bind_unseparated(*collection)
                        .push_unseparated(", ")
                        .push_bind_unseparated(*id)
                        .push_unseparated(")");
                }
                q.push(")");
                let known: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                for (collection, id) in &known {
                    pushed.remove(&(collection.as_str(), id.as_str()));
                }
                let added_records = i64::try_from(pushed.len()).unwrap_or(i64::MAX);
                let added_bytes: i64 = new
                    .iter()
                    .map(|c| i64::try_from(c.change.len()).unwrap_or(i64::MAX))
                    .fold(0, i64::saturating_add);
                let compacted = Self::compact_in(&mut tx, user_id, &new, next_seq).await?;
                let (records, bytes) = (
                    records.saturating_add(added_records),
                    bytes.saturating_add(added_bytes).saturating_sub(compacted.freed_bytes).max(0),
                );
                if records > quota.max_records || bytes > quota.max_bytes {
                    // Dropping `tx` rolls back: nothing of this push is kept.
                    return Ok(PushOutcome::QuotaExceeded { records, bytes });
                }

                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO record_changes (user_id, seq, collection, record_id, change, \
                     deleted, schema_version, hash, created_at) ",
                );
                q.push_values(new.iter().zip(next_seq..), |mut row, (c, seq)| {
                    row.push_bind(user_id)
                        .push_bind(seq)
                        .push_bind(&c.collection)
                        .push_bind(&c.record_id)
                        .push_bind(&c.change)
                        .push_bind(c.deleted)
                        .push_bind(c.schema_version)
                        .push_bind(&c.hash)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
                let accepted = new.len();
                let after_push = next_seq.saturating_add(i64::try_from(accepted).unwrap_or(i64::MAX));
                let head = Self::renumber(&mut tx, user_id, &compacted.moved, after_push).await?;
                sqlx::query(
                    "UPDATE record_heads SET next_seq = $2, records = $3, bytes = $4 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(head)
                .bind(records)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
                let notify: Option<&str> = $notify;
                if let Some(notify) = notify {
                    // Delivered to every instance's LISTEN on commit, never on rollback.
                    sqlx::query(notify).bind(user_id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(PushOutcome::Applied { accepted: as_u32(accepted), duplicates })
            }

            async fn pull(&self, user_id: &str, after: i64, limit: i64) -> DbResult<PullPage> {
                // Sizes first (cheap), to cut the page by bytes; then the page itself.
                let sizes: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT seq, CAST(length(change) AS BIGINT) FROM record_changes \
                     WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(user_id)
                .bind(after)
                .bind(limit.saturating_add(1))
                .fetch_all(&self.pool)
                .await?;
                let mut through = None;
                let mut total = 0i64;
                let mut taken = 0i64;
                for &(seq, size) in &sizes {
                    if taken == limit || (taken > 0 && total.saturating_add(size) > PULL_MAX_BYTES) {
                        break;
                    }
                    total = total.saturating_add(size);
                    taken += 1;
                    through = Some(seq);
                }
                let more = sizes.len() as i64 > taken;
                let changes: Vec<StoredChange> = match through {
                    Some(through) => sqlx::query_as(
                        "SELECT seq, collection, record_id, change, deleted, schema_version \
                         FROM record_changes WHERE user_id = $1 AND seq > $2 AND seq <= $3 \
                         ORDER BY seq",
                    )
                    .bind(user_id)
                    .bind(after)
                    .bind(through)
                    .fetch_all(&self.pool)
                    .await?,
                    None => Vec::new(),
                };
                let head: (Option<String>, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT value FROM server_secrets WHERE name = 'records_epoch'), \
                     COALESCE((SELECT next_seq FROM record_heads WHERE user_id = $1), 1), \
                     COALESCE((SELECT pruned_through FROM record_heads WHERE user_id = $1), 0)",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                let epoch = match head.0 {
                    Some(epoch) => epoch,
                    None => self.epoch_or_init().await?,
                };
                Ok(PullPage {
                    epoch,
                    changes,
                    more,
                    last_seq: head.1 - 1,
                    pruned_through: head.2,
                })
            }

            async fn new_epoch(&self, now: i64) -> DbResult<String> {
                let epoch = new_epoch_id();
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) \
                     VALUES ('records_epoch', $1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = $1, created_at = $2",
                )
                .bind(&epoch)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(epoch)
            }

            async fn prune_tombstones(&self, cutoff: i64) -> DbResult<u64> {
                self.prune_old_tombstones(cutoff).await
            }

            async fn listen(
                &self,
                live: std::sync::Arc<crate::live::Live>,
            ) -> DbResult<Option<tokio::task::JoinHandle<()>>> {
                self.spawn_listener(live).await
            }
        }

        impl $store {
            async fn epoch_or_init(&self) -> DbResult<String> {
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) \
                     VALUES ('records_epoch', $1, 0) ON CONFLICT (name) DO NOTHING",
                )
                .bind(new_epoch_id())
                .execute(&self.pool)
                .await?;
                Ok(sqlx::query_scalar(
                    "SELECT value FROM server_secrets WHERE name = 'records_epoch'",
                )
                .fetch_one(&self.pool)
                .await?)
            }
        }
    };
}

record_store!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE", None);
record_store!(
    PostgresStore,
    sqlx::Postgres,
    "BEGIN",
    Some("SELECT pg_notify('guestpass_records', $1)")
);

impl SqliteStore {
    async fn record_write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.record_writes.lock().await)
    }

    async fn spawn_listener(
        &self,
        _live: std::sync::Arc<crate::live::Live>,
    ) -> DbResult<Option<tokio::task::JoinHandle<()>>> {
        Ok(None)
    }
}

impl PostgresStore {
    /// PostgreSQL orders pushes by the head row lock alone (one per user).
    async fn record_write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    async fn spawn_listener(
        &self,
        live: std::sync::Arc<crate::live::Live>,
    ) -> DbResult<Option<tokio::task::JoinHandle<()>>> {
        let listener = crate::live::pg_listener(&self.pool)
            .await
            .map_err(DbError::from)?;
        Ok(Some(tokio::spawn(crate::live::pg_listen(
            listener,
            self.pool.clone(),
            live,
        ))))
    }
}
