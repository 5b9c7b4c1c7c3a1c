//! Notes as records: each local change writes the record's document, the `notes`
//! view and one outbox row in the caller's transaction; a pulled change is folded
//! into the stored document and the view re-materialised from it.

use automerge::ActorId;
use guestpass_proto::format_time;
use sqlx::SqliteConnection;

use super::notes_doc::{DocError, NoteDoc};
use super::{enqueue, load, save, save_pulled, Write, NOTES, SCHEMA_VERSION};
use crate::error::Error;

/// What a local change needs: the failure is either the database or a damaged doc.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoteError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the note's stored document is damaged: {0}")]
    Doc(#[from] DocError),
}

impl NoteError {
    pub(crate) fn into_error(self, store: &crate::store::Store) -> Error {
        match self {
            Self::Db(e) => store.err(e),
            Self::Doc(e) => Error::Database(format!("the note's stored document is damaged: {e}")),
        }
    }
}

/// A note's document and schema version, adopting a note written before notes were
/// records (a `notes` row without its record) as a fresh document. `None`: no such
/// note of this user.
async fn current(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
    id: &str,
) -> Result<Option<(NoteDoc, u32)>, NoteError> {
    if let Some(s) = load(conn, user_id, NOTES, id).await? {
        return Ok(Some((
            NoteDoc::load(&s.doc)?,
            s.schema_version.max(SCHEMA_VERSION),
        )));
    }
    let legacy: Option<(String, String)> =
        sqlx::query_as("SELECT body, created_at FROM notes WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((body, created_at)) = legacy else {
        return Ok(None);
    };
    let (mut doc, change) = NoteDoc::create(actor, &body, &created_at)?;
    let saved = doc.save();
    let w = Write {
        user_id,
        collection: NOTES,
        id,
        doc: &saved,
        schema_version: SCHEMA_VERSION,
        deleted: false,
    };
    save(conn, &w).await?;
    enqueue(conn, &w, &change).await?;
    Ok(Some((doc, SCHEMA_VERSION)))
}

/// Queues every note of `user_id` written before notes were records.
pub(crate) async fn adopt_legacy(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
) -> Result<(), NoteError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT n.id FROM notes n WHERE n.user_id = ? AND NOT EXISTS
           (SELECT 1 FROM records r WHERE r.user_id = n.user_id AND r.collection = 'notes' AND r.id = n.id)",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    for id in ids {
        current(conn, actor, user_id, &id).await?;
    }
    Ok(())
}

/// A new note: its record and its first change (the view row is the caller's).
pub(crate) async fn create(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
    id: &str,
    body: &str,
    created_at: &str,
) -> Result<(), NoteError> {
    let (mut doc, change) = NoteDoc::create(actor, body, created_at)?;
    let saved = doc.save();
    let w = Write {
        user_id,
        collection: NOTES,
        id,
        doc: &saved,
        schema_version: SCHEMA_VERSION,
        deleted: false,
    };
    save(conn, &w).await?;
    enqueue(conn, &w, &change).await?;
    Ok(())
}

/// Edits a live note's body; `false` if there is no such live note.
pub(crate) async fn edit(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
    id: &str,
    body: &str,
) -> Result<bool, NoteError> {
    let Some((mut doc, version)) = current(conn, actor, user_id, id).await? else {
        return Ok(false);
    };
    if !doc.alive()? {
        return Ok(false);
    }
    let change = doc.edit(actor, body)?;
    let saved = doc.save();
    let w = Write {
        user_id,
        collection: NOTES,
        id,
        doc: &saved,
        schema_version: version,
        deleted: false,
    };
    save(conn, &w).await?;
    enqueue(conn, &w, &change).await?;
    Ok(true)
}

/// Deletes a live note (a tombstone change); `false` if there is no such live note.
pub(crate) async fn delete(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
    id: &str,
) -> Result<bool, NoteError> {
    let Some((mut doc, version)) = current(conn, actor, user_id, id).await? else {
        return Ok(false);
    };
    if !doc.alive()? {
        return Ok(false);
    }
    let change = doc.delete(actor)?;
    let saved = doc.save();
    let w = Write {
        user_id,
        collection: NOTES,
        id,
        doc: &saved,
        schema_version: version,
        deleted: true,
    };
    save(conn, &w).await?;
    enqueue(conn, &w, &change).await?;
    Ok(true)
}

/// A pulled change's bytes and the schema version it was written with.
pub(crate) type Pulled = (Vec<u8>, u32);

/// Folds a page's pulled changes to one note (in log order) into its document,
/// loaded and saved once, and re-materialises its `notes` row. A change that does
/// not load is skipped (and logged): one damaged peer must not stop the sync.
pub(crate) async fn apply_remote(
    conn: &mut SqliteConnection,
    user_id: &str,
    id: &str,
    changes: &[Pulled],
) -> Result<(), NoteError> {
    let stored = load(conn, user_id, NOTES, id).await?;
    let known = stored.is_some();
    let (mut doc, mut version) = match stored {
        Some(s) => (NoteDoc::load(&s.doc)?, s.schema_version),
        None => (NoteDoc::empty(), SCHEMA_VERSION),
    };
    for (change, schema_version) in changes {
        match doc.apply(change) {
            Ok(()) => version = version.max(*schema_version),
            Err(e) => tracing::warn!("skipped a pulled note change that does not load: {e}"),
        }
    }
    let alive = doc.alive()?;
    let saved = doc.save();
    save_pulled(
        conn,
        &Write {
            user_id,
            collection: NOTES,
            id,
            doc: &saved,
            schema_version: version,
            deleted: !alive,
        },
        changes.len(),
    )
    .await?;
    materialise(conn, user_id, id, &doc, alive, known).await
}

/// Makes the `notes` row say what the document says. `known`: the note was
/// here before this pull (else there is no row to compare with or delete).
async fn materialise(
    conn: &mut SqliteConnection,
    user_id: &str,
    id: &str,
    doc: &NoteDoc,
    alive: bool,
    known: bool,
) -> Result<(), NoteError> {
    if !alive {
        if !known {
            return Ok(());
        }
        sqlx::query("DELETE FROM notes WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    let now = format_time(&chrono::Utc::now());
    // A damaged createdAt must not stop the note from showing: fall back to now.
    let created = doc
        .created_at()?
        .filter(|c| chrono::DateTime::parse_from_rfc3339(c).is_ok())
        .unwrap_or_else(|| now.clone());
    let body = doc.body()?;
    if known {
        let shown: Option<String> =
            sqlx::query_scalar("SELECT body FROM notes WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
        if shown.as_deref() == Some(body.as_str()) {
            return Ok(());
        }
    }
    // `notes.id` is unique across users; a row of another user with this id is left
    // alone (ids are ULIDs minted by the writer, so this is only a damaged peer).
    sqlx::query(
        "INSERT INTO notes (id, user_id, body, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
         WHERE notes.user_id = excluded.user_id",
    )
    .bind(id)
    .bind(user_id)
    .bind(&body)
    .bind(&created)
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
