//! [`Database::create_guests`](crate::db::Database::create_guests) on each database:
//! a batch of anonymous sign-ins in one transaction, with the fewest round trips
//! each database allows. The planning (rate-limit numbering, which items go
//! ahead, the JSON rows) is shared, in `guest_batch.rs`.
//!
//! SQLite: two round trips to the connection's thread per batch, however large.
//! sqlx runs each SQLite connection on a thread of its own and every statement is
//! a hand-off to it and back, which on a busy machine costs more than the
//! statement; a query string of several statements is one hand-off. So the batch
//! is `BEGIN IMMEDIATE` + the rate-limit counts + which ids exist, then (decided
//! here, under the write lock that nobody else can take meanwhile) the inserts +
//! `COMMIT`. The writer keeps its connection between batches. That connection
//! commits with `synchronous = NORMAL` and the batch is made durable after the
//! write lock is released (`wal_sync.rs`), before `create_guests` returns.
//!
//! PostgreSQL: ONE statement per batch, its own transaction (data-modifying CTEs,
//! see `PG_BATCH`), so a batch costs one round trip however many steps it has.
//! Another instance can insert the same id at any moment, so users go in with
//! `ON CONFLICT (id) DO NOTHING` and only those inserted get a session. Row locks
//! are taken in key order (windows, then users by id), so concurrent batches on
//! several instances never deadlock.

use std::collections::{HashMap, HashSet};

use crate::db::{DbResult, GuestOutcome, NewGuest};
use crate::guest_batch::{self as plan, RateGroup};
use crate::store::{PostgresStore, SqliteStore};

/// `INSERT INTO users … SELECT …` from a JSON array of `plan::users_json` rows.
macro_rules! insert_users_from {
    ($rows:literal) => {
        concat!(
            "INSERT INTO users (id, email, name, image, email_verified, is_anonymous, ",
            "password_hash, metadata, created_at, updated_at, last_active_at, device_key_hash) ",
            "SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, ",
            "CAST(j.value ->> 4 AS BOOLEAN), CAST(j.value ->> 5 AS BOOLEAN), ",
            "j.value ->> 6, j.value ->> 7, CAST(j.value ->> 8 AS BIGINT), ",
            "CAST(j.value ->> 9 AS BIGINT), CAST(j.value ->> 10 AS BIGINT), j.value ->> 11 FROM ",
            $rows
        )
    };
}

/// From `plan::sessions_json` rows.
macro_rules! insert_sessions_from {
    ($rows:literal) => {
        concat!(
            "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) ",
            "SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, CAST(j.value ->> 3 AS BIGINT), ",
            "CAST(j.value ->> 4 AS BIGINT), CAST(j.value ->> 5 AS BIGINT) FROM ",
            $rows
        )
    };
}

/// From `plan::audits_json` rows.
macro_rules! insert_audits_from {
    ($rows:literal) => {
        concat!(
            "INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) ",
            "SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, ",
            "CAST(j.value ->> 4 AS BIGINT), j.value ->> 5, j.value ->> 6 FROM ",
            $rows
        )
    };
}

/// Round trip 1: the write lock, every window's new count, and which of the
/// batch's ids exist, were merged into an account or were deleted (`gone_users`:
/// such an id never comes back as a new guest; `auth.rs` may revive one). Rows: `('hits', bucket, window_start, hits)` and
/// `('taken', id, 0, 0)`.
const SQLITE_OPEN: &str = "BEGIN IMMEDIATE; \
     INSERT INTO rate_limits (bucket, window_start, hits) \
     SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each($1) AS j WHERE TRUE \
     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + excluded.hits \
     RETURNING 'hits', bucket, window_start, hits; \
     SELECT 'taken', id, 0, 0 FROM users WHERE id IN (SELECT value FROM json_each($2)) \
     UNION ALL SELECT 'taken', guest_id, 0, 0 FROM merges \
     WHERE guest_id IN (SELECT value FROM json_each($2)) \
     UNION ALL SELECT 'taken', id, 0, 0 FROM gone_users \
     WHERE id IN (SELECT value FROM json_each($2))";

/// Round trip 2: the rows of the guests that go ahead, and the commit.
const SQLITE_WRITE: &str = concat!(
    insert_users_from!("json_each($1) AS j"),
    "; ",
    insert_sessions_from!("json_each($2) AS j"),
    "; ",
    insert_audits_from!("json_each($3) AS j"),
    "; COMMIT"
);

impl SqliteStore {
    pub(crate) fn wal_restarts_now(&self) -> u64 {
        self.wal_sync.restarts()
    }

    pub(crate) async fn write_guests(
        &self,
        batch: &[NewGuest],
        written: crate::writer::Written,
    ) -> DbResult<Vec<GuestOutcome>> {
        let mut slot = self.writer.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.pool.acquire().await?;
                // This connection never goes back to the pool (a failed one is
                // closed), so no other writer commits without its fsync.
                // Its checkpoints are the task's (`wal_checkpoint.rs`), not a
                // wait for the batches queued behind it.
                sqlx::query("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")
                    .execute(&mut *conn)
                    .await?;
                conn
            }
        };
        let result = Self::write_guests_on(&mut conn, batch).await;
        if result.is_ok() {
            *slot = Some(conn);
        } else {
            // The transaction may still be open: roll it back, and do not reuse a
            // connection that failed mid-batch (closing it also ends any transaction).
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            conn.close_on_drop();
        }
        drop(slot);
        drop(written);
        let outcomes = result?;
        // Committed, not yet durable: the write lock is free for the next batch
        // while this one's WAL frames reach the disk; no answer goes out before.
        self.wal_sync.commit_durable().await?;
        Ok(outcomes)
    }

    async fn write_guests_on(
        conn: &mut sqlx::SqliteConnection,
        batch: &[NewGuest],
    ) -> DbResult<Vec<GuestOutcome>> {
        let mut out = vec![GuestOutcome::Created; batch.len()];
        let groups = plan::rate_groups(batch);
        let all: Vec<usize> = (0..batch.len()).collect();
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(SQLITE_OPEN)
            .bind(plan::rate_json(&groups)?)
            .bind(plan::ids_json(batch, &all)?)
            .fetch_all(&mut *conn)
            .await?;
        let taken: HashSet<String> = apply_totals(&mut out, batch, &groups, rows)?
            .into_iter()
            .collect();
        let claims = plan::claims(batch, &mut out);
        let inserted: Vec<String> = claims
            .iter()
            .map(|&i| &batch[i].user.id)
            .filter(|id| !taken.contains(*id))
            .cloned()
            .collect();
        let created = plan::settle(&mut out, batch, &claims, &inserted);
        sqlx::query(SQLITE_WRITE)
            .bind(plan::users_json(batch, &created)?)
            .bind(plan::sessions_json(batch, &created)?)
            .bind(plan::audits_json(batch, &created)?)
            .execute(&mut *conn)
            .await?;
        Ok(out)
    }
}

/// PostgreSQL's whole batch, one statement: `$1` the windows' hits
/// (`plan::rate_json`), `$2` every item (`plan::candidates_json`), `$3` every
/// item's session in batch order (its ordinality is the item), `$4` the audits
/// tagged with their item (`plan::indexed_audits_json`). The windows are counted
/// first (`r`); an item goes ahead if its window's new total leaves it within the
/// limit, and the first of two items with one id wins (`c`); users go in unless the
/// id exists, was merged or is gone (`u`); the sessions and audits of exactly those
/// items follow. Rows back: `('hits', bucket, window_start, hits)` per window and
/// `('made', id, 0, 0)` per user inserted; the outcomes are then numbered in Rust
/// from the same plan as SQLite's. One statement is its own transaction: all of
/// it commits or none, in one round trip (there were five to seven).
const PG_BATCH: &str = concat!(
    "WITH r AS (INSERT INTO rate_limits (bucket, window_start, hits) ",
    "SELECT j.value ->> 0, CAST(j.value ->> 1 AS BIGINT), CAST(j.value ->> 2 AS BIGINT) ",
    "FROM json_array_elements($1::json) AS j(value) ORDER BY 1, 2 ",
    "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + excluded.hits ",
    "RETURNING bucket, window_start, hits), ",
    "c AS (SELECT DISTINCT ON (j.value -> 0 ->> 0) j.value -> 0 AS value, j.n - 1 AS item ",
    "FROM json_array_elements($2::json) WITH ORDINALITY AS j(value, n) ",
    "LEFT JOIN r ON r.bucket = j.value ->> 1 AND r.window_start = CAST(j.value ->> 2 AS BIGINT) ",
    "WHERE j.value ->> 1 IS NULL OR r.hits <= CAST(j.value ->> 3 AS BIGINT) ",
    "ORDER BY j.value -> 0 ->> 0, j.n), ",
    "u AS (",
    insert_users_from!(
        "c AS j WHERE NOT EXISTS (SELECT 1 FROM merges m WHERE m.guest_id = j.value ->> 0) \
         AND NOT EXISTS (SELECT 1 FROM gone_users g WHERE g.id = j.value ->> 0) \
         ORDER BY j.value ->> 0 ON CONFLICT (id) DO NOTHING RETURNING id"
    ),
    "), made AS (SELECT c.item FROM c JOIN u ON u.id = c.value ->> 0), ",
    "s AS (",
    insert_sessions_from!(
        "json_array_elements($3::json) WITH ORDINALITY AS j(value, n) \
         WHERE j.n - 1 IN (SELECT item FROM made)"
    ),
    "), a AS (",
    insert_audits_from!(
        "(SELECT x.value -> 1 AS value FROM json_array_elements($4::json) AS x(value) \
         WHERE CAST(x.value ->> 0 AS BIGINT) IN (SELECT item FROM made)) AS j"
    ),
    ") SELECT 'hits', bucket, window_start, hits FROM r ",
    "UNION ALL SELECT 'made', id, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM u"
);

impl PostgresStore {
    /// PostgreSQL has no WAL of ours to restart.
    pub(crate) fn wal_restarts_now(&self) -> u64 {
        0
    }

    /// No lock of ours orders the batches: the next one is written at once.
    pub(crate) async fn write_guests(
        &self,
        batch: &[NewGuest],
        written: crate::writer::Written,
    ) -> DbResult<Vec<GuestOutcome>> {
        drop(written);
        let mut out = vec![GuestOutcome::Created; batch.len()];
        let groups = plan::rate_groups(batch);
        let all: Vec<usize> = (0..batch.len()).collect();
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(PG_BATCH)
            .bind(plan::rate_json(&groups)?)
            .bind(plan::candidates_json(batch, &groups)?)
            .bind(plan::sessions_json(batch, &all)?)
            .bind(plan::indexed_audits_json(batch)?)
            .fetch_all(&self.pool)
            .await?;
        let made = apply_totals(&mut out, batch, &groups, rows)?;
        // The same choice the statement made: the items within their limit, the
        // first of each id; of those, the ones whose user went in.
        let claims = plan::claims(batch, &mut out);
        plan::settle(&mut out, batch, &claims, &made);
        Ok(out)
    }
}

/// Numbers the hits of every window from its new total, as the batch's
/// statements returned them (`('hits', bucket, window_start, hits)`), and returns
/// the keys of the other rows (`('taken' | 'made', id, 0, 0)`).
fn apply_totals(
    out: &mut [GuestOutcome],
    batch: &[NewGuest],
    groups: &[RateGroup],
    rows: Vec<(String, String, i64, i64)>,
) -> DbResult<Vec<String>> {
    let mut totals = HashMap::new();
    let mut ids = Vec::new();
    for (kind, key, window_start, hits) in rows {
        if kind == "hits" {
            totals.insert((key, window_start), hits);
        } else {
            ids.push(key);
        }
    }
    for group in groups {
        let total = totals
            .get(&(group.bucket.to_owned(), group.window_start))
            .copied()
            .ok_or_else(|| {
                crate::db::DbError::Unavailable("a rate-limit window was not counted".into())
            })?;
        plan::apply_hits(out, batch, group, total);
    }
    Ok(ids)
}
