//! The signed-in account looking after itself (issue 13): change its password,
//! delete itself with everything it owns, and export what the server holds.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use guestpass_proto::{
    validate_password, AuditEventKind, ChangePasswordRequest, ChangePasswordResponse,
    DeleteUserRequest, ErrorCode, ExportCollection, ExportCredentials, ExportProvider,
    ExportRecords, ExportResponse, SuccessResponse, PASSWORD_MAX,
};

use crate::auth::{ip_hash, ip_of, Authed};
use crate::clock::from_ms;
use crate::db::{AuditRow, UserRow};
use crate::db_care::PasswordChange;
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, FullAccount, JsonOrEmpty, Peer, SignedIn};
use crate::sign_in_throttle::{self as throttle, FailureReason};
use crate::state::{fresh_session, AppState, SharedState};

/// Whether `password` is the one `user` has (hashed in constant work; a
/// password far longer than any allowed is refused without hashing it).
async fn password_matches(state: &AppState, user: &UserRow, password: String) -> ApiResult<bool> {
    let Some(stored) = user.password_hash.clone() else {
        return Ok(false);
    };
    if password.is_empty() || password.len() > 4 * PASSWORD_MAX {
        return Ok(false);
    }
    state
        .hash_queue
        .try_slot()?
        .verify(password, stored)
        .await
        .ok_or_else(Failure::internal)
}

/// The account's current password, proven under sign-in's failure throttle
/// (`sign_in_throttle.rs`): a stolen session must not make change-password or
/// delete-user a guessing oracle without a limit. The count is the account
/// email's, the one sign-in keeps, so guesses spread over the three routes share
/// one budget; a wrong one is audited `user.sign_in_failed` like a sign-in's, and
/// once over the limit even the right password gets 429 (else the 429 would tell
/// a right guess from a wrong one).
async fn prove_password(
    state: &AppState,
    user: &UserRow,
    password: String,
    ip: Option<std::net::IpAddr>,
) -> ApiResult<bool> {
    let key = throttle::normalise(user.email.as_deref().unwrap_or(&user.id));
    let attempt = throttle::admit(state, &key, ip).await?;
    if password_matches(state, user, password).await? {
        throttle::succeeded(state, attempt).await?;
        return Ok(true);
    }
    let hashed = ip_hash(state, ip);
    throttle::failed(
        state,
        attempt,
        &key,
        Some(user),
        FailureReason::WrongPassword,
        hashed,
    )
    .await?;
    Ok(false)
}

/// `POST /change-password` `{currentPassword, newPassword, revokeOtherSessions?}`
/// (bearer, full account with a password). 200 `{token: null, user, session,
/// revokedSessions}`: the caller's session and token go on, the account's other
/// sessions end (unless `revokeOtherSessions: false`). 401 `INVALID_PASSWORD`;
/// 422 password rules; 400 `INVALID_REQUEST` for an account without a password;
/// 403 `ANONYMOUS_NOT_ALLOWED` for a guest.
pub async fn change_password(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    FullAccount(Authed { user, session }): FullAccount,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> ApiResult<Json<ChangePasswordResponse>> {
    if !state.config.auth_methods.email_password {
        return Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password sign-in is disabled"));
    }
    let Some(old_hash) = user.password_hash.clone() else {
        return Err(Failure::bad_request(
            "This account has no password yet: set one with \"Forgot password?\"",
        ));
    };
    validate_password(&body.new_password)?;
    let ip = ip_of(&state, &headers, &peer);
    if !prove_password(&state, &user, body.current_password, ip).await? {
        return Err(ErrorCode::InvalidPassword.into());
    }
    let new_hash = state
        .hash_queue
        .try_slot()?
        .hash(body.new_password)
        .await
        .ok_or_else(Failure::internal)?;
    let now = state.clock.now_ms();
    let change = PasswordChange {
        user_id: user.id.clone(),
        old_hash,
        new_hash,
        session_id: session.id.clone(),
        revoke_others: body.revoke_other_sessions.unwrap_or(true),
        now,
        audit: AuditRow::new(
            AuditEventKind::UserUpdated,
            &user.id,
            &user.id,
            now,
            ip_hash(&state, ip),
        )
        .with_detail(serde_json::json!({ "change": "password" })),
    };
    // None: another change won the race, so the password checked is not current.
    let (user, revoked) = state
        .db
        .change_password(&change)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::InvalidPassword))?;
    tracing::info!(user_id = %user.id, revoked_sessions = revoked, "password changed");
    Ok(Json(ChangePasswordResponse {
        token: None,
        user: user.to_wire(),
        session: session.to_wire(),
        revoked_sessions: revoked,
    }))
}

/// `POST /delete-user` `{password?}` (bearer). A guest deletes itself as it
/// is; an account with a password must give it (401 `INVALID_PASSWORD`); a
/// social-only account needs a session signed in less than 10 minutes ago
/// (403 `SESSION_NOT_FRESH`). The user goes with its sessions, linked
/// identities, links, merge tombstones and records (foreign keys cascade),
/// audited `user.deleted` `{"reason":"self"}`. 200 `{"success": true}`.
pub async fn delete_user(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    SignedIn(Authed { user, session }): SignedIn,
    JsonOrEmpty(body): JsonOrEmpty<DeleteUserRequest>,
) -> ApiResult<Json<SuccessResponse>> {
    let now = state.clock.now_ms();
    if !user.is_anonymous {
        if user.password_hash.is_some() {
            let Some(password) = body.password.filter(|p| !p.is_empty()) else {
                return Err(Failure::new(ErrorCode::InvalidPassword)
                    .with_message("Enter your password to delete your account"));
            };
            if !prove_password(&state, &user, password, ip_of(&state, &headers, &peer)).await? {
                return Err(ErrorCode::InvalidPassword.into());
            }
        } else if now - session.created_at >= fresh_session().num_milliseconds() {
            return Err(ErrorCode::SessionNotFresh.into());
        }
    }
    let audit = AuditRow::new(
        AuditEventKind::UserDeleted,
        &user.id,
        &user.id,
        now,
        ip_hash(&state, ip_of(&state, &headers, &peer)),
    )
    .with_detail(serde_json::json!({ "reason": "self" }));
    if !state.db.delete_user(&user.id, false, &audit).await? {
        // Deleted by a concurrent request (or the admin) in between.
        return Err(ErrorCode::Unauthorized.into());
    }
    tracing::info!(user_id = %user.id, guest = user.is_anonymous, "user deleted itself");
    Ok(Json(SuccessResponse::OK))
}

/// `GET /export` (bearer, full account; a guest gets 403
/// `ANONYMOUS_NOT_ALLOWED`): the profile, how it signs in, its live sessions
/// and the counts of its records (their values are opaque to the server).
pub async fn export(
    State(state): State<SharedState>,
    FullAccount(Authed { user, .. }): FullAccount,
) -> ApiResult<Json<ExportResponse>> {
    let now = state.clock.now_ms();
    let rows = state.db.export_rows(&user.id, now).await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let collections: Vec<ExportCollection> = rows
        .collections
        .into_iter()
        .map(|(collection, records, changes, bytes)| ExportCollection {
            collection,
            records: count(records),
            changes: count(changes),
            bytes: count(bytes),
        })
        .collect();
    let records = ExportRecords {
        records: collections.iter().map(|c| c.records).sum(),
        changes: collections.iter().map(|c| c.changes).sum(),
        bytes: collections.iter().map(|c| c.bytes).sum(),
        collections,
    };
    Ok(Json(ExportResponse {
        exported_at: from_ms(now),
        user: user.to_wire(),
        credentials: ExportCredentials {
            password: user.password_hash.is_some(),
            providers: rows
                .providers
                .into_iter()
                .map(|(provider, at)| ExportProvider {
                    provider,
                    linked_at: from_ms(at),
                })
                .collect(),
        },
        sessions: count(rows.sessions),
        records,
    }))
}
