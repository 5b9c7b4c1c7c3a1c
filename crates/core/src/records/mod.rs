//! Record sync on the device (DESIGN.md §3a). Every note and preference is a record
//! `{collection, id}` of its user: `records` keeps its state (an Automerge document
//! for a note, the winning `{value, hlc}` for a preference), `record_outbox` the
//! changes not yet held by the server — written in the same transaction as the
//! change itself — and `record_sync` where the user's pull stands. `notes` and
//! `users.metadata.preferences` stay the views the app reads.
//!
//! Nothing per user is cached in memory: the merge of a guest into an account
//! re-owns these rows with plain `UPDATE`s and everything here follows.

mod compact;
mod echo;
mod hlc;
pub(crate) mod live;
pub(crate) mod note_records;
mod notes_doc;
mod pass;
pub(crate) mod pref_records;
mod pull;
mod pulled_notes;

use std::collections::HashMap;

use guestpass_proto::format_time;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::error::Result;
use crate::store::Store;

// `RecordsPass` and its `everything_held` are for the accounts code (sign out and
// remove data), built on another branch.
pub(crate) use compact::COMPACT_AFTER;
#[allow(unused_imports)]
pub(crate) use pass::{sync_records, RecordsPass};

pub(crate) const NOTES: &str = "notes";
pub(crate) const PREFS: &str = "prefs";
/// The record schema this build writes. A record met with a newer one keeps it (and
/// the fields this build does not know) when written back.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// A record's stored state.
pub(crate) struct Stored {
    pub doc: Vec<u8>,
    pub schema_version: u32,
}

impl Stored {
    /// From a row's `doc, schema_version`.
    fn from_row(doc: Vec<u8>, version: i64) -> Self {
        Self {
            doc,
            schema_version: u32::try_from(version).unwrap_or(SCHEMA_VERSION),
        }
    }
}

pub(crate) async fn load(
    conn: &mut SqliteConnection,
    user_id: &str,
    collection: &str,
    id: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<(Vec<u8>, i64)> = sqlx::query_as(
        "SELECT doc, schema_version FROM records WHERE user_id = ? AND collection = ? AND id = ?",
    )
    .bind(user_id)
    .bind(collection)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(doc, v)| Stored::from_row(doc, v)))
}

/// The stored states of the records `ids` of one collection that this device holds,
/// by id, in one statement.
pub(crate) async fn load_many(
    conn: &mut SqliteConnection,
    user_id: &str,
    collection: &str,
    ids: &[&str],
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT id, doc, schema_version FROM records
         WHERE user_id = ? AND collection = ? AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(user_id)
    .bind(collection)
    .bind(json_list(ids))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, doc, v)| (id, Stored::from_row(doc, v)))
        .collect())
}

/// A list of ids (or seqs) as one bound value (a JSON array, read back by
/// `json_each`), so a page of them is one statement whatever its length.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Rows per multi-row `INSERT`: SQLite binds at most 32,766 values a statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

#[derive(Clone, Copy)]
pub(crate) struct Write<'a> {
    pub user_id: &'a str,
    pub collection: &'a str,
    pub id: &'a str,
    pub doc: &'a [u8],
    pub schema_version: u32,
    pub deleted: bool,
}

/// Stores a record's new state after a local change (it counts nothing towards
/// the next snapshot: only pulled changes do, see [`save_pulled`]).
pub(crate) async fn save(conn: &mut SqliteConnection, w: &Write<'_>) -> Result<(), sqlx::Error> {
    save_pulled(conn, &[(*w, 0)]).await
}

/// Queues one change for the server (the caller's transaction makes it atomic with
/// the change itself).
pub(crate) async fn enqueue(
    conn: &mut SqliteConnection,
    w: &Write<'_>,
    change: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO record_outbox (user_id, collection, id, change, deleted, schema_version, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(w.user_id)
    .bind(w.collection)
    .bind(w.id)
    .bind(change)
    .bind(w.deleted)
    .bind(i64::from(w.schema_version))
    .bind(format_time(&chrono::Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The device's user moved to another server (the settings changed the backend):
/// that server holds none of its changes. Queues each record's whole state once
/// (a note's Automerge save loads as a change; a preference's stored `{value, hlc}`
/// is its change) and forgets the old server's cursor, so the first pass there
/// pushes everything and pulls from the start.
pub(crate) async fn reseed(conn: &mut SqliteConnection, user_id: &str) -> Result<(), sqlx::Error> {
    pull::queue_snapshots(conn, user_id).await?;
    sqlx::query("DELETE FROM record_sync WHERE user_id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores records' states after `pulled` changes from the server were folded in
/// (each its own count), counting them towards their next snapshots (compaction).
/// Only pulled changes count: the device's own come back in its pull too, so the
/// count is the length of the log a new device would pull. Multi-row statements: a
/// pulled page of a thousand notes is two statements, not a thousand.
pub(crate) async fn save_pulled(
    conn: &mut SqliteConnection,
    writes: &[(Write<'_>, usize)],
) -> Result<(), sqlx::Error> {
    let now = format_time(&chrono::Utc::now());
    for chunk in writes.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO records (user_id, collection, id, doc, schema_version, deleted, updated_at,
                                  changes_since_snapshot) ",
        );
        q.push_values(chunk, |mut row, (w, pulled)| {
            row.push_bind(w.user_id)
                .push_bind(w.collection)
                .push_bind(w.id)
                .push_bind(w.doc)
                .push_bind(i64::from(w.schema_version))
                .push_bind(w.deleted)
                .push_bind(now.as_str())
                .push_bind(i64::try_from(*pulled).unwrap_or(i64::MAX));
        });
        q.push(
            " ON CONFLICT(user_id, collection, id) DO UPDATE SET doc = excluded.doc,
               schema_version = excluded.schema_version, deleted = excluded.deleted,
               updated_at = excluded.updated_at,
               changes_since_snapshot = records.changes_since_snapshot + excluded.changes_since_snapshot",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn count(store: &Store, user_id: &str, state: &str) -> Result<u64> {
    let n: i64 =
        // A queued snapshot is not the person's change (compact.rs): not counted.
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM record_outbox WHERE user_id = ? AND state = ? AND compacts IS NULL",
        )
            .bind(user_id)
            .bind(state)
            .fetch_one(store.pool())
            .await
            .map_err(|e| store.err(e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Changes made here that the server does not hold yet ("3 changes waiting").
pub(crate) async fn pending_count(store: &Store, user_id: &str) -> Result<u64> {
    count(store, user_id, "pending").await
}

/// Changes the server refused for good (too large, over quota), set aside.
pub(crate) async fn refused_count(store: &Store, user_id: &str) -> Result<u64> {
    count(store, user_id, "refused").await
}

/// When a round trip last ended with nothing pending.
pub(crate) async fn last_saved_at(store: &Store, user_id: &str) -> Result<Option<String>> {
    let at: Option<Option<String>> =
        sqlx::query_scalar("SELECT last_saved_at FROM record_sync WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(store.pool())
            .await
            .map_err(|e| store.err(e))?;
    Ok(at.flatten())
}

/// The figures the sync pill and the account screen show.
pub(crate) struct Counts {
    pub pending: u64,
    pub refused: u64,
    pub last_saved_at: Option<String>,
}

pub(crate) async fn status(store: &Store, user_id: &str) -> Result<Counts> {
    Ok(Counts {
        pending: pending_count(store, user_id).await?,
        refused: refused_count(store, user_id).await?,
        last_saved_at: last_saved_at(store, user_id).await?,
    })
}
