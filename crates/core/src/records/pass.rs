//! One records round trip with the server: push the outbox in batches, pull by
//! cursor (`pull.rs`), and after a server reset push a snapshot of everything held
//! here.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use guestpass_proto::{format_time, ApiError, ErrorCode};
use guestpass_proto::{PushRequest, RecordChange, PUSH_MAX_CHANGES, RECORD_CHANGE_MAX_BYTES};
use secrecy::SecretString;

use super::note_records;
use super::pull::pull;
use super::{compact, echo, json_list, pending_count, refused_count, NOTES};
use crate::backend::{Backend, BackendError};
use crate::error::Error;
use crate::store::Store;
use crate::sync::SyncError;

/// A push stays under this many bytes of encoded changes (the server's body limit
/// is larger; one change alone may still reach [`RECORD_CHANGE_MAX_BYTES`]).
const PUSH_MAX_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// What a round trip left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordsPass {
    /// Changes still waiting for the server (made during the pass, or a push failed).
    pub pending: u64,
    /// Changes the server refused for good, set aside.
    pub refused: u64,
}

impl RecordsPass {
    /// The server holds every change made here: nothing pending, nothing refused.
    #[allow(dead_code)] // for the accounts code's "sign out and remove my data"
    pub(crate) fn everything_held(&self) -> bool {
        self.pending == 0 && self.refused == 0
    }
}

/// A full push + pull round trip for `user_id`, whose remote session is `token`.
pub(crate) async fn sync_records(
    store: &Store,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
) -> Result<RecordsPass, SyncError> {
    adopt_legacy(store, user_id).await?;
    push(store, backend, user_id, token).await?;
    if pull(store, backend, user_id, token).await? {
        // The server lost data: what was just queued goes back up now.
        push(store, backend, user_id, token).await?;
    }
    if compact(store, user_id).await? > 0 {
        push(store, backend, user_id, token).await?;
    }
    mark_saved(store, user_id).await?;
    Ok(RecordsPass {
        pending: pending_count(store, user_id).await?,
        refused: refused_count(store, user_id).await?,
    })
}

async fn adopt_legacy(store: &Store, user_id: &str) -> Result<(), Error> {
    // The list only ever shrinks, so an empty one needs no write lock to stay empty.
    let listed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notes_unadopted)")
        .fetch_one(store.pool())
        .await
        .map_err(|e| store.err(e))?;
    if !listed {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    note_records::adopt_legacy(&mut tx, store.actor(), user_id)
        .await
        .map_err(|e| e.into_error(store))?;
    tx.commit().await.map_err(|e| store.err(e))
}

/// Queues the snapshots of notes whose logs have grown (see `compact.rs`).
async fn compact(store: &Store, user_id: &str) -> Result<u64, Error> {
    let mut tx = store.begin_write().await?;
    let queued = compact::queue_due(&mut tx, user_id, store.compact_after())
        .await
        .map_err(|e| store.err(e))?;
    tx.commit().await.map_err(|e| store.err(e))?;
    Ok(queued)
}

/// Records `last_saved_at` if, at this instant, nothing is pending (a change made
/// during the pass keeps the old time).
async fn mark_saved(store: &Store, user_id: &str) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO record_sync (user_id, last_saved_at) SELECT ?1, ?2
           WHERE NOT EXISTS (SELECT 1 FROM record_outbox WHERE user_id = ?1 AND state = 'pending' AND compacts IS NULL)
         ON CONFLICT(user_id) DO UPDATE SET last_saved_at = excluded.last_saved_at",
    )
    .bind(user_id)
    .bind(format_time(&chrono::Utc::now()))
    .execute(store.pool())
    .await
    .map_err(|e| store.err(e))?;
    Ok(())
}

struct Pending {
    seq: i64,
    change: RecordChange,
    raw_len: usize,
    /// A note change's hash, remembered once the server holds it (`echo.rs`; a
    /// preference's change is cheap to apply again, so it is not).
    hash: Option<String>,
}

/// `seq, collection, id, change, deleted, schema_version, compacts`.
type OutboxRow = (i64, String, String, Vec<u8>, bool, i64, Option<String>);

async fn next_batch(store: &Store, user_id: &str) -> Result<Vec<Pending>, Error> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT seq, collection, id, change, deleted, schema_version, compacts FROM record_outbox
         WHERE user_id = ? AND state = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(user_id)
    .bind(i64::try_from(PUSH_MAX_CHANGES).unwrap_or(500))
    .fetch_all(store.pool())
    .await
    .map_err(|e| store.err(e))?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, collection, id, change, deleted, version, compacts)| Pending {
                seq,
                raw_len: change.len(),
                hash: (collection == NOTES).then(|| echo::hash(&change)),
                change: RecordChange {
                    collection,
                    id,
                    change: B64.encode(&change),
                    deleted,
                    schema_version: u32::try_from(version).unwrap_or(1),
                    compacts,
                },
            },
        )
        .collect())
}

/// Whether the server refused these changes for what they are (so each is tried
/// alone and only the guilty set aside), rather than for who asks or how.
fn refuses_content(e: &BackendError) -> Option<&ApiError> {
    match e {
        BackendError::Refused(a)
            if matches!(
                a.code,
                ErrorCode::RecordTooLarge | ErrorCode::QuotaExceeded | ErrorCode::InvalidRequest
            ) =>
        {
            Some(a)
        }
        _ => None,
    }
}

async fn push(
    store: &Store,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
) -> Result<(), SyncError> {
    loop {
        let rows = next_batch(store, user_id).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for r in rows {
            if r.raw_len > RECORD_CHANGE_MAX_BYTES {
                // The server would refuse it whole; it is not sent at all.
                let reason = ApiError::new(
                    ErrorCode::RecordTooLarge,
                    format!(
                        "This change is {} KiB, over the server's limit of {} KiB; it stays on this device.",
                        r.raw_len / 1024,
                        RECORD_CHANGE_MAX_BYTES / 1024
                    ),
                );
                set_aside(store, &[r.seq], &reason).await?;
                continue;
            }
            if !batch.is_empty() && bytes + r.change.change.len() > PUSH_MAX_BYTES {
                break;
            }
            bytes += r.change.change.len();
            batch.push(r);
        }
        if batch.is_empty() {
            continue;
        }
        let req = PushRequest {
            changes: batch.iter().map(|p| p.change.clone()).collect(),
        };
        match backend.push_records(token, &req).await {
            Ok(_) => acknowledge(store, user_id, &batch).await?,
            Err(e) => match refuses_content(&e) {
                Some(reason) if batch.len() == 1 => {
                    set_aside(store, &[batch[0].seq], reason).await?
                }
                Some(_) => push_one_by_one(store, backend, user_id, token, &batch).await?,
                None => return Err(e.into()),
            },
        }
    }
}

/// A refused batch: each change alone, so only the refused ones are set aside.
async fn push_one_by_one(
    store: &Store,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
    batch: &[Pending],
) -> Result<(), SyncError> {
    for p in batch {
        let req = PushRequest {
            changes: vec![p.change.clone()],
        };
        match backend.push_records(token, &req).await {
            Ok(_) => acknowledge(store, user_id, std::slice::from_ref(p)).await?,
            Err(e) => match refuses_content(&e) {
                Some(reason) => set_aside(store, &[p.seq], reason).await?,
                None => return Err(e.into()),
            },
        }
    }
    Ok(())
}

/// The server said these are durable: they leave the outbox, and the pull will
/// know them when they come back.
async fn acknowledge(store: &Store, user_id: &str, done: &[Pending]) -> Result<(), Error> {
    let seqs: Vec<i64> = done.iter().map(|p| p.seq).collect();
    let held: Vec<(&str, &str, &str)> = done
        .iter()
        .filter_map(|p| {
            let c = &p.change;
            Some((p.hash.as_deref()?, c.collection.as_str(), c.id.as_str()))
        })
        .collect();
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM record_outbox WHERE seq IN (SELECT value FROM json_each(?))")
        .bind(json_list(&seqs))
        .execute(&mut *tx)
        .await
        .map_err(|e| store.err(e))?;
    echo::remember(&mut tx, user_id, &held)
        .await
        .map_err(|e| store.err(e))?;
    tx.commit().await.map_err(|e| store.err(e))
}

/// Sets refused changes aside (named in the UI). A refused snapshot is dropped
/// instead: compaction is only an optimisation, and the log it would have
/// replaced is still on the server.
async fn set_aside(store: &Store, seqs: &[i64], reason: &ApiError) -> Result<(), Error> {
    let why = serde_json::to_string(reason).unwrap_or_default();
    for seq in seqs {
        sqlx::query("DELETE FROM record_outbox WHERE seq = ? AND compacts IS NOT NULL")
            .bind(seq)
            .execute(store.pool())
            .await
            .map_err(|e| store.err(e))?;
        sqlx::query("UPDATE record_outbox SET state = 'refused', last_error = ? WHERE seq = ?")
            .bind(&why)
            .bind(seq)
            .execute(store.pool())
            .await
            .map_err(|e| store.err(e))?;
    }
    Ok(())
}
