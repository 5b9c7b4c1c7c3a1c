//! The in-place upgrade of a guest: same user id, same session, all data kept.
//! (The verification link it mails is `email_verification.rs`.)
//!
//! The guest's bearer token does not survive it (issue 14): in the upgrade's own
//! transaction the session gets a new token and every other session of the user
//! ends (a guest restored on a second device signs in there). The new token is the
//! one whose hash the device sent as `nextTokenHash` (it made the token itself, so
//! an answer lost on the way still leaves it holding the token that works), or one
//! minted here and sent in `set-auth-token`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{
    normalize_email, normalize_name, routes, validate_password, validate_token_hash,
    AuditEventKind, ErrorCode, SessionResponse, SocialUpgradeRequest, UpgradeRequest,
};

use crate::auth::{ip_hash, ip_of, limit_upgrade, require_session, Authed};
use crate::crypto::{hex_digests_match, new_token, sha256_hex};
use crate::db::{
    AuditRow, Conflict, DbError, DbResult, EmailUpgrade, Rotation, SessionRow, SocialLink,
    Upgraded, UserRow,
};
use crate::email_verification::send_verification;
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, Peer};
use crate::link_social::email_taken;
use crate::social_sign_in::verify_identity;
use crate::state::{verification_ttl, AppState, SharedState};

pub async fn upgrade(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpgradeRequest>,
) -> ApiResult<Response> {
    let ip = ip_of(&state, &headers, &peer);
    limit_upgrade(&state, ip).await?;
    let Authed { user, session } = require_session(&state, &headers).await?;
    let next = NextToken::new(body.next_token_hash.as_deref(), &session)?;
    let ip = ip_hash(&state, ip);
    let (upgraded, session) = upgrade_in_place(&state, &user, &session, body, &next, ip).await?;
    Ok(next.answer(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}

/// The token a session gets on upgrade.
pub(crate) enum NextToken {
    /// The device made it; only its SHA-256 (hex) is known here.
    Supplied(String),
    /// Minted here, for a client that sent no hash (a web app, curl).
    Minted { token: String, hash: String },
}

impl NextToken {
    /// From the request's `nextTokenHash`: 64 lowercase hex digits naming a token
    /// other than the current one, or none (then a new token is minted).
    pub(crate) fn new(supplied: Option<&str>, current: &SessionRow) -> ApiResult<Self> {
        let Some(hash) = supplied else {
            return Ok(Self::minted());
        };
        if validate_token_hash(hash).is_err() {
            return Err(Failure::bad_request(
                "nextTokenHash must be the SHA-256 of the new token: 64 lowercase hex digits",
            ));
        }
        if hex_digests_match(&current.token_hash, hash) {
            return Err(Failure::bad_request(
                "nextTokenHash must name a new token, not the current one",
            ));
        }
        Ok(Self::Supplied(hash.to_owned()))
    }

    pub(crate) fn minted() -> Self {
        let token = new_token();
        let hash = sha256_hex(&token);
        Self::Minted { token, hash }
    }

    fn rotation(&self, session: &SessionRow) -> Rotation {
        let token_hash = match self {
            Self::Supplied(hash) | Self::Minted { hash, .. } => hash.clone(),
        };
        Rotation {
            session_id: session.id.clone(),
            token_hash,
        }
    }

    /// The minted token (the caller must be told it); `None` when the device made it.
    pub(crate) fn token(&self) -> Option<&str> {
        match self {
            Self::Supplied(_) => None,
            Self::Minted { token, .. } => Some(token),
        }
    }

    /// `body` as JSON, with a minted token in `set-auth-token` (DESIGN.md §4: an
    /// answer that rotates a session carries it).
    fn answer(&self, body: SessionResponse) -> Response {
        let mut res = Json(body).into_response();
        if let Some(h) = self.token().and_then(|t| HeaderValue::from_str(t).ok()) {
            res.headers_mut().insert(routes::SET_AUTH_TOKEN, h);
        }
        res
    }
}

/// The outcome of an upgrade's transaction as the caller sees it.
fn settle(outcome: DbResult<Upgraded>) -> ApiResult<(UserRow, SessionRow, u64)> {
    // Another session already has that hash: only a client reusing a token could
    // cause it (a random one never collides), so it is that client's mistake.
    let outcome = outcome.map_err(|e| match e {
        DbError::Conflict(Conflict::SessionToken) => {
            Failure::bad_request("nextTokenHash is already in use: make a new token")
        }
        other => Failure::from(other),
    })?;
    match outcome {
        Upgraded::Done {
            user,
            session,
            revoked,
        } => Ok((user, session, revoked)),
        Upgraded::NotAGuest => Err(ErrorCode::UserNotAnonymous.into()),
        Upgraded::SessionGone => Err(ErrorCode::Unauthorized.into()),
    }
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

/// The in-place upgrade of `user` (the caller's, from its bearer, on `session`)
/// to an email account: same id, same session under the `next` token, the
/// user's other sessions revoked. Shared by `/anonymous/upgrade` and Better
/// Auth's `/sign-up/email` holding a guest's bearer.
pub(crate) async fn upgrade_in_place(
    state: &AppState,
    user: &UserRow,
    session: &SessionRow,
    body: UpgradeRequest,
    next: &NextToken,
    ip_hash: Option<String>,
) -> ApiResult<(UserRow, SessionRow)> {
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
    let password_hash = state
        .hash_queue
        .try_slot()?
        .hash(password)
        .await
        .ok_or_else(Failure::internal)?;

    let now = state.clock.now_ms();
    let token = new_token();
    let up = EmailUpgrade {
        user_id: user.id.clone(),
        rotation: next.rotation(session),
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
    let (upgraded, session, revoked) = settle(state.db.upgrade_with_email(&up).await)?;
    tracing::info!(user_id = %upgraded.id, revoked, "guest upgraded to an email account");
    send_verification(state, &upgraded.id, email, &token);
    Ok((upgraded, session))
}

/// Social upgrade: the app sends the ID token it got from the provider (native
/// flow, DESIGN.md §5); it is verified here and linked to the guest in place.
pub async fn upgrade_social(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SocialUpgradeRequest>,
) -> ApiResult<Response> {
    let Authed { user, session } = require_session(&state, &headers).await?;
    let next = NextToken::new(body.next_token_hash.as_deref(), &session)?;
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
        rotation: next.rotation(&session),
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
    let outcome = match state.db.upgrade_with_social(&link).await {
        // The verified address is held by another account: never linked into it.
        Err(DbError::Conflict(Conflict::Email)) => return Err(email_taken(&body.provider)),
        other => other,
    };
    let (upgraded, session, revoked) = settle(outcome)?;
    tracing::info!(user_id = %upgraded.id, provider = %link.provider, revoked, "guest upgraded with a social account");
    Ok(next.answer(SessionResponse {
        user: upgraded.to_wire(),
        session: session.to_wire(),
    }))
}
