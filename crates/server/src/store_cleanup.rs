//! One batch of the stale-guest cleanup (`Database::delete_stale_guests`): pick
//! the guests, delete them, leave their tombstones (`gone_users`, issue 16) and
//! audit each one actually deleted. DELETE … RETURNING reports only the rows this
//! transaction removed, so a guest is audited by whichever instance deleted it. (A
//! single `DELETE … WHERE id IN (SELECT …) AND <stale>` was planned as a walk of
//! the whole stale range per batch: quadratic, hours at a million guests; the pick
//! is an `ARRAY(…)` of ids, looked up by primary key.)
//!
//! PostgreSQL's guests' rows in other tables. `ON DELETE CASCADE` is a per-row
//! trigger for each of the seven tables that reference `users`: seven SPI
//! queries per guest, about a third of a 2,000-guest batch at a million guests,
//! even when a guest has no rows there (measured with psql, 1 M guests:
//! 27 µs a guest with the cascades, 18 µs by set). So where the server's role may
//! set `session_replication_role` (a superuser, or on PostgreSQL 15+ `GRANT SET ON
//! PARAMETER session_replication_role TO <role>`) a batch deletes those rows
//! itself, one `DELETE … WHERE user_id = ANY(<ids>)` per table, with the triggers off
//! for that transaction only (`SET LOCAL`). Referential integrity still holds: the
//! guests are deleted by the batch's first statement and their rows elsewhere by
//! its second. A transaction that adds a row for a guest locks the guest first
//! (its foreign-key check, `FOR KEY SHARE`): if it got there before the first
//! statement, the deletion waited for it to end, so the second statement's later
//! snapshot sees its row; if after, its check waits for this transaction and then
//! finds the guest gone. The tables come from the catalog at the first batch, so a
//! new table that references `users` is covered without touching this file; where
//! a trigger that is not a foreign key's would be skipped, or a referencing table
//! is itself referenced, or the role may not set the parameter, the batch relies on
//! the cascades as before.

use sqlx::sqlite::Sqlite;

use crate::db::{AuditRow, DbResult, Stale, StaleBatch};
use crate::store::{PostgresStore, SqliteStore};

impl SqliteStore {
    /// The ids bound one by one: SQLite has no arrays, and binding is cheap
    /// in-process. The transaction holds the only write lock, so the guests picked
    /// are still stale guests at the DELETE.
    pub(crate) async fn delete_stale_batch(
        &self,
        tx: &mut sqlx::SqliteConnection,
        stale: Stale,
        audits: impl Fn(&[String]) -> Vec<AuditRow>,
    ) -> DbResult<StaleBatch> {
        let picked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, last_active_at FROM users WHERE is_anonymous = TRUE \
             AND last_active_at >= $1 AND last_active_at < $2 \
             ORDER BY last_active_at LIMIT $3",
        )
        .bind(stale.from)
        .bind(stale.cutoff)
        .bind(stale.limit)
        .fetch_all(&mut *tx)
        .await?;
        let Some(&(_, reached)) = picked.last() else {
            return Ok(StaleBatch::default());
        };
        let picked: Vec<String> = picked.into_iter().map(|(id, _)| id).collect();
        let now = stale.now;
        // The cleanup's tombstones first (this transaction holds the write lock):
        // each guest's own device may bring it back (issue 16, `gone_users`).
        let mut gone = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO gone_users (id, reason, device_key_hash, recovery_key_hash, gone_at) \
             SELECT id, 'cleanup', device_key_hash, recovery_key_hash, ",
        );
        gone.push_bind(now).push(" FROM users WHERE id IN (");
        let mut list = gone.separated(", ");
        for id in &picked {
            list.push_bind(id);
        }
        gone.push(
            ") ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, \
             device_key_hash = excluded.device_key_hash, \
             recovery_key_hash = excluded.recovery_key_hash, gone_at = excluded.gone_at",
        );
        gone.build().execute(&mut *tx).await?;
        let mut delete = sqlx::QueryBuilder::<Sqlite>::new("DELETE FROM users WHERE id IN (");
        let mut list = delete.separated(", ");
        for id in &picked {
            list.push_bind(id);
        }
        delete.push(") RETURNING id");
        let ids: Vec<String> = delete.build_query_scalar().fetch_all(&mut *tx).await?;
        if ids.is_empty() {
            return Ok(StaleBatch::default());
        }
        let rows = audits(&ids);
        let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) ",
        );
        insert.push_values(&rows, |mut row, a| {
            row.push_bind(&a.id)
                .push_bind(&a.event)
                .push_bind(&a.user_id)
                .push_bind(&a.actor)
                .push_bind(a.created_at)
                .push_bind(&a.ip_hash)
                .push_bind(&a.detail);
        });
        insert.build().execute(&mut *tx).await?;
        Ok(StaleBatch {
            ids,
            reached: Some(reached),
        })
    }
}

/// How a PostgreSQL batch deletes its guests' rows in the tables that reference
/// `users` (see the module's note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Children {
    /// `ON DELETE CASCADE` does it, a trigger per guest and table.
    Cascade,
    /// The batch does it, with the triggers off for its transaction: one `DELETE
    /// FROM table WHERE column = ANY(guests)` per (table, column), names quoted.
    BySet(Vec<(String, String)>),
}

/// Every foreign key that references `users`: its table (as `regclass` prints it,
/// quoted where needed), its column, whether it cascades, whether it has one
/// column, and whether its table is referenced in turn (a cascade further down).
const REFERENCES_TO_USERS: &str = "SELECT c.conrelid::regclass::text, quote_ident(a.attname), \
     c.confdeltype = 'c', cardinality(c.conkey) = 1, \
     EXISTS (SELECT 1 FROM pg_constraint g WHERE g.contype = 'f' AND g.confrelid = c.conrelid) \
     FROM pg_constraint c \
     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
     WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass ORDER BY 1, 2";

/// A trigger of our own (none today) would be skipped with the cascades.
const OWN_TRIGGERS: &str = "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE NOT tgisinternal)";

/// Switches the triggers off (foreign keys' included) until the transaction ends.
const SKIP_TRIGGERS: &str = "SET LOCAL session_replication_role = replica";

impl Children {
    /// Reads the catalog and tries the setting once, in a transaction rolled back.
    pub async fn of(pool: &sqlx::PgPool) -> DbResult<Self> {
        let refs: Vec<(String, String, bool, bool, bool)> =
            sqlx::query_as(REFERENCES_TO_USERS).fetch_all(pool).await?;
        let plain = refs
            .iter()
            .all(|(_, _, cascades, single, referenced)| *cascades && *single && !*referenced);
        let why_not = if !plain {
            Some("a reference to users is not a plain cascade".to_string())
        } else if sqlx::query_scalar(OWN_TRIGGERS).fetch_one(pool).await? {
            Some("the database has triggers of its own".to_string())
        } else {
            may_skip_triggers(pool).await.err().map(|e| {
                format!(
                    "this role may not set session_replication_role ({e}); GRANT SET ON \
                     PARAMETER session_replication_role lets it delete by set"
                )
            })
        };
        Ok(match why_not {
            Some(reason) => {
                tracing::info!(%reason, "stale-guest cleanup relies on ON DELETE CASCADE");
                Self::Cascade
            }
            None => {
                tracing::info!(
                    tables = refs.len(),
                    "stale-guest cleanup deletes guests' rows by set"
                );
                Self::BySet(refs.into_iter().map(|(t, c, ..)| (t, c)).collect())
            }
        })
    }
}

async fn may_skip_triggers(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let set = sqlx::query(SKIP_TRIGGERS).execute(&mut *tx).await;
    tx.rollback().await?;
    set.map(|_| ())
}

/// The batch's first statement: pick the guests (`FOR UPDATE SKIP LOCKED`, so
/// another instance picks others, and PostgreSQL re-checks the WHERE on each row
/// it locks: a guest that signed in or upgraded meanwhile is passed over) and
/// delete them, with any tombstone left under their ids (none, as long as an id
/// in `users` is never in `gone_users`), so that the second statement writes
/// their tombstones with a plain INSERT: `ON CONFLICT` is a speculative
/// insertion, one more WAL record and index probe a guest.
const DELETE_STALE: &str = "WITH d AS (DELETE FROM users WHERE id = ANY(ARRAY(\
     SELECT id FROM users WHERE is_anonymous = TRUE \
     AND last_active_at >= $1 AND last_active_at < $2 \
     ORDER BY last_active_at LIMIT $3 FOR UPDATE SKIP LOCKED)) \
     RETURNING id, last_active_at, device_key_hash, recovery_key_hash), \
     g AS (DELETE FROM gone_users WHERE id = ANY(ARRAY(SELECT id FROM d))) \
     SELECT id, last_active_at, device_key_hash, recovery_key_hash FROM d";

/// The tombstones, in the second statement: ids $8, device and recovery key
/// hashes $9 and $10, the time $11.
const INSERT_TOMBSTONES: &str = "INSERT INTO gone_users \
     (id, reason, device_key_hash, recovery_key_hash, gone_at) \
     SELECT id, 'cleanup', device, recovery, $11 \
     FROM unnest($8::text[], $9::text[], $10::text[]) AS g(id, device, recovery)";

/// The audit rows, one array per column: 2,000 rows bound one value at a time
/// were 14,000 parameters for PostgreSQL to parse and plan, every batch.
const INSERT_AUDITS: &str = "INSERT INTO audit_log \
     (id, event, user_id, actor, created_at, ip_hash, detail) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
     $5::bigint[], $6::text[], $7::text[])";

impl PostgresStore {
    /// Two statements after the `SET LOCAL`: the guests, then their rows
    /// elsewhere (the order the module's note on integrity needs), their
    /// tombstones and their audit rows. The guests used to be picked and locked by a
    /// statement of their own: one round trip and one pass over them more.
    pub(crate) async fn delete_stale_batch(
        &self,
        tx: &mut sqlx::PgConnection,
        stale: Stale,
        audits: impl Fn(&[String]) -> Vec<AuditRow>,
    ) -> DbResult<StaleBatch> {
        let children = self
            .cleanup_children
            .get_or_try_init(|| Children::of(&self.pool))
            .await?;
        let by_set = match children {
            Children::Cascade => String::new(),
            Children::BySet(tables) => {
                sqlx::query(SKIP_TRIGGERS).execute(&mut *tx).await?;
                tables
                    .iter()
                    .enumerate()
                    .map(|(i, (table, column))| {
                        format!("c{i} AS (DELETE FROM {table} WHERE {column} = ANY($8)), ")
                    })
                    .collect()
            }
        };
        type Deleted = (String, i64, Option<String>, Option<String>);
        let deleted: Vec<Deleted> = sqlx::query_as(DELETE_STALE)
            .bind(stale.from)
            .bind(stale.cutoff)
            .bind(stale.limit)
            .fetch_all(&mut *tx)
            .await?;
        let reached = deleted.iter().map(|d| d.1).max();
        if reached.is_none() {
            return Ok(StaleBatch::default());
        }
        let mut ids = Vec::with_capacity(deleted.len());
        let (mut devices, mut recoveries) = (Vec::new(), Vec::new());
        for (id, _, device, recovery) in deleted {
            ids.push(id);
            devices.push(device);
            recoveries.push(recovery);
        }
        let rows = audits(&ids);
        let column = |f: fn(&AuditRow) -> &String| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&format!(
            "WITH {by_set}t AS ({INSERT_TOMBSTONES}), a AS ({INSERT_AUDITS}) SELECT 1"
        ))
        .bind(column(|a| &a.id))
        .bind(column(|a| &a.event))
        .bind(column(|a| &a.user_id))
        .bind(column(|a| &a.actor))
        .bind(rows.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|a| a.ip_hash.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(column(|a| &a.detail))
        .bind(&ids)
        .bind(&devices)
        .bind(&recoveries)
        .bind(stale.now)
        .execute(&mut *tx)
        .await?;
        Ok(StaleBatch { ids, reached })
    }
}
