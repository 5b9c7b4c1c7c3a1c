//! Pulled note changes folded into this device's notes, a page at a time. The page's
//! stored documents are read in one statement, the Automerge work runs on every
//! core, and the records and the `notes` view are written back in a few multi-row
//! statements, all on the caller's transaction. (One statement per note cost a
//! round trip to SQLite's thread each: about half of a new device's first sync.)

use std::collections::{BTreeMap, HashMap};

use guestpass_proto::format_time;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::note_records::NoteError;
use super::notes_doc::{DocError, NoteDoc};
use super::{
    json_list, load_many, save_pulled, Stored, Write, NOTES, ROWS_PER_STATEMENT, SCHEMA_VERSION,
};

/// A pulled change's bytes and the schema version it was written with.
pub(crate) type Pulled = (Vec<u8>, u32);

/// One note's changes in a pulled page, in log order: those to fold in, and how
/// many were this device's own (see `echo.rs`), which its document already holds.
pub(crate) struct PulledNote {
    pub id: String,
    pub changes: Vec<Pulled>,
    pub echoed: usize,
}

/// A note's pulled changes, with its stored state read before the fold.
struct Unfolded {
    id: String,
    stored: Option<Stored>,
    changes: Vec<Pulled>,
    echoed: usize,
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
/// (~150 µs a note here, most of what is left of a new device's first sync) runs on
/// every core. A change that does not load is skipped, and a note whose stored
/// document is damaged is left as it is (both logged): one damaged peer must not
/// stop the sync.
pub(crate) async fn apply_remote(
    conn: &mut SqliteConnection,
    user_id: &str,
    notes: Vec<PulledNote>,
) -> Result<(), NoteError> {
    let (notes, echoes): (Vec<_>, Vec<_>) = notes.into_iter().partition(|n| !n.changes.is_empty());
    count_echoes(conn, user_id, &echoes).await?;
    if notes.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = notes.iter().map(|n| n.id.as_str()).collect();
    let mut held = load_many(conn, user_id, NOTES, &ids).await?;
    let work = notes
        .into_iter()
        .map(|n| Unfolded {
            stored: held.remove(&n.id),
            id: n.id,
            changes: n.changes,
            echoed: n.echoed,
        })
        .collect();
    let mut folded = Vec::new();
    for f in fold_all(work).await? {
        match f {
            Ok(f) => folded.push(f),
            Err(e) => tracing::warn!("skipped pulled changes to a damaged note: {e}"),
        }
    }
    let writes: Vec<_> = folded
        .iter()
        .map(|f| {
            let w = Write {
                user_id,
                collection: NOTES,
                id: &f.id,
                doc: &f.saved,
                schema_version: f.version,
                deleted: !f.alive,
            };
            (w, f.pulled)
        })
        .collect();
    save_pulled(conn, &writes).await?;
    materialise(conn, user_id, &folded).await
}

/// Notes whose pulled changes were all this device's own: nothing to fold, but
/// they still count towards the note's next snapshot (the log a new device would
/// pull grew by them).
async fn count_echoes(
    conn: &mut SqliteConnection,
    user_id: &str,
    echoes: &[PulledNote],
) -> Result<(), sqlx::Error> {
    if echoes.is_empty() {
        return Ok(());
    }
    // One statement per distinct count (nearly always just 1): an `UPDATE … FROM
    // json_each` joined the other way round scanned every record per note.
    let mut by_count: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for n in echoes {
        by_count.entry(n.echoed).or_default().push(n.id.as_str());
    }
    for (n, ids) in by_count {
        sqlx::query(
            "UPDATE records SET changes_since_snapshot = changes_since_snapshot + ?
             WHERE user_id = ? AND collection = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(user_id)
        .bind(NOTES)
        .bind(json_list(&ids))
        .execute(&mut *conn)
        .await?;
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
        pulled: u.changes.len() + u.echoed,
        saved: doc.save(),
        version,
        alive,
        body: if alive { doc.body()? } else { String::new() },
        created_at: doc.created_at()?,
        id: u.id,
    })
}

/// Makes the `notes` rows say what the documents say: a note deleted elsewhere
/// leaves the view, a note whose body changed (or new here) is written, and one the
/// view already shows as it is stays untouched.
async fn materialise(
    conn: &mut SqliteConnection,
    user_id: &str,
    folded: &[Folded],
) -> Result<(), NoteError> {
    let known: Vec<&str> = folded
        .iter()
        .filter(|f| f.known)
        .map(|f| f.id.as_str())
        .collect();
    let shown: HashMap<String, String> = if known.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as(
            "SELECT id, body FROM notes WHERE user_id = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(user_id)
        .bind(json_list(&known))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let gone: Vec<&str> = folded
        .iter()
        .filter(|f| f.known && !f.alive)
        .map(|f| f.id.as_str())
        .collect();
    if !gone.is_empty() {
        sqlx::query(
            "DELETE FROM notes WHERE user_id = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(user_id)
        .bind(json_list(&gone))
        .execute(&mut *conn)
        .await?;
    }
    let now = format_time(&chrono::Utc::now());
    let changed: Vec<(&Folded, &str)> = folded
        .iter()
        .filter(|f| f.alive && shown.get(&f.id) != Some(&f.body))
        .map(|f| {
            // A damaged createdAt must not stop the note from showing: fall back to now.
            let created = f
                .created_at
                .as_deref()
                .filter(|c| chrono::DateTime::parse_from_rfc3339(c).is_ok())
                .unwrap_or(now.as_str());
            (f, created)
        })
        .collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO notes (id, user_id, body, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, (f, created)| {
            row.push_bind(f.id.as_str())
                .push_bind(user_id)
                .push_bind(f.body.as_str())
                .push_bind(*created)
                .push_bind(now.as_str());
        });
        // `notes.id` is unique across users; a row of another user with this id is
        // left alone (ids are ULIDs minted by the writer, so this is only a damaged
        // peer).
        q.push(
            " ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
              WHERE notes.user_id = excluded.user_id",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}
