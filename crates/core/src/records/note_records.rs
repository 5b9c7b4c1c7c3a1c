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

/// A note's pulled changes, with its stored state read before the fold.
struct Unfolded {
    id: String,
    stored: Option<super::Stored>,
    changes: Vec<Pulled>,
}

/// A note after the fold: what its record and its view row become.
struct Folded {
    id: String,
    known: bool,
    pulled: usize,
    saved: Vec<u8>,
    version: u32,
    alive: bool,
    body: String,
    created_at: Option<String>,
}

/// Below this many notes a page is folded on the caller's thread.
const PARALLEL_FROM: usize = 64;

/// Folds a page's pulled changes, grouped by note (each group in log order), into
/// the notes' documents and re-materialises their `notes` rows. The Automerge work
/// (~150 µs a note here, most of a new device's first sync) runs on every core;
/// the reads and writes stay on the caller's transaction. A change that does not
/// load is skipped, and a note whose stored document is damaged is left as it is
/// (both logged): one damaged peer must not stop the sync.
pub(crate) async fn apply_remote(
    conn: &mut SqliteConnection,
    user_id: &str,
    notes: Vec<(String, Vec<Pulled>)>,
) -> Result<(), NoteError> {
    let mut work = Vec::with_capacity(notes.len());
    for (id, changes) in notes {
        let stored = load(conn, user_id, NOTES, &id).await?;
        work.push(Unfolded {
            id,
            stored,
            changes,
        });
    }
    for folded in fold_all(work).await? {
        match folded {
            Ok(f) => write_folded(conn, user_id, &f).await?,
            Err(e) => tracing::warn!("skipped pulled changes to a damaged note: {e}"),
        }
    }
    Ok(())
}

async fn fold_all(work: Vec<Unfolded>) -> Result<Vec<Result<Folded, DocError>>, NoteError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if work.len() < PARALLEL_FROM || cores < 2 {
        return Ok(work.into_iter().map(fold).collect());
    }
    let per = work.len().div_ceil(cores);
    let mut chunks = Vec::new();
    let mut rest = work;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|c| tokio::task::spawn_blocking(move || c.into_iter().map(fold).collect::<Vec<_>>()))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        // A worker that died applies nothing of the page: the transaction rolls
        // back and the next pass pulls the page again.
        out.extend(t.await.map_err(|e| NoteError::Worker(e.to_string()))?);
    }
    Ok(out)
}

fn fold(u: Unfolded) -> Result<Folded, DocError> {
    let known = u.stored.is_some();
    let (mut doc, mut version) = match u.stored {
        Some(s) => (NoteDoc::load(&s.doc)?, s.schema_version),
        None => (NoteDoc::empty(), SCHEMA_VERSION),
    };
    for (change, schema_version) in &u.changes {
        match doc.apply(change) {
            Ok(()) => version = version.max(*schema_version),
            Err(e) => tracing::warn!("skipped a pulled note change that does not load: {e}"),
        }
    }
    let alive = doc.alive()?;
    Ok(Folded {
        known,
        pulled: u.changes.len(),
        saved: doc.save(),
        version,
        alive,
        body: if alive { doc.body()? } else { String::new() },
        created_at: doc.created_at()?,
        id: u.id,
    })
}

async fn write_folded(
    conn: &mut SqliteConnection,
    user_id: &str,
    f: &Folded,
) -> Result<(), NoteError> {
    save_pulled(
        conn,
        &Write {
            user_id,
            collection: NOTES,
            id: &f.id,
            doc: &f.saved,
            schema_version: f.version,
            deleted: !f.alive,
        },
        f.pulled,
    )
    .await?;
    materialise(conn, user_id, f).await
}

/// Makes the `notes` row say what the document says. A note new to this device
/// has no row to compare with or delete.
async fn materialise(
    conn: &mut SqliteConnection,
    user_id: &str,
    f: &Folded,
) -> Result<(), NoteError> {
    let id = f.id.as_str();
    if !f.alive {
        if !f.known {
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
    let created = f
        .created_at
        .clone()
        .filter(|c| chrono::DateTime::parse_from_rfc3339(c).is_ok())
        .unwrap_or_else(|| now.clone());
    let body = &f.body;
    if f.known {
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
    .bind(body)
    .bind(&created)
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
