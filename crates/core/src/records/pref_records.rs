//! Preferences as records: collection `prefs`, id = the key, change = the JSON
//! `{value, hlc}`; the highest stamp wins per key (see [`super::hlc`]). The stored
//! doc is the winning change as a JSON object, fields of a newer schema included, so
//! a write from this build carries them back instead of dropping them.

use serde_json::{Map, Value};
use sqlx::SqliteConnection;

use super::hlc::Hlc;
use super::{enqueue, load, save, Write, PREFS, SCHEMA_VERSION};

fn parse(doc: &[u8]) -> Option<(Map<String, Value>, Hlc)> {
    let map: Map<String, Value> = serde_json::from_slice(doc).ok()?;
    let hlc: Hlc = serde_json::from_value(map.get("hlc")?.clone()).ok()?;
    Some((map, hlc))
}

/// The latest stamp this device holds for any preference of `user_id`.
async fn latest_seen(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<Option<Hlc>, sqlx::Error> {
    let docs: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT doc FROM records WHERE user_id = ? AND collection = 'prefs'")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(docs.iter().filter_map(|d| parse(d)).map(|(_, h)| h).max())
}

/// Records a local `key = value` (the materialised view is the caller's).
pub(crate) async fn set(
    conn: &mut SqliteConnection,
    actor: &str,
    user_id: &str,
    key: &str,
    value: &Value,
) -> Result<(), sqlx::Error> {
    let seen = latest_seen(conn, user_id).await?;
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let hlc = Hlc::tick(now, seen.as_ref(), actor);
    let (mut map, version) = match load(conn, user_id, PREFS, key).await? {
        Some(s) => (
            parse(&s.doc).map(|(m, _)| m).unwrap_or_default(),
            s.schema_version.max(SCHEMA_VERSION),
        ),
        None => (Map::new(), SCHEMA_VERSION),
    };
    map.insert("value".into(), value.clone());
    map.insert(
        "hlc".into(),
        serde_json::to_value(&hlc).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
    );
    let doc = serde_json::to_vec(&map).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let w = Write {
        user_id,
        collection: PREFS,
        id: key,
        doc: &doc,
        schema_version: version,
        deleted: false,
    };
    save(conn, &w).await?;
    enqueue(conn, &w, &doc).await
}

/// Applies a pulled `{value, hlc}` if it is later than what is held, and writes the
/// winner into `users.metadata.preferences`. An unreadable change is skipped (and
/// logged): one damaged peer must not stop the rest of the sync.
pub(crate) async fn apply_remote(
    conn: &mut SqliteConnection,
    user_id: &str,
    key: &str,
    change: &[u8],
    schema_version: u32,
) -> Result<(), sqlx::Error> {
    let Some((map, hlc)) = parse(change) else {
        tracing::warn!("skipped an unreadable preference change");
        return Ok(());
    };
    if let Some(held) = load(conn, user_id, PREFS, key).await? {
        if parse(&held.doc).is_some_and(|(_, h)| h >= hlc) {
            return Ok(());
        }
    }
    save(
        conn,
        &Write {
            user_id,
            collection: PREFS,
            id: key,
            doc: change,
            schema_version,
            deleted: false,
        },
    )
    .await?;
    let value = map.get("value").cloned().unwrap_or(Value::Null);
    materialise(conn, user_id, key, value).await
}

/// Puts `key = value` into the user's `metadata.preferences`.
pub(crate) async fn materialise(
    conn: &mut SqliteConnection,
    user_id: &str,
    key: &str,
    value: Value,
) -> Result<(), sqlx::Error> {
    let raw: Option<String> = sqlx::query_scalar("SELECT metadata FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(raw) = raw else { return Ok(()) };
    let mut meta: Map<String, Value> = serde_json::from_str(&raw).unwrap_or_default();
    let prefs = meta
        .entry("preferences")
        .or_insert_with(|| Value::Object(Map::new()));
    if !prefs.is_object() {
        *prefs = Value::Object(Map::new());
    }
    if let Some(p) = prefs.as_object_mut() {
        p.insert(key.to_owned(), value);
    }
    sqlx::query("UPDATE users SET metadata = ?, updated_at = ? WHERE id = ?")
        .bind(Value::Object(meta).to_string())
        .bind(guestpass_proto::format_time(&chrono::Utc::now()))
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
