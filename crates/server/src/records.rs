//! Record sync over HTTP (DESIGN.md §3a): `POST /sync/push`, `GET /sync/pull`.
//! Storage and ordering are in `store_records.rs`, "pull now" in `live.rs`.
//!
//! The cursor is `<epoch>.<seq>`, opaque to devices: `seq` is the last position
//! of the user's log the device has, `epoch` the id of this database's history
//! (`server_secrets.records_epoch`). A cursor from another epoch (a restored
//! backup after `admin new-epoch`) or beyond the user's head (a restored backup
//! that lost changes) is answered from the start with `reset: true`, and the
//! device pushes again everything it holds (pushes are idempotent). A cursor
//! below the prune horizon gets 410 CURSOR_EXPIRED: tombstones it never saw are
//! gone.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use guestpass_proto::{routes, ErrorCode};
use guestpass_proto::{
    valid_collection, valid_record_id, PullResponse, PushRequest, PushResponse, RecordChange,
    PULL_DEFAULT_LIMIT, PULL_MAX_LIMIT, PUSH_MAX_CHANGES, RECORD_CHANGE_MAX_BYTES,
    SYNC_PROTOCOL_MIN,
};
use serde::Deserialize;

use crate::auth::require_session;
use crate::clock::Clock;
use crate::db::{Db, DbResult, UserRow};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::{activity_granularity, AppState, SharedState};
use crate::store_records::{change_hash, Compaction, NewChange, PushOutcome, Quota, StoredChange};

/// The push route's body limit: well above the default (64 KiB), since a push
/// carries up to [`PUSH_MAX_CHANGES`] changes; a device sends its queue in
/// batches under it (about 23 changes of the full 256 KiB fit).
pub const PUSH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// `x-guestpass-sync-protocol`: present and at least [`SYNC_PROTOCOL_MIN`], or
/// 426 CLIENT_TOO_OLD (checked before anything else, so an old app learns why).
pub struct SyncProtocol(pub u32);

impl<S: Send + Sync> FromRequestParts<S> for SyncProtocol {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        let version = parts
            .headers
            .get(routes::SYNC_PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        match version {
            Some(v) if v >= SYNC_PROTOCOL_MIN => Ok(Self(v)),
            _ => Err(Failure::new(ErrorCode::ClientTooOld)),
        }
    }
}

pub async fn push(
    State(state): State<SharedState>,
    _protocol: SyncProtocol,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PushRequest>,
) -> ApiResult<Json<PushResponse>> {
    let authed = require_session(&state, &headers).await?;
    if body.changes.len() > PUSH_MAX_CHANGES {
        return Err(Failure::bad_request(format!(
            "At most {PUSH_MAX_CHANGES} changes per push"
        )));
    }
    let changes = body
        .changes
        .iter()
        .map(decode)
        .collect::<ApiResult<Vec<_>>>()?;
    let quota = quota_of(&state, authed.user.is_anonymous);
    let user_id = &authed.user.id;
    let now = state.clock.now_ms();
    let outcome = state
        .db
        .records()
        .push(user_id, &changes, quota, now)
        .await?;
    note_activity(&state, &authed.user, now).await?;
    match outcome {
        PushOutcome::Applied {
            accepted,
            duplicates,
        } => {
            if accepted > 0 {
                state.live.pushed(user_id);
                state.metrics.records_pushed(u64::from(accepted));
            }
            Ok(Json(PushResponse {
                accepted,
                duplicates,
            }))
        }
        PushOutcome::QuotaExceeded { .. } => {
            let who = if authed.user.is_anonymous {
                "a guest (create an account for more)"
            } else {
                "an account"
            };
            Err(Failure::new(ErrorCode::QuotaExceeded).with_message(format!(
                "Storage quota exceeded: {who} may keep {} records and {}; nothing of this push was saved",
                quota.max_records,
                shown_size(quota.max_bytes)
            )))
        }
    }
}

/// Syncing is use: a guest whose app only syncs is not stale for the cleanup
/// (recorded at most hourly, as get-session does).
async fn note_activity(state: &AppState, user: &UserRow, now: i64) -> ApiResult<()> {
    if now - user.last_active_at >= activity_granularity().num_milliseconds() {
        state.db.touch_user(&user.id, now).await?;
    }
    Ok(())
}

fn shown_size(bytes: i64) -> String {
    const MIB: i64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn quota_of(state: &AppState, anonymous: bool) -> Quota {
    let r = &state.config.records;
    let (records, bytes) = if anonymous {
        (r.guest_max_records, r.guest_max_bytes)
    } else {
        (r.account_max_records, r.account_max_bytes)
    };
    Quota {
        max_records: i64::try_from(records).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
    }
}

/// Validates one change and decodes its bytes; errors name the record (its
/// collection and id are the app's names, never user data).
fn decode(c: &RecordChange) -> ApiResult<NewChange> {
    if !valid_collection(&c.collection) {
        return Err(Failure::bad_request(
            "Invalid collection: 1-32 of a-z 0-9 _ -, starting with a letter",
        ));
    }
    if !valid_record_id(&c.id) {
        return Err(Failure::bad_request(format!(
            "Invalid record id in {}: 1-128 of A-Z a-z 0-9 _ - . :",
            c.collection
        )));
    }
    let schema_version = i32::try_from(c.schema_version).map_err(|_| {
        Failure::bad_request(format!(
            "Invalid schemaVersion for {}/{}",
            c.collection, c.id
        ))
    })?;
    let too_large = || {
        Failure::new(ErrorCode::RecordTooLarge).with_message(format!(
            "The change to {}/{} is too large to sync (at most {} KiB per change)",
            c.collection,
            c.id,
            RECORD_CHANGE_MAX_BYTES / 1024
        ))
    };
    // Refused before decoding: base64 of the limit is at most this long.
    if c.change.len() > RECORD_CHANGE_MAX_BYTES.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let change = base64::engine::general_purpose::STANDARD
        .decode(&c.change)
        .map_err(|_| {
            Failure::bad_request(format!(
                "The change to {}/{} is not valid base64",
                c.collection, c.id
            ))
        })?;
    if change.len() > RECORD_CHANGE_MAX_BYTES {
        return Err(too_large());
    }
    let compacts = match &c.compacts {
        Some(raw) => {
            let k = parse_cursor(raw)?;
            Some(Compaction {
                epoch: k.epoch.to_owned(),
                seq: k.seq,
            })
        }
        None => None,
    };
    Ok(NewChange {
        compacts,
        hash: change_hash(&c.collection, &c.id, c.deleted, c.schema_version, &change),
        collection: c.collection.clone(),
        record_id: c.id.clone(),
        change,
        deleted: c.deleted,
        schema_version,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// A parsed `<epoch>.<seq>`.
struct Cursor<'a> {
    epoch: &'a str,
    seq: i64,
}

fn parse_cursor(raw: &str) -> ApiResult<Cursor<'_>> {
    let garbled = || Failure::bad_request("Invalid cursor: pass back the cursor of a pull");
    let (epoch, seq) = raw.split_once('.').ok_or_else(garbled)?;
    if epoch.is_empty() || epoch.len() > 64 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(garbled());
    }
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(garbled());
    }
    let seq = seq.parse::<i64>().map_err(|_| garbled())?;
    Ok(Cursor { epoch, seq })
}

pub async fn pull(
    State(state): State<SharedState>,
    _protocol: SyncProtocol,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PullQuery>,
) -> ApiResult<Json<PullResponse>> {
    let authed = require_session(&state, &headers).await?;
    let limit = match query.limit {
        None => PULL_DEFAULT_LIMIT,
        Some(n) if (1..=PULL_MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(Failure::bad_request(format!(
                "limit must be 1 to {PULL_MAX_LIMIT}"
            )))
        }
    };
    let cursor = query.after.as_deref().map(parse_cursor).transpose()?;
    let store = state.db.records();
    let user_id = &authed.user.id;
    let after = cursor.as_ref().map_or(0, |c| c.seq);
    note_activity(&state, &authed.user, state.clock.now_ms()).await?;
    let mut page = store.pull(user_id, after, i64::from(limit)).await?;
    let mut reset = false;
    if let Some(c) = &cursor {
        if c.epoch != page.epoch || c.seq > page.last_seq {
            // Another history, or one that lost changes: start again.
            reset = true;
            page = store.pull(user_id, 0, i64::from(limit)).await?;
        } else if c.seq > 0 && c.seq < page.pruned_through {
            return Err(Failure::new(ErrorCode::CursorExpired));
        }
    }
    let last = page.changes.last().map(|c| c.seq);
    let seq = last.unwrap_or(if reset { 0 } else { after });
    state
        .metrics
        .records_pulled(u64::try_from(page.changes.len()).unwrap_or(u64::MAX));
    Ok(Json(PullResponse {
        cursor: format!("{}.{seq}", page.epoch),
        more: page.more,
        reset,
        changes: page.changes.into_iter().map(to_wire).collect(),
    }))
}

fn to_wire(c: StoredChange) -> RecordChange {
    RecordChange {
        collection: c.collection,
        id: c.record_id,
        change: base64::engine::general_purpose::STANDARD.encode(&c.change),
        deleted: c.deleted,
        schema_version: u32::try_from(c.schema_version).unwrap_or(0),
        compacts: None,
    }
}

/// Deletes the logs of records deleted longer than `retention_days` ago (0:
/// never); returns the changes deleted. Run by the cleanup task and `admin cleanup`.
pub async fn prune_tombstones(db: &Db, clock: &dyn Clock, retention_days: u64) -> DbResult<u64> {
    if retention_days == 0 {
        return Ok(0);
    }
    let horizon_ms = i64::try_from(retention_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(86_400_000);
    let cutoff = clock.now_ms().saturating_sub(horizon_ms);
    db.records().prune_tombstones(cutoff).await
}
