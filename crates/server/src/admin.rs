//! The admin API: list users, remove a user, read the audit log. Opened by the
//! admin API key (`x-api-key` or `Authorization: Bearer`), compared as a SHA-256
//! digest in constant time. A user's session token never opens it. Wrong keys
//! are throttled per client address (`ratelimit::check_admin_key`: 10 a minute,
//! then 429 `RATE_LIMITED` with `Retry-After` for every admin request from it).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use base64::Engine;
use guestpass_proto::{
    parse_user_id, routes, AuditEvent, AuditEventKind, ErrorCode, ListMetadata, ListResponse,
    RemoveUserRequest, SuccessResponse, User,
};
use serde::Deserialize;

use crate::auth::{ip_hash, ip_of};
use crate::crypto::matches_digest;
use crate::db::{AuditFilter, AuditRow, UserFilter};
use crate::error::{ApiResult, Failure};
use crate::extract::{bearer, ApiJson, ApiQuery, Peer};
use crate::ratelimit::{self, Decision};
use crate::state::SharedState;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 200;

/// Proof that the request carried the admin key.
pub struct Admin;

impl FromRequestParts<SharedState> for Admin {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Failure> {
        let unauthorized = || Failure::new(ErrorCode::Unauthorized);
        let Some(digest) = state.admin_key_digest.as_ref() else {
            return Err(unauthorized());
        };
        let peer = match Peer::from_request_parts(parts, state).await {
            Ok(peer) => peer,
            Err(never) => match never {},
        };
        let presented = parts
            .headers
            .get(routes::API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| bearer(&parts.headers))
            .ok_or_else(unauthorized)?;
        // Only a presented key is a guess worth counting.
        let ip = ip_of(state, &parts.headers, &peer);
        let now = state.clock.now_ms();
        let check = ratelimit::check_admin_key(state.db.as_ref(), &state.secret, ip, now).await?;
        if let Decision::Limited { retry_after_secs } = check.decision {
            if check.first_refusal {
                tracing::warn!(
                    ip_hash = ip_hash(state, ip).as_deref().unwrap_or("-"),
                    "admin API: too many wrong keys from one address; all its admin requests are refused until the minute ends"
                );
            }
            let mut failure = Failure::new(ErrorCode::RateLimited);
            failure.retry_after_secs = Some(retry_after_secs);
            return Err(failure);
        }
        if matches_digest(presented, digest) {
            check.right_key(state.db.as_ref()).await?;
            Ok(Admin)
        } else {
            Err(unauthorized())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListUsersQuery {
    is_anonymous: Option<bool>,
    limit: Option<i64>,
    after: Option<String>,
    before: Option<String>,
}

fn check_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Failure::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

/// Opaque user cursor: base64url of `"{created_at_ms}:{id}"`.
pub fn user_cursor(created_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn parse_user_cursor(raw: &str) -> ApiResult<(i64, String)> {
    let invalid = || Failure::bad_request("Invalid cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (t, id) = text.split_once(':').ok_or_else(invalid)?;
    let id = parse_user_id(id).map_err(|_| invalid())?;
    Ok((t.parse().map_err(|_| invalid())?, id))
}

/// Fetches one extra row to learn whether another page follows.
fn page_metadata<T>(
    rows: &mut Vec<T>,
    limit: i64,
    paging_back: bool,
    came_from_cursor: bool,
    cursor_of: impl Fn(&T) -> String,
) -> ListMetadata {
    let more = rows.len() as i64 > limit;
    if more {
        if paging_back {
            // Rows are newest first; the extra one is the newest, at the front.
            rows.remove(0);
        } else {
            rows.truncate(limit as usize);
        }
    }
    let first = rows.first().map(&cursor_of);
    let last = rows.last().map(&cursor_of);
    if paging_back {
        ListMetadata {
            before: if more { first } else { None },
            after: last,
        }
    } else {
        ListMetadata {
            before: if came_from_cursor { first } else { None },
            after: if more { last } else { None },
        }
    }
}

pub async fn list_users(
    _: Admin,
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<ListUsersQuery>,
) -> ApiResult<Json<ListResponse<User>>> {
    let limit = check_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_user_cursor).transpose()?;
    let before = q.before.as_deref().map(parse_user_cursor).transpose()?;
    let paging_back = before.is_some() && after.is_none();
    let came_from_cursor = after.is_some();
    let filter = UserFilter {
        is_anonymous: q.is_anonymous,
        after,
        before,
        limit: limit + 1,
    };
    let mut rows = state.db.list_users(&filter).await?;
    let list_metadata = page_metadata(&mut rows, limit, paging_back, came_from_cursor, |u| {
        user_cursor(u.created_at, &u.id)
    });
    Ok(Json(ListResponse {
        data: rows.iter().map(|u| u.to_wire()).collect(),
        list_metadata,
    }))
}

pub async fn remove_user(
    _: Admin,
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<RemoveUserRequest>,
) -> ApiResult<Json<SuccessResponse>> {
    let id = parse_user_id(&body.user_id).map_err(|_| Failure::new(ErrorCode::InvalidUserId))?;
    let now = state.clock.now_ms();
    let audit = AuditRow::new(AuditEventKind::UserDeleted, &id, "admin", now, None)
        .with_detail(serde_json::json!({ "reason": "admin" }));
    if !state.db.delete_user(&id, false, &audit).await? {
        return Err(ErrorCode::UserNotFound.into());
    }
    tracing::info!(user_id = %id, "user removed by admin");
    Ok(Json(SuccessResponse::OK))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    user_id: Option<String>,
    event: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
    before: Option<String>,
}

fn check_audit_cursor(raw: Option<String>) -> ApiResult<Option<String>> {
    match raw {
        None => Ok(None),
        Some(c) if c.len() == 30 && c.starts_with("aud_") && c.is_ascii() => Ok(Some(c)),
        Some(_) => Err(Failure::bad_request("Invalid cursor")),
    }
}

pub async fn audit_log(
    _: Admin,
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<ListResponse<AuditEvent>>> {
    let limit = check_limit(q.limit)?;
    if let Some(event) = q.event.as_deref() {
        if AuditEventKind::parse(event).is_none() {
            return Err(Failure::bad_request("Unknown event"));
        }
    }
    let user_id = q
        .user_id
        .map(|raw| parse_user_id(&raw).map_err(|_| Failure::new(ErrorCode::InvalidUserId)))
        .transpose()?;
    let after = check_audit_cursor(q.after)?;
    let before = check_audit_cursor(q.before)?;
    let paging_back = before.is_some() && after.is_none();
    let came_from_cursor = after.is_some();
    let filter = AuditFilter {
        user_id,
        event: q.event,
        after,
        before,
        limit: limit + 1,
    };
    let mut rows: Vec<AuditRow> = state.db.audit_log(&filter).await?;
    let list_metadata = page_metadata(&mut rows, limit, paging_back, came_from_cursor, |a| {
        a.id.clone()
    });
    Ok(Json(ListResponse {
        data: rows.iter().filter_map(AuditRow::to_wire).collect(),
        list_metadata,
    }))
}
