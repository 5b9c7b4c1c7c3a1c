//! Verification a person finishes (issue 13). The mailed link opens
//! `GET /verify-email?token=…`, which only shows a "Confirm my email" button
//! (a mail scanner fetching the link changes nothing); the button posts the
//! token back and `POST /verify-email` does the change. The signed-in account
//! can ask for the link again (`send-verification-email`, 3 an hour).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{
    normalize_email, routes, ErrorCode, SendVerificationEmailRequest, SuccessResponse,
    TokenCheckResponse, VerifyEmailRequest, VERIFICATION_RESENDS_PER_HOUR,
};
use serde::Deserialize;

use crate::auth::Authed;
use crate::crypto::{new_token, sha256_hex};
use crate::db::{Conflict, DbError};
use crate::db_care::{Resend, ResendOutcome};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiQuery, FormOrJson, FullAccount, JsonOrEmpty};
use crate::pages::{self, escape, para};
use crate::state::{care_limit_window, mailed_link, verification_ttl, AppState, SharedState};

/// Longer than any token this server mints; anything longer is not one.
pub(crate) const TOKEN_MAX: usize = 256;

/// Mails the verification link for `token`, after the commit and off the
/// request: a slow mail server does not hold the answer, and a failed send does
/// not undo the account.
pub(crate) fn send_verification(state: &AppState, user_id: &str, email: String, token: &str) {
    if let Some(mailer) = state.mailer.clone() {
        let link = mailed_link(state, routes::VERIFY_EMAIL, token);
        tokio::spawn(async move { mailer.send_verification(&email, &link).await });
    } else {
        tracing::warn!(%user_id, "no smtpUrl configured: verification email not sent");
    }
}

/// `?token=…` of the pages; other parameters (Better Auth's `callbackURL`) are ignored.
#[derive(Deserialize)]
pub struct TokenQuery {
    pub(crate) token: Option<String>,
}

/// A token worth looking up: present, not empty, not absurdly long.
pub(crate) fn usable(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty() && t.len() <= TOKEN_MAX)
}

const ASK_AGAIN: &str = "Open the app and choose \"Resend\" to get a new link.";

/// `GET /verify-email?token=…`: changes nothing. A browser gets the page with
/// the confirm button (or the page of a dead link, 400); a JSON client gets
/// `{"valid": true}` or 400 `INVALID_TOKEN`.
pub async fn verify_email_page(
    State(state): State<SharedState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Response> {
    let now = state.clock.now_ms();
    let live = match usable(q.token) {
        Some(token) => state
            .db
            .verification_live(&sha256_hex(&token), now)
            .await?
            .then_some(token),
        None => None,
    };
    let app = &state.config.app_name;
    Ok(match (pages::wants_html(&headers), live) {
        (true, Some(token)) => pages::page(
            StatusCode::OK,
            app,
            "Confirm your email",
            &format!(
                "{}<form method=\"post\" action=\"{action}\">\n\
                 <input type=\"hidden\" name=\"token\" value=\"{token}\">\n\
                 <button type=\"submit\">Confirm my email</button>\n</form>",
                para("Press the button to confirm that this email address is yours."),
                action = relative(routes::VERIFY_EMAIL),
                token = escape(&token),
            ),
        ),
        (true, None) => pages::invalid_link(app, ASK_AGAIN),
        (false, Some(_)) => Json(TokenCheckResponse { valid: true }).into_response(),
        (false, None) => Failure::new(ErrorCode::InvalidToken).into_response(),
    })
}

/// The form's `action`: the route's last segment, resolved against the page's
/// own address, so the pages work under any prefix a proxy adds.
pub(crate) fn relative(route: &str) -> &str {
    route.rsplit('/').next().unwrap_or(route)
}

/// `POST /verify-email` `{token}` (JSON, or the page's form): marks the email
/// verified. JSON: 200 `{"success": true}` or 400 `INVALID_TOKEN`.
pub async fn verify_email(
    State(state): State<SharedState>,
    body: FormOrJson<VerifyEmailRequest>,
) -> ApiResult<Response> {
    let app = &state.config.app_name;
    let token = match body.body {
        Ok(b) => usable(Some(b.token)),
        Err(_) if body.html => return Ok(pages::bad_form(app)),
        Err(refusal) => return Err(refusal),
    };
    let consumed = match token {
        Some(token) => {
            state
                .db
                .consume_verification(&sha256_hex(&token), state.clock.now_ms())
                .await?
        }
        None => None,
    };
    match (consumed, body.html) {
        (Some(user_id), html) => {
            tracing::info!(%user_id, "email verified");
            Ok(if html {
                pages::page(
                    StatusCode::OK,
                    app,
                    "Email confirmed",
                    &para("Thank you: your email address is confirmed. You can close this page and go back to the app."),
                )
            } else {
                Json(SuccessResponse::OK).into_response()
            })
        }
        (None, true) => Ok(pages::invalid_link(app, ASK_AGAIN)),
        (None, false) => Err(ErrorCode::InvalidToken.into()),
    }
}

/// `POST /send-verification-email` (bearer, full account): a new link to the
/// account's address, at most [`VERIFICATION_RESENDS_PER_HOUR`] in any hour
/// (429 `RATE_LIMITED` + `Retry-After` beyond); 400 `EMAIL_ALREADY_VERIFIED`.
pub async fn send_verification_email(
    State(state): State<SharedState>,
    FullAccount(Authed { user, .. }): FullAccount,
    JsonOrEmpty(body): JsonOrEmpty<SendVerificationEmailRequest>,
) -> ApiResult<Json<SuccessResponse>> {
    // An account without an address (its lapsed claim was taken by the
    // address's owner, issue 14) adds one here; otherwise `email` must be its own.
    let mut new_email = None;
    if let Some(asked) = &body.email {
        let asked = normalize_email(asked)?;
        match &user.email {
            None => new_email = Some(asked),
            Some(own) if *own == asked => {}
            Some(_) => {
                return Err(Failure::bad_request(
                    "That is not the email address of the signed-in account",
                ))
            }
        }
    }
    let token = new_token();
    let now = state.clock.now_ms();
    let resend = Resend {
        user_id: user.id.clone(),
        token_hash: sha256_hex(&token),
        expires_at: now + verification_ttl().num_milliseconds(),
        now,
        window_ms: care_limit_window().num_milliseconds(),
        max_in_window: VERIFICATION_RESENDS_PER_HOUR,
        new_email,
    };
    let outcome = match state.db.resend_verification(&resend).await {
        Err(DbError::Conflict(Conflict::Email)) => {
            return Err(Failure::new(ErrorCode::EmailAlreadyInUse).with_message(
                "This address belongs to another account now. Add another address to sign in again",
            ))
        }
        other => other?,
    };
    match outcome {
        ResendOutcome::Sent { email } => {
            send_verification(&state, &user.id, email, &token);
            Ok(Json(SuccessResponse::OK))
        }
        ResendOutcome::AlreadyVerified => Err(ErrorCode::EmailAlreadyVerified.into()),
        ResendOutcome::NoEmail => Err(Failure::bad_request(
            "This account has no email address to verify: send the address to add as `email` \
             (an unconfirmed address lapses after a few days and its owner may take it)",
        )),
        ResendOutcome::Gone => Err(ErrorCode::Unauthorized.into()),
        ResendOutcome::Limited { retry_after_ms } => {
            let mut failure = Failure::new(ErrorCode::RateLimited)
                .with_message("Too many verification emails. Please try again later.");
            failure.retry_after_secs =
                Some(u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1));
            Err(failure)
        }
    }
}
