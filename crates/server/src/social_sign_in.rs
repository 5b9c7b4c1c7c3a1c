//! `POST /sign-in/social`: the account linked to a verified provider identity
//! signs in, or a full account is made from the ID token. Also the ID token
//! check that `upgrade-social` shares.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use guestpass_proto::{
    name_from_provider, new_user_id, normalize_email, AuditEventKind, ErrorCode,
    SocialSignInRequest,
};

use crate::auth::{ip_hash, ip_of, mint_session, new_session_for, signed_in};
use crate::crypto::sha256_hex;
use crate::db::{AuditRow, Conflict, DbError, UserRow};
use crate::db_accounts::NewAccount;
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, Peer};
use crate::link_social::email_taken;
use crate::oidc::{OidcError, LEEWAY_SECS};
use crate::social_nonce;
use crate::state::{AppState, SharedState};

/// What a verified ID token says about the person.
pub(crate) struct VerifiedIdentity {
    pub sub: String,
    /// Only an address the provider vouches for (`email_verified`), normalised.
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Verifies `id_token` against `provider`'s published keys (`oidc.rs`): 404
/// `UNKNOWN_PROVIDER`, 401 `INVALID_ID_TOKEN`, 503 when the provider is down.
/// `nonce` must be one this server issued (`social_nonce.rs`), unexpired, and the
/// token's `nonce` claim; a token is accepted once (its digest is remembered in the
/// database until it expires), so a replay is 401 `INVALID_ID_TOKEN` too.
pub(crate) async fn verify_identity(
    state: &AppState,
    provider: &str,
    id_token: &str,
    nonce: Option<&str>,
) -> ApiResult<VerifiedIdentity> {
    let Some(config) = state.config.social_providers.get(provider) else {
        return Err(ErrorCode::UnknownProvider.into());
    };
    let now_ms = state.clock.now_ms();
    let nonce = match social_nonce::check(&state.secret, nonce, now_ms) {
        Ok(()) => nonce.unwrap_or_default(),
        Err(why) => {
            tracing::info!(%provider, why = why.as_str(), "ID token refused");
            return Err(ErrorCode::InvalidIdToken.into());
        }
    };
    let claims = match state.oidc.verify(config, id_token, nonce, now_ms).await {
        Ok(claims) => claims,
        Err(OidcError::Invalid(why)) => {
            tracing::info!(%provider, %why, "ID token refused");
            return Err(ErrorCode::InvalidIdToken.into());
        }
        Err(OidcError::Unreachable(why)) => {
            tracing::warn!(%provider, %why, "identity provider unreachable");
            return Err(
                Failure::unavailable().with_message("The identity provider cannot be reached")
            );
        }
    };
    let expires_ms = claims.exp.saturating_add(LEEWAY_SECS).saturating_mul(1000);
    if !state
        .db
        .spend_id_token(&sha256_hex(id_token), expires_ms)
        .await?
    {
        tracing::warn!(%provider, "ID token presented again; refused");
        return Err(ErrorCode::InvalidIdToken.into());
    }
    let email = claims
        .email
        .filter(|_| claims.email_verified == Some(true))
        .and_then(|e| normalize_email(&e).ok());
    let name = claims.name.as_deref().and_then(name_from_provider);
    Ok(VerifiedIdentity {
        sub: claims.sub,
        email,
        name,
    })
}

pub async fn sign_in_social(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SocialSignInRequest>,
) -> ApiResult<Response> {
    let verified = verify_identity(
        &state,
        &body.provider,
        &body.id_token,
        body.nonce.as_deref(),
    )
    .await?;
    let ip = ip_of(&state, &headers, &peer);
    if let Some(user) = state
        .db
        .user_by_identity(&body.provider, &verified.sub)
        .await?
    {
        return sign_in_linked(&state, &user, ip).await;
    }
    let now = state.clock.now_ms();
    // Never linked silently to an account that merely has the same address (an
    // unverified one could be a squatter's: pre-account hijacking). Whoever
    // holds it proves it and links the provider (`link-social`). A lapsed claim
    // holds nothing: this login then gets an account of its own, with the address.
    if let Some(email) = &verified.email {
        if state.db.email_holder(email, now).await?.is_some() {
            return Err(email_taken(&body.provider));
        }
    }
    let user = UserRow {
        id: new_user_id(),
        email_verified: verified.email.is_some(),
        email: verified.email,
        name: verified.name,
        is_anonymous: false,
        ..UserRow::new_guest(String::new(), now)
    };
    let (session, token) = mint_session(&user.id, now);
    let ip_hash = ip_hash(&state, ip);
    let audits = vec![
        AuditRow::new(
            AuditEventKind::UserCreated,
            &user.id,
            &user.id,
            now,
            ip_hash.clone(),
        )
        .with_detail(serde_json::json!({
            "isAnonymous": false, "method": "social", "provider": body.provider
        })),
        AuditRow::new(
            AuditEventKind::SessionCreated,
            &user.id,
            &user.id,
            now,
            ip_hash,
        )
        .with_detail(serde_json::json!({ "sessionId": session.id, "method": "social" })),
    ];
    let account = NewAccount {
        user,
        identity: Some((body.provider.clone(), verified.sub.clone())),
        verification: None,
        session,
        audits,
    };
    match state.db.create_account(&account).await {
        Ok(()) => {
            tracing::info!(user_id = %account.user.id, provider = %body.provider, "account created from a social sign-in");
            Ok(signed_in(&account.user, &account.session, token))
        }
        // A second request for the same identity (a double click) made it first:
        // this one signs in to it.
        Err(DbError::Conflict(conflict)) => {
            match state
                .db
                .user_by_identity(&body.provider, &verified.sub)
                .await?
            {
                Some(user) => sign_in_linked(&state, &user, ip).await,
                None if conflict == Conflict::Email => Err(email_taken(&body.provider)),
                None => Err(DbError::Conflict(conflict).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn sign_in_linked(
    state: &AppState,
    user: &UserRow,
    ip: Option<std::net::IpAddr>,
) -> ApiResult<Response> {
    let (session, token, audit) = new_session_for(state, &user.id, "social", ip);
    state.db.create_session(&session, &audit).await?;
    Ok(signed_in(user, &session, token))
}
