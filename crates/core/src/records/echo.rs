//! The device's own changes coming back in its pull ("echoes"). A push that the
//! server acknowledged leaves the changes' hashes in `record_echo`; the pull that
//! follows skips them (each is already in its note's document, and folding it in
//! again costs a load and a save of that document: ~150 µs a note here, a second
//! for a push of 10,000), and empties the table once it has pulled everything.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;

use super::json_list;

/// A change's identity for this table: the SHA-256 of its bytes, in hex.
pub(crate) fn hash(change: &[u8]) -> String {
    hex::encode(Sha256::digest(change))
}

/// These changes of `user_id`, each `(hash, collection, id)`, are held by the
/// server (the caller's transaction also takes them out of the outbox).
pub(crate) async fn remember(
    conn: &mut SqliteConnection,
    user_id: &str,
    changes: &[(&str, &str, &str)],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO record_echo (user_id, hash, collection, id)
         SELECT ?, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
    )
    .bind(user_id)
    .bind(json_list(changes))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which of `hashes` are this device's own changes, in one statement. Only those
/// whose record is still here count: a record that is gone (its data removed and
/// pulled afresh) holds nothing, so its changes are folded in like anyone's.
pub(crate) async fn own(
    conn: &mut SqliteConnection,
    user_id: &str,
    hashes: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT e.hash FROM record_echo e
         WHERE e.user_id = ? AND e.hash IN (SELECT value FROM json_each(?))
           AND EXISTS (SELECT 1 FROM records r WHERE r.user_id = e.user_id
                       AND r.collection = e.collection AND r.id = e.id)",
    )
    .bind(user_id)
    .bind(json_list(hashes))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A complete pull is over: every change pushed before it came back, or never will.
pub(crate) async fn forget(conn: &mut SqliteConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM record_echo WHERE user_id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
