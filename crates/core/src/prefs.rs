//! Preferences live in the user's `metadata` under `preferences`, so they travel with
//! the user record and survive the upgrade like any other metadata. Each is also a
//! record (collection `prefs`, last-writer-wins by hybrid logical clock) that syncs
//! across the user's devices: see `records::pref_records`.

use chrono::Utc;
use guestpass_proto::{format_time, ApiError, AuditEventKind, ErrorCode, User};
use serde_json::{json, Map, Value};

use crate::audit;
use crate::error::{Error, Result};
use crate::identity::device_user;
use crate::records;
use crate::store::Store;

const KEY_MAX: usize = 64;
const VALUE_MAX_BYTES: usize = 4096;

fn invalid(msg: &str) -> Error {
    Error::Api(ApiError::new(ErrorCode::InvalidRequest, msg))
}

pub(crate) async fn set(store: &Store, key: &str, value: Value) -> Result<User> {
    if key.is_empty()
        || key.len() > KEY_MAX
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "A preference name is 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    if value.to_string().len() > VALUE_MAX_BYTES {
        return Err(invalid("A preference value can be at most 4 KiB"));
    }
    let mut tx = store.begin_write().await?;
    let mut user = device_user(&mut tx)
        .await
        .map_err(|e| store.err(e))?
        .ok_or(Error::from(ErrorCode::NoSession))?;
    let meta = user
        .metadata
        .as_object_mut()
        .ok_or_else(|| invalid("User metadata is not an object"))?;
    let prefs = meta
        .entry("preferences")
        .or_insert_with(|| Value::Object(Map::new()));
    if !prefs.is_object() {
        *prefs = Value::Object(Map::new());
    }
    if let Some(p) = prefs.as_object_mut() {
        p.insert(key.to_owned(), value.clone());
    }
    let now = Utc::now();
    user.updated_at = now;
    sqlx::query("UPDATE users SET metadata = ?, updated_at = ? WHERE id = ?")
        .bind(user.metadata.to_string())
        .bind(format_time(&now))
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.err(e))?;
    // The record and its outbox row, in this same transaction (DESIGN.md §3a).
    records::pref_records::set(
        &mut tx,
        &store.actor().to_hex_string(),
        &user.id,
        key,
        &value,
    )
    .await
    .map_err(|e| store.err(e))?;
    audit::record(
        &mut tx,
        AuditEventKind::UserUpdated,
        &user.id,
        &user.id,
        now,
        json!({ "preference": key }),
    )
    .await
    .map_err(|e| store.err(e))?;
    tx.commit().await.map_err(|e| store.err(e))?;
    Ok(user)
}
