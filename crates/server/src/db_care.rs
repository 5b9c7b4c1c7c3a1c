//! The storage contract of account care (issue 13): password reset links, the
//! reset itself, the limited resend of a verification link, a password change,
//! and the export's summary. A supertrait of [`Database`](crate::db::Database),
//! implemented for both stores in `store_care.rs`. Deleting a user is the
//! existing [`Database::delete_user`](crate::db::Database::delete_user): every
//! row a user owns cascades with it.

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult, UserRow};

/// A reset link to record for `user_id`, unless the account already got
/// `max_in_window` links in the last `window_ms`.
#[derive(Debug, Clone)]
pub struct NewPasswordReset {
    pub user_id: String,
    /// The address the link is mailed to: the link works only while the
    /// account still has it.
    pub email: String,
    pub token_hash: String,
    pub expires_at: i64,
    pub now: i64,
    pub window_ms: i64,
    pub max_in_window: i64,
}

/// A reset being completed with the token whose digest is `token_hash`.
#[derive(Debug, Clone)]
pub struct PasswordReset {
    pub token_hash: String,
    pub password_hash: String,
    pub now: i64,
    /// Keyed hash of the caller's address, for the audit rows.
    pub ip_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetDone {
    pub user_id: String,
    /// Every session the account had (all of them end).
    pub sessions_revoked: u64,
    /// The reset proved the mailbox of an address that was not verified yet.
    pub email_verified_now: bool,
}

/// A verification link sent again (`send-verification-email`).
#[derive(Debug, Clone)]
pub struct Resend {
    pub user_id: String,
    pub token_hash: String,
    pub expires_at: i64,
    pub now: i64,
    pub window_ms: i64,
    pub max_in_window: i64,
    /// An address to claim when the account has none (its lapsed claim was
    /// taken by the address's owner, or a provider gave none). Ignored otherwise.
    pub new_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendOutcome {
    /// Recorded: mail the link to this address.
    Sent {
        email: String,
    },
    AlreadyVerified,
    /// The account has no email (a social account whose provider gave none).
    NoEmail,
    /// The user is gone (deleted meanwhile).
    Gone,
    /// `max_in_window` resends already; the oldest leaves the window in this long.
    Limited {
        retry_after_ms: i64,
    },
}

/// A password change by the signed-in account.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub user_id: String,
    /// The hash the current password was checked against: a change that lost
    /// a race with another one matches nothing.
    pub old_hash: String,
    pub new_hash: String,
    /// The caller's session, which is kept.
    pub session_id: String,
    pub revoke_others: bool,
    pub now: i64,
    pub audit: AuditRow,
}

/// What `GET /export` reports beside the user row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRows {
    /// `(provider, linked at)`.
    pub providers: Vec<(String, i64)>,
    pub sessions: i64,
    /// `(collection, records, changes, bytes)`.
    pub collections: Vec<(String, i64, i64, i64)>,
}

#[async_trait]
pub trait CareStore: Send + Sync {
    /// Records the reset link unless the account is over its hourly count (or
    /// is no longer a full account with that email). `true`: mail it.
    async fn create_password_reset(&self, reset: &NewPasswordReset) -> DbResult<bool>;

    /// Whether a reset link still works (unused, unexpired, same email). Reads only.
    async fn password_reset_live(&self, token_hash: &str, now: i64) -> DbResult<bool>;

    /// In one transaction: the link used up, the password set, the email
    /// marked verified (the link proved the mailbox), every session of the user
    /// deleted, other outstanding reset and verification links spent, audited
    /// `user.updated` `{"change":"password"}` (and `{"emailVerified":true}` when
    /// it changed). `None`: the link was used, expired or unknown.
    async fn reset_password(&self, reset: &PasswordReset) -> DbResult<Option<ResetDone>>;

    /// Whether a verification link still works. Reads only.
    async fn verification_live(&self, token_hash: &str, now: i64) -> DbResult<bool>;

    /// Records a resent verification link within the per-user hourly limit.
    async fn resend_verification(&self, resend: &Resend) -> DbResult<ResendOutcome>;

    /// Sets the new password hash if the old one is still current, ends the
    /// user's other sessions when asked, spends outstanding reset links and
    /// writes the audit row. `None`: the password changed meanwhile.
    async fn change_password(&self, change: &PasswordChange) -> DbResult<Option<(UserRow, u64)>>;

    /// Linked providers, live sessions and record counts of a user.
    async fn export_rows(&self, user_id: &str, now: i64) -> DbResult<ExportRows>;
}
