//! The pull of a records round trip: every page after the stored cursor, each
//! applied in one transaction together with its new cursor, the next page fetched
//! while one is applied.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use guestpass_proto::{format_time, ErrorCode, PullResponse, RecordChange, PULL_MAX_LIMIT};
use secrecy::SecretString;
use sqlx::SqliteConnection;

use super::note_records::NoteError;
use super::pulled_notes::{self, PulledNote};
use super::{echo, pref_records, NOTES, PREFS};
use crate::backend::{Backend, BackendError};
use crate::error::Error;
use crate::store::Store;
use crate::sync::SyncError;

/// Pulls every page after the stored cursor. `true` when the server had lost data
/// (new epoch or expired cursor) and a snapshot of every local record was queued.
/// While one page is applied the next is already on its way (its cursor is
/// known before the apply; an apply that fails drops it unused).
pub(super) async fn pull(
    store: &Store,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
) -> Result<bool, SyncError> {
    let mut cursor: Option<String> =
        sqlx::query_scalar("SELECT cursor FROM record_sync WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(store.pool())
            .await
            .map_err(|e| store.err(e))?
            .flatten();
    let mut resnapped = false;
    let mut fetched = backend
        .pull_records(token, cursor.as_deref(), PULL_MAX_LIMIT)
        .await;
    loop {
        let page = match fetched {
            Ok(p) => p,
            Err(BackendError::Refused(e)) if e.code == ErrorCode::CursorExpired && !resnapped => {
                // Tombstones older than our cursor are gone: start over, and give the
                // server everything we hold in case it lost some of it too.
                let mut tx = store.begin_write().await?;
                queue_snapshots(&mut tx, user_id)
                    .await
                    .map_err(|e| store.err(e))?;
                tx.commit().await.map_err(|e| store.err(e))?;
                resnapped = true;
                cursor = None;
                fetched = backend.pull_records(token, None, PULL_MAX_LIMIT).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let snapshot_first = page.reset && !resnapped;
        resnapped |= snapshot_first;
        // An empty page claiming more would loop forever; the next pass goes on.
        let progressed = !page.changes.is_empty() || cursor.as_deref() != Some(&page.cursor);
        let last = !page.more || !progressed;
        let apply = apply_and_advance(store, user_id, &page, snapshot_first, last);
        if last {
            apply.await?;
            return Ok(resnapped);
        }
        let (applied, next) = tokio::join!(
            apply,
            backend.pull_records(token, Some(&page.cursor), PULL_MAX_LIMIT)
        );
        applied?;
        fetched = next;
        cursor = Some(page.cursor);
    }
}

/// One pulled page and its cursor, in one transaction (after queuing a snapshot
/// of everything when the server lost data; the `last` page of a pull also ends
/// its wait for echoes).
async fn apply_and_advance(
    store: &Store,
    user_id: &str,
    page: &PullResponse,
    snapshot_first: bool,
    last: bool,
) -> Result<(), Error> {
    let mut tx = store.begin_write().await?;
    if snapshot_first {
        queue_snapshots(&mut tx, user_id)
            .await
            .map_err(|e| store.err(e))?;
    }
    apply_page(&mut tx, user_id, &page.changes)
        .await
        .map_err(|e| e.into_error(store))?;
    sqlx::query(
        "INSERT INTO record_sync (user_id, cursor) VALUES (?, ?)
         ON CONFLICT(user_id) DO UPDATE SET cursor = excluded.cursor",
    )
    .bind(user_id)
    .bind(&page.cursor)
    .execute(&mut *tx)
    .await
    .map_err(|e| store.err(e))?;
    if last {
        echo::forget(&mut tx, user_id)
            .await
            .map_err(|e| store.err(e))?;
    }
    tx.commit().await.map_err(|e| store.err(e))
}

/// Every local record of the user, whole, into the outbox (pushes are idempotent).
pub(crate) async fn queue_snapshots(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO record_outbox (user_id, collection, id, change, deleted, schema_version, created_at)
         SELECT user_id, collection, id, doc, deleted, schema_version, ? FROM records WHERE user_id = ?
         ORDER BY collection, id",
    )
    .bind(format_time(&chrono::Utc::now()))
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A pulled page into the store. Changes to one note are folded in together (one
/// load and save of its document however many changes the page holds for it),
/// this device's own skipped (`echo.rs`); preferences in log order. A change this
/// build cannot read (damaged, or a collection it does not know) is skipped and
/// logged, so one bad record does not stop the user's sync.
async fn apply_page(
    conn: &mut SqliteConnection,
    user_id: &str,
    changes: &[RecordChange],
) -> Result<(), NoteError> {
    let mut decoded = Vec::with_capacity(changes.len());
    for c in changes {
        match B64.decode(&c.change) {
            Ok(bytes) => {
                let hash = (c.collection == NOTES).then(|| echo::hash(&bytes));
                decoded.push((c, bytes, hash));
            }
            Err(_) => {
                tracing::warn!(collection = %c.collection, "skipped a pulled change that is not base64")
            }
        }
    }
    let hashes: Vec<&str> = decoded
        .iter()
        .filter_map(|(_, _, h)| h.as_deref())
        .collect();
    let own = if hashes.is_empty() {
        HashSet::new()
    } else {
        echo::own(conn, user_id, &hashes).await?
    };
    let mut notes: Vec<PulledNote> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (c, bytes, hash) in decoded {
        match c.collection.as_str() {
            NOTES => {
                let at = *index.entry(c.id.as_str()).or_insert_with(|| {
                    notes.push(PulledNote {
                        id: c.id.clone(),
                        changes: Vec::new(),
                        echoed: 0,
                    });
                    notes.len() - 1
                });
                if hash.is_some_and(|h| own.contains(&h)) {
                    notes[at].echoed += 1;
                } else {
                    notes[at].changes.push((bytes, c.schema_version));
                }
            }
            PREFS => {
                pref_records::apply_remote(conn, user_id, &c.id, &bytes, c.schema_version).await?
            }
            other => {
                tracing::debug!(collection = %other, "skipped a change of a collection this app does not keep")
            }
        }
    }
    pulled_notes::apply_remote(conn, user_id, notes).await?;
    Ok(())
}
