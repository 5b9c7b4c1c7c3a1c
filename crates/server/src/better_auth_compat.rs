//! Better Auth's request and response shapes on the routes we have a meaning
//! for, so a web app on the stock `better-auth/client` (with `anonymousClient()`
//! and a bearer token) works against this server unchanged (issue 11):
//!
//! - `POST /sign-in/email` takes Better Auth's extra fields and answers a
//!   superset of its shape, `{redirect, token, url, user}` plus our `session`.
//! - `POST /sign-up/email` holding a guest's bearer is our in-place upgrade
//!   (same user id and session, a new token); without one it creates a full account.
//! - A sign-in that carries a guest's bearer into another account folds the
//!   guest into it (`merge.rs`), as Better Auth's anonymous plugin links and
//!   deletes the anonymous user. Our own app asks the person first, so it signs
//!   in without the guest's bearer and calls `/anonymous/merge` if they agree.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{new_user_id, routes, AuditEventKind, ErrorCode, UpgradeRequest};
use serde::Deserialize;

use crate::auth::{
    check_email_password, current_session, ip_hash, ip_of, limit_upgrade, mint_session,
    new_session_for, Authed,
};
use crate::crypto::{new_token, sha256_hex};
use crate::db::{AuditRow, SessionRow, UserRow};
use crate::db_accounts::NewAccount;
use crate::email_verification::send_verification;
use crate::error::{ApiResult, Failure};
use crate::extract::{bearer, ApiJson, Peer};
use crate::merge::fold_on_sign_in;
use crate::state::{verification_ttl, AppState, SharedState};
use crate::upgrade::{account_input, upgrade_in_place, NextToken};

/// An avatar URL, not a picture.
const IMAGE_MAX: usize = 2048;

/// `POST /sign-in/email` as Better Auth's client sends it. No `Debug`: it
/// carries a password.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSignIn {
    email: String,
    password: String,
    /// Accepted and not followed: this server answers JSON, never redirects.
    #[serde(default, rename = "callbackURL")]
    _callback_url: Option<String>,
    /// Accepted; bearer sessions have no cookie to keep or drop.
    #[serde(default, rename = "rememberMe")]
    _remember_me: Option<bool>,
}

/// `POST /sign-up/email` as Better Auth's client sends it. No `Debug` either.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSignUp {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default, rename = "callbackURL")]
    _callback_url: Option<String>,
    #[serde(default, rename = "rememberMe")]
    _remember_me: Option<bool>,
}

pub async fn sign_in_email(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmailSignIn>,
) -> ApiResult<Response> {
    let ip = ip_of(&state, &headers, &peer);
    let user = check_email_password(&state, &body.email, body.password, ip).await?;
    let (session, token, audit) = new_session_for(&state, &user.id, "email", ip);
    let folded = match current_session(&state, &headers).await? {
        Some(Authed {
            user: guest,
            session: guest_session,
        }) if guest.is_anonymous && guest.id != user.id => {
            let new = (session.clone(), audit.clone());
            fold_on_sign_in(
                &state,
                &guest,
                &guest_session,
                &user.id,
                ip_hash(&state, ip),
                new,
            )
            .await?
        }
        _ => false,
    };
    if !folded {
        state.db.create_session(&session, &audit).await?;
    }
    let body = serde_json::json!({
        "redirect": false,
        "token": token,
        "url": null,
        "user": user.to_wire(),
        "session": session.to_wire(),
    });
    Ok(with_token(body, &token))
}

pub async fn sign_up_email(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmailSignUp>,
) -> ApiResult<Response> {
    let ip = ip_of(&state, &headers, &peer);
    limit_upgrade(&state, ip).await?;
    if let Some(image) = &body.image {
        if image.len() > IMAGE_MAX {
            return Err(Failure::bad_request("Image URL too long"));
        }
    }
    match (current_session(&state, &headers).await?, bearer(&headers)) {
        // A guest signing up is our upgrade, in place: it keeps its id and its
        // session, under a new token (in the body and `set-auth-token`, where
        // Better Auth's client takes it); the guest's token dies with it.
        (Some(Authed { user, session }), Some(_)) if user.is_anonymous => {
            let up = UpgradeRequest {
                email: body.email,
                password: body.password,
                name: body.name,
                next_token_hash: None,
            };
            let next = NextToken::minted();
            let (upgraded, session) =
                upgrade_in_place(&state, &user, &session, up, &next, ip_hash(&state, ip)).await?;
            let token = next.token().unwrap_or_default().to_string();
            Ok(signed_up(&upgraded, &session, token))
        }
        _ => create_email_account(&state, body, ip_hash(&state, ip)).await,
    }
}

/// A new full account with an email and password, signed in.
async fn create_email_account(
    state: &AppState,
    body: EmailSignUp,
    ip_hash: Option<String>,
) -> ApiResult<Response> {
    if !state.config.auth_methods.email_password {
        return Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password accounts are disabled"));
    }
    let (email, name) = account_input(&body.email, &body.password, body.name)?;
    if state
        .db
        .email_holder(&email, state.clock.now_ms())
        .await?
        .is_some()
    {
        return Err(ErrorCode::EmailAlreadyInUse.into());
    }
    let password_hash = state
        .hash_queue
        .try_slot()?
        .hash(body.password)
        .await
        .ok_or_else(Failure::internal)?;
    let now = state.clock.now_ms();
    let user = UserRow {
        id: new_user_id(),
        email: Some(email.clone()),
        name,
        image: body.image.filter(|i| !i.trim().is_empty()),
        is_anonymous: false,
        password_hash: Some(password_hash),
        ..UserRow::new_guest(String::new(), now)
    };
    let (session, token) = mint_session(&user.id, now);
    let link_token = new_token();
    let audits = vec![
        AuditRow::new(
            AuditEventKind::UserCreated,
            &user.id,
            &user.id,
            now,
            ip_hash.clone(),
        )
        .with_detail(serde_json::json!({ "isAnonymous": false, "method": "email" })),
        AuditRow::new(
            AuditEventKind::SessionCreated,
            &user.id,
            &user.id,
            now,
            ip_hash,
        )
        .with_detail(serde_json::json!({ "sessionId": session.id, "method": "email" })),
    ];
    let account = NewAccount {
        user,
        identity: None,
        verification: Some((
            sha256_hex(&link_token),
            now + verification_ttl().num_milliseconds(),
        )),
        session,
        audits,
    };
    state.db.create_account(&account).await?;
    tracing::info!(user_id = %account.user.id, "account created by an email sign-up");
    send_verification(state, &account.user.id, email, &link_token);
    Ok(signed_up(&account.user, &account.session, token))
}

/// Better Auth's `{token, user}`, with our `session` beside them.
fn signed_up(user: &UserRow, session: &SessionRow, token: String) -> Response {
    let body = serde_json::json!({
        "token": token,
        "user": user.to_wire(),
        "session": session.to_wire(),
    });
    with_token(body, &token)
}

/// The body, with the token repeated in `set-auth-token` (Better Auth's bearer
/// plugin and its client read it there).
fn with_token(body: serde_json::Value, token: &str) -> Response {
    let mut res = Json(body).into_response();
    if let Ok(h) = HeaderValue::from_str(token) {
        res.headers_mut().insert(routes::SET_AUTH_TOKEN, h);
    }
    res
}
