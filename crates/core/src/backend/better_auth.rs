//! The `better-auth` dialect: a stock Better Auth server (checked against 1.7.25) with
//! the `anonymous` and `bearer` plugins and email+password sign-up.
//!
//! What the real server does, as seen by `crates/core/tests/better_auth.rs`:
//! - `POST /sign-in/anonymous` (no body needed) → 200 `{"token", "user"}` and the signed
//!   token in `set-auth-token`. Better Auth mints its own user id; the user's email is a
//!   placeholder (`…@anonymous.placeholder.invalid`) and its name `"Anonymous"`.
//!   Asked again while holding an anonymous session → 400
//!   `ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY`.
//! - `GET /get-session` with `Authorization: Bearer` → 200 `{"session", "user"}`, or 200
//!   `null` for a missing, unknown or deleted session (never 401).
//! - `POST /sign-up/email` `{email, password, name}` while holding the anonymous bearer
//!   token → 200 `{"token", "user"}`: a NEW user, and the anonymous plugin deletes the
//!   anonymous one (its token then answers `null`). Refusals: 422
//!   `USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL`, 400 `VALIDATION_ERROR` with a message naming
//!   the field (`[body.email] Invalid email address`), 400 `PASSWORD_TOO_SHORT` (< 8),
//!   400 `PASSWORD_TOO_LONG` (> 128).
//! - Its rate limiter answers 429 with `X-Retry-After` (not `Retry-After`) and a body
//!   without a code.
//!
//! - `POST /sign-in/email` `{email, password}` → 200 `{"redirect", "token", "url",
//!   "user"}`; wrong password or unknown email → 401 `INVALID_EMAIL_OR_PASSWORD`.
//!
//! Sign-up does not need a session at all: with a dead or non-anonymous token it simply
//! creates an unlinked account and leaves the guest behind. So [`upgrade`] first asks
//! `get-session` whether the token still belongs to an anonymous user, and says
//! `User is not anonymous` for a full account; for a dead session see
//! [`already_upgraded`].
//!
//! Nothing here puts a token or a password into an error or a log line: errors carry
//! only HTTP statuses, Better Auth's error codes and field names.

use std::time::Duration;

use guestpass_proto::{routes, ApiError, ErrorCode, UpgradeRequest};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{header_token, retry_after, transport, Backend, BackendError, Remote, RemoteUser};

/// Better Auth's sign-up route (its own name; the reference server upgrades at
/// `routes::UPGRADE` instead).
const SIGN_UP_EMAIL: &str = "/sign-up/email";

/// The header Better Auth's rate limiter uses instead of `Retry-After`.
const X_RETRY_AFTER: &str = "x-retry-after";

pub(crate) async fn register(b: &Backend) -> Result<Remote, BackendError> {
    // Better Auth accepts an empty body here; send `{}` so a proxy sees JSON.
    let resp = b
        .http()
        .post(b.url(routes::SIGN_IN_ANONYMOUS))
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(transport)?;
    signed_in(resp).await
}

pub(crate) async fn get_session(
    b: &Backend,
    token: &SecretString,
) -> Result<Option<RemoteUser>, BackendError> {
    let resp = b.get_with(routes::GET_SESSION, token).await?;
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    match read_json(resp).await? {
        Value::Null => Ok(None),
        v => Ok(Some(user(v.get("user").unwrap_or(&Value::Null))?)),
    }
}

pub(crate) async fn upgrade(
    b: &Backend,
    token: &SecretString,
    req: &UpgradeRequest,
) -> Result<Remote, BackendError> {
    // Sign-up would succeed without a live anonymous session, but without linking: make
    // sure there is one, so a revoked session or an already upgraded user is reported.
    match get_session(b, token).await? {
        None => return already_upgraded(b, req).await,
        Some(u) if !u.is_anonymous => {
            return Err(BackendError::Refused(ErrorCode::UserNotAnonymous.into()))
        }
        Some(_) => {}
    }
    // Better Auth's sign-up schema has `name: string` as required: leaving it out is a 400
    // VALIDATION_ERROR "[body.name] …" (which would read as a bad email), while "" is
    // accepted and stored as is. So send the person's name if they gave one, else "" —
    // we do not invent a name (an email's local part would leak into the profile).
    let body = serde_json::json!({
        "email": req.email,
        "password": req.password,
        "name": req.name.as_deref().unwrap_or(""),
    });
    let resp = b
        .http()
        .post(b.url(SIGN_UP_EMAIL))
        .bearer_auth(token.expose_secret())
        .json(&body)
        .send()
        .await
        .map_err(transport)?;
    signed_in(resp).await
}

/// The guest's session is gone. Either it was revoked or expired — then it is
/// `Unauthorized` — or this very upgrade was delivered before and its answer lost (a
/// crash, a timeout): Better Auth deleted the guest when it linked, so its token died
/// with it. Signing in with the queued email and password tells the two apart, and in
/// the second case yields the account we made, so a retried delivery lands once.
async fn already_upgraded(b: &Backend, req: &UpgradeRequest) -> Result<Remote, BackendError> {
    let body = serde_json::json!({ "email": req.email, "password": req.password });
    let resp = b
        .http()
        .post(b.url(routes::SIGN_IN_EMAIL))
        .json(&body)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        // Wrong password, no such user, …: not ours, so the session simply ended.
        return Err(BackendError::Unauthorized);
    }
    let found = signed_in(resp).await?;
    if found.user.is_anonymous || found.token.is_none() {
        return Err(BackendError::Unauthorized);
    }
    Ok(found)
}

/// A `{"token", "user"}` answer (anonymous sign-in and sign-up share it). The token in
/// `set-auth-token` is the signed one the bearer plugin hands out; the body's bare token
/// is accepted too and used when the header is missing. A sign-up that needs email
/// verification first answers `"token": null`: then there is no token.
pub(super) async fn signed_in(resp: Response) -> Result<Remote, BackendError> {
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let header = header_token(&resp);
    let v = read_json(resp).await?;
    let u = user(v.get("user").unwrap_or(&Value::Null))?;
    let body_token = v
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let token = header.or_else(|| body_token.map(|t| SecretString::from(t.to_owned())));
    Ok(Remote { user: u, token })
}

/// Better Auth's user object. Anonymous users carry a placeholder email
/// (`…@anonymous.placeholder.invalid`) that is nobody's address: it becomes `None`, as it
/// is for a guest on the reference server. An empty name is no name.
fn user(v: &Value) -> Result<RemoteUser, BackendError> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| BackendError::Protocol("answer without a user id".into()))?;
    let is_anonymous = v
        .get("isAnonymous")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(RemoteUser {
        id: id.to_owned(),
        email: if is_anonymous { None } else { text("email") },
        name: text("name"),
        email_verified: v
            .get("emailVerified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        is_anonymous,
    })
}

async fn read_json(resp: Response) -> Result<Value, BackendError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    // serde's messages can quote the offending value, which could be a token: say only
    // that it was unreadable.
    serde_json::from_slice(&bytes)
        .map_err(|_| BackendError::Protocol(format!("HTTP {status} with a body that is not JSON")))
}

/// Turns a non-2xx answer into the error the sync engine acts on.
pub(super) async fn failure(resp: Response) -> BackendError {
    let status = resp.status();
    let wait = retry_after(&resp).or_else(|| x_retry_after(&resp));
    match resp.bytes().await {
        Ok(body) => classify(status, wait, &body),
        Err(e) => transport(e),
    }
}

fn x_retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(X_RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Maps Better Auth's answer (status, its `{"code", "message"}` body) to ours. Refusals
/// carry our code and the spec's wording, not Better Auth's.
pub(super) fn classify(status: StatusCode, wait: Option<Duration>, body: &[u8]) -> BackendError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return BackendError::RateLimited { retry_after: wait };
    }
    if status == StatusCode::UNAUTHORIZED {
        return BackendError::Unauthorized;
    }
    if status.is_server_error() {
        return BackendError::Protocol(format!("HTTP {status}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return BackendError::Protocol(format!("HTTP {status} with a body that is not JSON"));
    };
    let code = v.get("code").and_then(Value::as_str).unwrap_or("");
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let ours = match code {
        "USER_ALREADY_EXISTS" | "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL" => {
            ErrorCode::EmailAlreadyInUse
        }
        "INVALID_EMAIL" => ErrorCode::InvalidEmail,
        "PASSWORD_TOO_SHORT" => ErrorCode::PasswordTooShort,
        "PASSWORD_TOO_LONG" => ErrorCode::PasswordTooLong,
        // Thrown when the password is missing or not a string.
        "INVALID_PASSWORD" => ErrorCode::PasswordTooShort,
        "VALIDATION_ERROR" => validation(message),
        "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY" => {
            ErrorCode::AnonymousUsersCannotSignInAgainAnonymously
        }
        "USER_IS_NOT_ANONYMOUS" => ErrorCode::UserNotAnonymous,
        "UNAUTHORIZED" | "INVALID_SESSION_TOKEN" | "SESSION_EXPIRED" => {
            return BackendError::Unauthorized
        }
        // Anything else (FAILED_TO_CREATE_USER, a body we did not shape, a newer code) is
        // not something the person can fix: retry later, and say which code it was.
        "" => return BackendError::Protocol(format!("HTTP {status} without an error code")),
        other => return BackendError::Protocol(format!("HTTP {status}: {}", printable(other))),
    };
    BackendError::Refused(ApiError::from(ours))
}

/// `VALIDATION_ERROR` covers every field; its message starts with the field's path, e.g.
/// `[body.email] Invalid email address` or
/// `[body.password] Too small: expected string to have >=1 characters`.
fn validation(message: &str) -> ErrorCode {
    let m = message.to_ascii_lowercase();
    if m.contains("body.password") {
        if m.contains("too big") || m.contains("<=") {
            ErrorCode::PasswordTooLong
        } else {
            ErrorCode::PasswordTooShort
        }
    } else if m.contains("body.name") {
        ErrorCode::InvalidRequest
    } else {
        // The email is the only other thing the person typed.
        ErrorCode::InvalidEmail
    }
}

/// A server-chosen code, kept to what an error code looks like.
fn printable(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(e: BackendError) -> ErrorCode {
        match e {
            BackendError::Refused(a) => {
                assert_eq!(a.message, a.code.default_message());
                a.code
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn maps_better_auth_refusals_to_our_codes() {
        let c = |s: u16, b: &str| {
            refused(classify(
                StatusCode::from_u16(s).unwrap_or_default(),
                None,
                b.as_bytes(),
            ))
        };
        assert_eq!(
            c(
                422,
                r#"{"message":"User already exists. Use another email.","code":"USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL"}"#
            ),
            ErrorCode::EmailAlreadyInUse
        );
        assert_eq!(
            c(422, r#"{"code":"USER_ALREADY_EXISTS"}"#),
            ErrorCode::EmailAlreadyInUse
        );
        assert_eq!(
            c(
                400,
                r#"{"message":"[body.email] Invalid email address","code":"VALIDATION_ERROR"}"#
            ),
            ErrorCode::InvalidEmail
        );
        assert_eq!(
            c(400, r#"{"code":"INVALID_EMAIL"}"#),
            ErrorCode::InvalidEmail
        );
        assert_eq!(
            c(
                400,
                r#"{"message":"Password too short","code":"PASSWORD_TOO_SHORT"}"#
            ),
            ErrorCode::PasswordTooShort
        );
        assert_eq!(
            c(
                400,
                r#"{"message":"Password too long","code":"PASSWORD_TOO_LONG"}"#
            ),
            ErrorCode::PasswordTooLong
        );
        assert_eq!(
            c(
                400,
                r#"{"message":"[body.password] Too small: expected string to have >=1 characters","code":"VALIDATION_ERROR"}"#
            ),
            ErrorCode::PasswordTooShort
        );
        assert_eq!(
            c(
                400,
                r#"{"message":"Anonymous users cannot sign in again anonymously","code":"ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY"}"#
            ),
            ErrorCode::AnonymousUsersCannotSignInAgainAnonymously
        );
        assert_eq!(
            c(403, r#"{"code":"USER_IS_NOT_ANONYMOUS"}"#),
            ErrorCode::UserNotAnonymous
        );
    }

    #[test]
    fn transient_and_session_failures() {
        let wait = Some(Duration::from_secs(7));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, wait, br#"{"message":"Too many requests. Please try again later."}"#),
            BackendError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, b""),
            BackendError::Unauthorized
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, None, b"{}"),
            BackendError::Protocol(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, b"<html>"),
            BackendError::Protocol(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, br#"{"code":"BAD_REQUEST"}"#),
            BackendError::Protocol(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, br#"{"message":"x"}"#),
            BackendError::Protocol(_)
        ));
    }

    #[test]
    fn anonymous_placeholder_email_is_no_email() {
        let u = user(&serde_json::json!({
            "id": "abc", "name": "Anonymous", "email": "x@anonymous.placeholder.invalid",
            "emailVerified": false, "isAnonymous": true
        }));
        let u = u.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.email, None);
        assert!(u.is_anonymous);
        let u = user(
            &serde_json::json!({"id": "abc", "name": "", "email": "a@example.com", "emailVerified": true}),
        );
        let u = u.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (u.email.as_deref(), u.name, u.email_verified, u.is_anonymous),
            (Some("a@example.com"), None, true, false)
        );
        assert!(matches!(
            user(&serde_json::json!({"name": "x"})),
            Err(BackendError::Protocol(_))
        ));
    }
}
