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
//! `COMMIT`. The writer keeps its connection between batches.
//!
//! PostgreSQL: one statement per step (its protocol takes one statement with
//! parameters at a time). Another instance can insert the same id at any moment,
//! so users go in with `ON CONFLICT (id) DO NOTHING` and only those inserted get
//! a session. Row locks are taken in key order (windows, then users by id), so
//! concurrent batches on several instances never deadlock.

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

/// Adds each window's hits and numbers them (ratelimit.rs), one statement per
/// window, windows in key order.
const RATE_UPSERT: &str =
    "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, $3) \
     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + $3 \
     RETURNING hits";

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
    pub(crate) async fn write_guests(&self, batch: &[NewGuest]) -> DbResult<Vec<GuestOutcome>> {
        let mut slot = self.writer.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        let written = Self::write_guests_on(&mut conn, batch).await;
        if written.is_ok() {
            *slot = Some(conn);
        } else {
            // The transaction may still be open: roll it back, and do not reuse a
            // connection that failed mid-batch (closing it also ends any transaction).
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            conn.close_on_drop();
        }
        written
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
        let mut totals = HashMap::new();
        let mut taken = HashSet::new();
        for (kind, key, window_start, hits) in rows {
            if kind == "hits" {
                totals.insert((key, window_start), hits);
            } else {
                taken.insert(key);
            }
        }
        apply_totals(&mut out, batch, &groups, |g| {
            totals.get(&(g.bucket.to_owned(), g.window_start)).copied()
        })?;
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

impl PostgresStore {
    pub(crate) async fn write_guests(&self, batch: &[NewGuest]) -> DbResult<Vec<GuestOutcome>> {
        let mut out = vec![GuestOutcome::Created; batch.len()];
        let mut tx = self.pool.begin().await?;
        for group in plan::rate_groups(batch) {
            let total: i64 = sqlx::query_scalar(RATE_UPSERT)
                .bind(group.bucket)
                .bind(group.window_start)
                .bind(i64::try_from(group.items.len()).unwrap_or(i64::MAX))
                .fetch_one(&mut *tx)
                .await?;
            plan::apply_hits(&mut out, batch, &group, total);
        }
        let claims = plan::claims(batch, &mut out);
        if !claims.is_empty() {
            // An existing id is skipped (reported taken), not an error that would
            // undo the whole batch; so is a merged guest's.
            let inserted: Vec<String> = sqlx::query_scalar(concat!(
                insert_users_from!("json_array_elements($1::json) AS j(value)"),
                " WHERE NOT EXISTS (SELECT 1 FROM merges m WHERE m.guest_id = j.value ->> 0)",
                " AND NOT EXISTS (SELECT 1 FROM gone_users g WHERE g.id = j.value ->> 0)",
                " ON CONFLICT (id) DO NOTHING RETURNING id"
            ))
            .bind(plan::users_json(batch, &claims)?)
            .fetch_all(&mut *tx)
            .await?;
            let created = plan::settle(&mut out, batch, &claims, &inserted);
            if !created.is_empty() {
                sqlx::query(insert_sessions_from!(
                    "json_array_elements($1::json) AS j(value)"
                ))
                .bind(plan::sessions_json(batch, &created)?)
                .execute(&mut *tx)
                .await?;
                sqlx::query(insert_audits_from!(
                    "json_array_elements($1::json) AS j(value)"
                ))
                .bind(plan::audits_json(batch, &created)?)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// Numbers the hits of every window from its new total.
fn apply_totals(
    out: &mut [GuestOutcome],
    batch: &[NewGuest],
    groups: &[RateGroup],
    total: impl Fn(&RateGroup) -> Option<i64>,
) -> DbResult<()> {
    for group in groups {
        let total = total(group).ok_or_else(|| {
            crate::db::DbError::Unavailable("a rate-limit window was not counted".into())
        })?;
        plan::apply_hits(out, batch, group, total);
    }
    Ok(())
}
