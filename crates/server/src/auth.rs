//! Guests and sessions: anonymous sign-in, get-session, sign-out, a guest
//! deleting itself, and the password check and session minting the sign-in
//! routes (`better_auth_compat.rs`) share.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{
    new_session_id, new_user_id, parse_user_id, routes, AnonymousSignInRequest, AuditEventKind,
    ErrorCode, SessionResponse, SignInResponse, SuccessResponse,
};

use crate::crypto::{keyed_hash, new_token, sha256_hex};
use crate::db::{AuditRow, GuestOutcome, NewGuest, SessionRow, UserRow};
use crate::error::{ApiResult, Failure};
use crate::extract::{bearer, JsonOrEmpty, Peer};
use crate::ratelimit::{self, Decision};
use crate::sign_in_throttle::{self as throttle, FailureReason};
use crate::state::{activity_granularity, session_slide_after, session_ttl, AppState, SharedState};

/// The caller's live session, from `Authorization: Bearer`.
pub struct Authed {
    pub user: UserRow,
    pub session: SessionRow,
}

/// `Ok(None)` when there is no token or it is unknown or expired.
pub async fn current_session(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Authed>> {
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    let now = state.clock.now_ms();
    let found = state.db.session_by_token(&sha256_hex(token), now).await?;
    Ok(found
        .filter(|(_, session)| now < absolute_expiry(state, session))
        .map(|(user, session)| Authed { user, session }))
}

/// The moment a session dies however often it is used (`sessionMaxAgeDays` after
/// it was created); its sliding expiry never reaches past it.
pub(crate) fn absolute_expiry(state: &AppState, session: &SessionRow) -> i64 {
    session
        .created_at
        .saturating_add(state.config.session_max_age().num_milliseconds())
}

pub async fn require_session(state: &AppState, headers: &HeaderMap) -> ApiResult<Authed> {
    current_session(state, headers)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::Unauthorized))
}

/// The client's address (`client_addr.rs`: the peer, or what trusted proxies say).
pub fn ip_of(state: &AppState, headers: &HeaderMap, peer: &Peer) -> Option<IpAddr> {
    state.client_addr.resolve(headers, peer.0)
}

pub fn ip_hash(state: &AppState, ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| keyed_hash(&state.secret, &ip.to_string()))
}

/// A fresh session row and the bearer token that opens it (only its hash is kept).
pub fn mint_session(user_id: &str, now: i64) -> (SessionRow, String) {
    let token = new_token();
    let session = SessionRow {
        id: new_session_id(),
        user_id: user_id.to_string(),
        token_hash: sha256_hex(&token),
        expires_at: now + session_ttl().num_milliseconds(),
        created_at: now,
        updated_at: now,
    };
    (session, token)
}

/// `{user, session, token}` with the token repeated in `set-auth-token`.
pub(crate) fn signed_in(user: &UserRow, session: &SessionRow, token: String) -> Response {
    answer_sign_in(user, session, token, false)
}

/// [`signed_in`], saying whether a guest the cleanup deleted was made again.
fn answer_sign_in(user: &UserRow, session: &SessionRow, token: String, revived: bool) -> Response {
    let header = HeaderValue::from_str(&token).ok();
    let body = SignInResponse {
        user: user.to_wire(),
        session: session.to_wire(),
        token,
        revived,
    };
    let mut res = Json(body).into_response();
    if let Some(h) = header {
        res.headers_mut().insert(routes::SET_AUTH_TOKEN, h);
    }
    res
}

pub async fn sign_in_anonymous(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    JsonOrEmpty(body): JsonOrEmpty<AnonymousSignInRequest>,
) -> ApiResult<Response> {
    if !state.config.auth_methods.anonymous.enabled() {
        return Err(
            Failure::new(ErrorCode::NotFound).with_message("Anonymous authentication is disabled")
        );
    }
    let ip = ip_of(&state, &headers, &peer);
    let now = state.clock.now_ms();
    let limit = state.config.rate_limit.anonymous_per_minute;
    // Refusals that need no write. They still count against the rate limit (on
    // their own, ahead of the refusal), exactly like a sign-in that goes ahead.
    let refusal = match current_session(&state, &headers).await? {
        Some(current) if current.user.is_anonymous => Some(Failure::from(
            ErrorCode::AnonymousUsersCannotSignInAgainAnonymously,
        )),
        _ => None,
    };
    let id = match refusal {
        Some(refusal) => Err(refusal),
        None => {
            check_device_key(body.device_key.as_deref()).and_then(|()| match body.id.as_deref() {
                Some(raw) => parse_user_id(raw).map_err(|_| Failure::new(ErrorCode::InvalidUserId)),
                None => Ok(new_user_id()),
            })
        }
    };
    let id = match id {
        Ok(id) => id,
        Err(refusal) => {
            if let Decision::Limited { retry_after_secs } =
                ratelimit::check_anonymous(state.db.as_ref(), &state.secret, ip, limit, now).await?
            {
                return Err(rate_limited(retry_after_secs));
            }
            return Err(refusal);
        }
    };
    let user = UserRow::new_guest(id, now);
    let answer_user_id = user.id.clone();
    let (session, token) = mint_session(&user.id, now);
    let audits = guest_audits(&user.id, &session, ip_hash(&state, ip), None);
    let rate = ratelimit::anonymous_hit(&state.secret, ip, limit, now);
    // Built now, sent only if the guest is committed.
    let answer = signed_in(&user, &session, token);
    // Only the digest is stored: a leaked database does not let anyone resume a guest.
    let device_key_hash = body.device_key.as_deref().map(sha256_hex);
    let guest = NewGuest {
        user,
        session,
        audits,
        device_key_hash: device_key_hash.clone(),
        rate: rate.clone(),
    };
    // Returns once the batch holding this guest is committed (writer.rs). Each
    // creation is in the audit log; a log line per sign-in would only be noise.
    match state.writer.create_guest(guest).await? {
        GuestOutcome::Created => Ok(answer),
        // The hit is already counted (by the batch): a resumed sign-in is limited
        // exactly like a new one.
        GuestOutcome::UserIdTaken => match device_key_hash {
            Some(hash) => resume_guest(&state, &answer_user_id, &hash, ip, now).await,
            None => Err(ErrorCode::UserIdTaken.into()),
        },
        GuestOutcome::Limited { hits } => {
            let decision = rate.as_ref().map(|r| ratelimit::decide(r, hits, now));
            let retry_after_secs = match decision {
                Some(Decision::Limited { retry_after_secs }) => retry_after_secs,
                _ => 1,
            };
            Err(rate_limited(retry_after_secs))
        }
    }
}

/// Length bounds of a device key: 256 bits in base64 is 43 characters; anything
/// much shorter is too weak to prove ownership, anything longer is not a key.
const DEVICE_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// A device key, if one is sent, within [`DEVICE_KEY_LEN`] (anonymous sign-in,
/// recovery sign-in).
pub(crate) fn check_device_key(key: Option<&str>) -> Result<(), Failure> {
    match key {
        Some(k) if !DEVICE_KEY_LEN.contains(&k.len()) => {
            Err(Failure::new(ErrorCode::InvalidRequest)
                .with_message("deviceKey must be 32 to 256 characters"))
        }
        _ => Ok(()),
    }
}

/// The audits of a guest's creation: `user.created` (with `revived` when the
/// cleanup had deleted it) and its first `session.created`.
fn guest_audits(
    user_id: &str,
    session: &SessionRow,
    ip_hash: Option<String>,
    revived: Option<&str>,
) -> Vec<AuditRow> {
    let mut created = serde_json::json!({ "isAnonymous": true });
    if let Some(why) = revived {
        created["revived"] = why.into();
    }
    vec![
        AuditRow::new(
            AuditEventKind::UserCreated,
            user_id,
            user_id,
            session.created_at,
            ip_hash.clone(),
        )
        .with_detail(created),
        AuditRow::new(
            AuditEventKind::SessionCreated,
            user_id,
            user_id,
            session.created_at,
            ip_hash,
        )
        .with_detail(serde_json::json!({ "sessionId": session.id, "method": "anonymous" })),
    ]
}

/// The id is taken: the device that registered it (same device key) may be asking
/// again because its first answer was lost. It gets a new session for the same
/// guest; anyone else (no key, wrong key, or the guest has since been upgraded
/// and signs in with its credentials) gets USER_ID_TAKEN as before.
async fn resume_guest(
    state: &AppState,
    user_id: &str,
    device_key_hash: &str,
    ip: Option<IpAddr>,
    now: i64,
) -> ApiResult<Response> {
    let (session, token) = mint_session(user_id, now);
    let audit = AuditRow::new(
        AuditEventKind::SessionCreated,
        user_id,
        user_id,
        now,
        ip_hash(state, ip),
    )
    .with_detail(serde_json::json!({ "sessionId": session.id, "method": "anonymous" }));
    match state
        .db
        .resume_guest(device_key_hash, &session, &audit)
        .await?
    {
        Some(user) => Ok(signed_in(&user, &session, token)),
        None => come_back(state, user_id, device_key_hash, ip, now).await,
    }
}

/// The id is not a live guest of this device's: it may be a deleted one's
/// (`gone_users`, issue 16). A guest the stale-guest cleanup removed while its
/// device was away comes back under its id when that device (its device key)
/// asks, and the answer says `revived` so the device sends its records again.
/// An id its owner or an admin deleted stays gone: 410 `GUEST_REMOVED`.
async fn come_back(
    state: &AppState,
    user_id: &str,
    device_key_hash: &str,
    ip: Option<IpAddr>,
    now: i64,
) -> ApiResult<Response> {
    use crate::db_recovery::GoneReason;
    match state.db.gone_user(user_id).await? {
        None => Err(ErrorCode::UserIdTaken.into()),
        Some(GoneReason::Deleted | GoneReason::Removed) => Err(Failure::new(
            ErrorCode::GuestRemoved,
        )
        .with_message(
            "This guest was deleted from the server (by its owner or an administrator) and cannot come back",
        )),
        Some(GoneReason::Cleanup) => {
            let user = UserRow::new_guest(user_id.to_owned(), now);
            let (session, token) = mint_session(user_id, now);
            let audits = guest_audits(user_id, &session, ip_hash(state, ip), Some("cleanup"));
            let guest = NewGuest {
                user,
                session,
                audits,
                device_key_hash: Some(device_key_hash.to_owned()),
                rate: None,
            };
            if !state.db.revive_guest(&guest).await? {
                // Another device key, or a race with another revival.
                return Err(ErrorCode::UserIdTaken.into());
            }
            tracing::info!(user_id = %user_id, "a guest the cleanup had deleted came back from its device");
            Ok(answer_sign_in(&guest.user, &guest.session, token, true))
        }
    }
}

/// Counts one account-making call (`anonymous/upgrade`, `sign-up/email`) from
/// `ip` against `upgradePerHour`: their 409 tells whether an address is
/// registered and each success mails a stranger, so both are limited.
pub(crate) async fn limit_upgrade(state: &AppState, ip: Option<IpAddr>) -> ApiResult<()> {
    let limit = state.config.rate_limit.upgrade_per_hour;
    let now = state.clock.now_ms();
    match ratelimit::check_upgrade(state.db.as_ref(), &state.secret, ip, limit, now).await? {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after_secs } => Err(rate_limited(retry_after_secs)),
    }
}

pub(crate) fn rate_limited(retry_after_secs: u64) -> Failure {
    let mut failure = Failure::new(ErrorCode::RateLimited);
    failure.retry_after_secs = Some(retry_after_secs);
    failure
}

pub async fn get_session(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(Authed {
        mut user,
        mut session,
    }) = current_session(&state, &headers).await?
    else {
        return Ok(Json(serde_json::Value::Null).into_response());
    };
    let now = state.clock.now_ms();
    let absolute = absolute_expiry(&state, &session);
    session.expires_at = session.expires_at.min(absolute);
    if now - session.updated_at >= session_slide_after().num_milliseconds() {
        session.expires_at = (now + session_ttl().num_milliseconds()).min(absolute);
        session.updated_at = now;
        state
            .db
            .slide_session(&session.id, session.expires_at, now)
            .await?;
        user.last_active_at = now;
    } else if now - user.last_active_at >= activity_granularity().num_milliseconds() {
        state.db.touch_user(&user.id, now).await?;
        user.last_active_at = now;
    }
    Ok(Json(SessionResponse {
        user: user.to_wire(),
        session: session.to_wire(),
    })
    .into_response())
}

/// The account an email and password open, checked in equal time whether the
/// email is known or not; `INVALID_EMAIL_OR_PASSWORD` otherwise (audited). A
/// full hash queue answers 503 `BUSY`, a throttled email or address 429
/// (`sign_in_throttle.rs`), both before any hashing.
pub(crate) async fn check_email_password(
    state: &AppState,
    email: &str,
    password: String,
    ip: Option<IpAddr>,
) -> ApiResult<UserRow> {
    if !state.config.auth_methods.email_password {
        return Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password sign-in is disabled"));
    }
    let slot = state.hash_queue.try_slot()?;
    // A malformed address (a NUL, a bidi override, no domain) opens nothing and
    // never reaches the database: the same answer, after the same decoy work, as
    // an unknown one. It is still counted, under its trimmed lower-case spelling.
    let valid = guestpass_proto::normalize_email(email).ok();
    let email = throttle::normalise(email);
    let attempt = throttle::admit(state, &email, ip).await?;
    let user = match valid {
        Some(valid) if password.len() <= 4 * guestpass_proto::PASSWORD_MAX => {
            // A lapsed email claim no longer signs in (issue 14, `store_claims.rs`).
            state.db.email_holder(&valid, state.clock.now_ms()).await?
        }
        _ => None,
    };
    let stored = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.decoy_hash.clone());
    let ok = slot
        .verify(password, stored)
        .await
        .ok_or_else(Failure::internal)?;
    let reason = match &user {
        Some(user) if ok && user.password_hash.is_some() => None,
        Some(user) if user.password_hash.is_none() => Some(FailureReason::NoPassword),
        Some(_) => Some(FailureReason::WrongPassword),
        None => Some(FailureReason::UnknownEmail),
    };
    match (user, reason) {
        (Some(user), None) => {
            throttle::succeeded(state, attempt).await?;
            Ok(user)
        }
        (user, reason) => {
            let reason = reason.unwrap_or(FailureReason::UnknownEmail);
            let ip_hash = ip_hash(state, ip);
            throttle::failed(state, attempt, &email, user.as_ref(), reason, ip_hash).await?;
            Err(ErrorCode::InvalidEmailOrPassword.into())
        }
    }
}

/// A new session for `user_id` and its `session.created` row (`method` says how).
pub(crate) fn new_session_for(
    state: &AppState,
    user_id: &str,
    method: &str,
    ip: Option<IpAddr>,
) -> (SessionRow, String, AuditRow) {
    let now = state.clock.now_ms();
    let (session, token) = mint_session(user_id, now);
    let audit = AuditRow::new(
        AuditEventKind::SessionCreated,
        user_id,
        user_id,
        now,
        ip_hash(state, ip),
    )
    .with_detail(serde_json::json!({ "sessionId": session.id, "method": method }));
    (session, token, audit)
}

pub async fn sign_out(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> ApiResult<Json<SuccessResponse>> {
    if let Some(token) = bearer(&headers) {
        state.db.delete_session(&sha256_hex(token)).await?;
    }
    Ok(Json(SuccessResponse::OK))
}

pub async fn delete_anonymous_user(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
) -> ApiResult<Json<SuccessResponse>> {
    let Authed { user, .. } = require_session(&state, &headers).await?;
    // DESIGN.md §4: on this route USER_NOT_ANONYMOUS is 403 (it is 400 on upgrade).
    let not_anonymous =
        || Failure::new(ErrorCode::UserNotAnonymous).with_status(StatusCode::FORBIDDEN);
    if !user.is_anonymous {
        return Err(not_anonymous());
    }
    let now = state.clock.now_ms();
    let audit = AuditRow::new(
        AuditEventKind::UserDeleted,
        &user.id,
        &user.id,
        now,
        ip_hash(&state, ip_of(&state, &headers, &peer)),
    )
    .with_detail(serde_json::json!({ "reason": "self" }));
    if !state.db.delete_user(&user.id, true, &audit).await? {
        return Err(not_anonymous());
    }
    tracing::info!(user_id = %user.id, "guest deleted itself");
    Ok(Json(SuccessResponse::OK))
}
