//! Row <-> model mapping for the local store. Times are stored as RFC 3339 text with
//! milliseconds, the wire format, so they sort and compare as strings.

use chrono::{DateTime, Utc};
use guestpass_proto::{Session, User};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

pub(crate) const USER_COLUMNS: &str =
    "u.id, u.email, u.name, u.image, u.email_verified, u.is_anonymous, u.created_at, u.updated_at, u.metadata";

pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub(crate) fn user(row: &SqliteRow) -> Result<User, sqlx::Error> {
    let metadata: String = row.try_get("metadata")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        image: row.try_get("image")?,
        email_verified: row.try_get("email_verified")?,
        is_anonymous: row.try_get("is_anonymous")?,
        created_at: parse_time(row.try_get("created_at")?)?,
        updated_at: parse_time(row.try_get("updated_at")?)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// A session row with the hash of its token (kept out of the wire type).
pub(crate) struct SessionRow {
    pub session: Session,
    pub token_hash: String,
}

pub(crate) fn session(row: &SqliteRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        session: Session {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            expires_at: parse_time(row.try_get("expires_at")?)?,
            created_at: parse_time(row.try_get("created_at")?)?,
            updated_at: parse_time(row.try_get("updated_at")?)?,
        },
        token_hash: row.try_get("token_hash")?,
    })
}
