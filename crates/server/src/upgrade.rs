//! The in-place upgrade of a guest: same user id, same session, all data kept.
//! (The verification link it mails is `email_verification.rs`.)

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use guestpass_proto::{
    normalize_email, normalize_name, validate_password, AuditEventKind, ErrorCode, SessionResponse,
    SocialUpgradeRequest, UpgradeRequest,
};

use crate::auth::{ip_hash, ip_of, limit_upgrade, require_session, Authed};
use crate::crypto::{new_token, sha256_hex};
use crate::db::{AuditRow, Conflict, DbError, EmailUpgrade, SocialLink, UserRow};
use crate::email_verification::send_verification;
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, Peer};
use crate::hashing::hash_password;
use crate::link_social::email_taken;
use crate::social_sign_in::verify_identity;
use crate::state::{verification_ttl, AppState, SharedState};

pub async fn upgrade(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpgradeRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let ip = ip_of(&state, &headers, &peer);
    limit_upgrade(&state, ip).await?;
    let Authed { user, session } = require_session(&state, &headers).await?;
    let ip = ip_hash(&state, ip);
    let upgraded = upgrade_in_place(&state, &user, body, ip).await?;
    Ok(Json(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}

/// Email, password and name of a new account, checked and normalised as
/// `guestpass_proto::normalize_email` / `normalize_name` say (the device runs the
/// same): one stored spelling per mailbox, a blank name dropped.
pub(crate) fn account_input(
    email: &str,
    password: &str,
    name: Option<String>,
) -> ApiResult<(String, Option<String>)> {
    let email = normalize_email(email)?;
    validate_password(password)?;
    let name = normalize_name(name.as_deref())?;
    Ok((email, name))
}

/// The in-place upgrade of `user` (the caller's, from its bearer) to an email
/// account: same id, same sessions. Shared by `/anonymous/upgrade` and Better
/// Auth's `/sign-up/email` holding a guest's bearer.
pub(crate) async fn upgrade_in_place(
    state: &AppState,
    user: &UserRow,
    body: UpgradeRequest,
    ip_hash: Option<String>,
) -> ApiResult<UserRow> {
    if !state.config.auth_methods.email_password {
        return Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password accounts are disabled"));
    }
    if !user.is_anonymous {
        return Err(ErrorCode::UserNotAnonymous.into());
    }
    let (email, name) = account_input(&body.email, &body.password, body.name)?;
    // Cheap early answer before the deliberately slow hash; the unique index is
    // what actually guarantees it. A lapsed claim holds nothing (issue 14).
    if state
        .db
        .email_holder(&email, state.clock.now_ms())
        .await?
        .is_some()
    {
        return Err(ErrorCode::EmailAlreadyInUse.into());
    }
    let password = body.password;
    let password_hash = hash_password(password)
        .await
        .ok_or_else(Failure::internal)?;

    let now = state.clock.now_ms();
    let token = new_token();
    let up = EmailUpgrade {
        user_id: user.id.clone(),
        email: email.clone(),
        name,
        password_hash,
        now,
        verification_token_hash: sha256_hex(&token),
        verification_expires_at: now + verification_ttl().num_milliseconds(),
        audit: AuditRow::new(
            AuditEventKind::UserUpdated,
            &user.id,
            &user.id,
            now,
            ip_hash,
        )
        .with_detail(serde_json::json!({ "upgrade": "email", "isAnonymous": false })),
    };
    let upgraded = state
        .db
        .upgrade_with_email(&up)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::UserNotAnonymous))?;
    tracing::info!(user_id = %upgraded.id, "guest upgraded to an email account");
    send_verification(state, &upgraded.id, email, &token);
    Ok(upgraded)
}

/// Social upgrade: the app sends the ID token it got from the provider (native
/// flow, DESIGN.md §5); it is verified here and linked to the guest in place.
pub async fn upgrade_social(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SocialUpgradeRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let Authed { user, session } = require_session(&state, &headers).await?;
    if !state.config.social_providers.contains_key(&body.provider) {
        return Err(ErrorCode::UnknownProvider.into());
    }
    if !user.is_anonymous {
        return Err(ErrorCode::UserNotAnonymous.into());
    }
    let verified = verify_identity(
        &state,
        &body.provider,
        &body.id_token,
        body.nonce.as_deref(),
    )
    .await?;
    let now = state.clock.now_ms();
    let link = SocialLink {
        user_id: user.id.clone(),
        provider: body.provider.clone(),
        provider_account_id: verified.sub,
        email: verified.email,
        name: verified.name,
        now,
        audit: AuditRow::new(
            AuditEventKind::UserUpdated,
            &user.id,
            &user.id,
            now,
            ip_hash(&state, ip_of(&state, &headers, &peer)),
        )
        .with_detail(serde_json::json!({ "upgrade": "social", "provider": body.provider, "isAnonymous": false })),
    };
    let upgraded = match state.db.upgrade_with_social(&link).await {
        // The verified address is held by another account: never linked into it.
        Err(DbError::Conflict(Conflict::Email)) => return Err(email_taken(&body.provider)),
        other => other?,
    }
    .ok_or_else(|| Failure::new(ErrorCode::UserNotAnonymous))?;
    tracing::info!(user_id = %upgraded.id, provider = %link.provider, "guest upgraded with a social account");
    Ok(Json(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}
