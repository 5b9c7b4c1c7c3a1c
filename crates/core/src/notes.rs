//! The app's own data: notes owned by the user id through a foreign key. An upgrade
//! never touches these rows. Each note is also a record (an Automerge document, see
//! `records::note_records`): every change here writes the view row, the record and
//! its outbox row in one transaction.

use chrono::Utc;
use guestpass_proto::{format_time, new_note_id, ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::{Error, Result};
use crate::records::note_records;
use crate::rows::parse_time;
use crate::store::Store;

/// Long enough for real notes, short enough that a paste accident can't bloat the store.
pub const NOTE_MAX_CHARS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub id: String,
    pub user_id: String,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

fn check_body(body: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(Error::Api(ApiError::new(
            ErrorCode::InvalidRequest,
            "A note cannot be empty",
        )));
    }
    if body.chars().count() > NOTE_MAX_CHARS {
        return Err(Error::Api(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("A note can hold at most {NOTE_MAX_CHARS} characters"),
        )));
    }
    Ok(())
}

fn note(row: &sqlx::sqlite::SqliteRow) -> Result<Note, sqlx::Error> {
    // Round-trip through the parser so a damaged timestamp surfaces as an error.
    let created: String = row.try_get("created_at")?;
    let updated: String = row.try_get("updated_at")?;
    Ok(Note {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        body: row.try_get("body")?,
        created_at: format_time(&parse_time(&created)?),
        updated_at: format_time(&parse_time(&updated)?),
    })
}

/// Newest first.
pub(crate) async fn list(store: &Store, user_id: &str) -> Result<Vec<Note>> {
    let rows =
        sqlx::query("SELECT * FROM notes WHERE user_id = ? ORDER BY created_at DESC, rowid DESC")
            .bind(user_id)
            .fetch_all(store.pool())
            .await
            .map_err(|e| store.err(e))?;
    rows.iter()
        .map(note)
        .collect::<Result<_, _>>()
        .map_err(|e| store.err(e))
}

pub(crate) async fn create(store: &Store, user_id: &str, body: &str) -> Result<Note> {
    check_body(body)?;
    let now = format_time(&Utc::now());
    let n = Note {
        id: new_note_id(),
        user_id: user_id.to_owned(),
        body: body.to_owned(),
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO notes (id, user_id, body, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&n.id)
    .bind(&n.user_id)
    .bind(&n.body)
    .bind(&n.created_at)
    .bind(&n.updated_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| store.err(e))?;
    note_records::create(&mut tx, store.actor(), user_id, &n.id, body, &n.created_at)
        .await
        .map_err(|e| e.into_error(store))?;
    tx.commit().await.map_err(|e| store.err(e))?;
    Ok(n)
}

pub(crate) async fn update(store: &Store, user_id: &str, id: &str, body: &str) -> Result<Note> {
    check_body(body)?;
    let mut tx = store.begin_write().await?;
    let edited = note_records::edit(&mut tx, store.actor(), user_id, id, body)
        .await
        .map_err(|e| e.into_error(store))?;
    if !edited {
        return Err(ErrorCode::NoteNotFound.into());
    }
    let now = format_time(&Utc::now());
    let row = sqlx::query(
        "UPDATE notes SET body = ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING *",
    )
    .bind(body)
    .bind(&now)
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| store.err(e))?;
    let Some(row) = row else {
        // Record and view row are written together, so a live record without its
        // row is damage: say so (the transaction rolls back) rather than guess.
        return Err(Error::Database(format!("note {id} has no row to show")));
    };
    let n = note(&row).map_err(|e| store.err(e))?;
    tx.commit().await.map_err(|e| store.err(e))?;
    Ok(n)
}

pub(crate) async fn delete(store: &Store, user_id: &str, id: &str) -> Result<()> {
    let mut tx = store.begin_write().await?;
    let deleted = note_records::delete(&mut tx, store.actor(), user_id, id)
        .await
        .map_err(|e| e.into_error(store))?;
    if !deleted {
        return Err(ErrorCode::NoteNotFound.into());
    }
    sqlx::query("DELETE FROM notes WHERE id = ? AND user_id = ?")
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.err(e))?;
    tx.commit().await.map_err(|e| store.err(e))?;
    Ok(())
}
