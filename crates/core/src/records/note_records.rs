//! Notes as records: each local change writes the record's document, the `notes`
//! view and one outbox row in the caller's transaction (pulled changes are folded in
//! by `pulled_notes.rs`).

use automerge::ActorId;
use sqlx::SqliteConnection;

use super::notes_doc::{DocError, NoteDoc};
use super::{enqueue, load, save, Write, NOTES, SCHEMA_VERSION};
use crate::error::Error;

/// What a local change needs: the failure is either the database or a damaged doc.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoteError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the note's stored document is damaged: {0}")]
    Doc(#[from] DocError),
    #[error("a worker folding pulled notes failed: {0}")]
    Worker(String),
}

impl NoteError {
    pub(crate) fn into_error(self, store: &crate::store::Store) -> Error {
        match self {
            Self::Db(e) => store.err(e),
            Self::Doc(e) => Error::Database(format!("the note's stored document is damaged: {e}")),
            Self::Worker(e) => {
                Error::Database(format!("a worker folding pulled notes failed: {e}"))
            }
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

/// Queues every note of `user_id` written before notes were records: those the
/// migration listed in `notes_unadopted` (empty on nearly every device, so a pass
/// pays nothing for it). A listed note already adopted on an edit, or gone, leaves
/// the list too.
pub(crate) async fn adopt_legacy(
    conn: &mut SqliteConnection,
    actor: &ActorId,
    user_id: &str,
) -> Result<(), NoteError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT n.id FROM notes_unadopted u JOIN notes n ON n.id = u.id WHERE n.user_id = ?",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    for id in &ids {
        current(conn, actor, user_id, id).await?;
    }
    sqlx::query(
        "DELETE FROM notes_unadopted WHERE id IN (SELECT value FROM json_each(?))
           OR NOT EXISTS (SELECT 1 FROM notes n WHERE n.id = notes_unadopted.id)",
    )
    .bind(super::json_list(&ids))
    .execute(&mut *conn)
    .await?;
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
