//! The local half of accounts: which local id an account has, what a guest holds, the
//! account's rows made current, and the re-owning of a guest's rows. Every function
//! runs inside the caller's write transaction.

use chrono::{DateTime, Utc};
use guestpass_proto::{format_time, new_user_id, AuditEventKind};
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::audit;
use crate::backend::{Backend, Dialect, RemoteUser};
use crate::error::Result;
use crate::store::Store;

use super::GuestSummary;

/// The local id of the account the backend calls `remote_id`: the same id on the
/// reference server; on Better Auth the local id this device mapped it to before (a
/// signed-out account coming back), or a new one.
pub(super) async fn account_id_for(
    store: &Store,
    backend: &Backend,
    remote_id: &str,
) -> Result<String> {
    if backend.dialect() == Dialect::Guestpass {
        return Ok(remote_id.to_owned());
    }
    let known: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM remote_account WHERE remote_user_id = ? AND backend_url = ?",
    )
    .bind(remote_id)
    .bind(backend.base_url())
    .fetch_optional(store.pool())
    .await
    .map_err(|e| store.err(e))?;
    Ok(known.unwrap_or_else(new_user_id))
}

/// What `user_id` holds: its notes and preference keys.
pub(super) async fn summary(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<GuestSummary, sqlx::Error> {
    let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE user_id = ?")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    let metadata: Option<String> = sqlx::query_scalar("SELECT metadata FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    let preferences = metadata
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .and_then(|m| {
            m.get("preferences")
                .and_then(Value::as_object)
                .map(Map::len)
        })
        .unwrap_or(0);
    Ok(GuestSummary {
        notes: u64::try_from(notes).unwrap_or(0),
        preferences: preferences as u64,
    })
}

/// Makes `account_id` the device's account: its user row (created, or refreshed from
/// the server's answer if this device knew it), its mapping to the backend, and the
/// single `device_account` row. The caller starts its local session and commits.
pub(super) async fn adopt(
    conn: &mut SqliteConnection,
    backend: &Backend,
    account_id: &str,
    remote: &RemoteUser,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let at = format_time(&now);
    sqlx::query(
        "INSERT INTO users (id, email, name, image, email_verified, is_anonymous, created_at, updated_at, metadata)
         VALUES (?, ?, ?, NULL, ?, ?, ?, ?, '{}')
         ON CONFLICT(id) DO UPDATE SET email = excluded.email, name = COALESCE(excluded.name, users.name),
           email_verified = excluded.email_verified, is_anonymous = excluded.is_anonymous,
           updated_at = excluded.updated_at",
    )
    .bind(account_id)
    .bind(&remote.email)
    .bind(&remote.name)
    .bind(remote.email_verified)
    // A guest restored by its phrase (issue 16) is adopted as the guest it is.
    .bind(remote.is_anonymous)
    .bind(&at)
    .bind(&at)
    .execute(&mut *conn)
    .await?;
    crate::sync::map_remote(&mut *conn, backend, account_id, &remote.id, now).await?;
    // An earlier local session of this account (it signed out here before) is over.
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM device_account")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO device_account (slot, user_id) VALUES (1, ?)")
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves every row the guest owns to the account — notes, records, unsent changes,
/// preferences — before the guest's row (whose foreign keys cascade) is deleted. On a
/// record both hold (a preference key) the account's wins: the guest's copy and its
/// unsent changes stay behind and go with the guest. Returns how many notes moved.
pub(super) async fn reown(
    conn: &mut SqliteConnection,
    guest_id: &str,
    account_id: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM record_outbox WHERE user_id = ?1 AND EXISTS (
           SELECT 1 FROM records r WHERE r.user_id = ?2
             AND r.collection = record_outbox.collection AND r.id = record_outbox.id)",
    )
    .bind(guest_id)
    .bind(account_id)
    .execute(&mut *conn)
    .await?;
    // A queued compaction names a position in the guest's log, which means nothing
    // in the account's: it is only an optimisation, so it is dropped.
    sqlx::query("DELETE FROM record_outbox WHERE user_id = ? AND compacts IS NOT NULL")
        .bind(guest_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE record_outbox SET user_id = ? WHERE user_id = ?")
        .bind(account_id)
        .bind(guest_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE OR IGNORE records SET user_id = ? WHERE user_id = ?")
        .bind(account_id)
        .bind(guest_id)
        .execute(&mut *conn)
        .await?;
    let notes = sqlx::query("UPDATE notes SET user_id = ? WHERE user_id = ?")
        .bind(account_id)
        .bind(guest_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    merge_preferences(conn, guest_id, account_id).await?;
    Ok(notes)
}

/// `users.metadata.preferences`: the guest's keys join the account's, the account's
/// value winning a key both have.
async fn merge_preferences(
    conn: &mut SqliteConnection,
    guest_id: &str,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    let guest: Option<String> = sqlx::query_scalar("SELECT metadata FROM users WHERE id = ?")
        .bind(guest_id)
        .fetch_optional(&mut *conn)
        .await?;
    let guest_prefs = guest
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .and_then(|m| m.get("preferences").and_then(Value::as_object).cloned())
        .unwrap_or_default();
    if guest_prefs.is_empty() {
        return Ok(());
    }
    let account: Option<String> = sqlx::query_scalar("SELECT metadata FROM users WHERE id = ?")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
    let mut meta = account
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let Some(obj) = meta.as_object_mut() else {
        return Ok(());
    };
    let prefs = obj
        .entry("preferences")
        .or_insert_with(|| Value::Object(Map::new()));
    if !prefs.is_object() {
        *prefs = Value::Object(Map::new());
    }
    if let Some(p) = prefs.as_object_mut() {
        for (k, v) in guest_prefs {
            p.entry(k).or_insert(v);
        }
    }
    sqlx::query("UPDATE users SET metadata = ? WHERE id = ?")
        .bind(meta.to_string())
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes a user's row (its sessions, notes, records and queue cascade) and audits it.
pub(super) async fn delete_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    actor: &str,
    now: DateTime<Utc>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        AuditEventKind::UserDeleted,
        user_id,
        actor,
        now,
        detail,
    )
    .await
}
