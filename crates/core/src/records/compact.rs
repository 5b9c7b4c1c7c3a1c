//! Compaction on the device (DESIGN.md §3a): a note whose log on the server has
//! grown by [`COMPACT_AFTER`] changes (pulled: the device's own come back in
//! its pull too) since its last snapshot gets one: its whole
//! Automerge document, queued with `compacts` = this device's pull cursor. The
//! server then drops the changes the snapshot holds (every one through the
//! cursor: this device pulled them all) and keeps the rest after it, so a new
//! device pulls one change per note instead of its whole history.
//!
//! Only a note with nothing queued or set aside is compacted: its stored document
//! is then exactly what the server holds through the cursor (plus this device's
//! acknowledged changes), never content the server has not accepted. Preferences
//! are not compacted: each of their changes is already a whole value.

use guestpass_proto::{format_time, RECORD_CHANGE_MAX_BYTES};
use sqlx::SqliteConnection;

use super::NOTES;

/// Changes a note takes in before this device pushes a snapshot of it.
pub(crate) const COMPACT_AFTER: i64 = 32;

/// Queues the snapshots due; returns how many.
pub(crate) async fn queue_due(
    conn: &mut SqliteConnection,
    user_id: &str,
    after: i64,
) -> Result<u64, sqlx::Error> {
    let cursor: Option<String> =
        sqlx::query_scalar("SELECT cursor FROM record_sync WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    // Without a cursor nothing was pulled yet: nothing on the server to replace.
    let Some(cursor) = cursor else {
        return Ok(0);
    };
    let due: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.id, length(r.doc) FROM records r
         WHERE r.user_id = ? AND r.collection = ? AND r.changes_since_snapshot >= ?
           AND NOT EXISTS (SELECT 1 FROM record_outbox o WHERE o.user_id = r.user_id
                           AND o.collection = r.collection AND o.id = r.id)",
    )
    .bind(user_id)
    .bind(NOTES)
    .bind(after)
    .fetch_all(&mut *conn)
    .await?;
    let mut queued = 0;
    for (id, len) in due {
        // A document over the limit cannot be a snapshot; its log stays as it is.
        if usize::try_from(len).unwrap_or(usize::MAX) <= RECORD_CHANGE_MAX_BYTES {
            sqlx::query(
                "INSERT INTO record_outbox
                   (user_id, collection, id, change, deleted, schema_version, compacts, created_at)
                 SELECT user_id, collection, id, doc, deleted, schema_version, ?, ?
                 FROM records WHERE user_id = ? AND collection = ? AND id = ?",
            )
            .bind(&cursor)
            .bind(format_time(&chrono::Utc::now()))
            .bind(user_id)
            .bind(NOTES)
            .bind(&id)
            .execute(&mut *conn)
            .await?;
            queued += 1;
        }
        sqlx::query(
            "UPDATE records SET changes_since_snapshot = 0
             WHERE user_id = ? AND collection = ? AND id = ?",
        )
        .bind(user_id)
        .bind(NOTES)
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(queued)
}
