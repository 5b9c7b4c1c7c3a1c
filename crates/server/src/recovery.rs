//! Guest recovery (issue 16; DESIGN.md §2a, crates/server/README.md "Guest
//! recovery"). A guest's recovery phrase is 12 BIP-39 words over a 128-bit
//! secret, made and kept on its devices. The device derives a recovery sign-in
//! key from it with HKDF and sends only that; the server keeps the key's SHA-256
//! (`users.recovery_key_hash`), never the key, the secret or the phrase. A second
//! key HKDF derives from the same secret is kept on devices for end-to-end
//! encryption of records later, and never leaves them.
//!
//! - `POST /anonymous/recovery-key` (bearer, guest): sets the key, replacing the
//!   old one at once (audited `user.updated` `{change: "recoveryKey"}`).
//! - `POST /sign-in/recovery`: finds the guest by the key's digest and opens a
//!   new session for the same user id (audited `session.created`
//!   `{via: "recovery"}`). Limited per client address (IPv6 by /64) and for
//!   everyone together, before anything is looked up, never keyed by the key.
//!   An unknown key and a revoked one are the same miss of one indexed lookup:
//!   one answer, 401 `INVALID_RECOVERY_PHRASE`, after the same work.
//!
//! An upgrade revokes the key (an account recovers by email); a deleted, merged
//! or removed guest has none.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use guestpass_proto::{
    AuditEventKind, ErrorCode, RecoveryKeyRequest, RecoverySignInRequest, SuccessResponse,
    RECOVERY_KEY_LEN,
};

use crate::auth::{ip_hash, ip_of, mint_session, rate_limited, signed_in, Authed};
use crate::crypto::sha256_hex;
use crate::db::AuditRow;
use crate::db_recovery::RecoveryKeySet;
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, Peer, SignedIn};
use crate::ratelimit::{self, Decision};
use crate::state::SharedState;

/// Same bounds as a device key (`auth.rs`): a key shorter than 256 bits in
/// base64 is not one a device made.
fn check_key(key: &str, field: &str) -> Result<(), Failure> {
    if RECOVERY_KEY_LEN.contains(&key.len()) {
        Ok(())
    } else {
        Err(
            Failure::new(ErrorCode::InvalidRequest).with_message(format!(
                "{field} must be {} to {} characters",
                RECOVERY_KEY_LEN.start(),
                RECOVERY_KEY_LEN.end()
            )),
        )
    }
}

pub async fn set_recovery_key(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    SignedIn(Authed { user, .. }): SignedIn,
    ApiJson(body): ApiJson<RecoveryKeyRequest>,
) -> ApiResult<Json<SuccessResponse>> {
    let not_anonymous = || {
        Failure::new(ErrorCode::UserNotAnonymous)
            .with_status(StatusCode::FORBIDDEN)
            .with_message("Accounts recover by email: a recovery phrase is for guests")
    };
    if !user.is_anonymous {
        return Err(not_anonymous());
    }
    check_key(&body.recovery_key, "recoveryKey")?;
    let now = state.clock.now_ms();
    let audit = AuditRow::new(
        AuditEventKind::UserUpdated,
        &user.id,
        &user.id,
        now,
        ip_hash(&state, ip_of(&state, &headers, &peer)),
    )
    .with_detail(serde_json::json!({ "change": "recoveryKey" }));
    match state
        .db
        .set_recovery_key(&user.id, &sha256_hex(&body.recovery_key), &audit)
        .await?
    {
        RecoveryKeySet::Set => Ok(Json(SuccessResponse::OK)),
        RecoveryKeySet::NotAnonymous => Err(not_anonymous()),
    }
}

pub async fn sign_in_recovery(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RecoverySignInRequest>,
) -> ApiResult<Response> {
    let ip = ip_of(&state, &headers, &peer);
    let now = state.clock.now_ms();
    let limits = &state.config.rate_limit;
    // Counted first, right or wrong, well-formed or not: every attempt is a guess.
    if let Decision::Limited { retry_after_secs } = ratelimit::check_recovery(
        state.db.as_ref(),
        &state.secret,
        ip,
        limits.recovery_per_minute,
        limits.recovery_global_per_minute,
        now,
    )
    .await?
    {
        return Err(rate_limited(retry_after_secs));
    }
    let invalid = || Failure::new(ErrorCode::InvalidRecoveryPhrase);
    if !RECOVERY_KEY_LEN.contains(&body.recovery_key.len()) {
        return Err(invalid());
    }
    crate::auth::check_device_key(body.device_key.as_deref())?;
    // The user is known only once the key is found; the store fills it in.
    let (session, token) = mint_session("", now);
    let audit = AuditRow::new(
        AuditEventKind::SessionCreated,
        "",
        "",
        now,
        ip_hash(&state, ip),
    )
    .with_detail(serde_json::json!({
        "sessionId": session.id,
        "method": "anonymous",
        "via": "recovery",
    }));
    let device_key_hash = body.device_key.as_deref().map(sha256_hex);
    match state
        .db
        .recovery_session(
            &sha256_hex(&body.recovery_key),
            device_key_hash.as_deref(),
            session,
            audit,
        )
        .await?
    {
        Some((user, session)) => {
            tracing::info!(user_id = %user.id, "a guest was restored with its recovery phrase");
            Ok(signed_in(&user, &session, token))
        }
        None => Err(invalid()),
    }
}
