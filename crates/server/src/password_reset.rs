//! Forgot password (issue 13). `POST /request-password-reset {email}` answers
//! the same 200 whatever the address, in the same time: the request path does
//! the same work for every address (check, count against the per-address rate
//! limit, mint a token) and the lookup, the link and the email happen after the
//! answer, off the request. The link opens `GET /reset-password?token=…`, the
//! server's page asking for the new password; its form (or an app's JSON)
//! posts `POST /reset-password`, which sets it, ends every session and marks
//! the email verified (the link proved the mailbox).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{
    normalize_email, routes, validate_password, ErrorCode, RequestPasswordResetRequest,
    SuccessResponse, TokenCheckResponse, PASSWORD_MAX, PASSWORD_MIN, PASSWORD_RESETS_PER_HOUR,
};
use serde::Deserialize;

use crate::auth::{ip_hash, ip_of};
use crate::crypto::{new_token, sha256_hex};
use crate::db_care::{NewPasswordReset, PasswordReset};
use crate::email_verification::{relative, usable, TokenQuery};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, ApiQuery, FormOrJson, Peer};
use crate::pages::{self, alert, escape, para};
use crate::ratelimit::{self, Decision};
use crate::state::{care_limit_window, mailed_link, password_reset_ttl, AppState, SharedState};

const ASK_AGAIN: &str = "Choose \"Forgot password?\" in the app to get a new link.";

fn email_password_on(state: &AppState) -> ApiResult<()> {
    if state.config.auth_methods.email_password {
        Ok(())
    } else {
        Err(Failure::new(ErrorCode::NotFound)
            .with_message("Email and password sign-in is disabled"))
    }
}

/// `POST /request-password-reset`: 200 `{"success": true}` for every
/// well-formed address; 422 `INVALID_EMAIL`; 429 `RATE_LIMITED` per client address.
pub async fn request_password_reset(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RequestPasswordResetRequest>,
) -> ApiResult<Json<SuccessResponse>> {
    email_password_on(&state)?;
    let email = normalize_email(&body.email)?;
    let now = state.clock.now_ms();
    let ip = ip_of(&state, &headers, &peer);
    let limit = state.config.rate_limit.password_reset_per_minute;
    if let Decision::Limited { retry_after_secs } =
        ratelimit::check_password_reset(state.db.as_ref(), &state.secret, ip, limit, now).await?
    {
        let mut failure = Failure::new(ErrorCode::RateLimited);
        failure.retry_after_secs = Some(retry_after_secs);
        return Err(failure);
    }
    // Minted for every address, registered or not: the same work either way.
    let token = new_token();
    let token_hash = sha256_hex(&token);
    tokio::spawn(mail_reset_link(
        state.clone(),
        email,
        token,
        token_hash,
        now,
    ));
    Ok(Json(SuccessResponse::OK))
}

/// After the answer: a full account with that email gets the link (at most
/// [`PASSWORD_RESETS_PER_HOUR`] an hour); anyone else gets nothing. Nothing
/// here is told to the caller, and the log never names the address. `now` is
/// the request's time.
async fn mail_reset_link(
    state: SharedState,
    email: String,
    token: String,
    token_hash: String,
    now: i64,
) {
    let Some(mailer) = state.mailer.clone() else {
        tracing::warn!("no smtpUrl configured: password reset email not sent");
        return;
    };
    let user = match state.db.user_by_email(&email).await {
        Ok(Some(user)) if !user.is_anonymous => user,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "password reset not recorded");
            return;
        }
    };
    let reset = NewPasswordReset {
        user_id: user.id.clone(),
        email: email.clone(),
        token_hash,
        expires_at: now + password_reset_ttl().num_milliseconds(),
        now,
        window_ms: care_limit_window().num_milliseconds(),
        max_in_window: PASSWORD_RESETS_PER_HOUR,
    };
    match state.db.create_password_reset(&reset).await {
        Ok(true) => {
            tracing::info!(user_id = %user.id, "password reset link recorded");
            let link = mailed_link(&state, routes::RESET_PASSWORD, &token);
            mailer.send_password_reset(&email, &link).await;
        }
        Ok(false) => {
            tracing::info!(user_id = %user.id, "password reset not sent: hourly limit reached");
        }
        Err(e) => tracing::warn!(error = %e, "password reset not recorded"),
    }
}

/// `GET /reset-password?token=…`: changes nothing. A browser gets the form
/// asking for the new password (or the page of a dead link, 400); a JSON client
/// `{"valid": true}` or 400 `INVALID_TOKEN`.
pub async fn reset_password_page(
    State(state): State<SharedState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Response> {
    let now = state.clock.now_ms();
    let live = match usable(q.token) {
        Some(token) => state
            .db
            .password_reset_live(&sha256_hex(&token), now)
            .await?
            .then_some(token),
        None => None,
    };
    let app = &state.config.app_name;
    Ok(match (pages::wants_html(&headers), live) {
        (true, Some(token)) => form_page(app, StatusCode::OK, &token, None),
        (true, None) => pages::invalid_link(app, ASK_AGAIN),
        (false, Some(_)) => Json(TokenCheckResponse { valid: true }).into_response(),
        (false, None) => Failure::new(ErrorCode::InvalidToken).into_response(),
    })
}

/// The new-password form, with `error` above it when a post was refused.
fn form_page(app: &str, status: StatusCode, token: &str, error: Option<&str>) -> Response {
    let inner = format!(
        "{error}{intro}<form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\n\
         <label for=\"new-password\">New password</label>\n\
         <input id=\"new-password\" name=\"newPassword\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"{min}\" maxlength=\"{max}\" required \
         aria-describedby=\"rules\">\n\
         <p id=\"rules\" class=\"hint\">{min} to {max} characters.</p>\n\
         <label for=\"confirm-password\">New password, again</label>\n\
         <input id=\"confirm-password\" name=\"confirmPassword\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"{min}\" maxlength=\"{max}\" required>\n\
         <button type=\"submit\">Set new password</button>\n</form>",
        error = error.map(alert).unwrap_or_default(),
        intro = para(
            "Choose a new password. Every device signed in to your account will be signed out."
        ),
        action = relative(routes::RESET_PASSWORD),
        token = escape(token),
        min = PASSWORD_MIN,
        max = PASSWORD_MAX,
    );
    pages::page(status, app, "Choose a new password", &inner)
}

/// `POST /reset-password` as an app (JSON) or the page's form sends it. The
/// token may also come as `?token=` (Better Auth's client puts it there).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetInput {
    #[serde(default)]
    token: Option<String>,
    new_password: String,
    /// The page's second field; an app need not send it.
    #[serde(default)]
    confirm_password: Option<String>,
}

/// `POST /reset-password`: JSON 200 `{"success": true}`; 400 `INVALID_TOKEN`
/// (used, expired, unknown); 422 `PASSWORD_TOO_SHORT` / `PASSWORD_TOO_LONG`.
pub async fn reset_password(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
    body: FormOrJson<ResetInput>,
) -> ApiResult<Response> {
    email_password_on(&state)?;
    let (html, app) = (body.html, &state.config.app_name);
    let input = match body.body {
        Ok(input) => input,
        Err(_) if html => return Ok(pages::bad_form(app)),
        Err(refusal) => return Err(refusal),
    };
    let invalid = || -> ApiResult<Response> {
        if html {
            Ok(pages::invalid_link(app, ASK_AGAIN))
        } else {
            Err(ErrorCode::InvalidToken.into())
        }
    };
    let Some(token) = usable(input.token.or(q.token)) else {
        return invalid();
    };
    let token_hash = sha256_hex(&token);
    // Read-only first: a dead or made-up token never costs a password hash.
    if !state
        .db
        .password_reset_live(&token_hash, state.clock.now_ms())
        .await?
    {
        return invalid();
    }
    let refused = |code: ErrorCode, message: &str| -> ApiResult<Response> {
        if html {
            let status =
                StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            Ok(form_page(app, status, &token, Some(message)))
        } else if code == ErrorCode::InvalidRequest {
            Err(Failure::new(code).with_message(message))
        } else {
            // The spec's wording ("Password too short") for the rules.
            Err(Failure::new(code))
        }
    };
    if input
        .confirm_password
        .as_ref()
        .is_some_and(|c| *c != input.new_password)
    {
        return refused(
            ErrorCode::InvalidRequest,
            "The two passwords are not the same.",
        );
    }
    if let Err(code) = validate_password(&input.new_password) {
        let message = match code {
            ErrorCode::PasswordTooShort => {
                format!("Password too short: at least {PASSWORD_MIN} characters.")
            }
            _ => format!("Password too long: at most {PASSWORD_MAX} characters."),
        };
        return refused(code, &message);
    }
    let password_hash = state
        .hash_queue
        .try_slot()?
        .hash(input.new_password)
        .await
        .ok_or_else(Failure::internal)?;
    let reset = PasswordReset {
        token_hash,
        password_hash,
        now: state.clock.now_ms(),
        ip_hash: ip_hash(&state, ip_of(&state, &headers, &peer)),
    };
    let Some(done) = state.db.reset_password(&reset).await? else {
        // Used by a concurrent post, or expired while the password was hashed.
        return invalid();
    };
    tracing::info!(
        user_id = %done.user_id,
        sessions_revoked = done.sessions_revoked,
        email_verified_now = done.email_verified_now,
        "password reset"
    );
    crate::sign_in_throttle::forgive(&state, &done.user_id).await;
    Ok(if html {
        pages::page(
            StatusCode::OK,
            app,
            "Password changed",
            &para("Your new password is set. Every device that was signed in has been signed out: sign in again in the app with your new password."),
        )
    } else {
        Json(SuccessResponse::OK).into_response()
    })
}
