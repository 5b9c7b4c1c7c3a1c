//! The in-place upgrade of a guest: same user id, same session, all data kept.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use guestpass_proto::{
    routes, validate_email, validate_password, AuditEventKind, ErrorCode, SessionResponse,
    SocialUpgradeRequest, SuccessResponse, UpgradeRequest,
};
use serde::Deserialize;

use crate::auth::{ip_hash, ip_of, require_session, Authed};
use crate::crypto::{new_token, sha256_hex};
use crate::db::{AuditRow, EmailUpgrade, SocialLink};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, ApiQuery, Peer};
use crate::hashing::hash_password;
use crate::oidc::OidcError;
use crate::state::{verification_ttl, SharedState};

const NAME_MAX: usize = 256;

pub async fn upgrade(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpgradeRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let Authed { user, session } = require_session(&state, &headers).await?;
    if !state.config.auth_methods.email_password {
        return Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password accounts are disabled"));
    }
    if !user.is_anonymous {
        return Err(ErrorCode::UserNotAnonymous.into());
    }
    validate_email(&body.email)?;
    validate_password(&body.password)?;
    // Stored lower-cased: uniqueness is case-insensitive.
    let email = body.email.trim().to_lowercase();
    let name = body
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > NAME_MAX) {
        return Err(Failure::bad_request("Name too long"));
    }
    // Cheap early answer before the deliberately slow hash; the unique index is
    // what actually guarantees it.
    if state.db.user_by_email(&email).await?.is_some() {
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
            ip_hash(&state, ip_of(&state, &headers, &peer)),
        )
        .with_detail(serde_json::json!({ "upgrade": "email", "isAnonymous": false })),
    };
    let upgraded = state
        .db
        .upgrade_with_email(&up)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::UserNotAnonymous))?;
    tracing::info!(user_id = %upgraded.id, "guest upgraded to an email account");

    if let Some(mailer) = state.mailer.clone() {
        let link = format!(
            "{}{}{}?token={}",
            state.config.site_url.trim_end_matches('/'),
            routes::BASE,
            routes::VERIFY_EMAIL,
            token
        );
        // Sent after the commit and off the request: a slow mail server does not
        // hold the answer, and a failed send does not undo the upgrade.
        tokio::spawn(async move { mailer.send_verification(&email, &link).await });
    } else {
        tracing::warn!(user_id = %upgraded.id, "no smtpUrl configured: verification email not sent");
    }
    Ok(Json(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    token: Option<String>,
}

pub async fn verify_email(
    State(state): State<SharedState>,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<Json<SuccessResponse>> {
    let token = q.token.filter(|t| !t.is_empty() && t.len() <= 256);
    let Some(token) = token else {
        return Err(ErrorCode::InvalidToken.into());
    };
    match state
        .db
        .consume_verification(&sha256_hex(&token), state.clock.now_ms())
        .await?
    {
        Some(user_id) => {
            tracing::info!(%user_id, "email verified");
            Ok(Json(SuccessResponse::OK))
        }
        None => Err(ErrorCode::InvalidToken.into()),
    }
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
    let Some(provider) = state.config.social_providers.get(&body.provider) else {
        return Err(ErrorCode::UnknownProvider.into());
    };
    if !user.is_anonymous {
        return Err(ErrorCode::UserNotAnonymous.into());
    }
    let now = state.clock.now_ms();
    let claims = match state
        .oidc
        .verify(
            provider,
            &body.id_token,
            body.nonce.as_deref(),
            now.div_euclid(1000),
        )
        .await
    {
        Ok(claims) => claims,
        Err(OidcError::Invalid(why)) => {
            tracing::info!(provider = %body.provider, %why, "ID token refused");
            return Err(ErrorCode::InvalidIdToken.into());
        }
        Err(OidcError::Unreachable(why)) => {
            tracing::warn!(provider = %body.provider, %why, "identity provider unreachable");
            return Err(
                Failure::unavailable().with_message("The identity provider cannot be reached")
            );
        }
    };
    // Only an address the provider vouches for becomes the account's (verified) email.
    let email = claims
        .email
        .filter(|_| claims.email_verified == Some(true))
        .map(|e| e.trim().to_lowercase())
        .filter(|e| validate_email(e).is_ok());
    let name = claims
        .name
        .map(|n| n.trim().chars().take(NAME_MAX).collect::<String>())
        .filter(|n| !n.is_empty());
    let link = SocialLink {
        user_id: user.id.clone(),
        provider: body.provider.clone(),
        provider_account_id: claims.sub,
        email,
        name,
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
    let upgraded = state
        .db
        .upgrade_with_social(&link)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::UserNotAnonymous))?;
    tracing::info!(user_id = %upgraded.id, provider = %link.provider, "guest upgraded with a social account");
    Ok(Json(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}
