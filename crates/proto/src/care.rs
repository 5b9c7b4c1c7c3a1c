//! Account care (issue 13): password reset, verification a person finishes,
//! change password, delete my account, export. Bodies camelCase on the wire;
//! every type that carries a secret prints `<redacted>` in its `Debug`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::rfc3339_millis;
use crate::{Session, User};

/// A mailed password-reset link works once, within this many minutes.
pub const PASSWORD_RESET_TTL_MINUTES: i64 = 60;
/// Reset emails one account receives per hour at most; further requests answer
/// the same 200 and send nothing (the answer never says whether one was sent).
pub const PASSWORD_RESETS_PER_HOUR: i64 = 3;
/// `send-verification-email` calls one user may make per (sliding) hour; the
/// next one is 429 `RATE_LIMITED` with `Retry-After`.
pub const VERIFICATION_RESENDS_PER_HOUR: i64 = 3;
/// A social-only account (no password) deleting itself needs a session created
/// (signed in) less than this many minutes ago, else 403 `SESSION_NOT_FRESH`.
pub const DELETE_FRESH_SESSION_MINUTES: i64 = 10;

/// `POST /request-password-reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestPasswordResetRequest {
    pub email: String,
    /// Better Auth's field: accepted and ignored. The link always opens this
    /// server's own page (never a redirect chosen by whoever asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
}

/// `POST /reset-password` as JSON (`application/x-www-form-urlencoded` from the
/// server's page carries the same fields, plus `confirmPassword`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub token: String,
    pub new_password: String,
}

impl std::fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetPasswordRequest")
            .field("token", &"<redacted>")
            .field("new_password", &"<redacted>")
            .finish()
    }
}

/// `POST /verify-email` as JSON (or the page's form field `token`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: String,
}

impl std::fmt::Debug for VerifyEmailRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyEmailRequest")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `GET /verify-email?token=…` and `GET /reset-password?token=…` asked for JSON
/// (no `text/html` in `Accept`): whether the link still works. Changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCheckResponse {
    pub valid: bool,
}

/// `POST /send-verification-email` (bearer). The body may be empty. Better
/// Auth's client sends `{email, callbackURL}`: `email`, when given, must be the
/// signed-in account's; `callbackURL` is accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendVerificationEmailRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(
        default,
        rename = "callbackURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub callback_url: Option<String>,
}

/// `POST /change-password` (bearer, full account with a password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
    /// Default `true`: every other session of the account ends; the caller's
    /// stays. `false` keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_other_sessions: Option<bool>,
}

impl std::fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("current_password", &"<redacted>")
            .field("new_password", &"<redacted>")
            .field("revoke_other_sessions", &self.revoke_other_sessions)
            .finish()
    }
}

/// `200` of `change-password`: Better Auth's `{token, user}` (`token` is always
/// `null`: the caller's token keeps working) with our `session` beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordResponse {
    pub token: Option<String>,
    pub user: User,
    pub session: Session,
    /// Other sessions of the account that were ended.
    pub revoked_sessions: u64,
}

/// `POST /delete-user` (bearer). The body may be empty (a guest, or a
/// social-only account with a fresh sign-in).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteUserRequest {
    /// Required, and checked, for an account that has a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Better Auth's field: accepted and ignored.
    #[serde(
        default,
        rename = "callbackURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub callback_url: Option<String>,
}

impl std::fmt::Debug for DeleteUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeleteUserRequest")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("callback_url", &self.callback_url)
            .finish()
    }
}

/// `GET /export` (bearer, full account): what the server holds about the
/// account. Record values are opaque to the server (end-to-end encryption is
/// the next layer), so records appear as counts; the notes themselves are in
/// the app's own export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResponse {
    #[serde(with = "rfc3339_millis")]
    pub exported_at: DateTime<Utc>,
    pub user: User,
    pub credentials: ExportCredentials,
    /// Live sessions of the account (this one included).
    pub sessions: u64,
    pub records: ExportRecords,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCredentials {
    /// The account can sign in with its email and a password.
    pub password: bool,
    pub providers: Vec<ExportProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportProvider {
    pub provider: String,
    #[serde(with = "rfc3339_millis")]
    pub linked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecords {
    /// Distinct `(collection, id)` in the account's log, tombstones included.
    pub records: u64,
    /// Changes in the log.
    pub changes: u64,
    /// Sum of the change sizes.
    pub bytes: u64,
    pub collections: Vec<ExportCollection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCollection {
    pub collection: String,
    pub records: u64,
    pub changes: u64,
    pub bytes: u64,
}
