//! Password guessing on `sign-in/email`: failed sign-ins are counted per
//! normalised email and per client address (`ratelimit.rs`'s
//! [`SIGN_IN_EMAIL`] and [`SIGN_IN_ADDRESS`], 15-minute windows in the
//! database, shared by every instance), and each failure is audited as
//! `user.sign_in_failed`.
//!
//! Per email (and alike per address), in one window:
//!
//! ```text
//!                attempt: hit counted first (n ≤ limit)
//!               ┌──────────────────────────────────────┐
//!               ▼                                      │
//!   ───────▶  Open ── password checked ── wrong ───────┘ (hit stays: a failure, audited)
//!               │  ▲                  └─ right ──▶ hit given back (a success is no failure)
//!  attempt with │  │ the window ends, or a password reset of the account
//!  n > limit    ▼  │ clears the email's count
//!             Limited ── attempt ──▶ 429 RATE_LIMITED, Retry-After = rest of the window,
//!                                    no password checked (a right one neither)
//! ```
//!
//! The hit is counted *before* the password is checked, in the one
//! `INSERT … ON CONFLICT … RETURNING` statement, so concurrent guesses on any
//! instance cannot slip past the limit while their hashes run; a success gives
//! its hit back. A success does not reset the count: the failures before it
//! stay until their window ends (resetting would let an attacker who knows
//! one password — their own — wipe the address's count). A completed password
//! reset clears its email's count ([`forgive`]): the mailbox is proven, the
//! password new, and the owner must be able to sign in with it at once. The
//! reset routes themselves are never throttled here.
//!
//! Every email is counted the same, registered or not, and the 429 is the same
//! bytes for both (its Retry-After only depends on the window's clock), so the
//! throttle tells nothing about which addresses have accounts.

use std::net::IpAddr;

use guestpass_proto::AuditEventKind;

use crate::crypto::keyed_hash;
use crate::db::{AuditRow, RateHit, UserRow};
use crate::error::{ApiResult, Failure};
use crate::ratelimit::{self, Decision, SIGN_IN_ADDRESS, SIGN_IN_EMAIL};
use crate::state::AppState;

/// The actor of a failed sign-in: nobody we know.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The hits one admitted attempt counted, to give back if it succeeds.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    hits: Vec<RateHit>,
}

/// Why a sign-in failed, as the audit row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    WrongPassword,
    UnknownEmail,
    /// The account exists but has no password (a social-only account).
    NoPassword,
}

impl FailureReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::WrongPassword => "wrongPassword",
            Self::UnknownEmail => "unknownEmail",
            Self::NoPassword => "noPassword",
        }
    }
}

/// Counts an attempt for `email` (normalised) from `ip` and lets it go on, or
/// answers 429 `RATE_LIMITED` with Retry-After when either count is over.
pub async fn admit(state: &AppState, email: &str, ip: Option<IpAddr>) -> ApiResult<Attempt> {
    let now = state.clock.now_ms();
    let limits = &state.config.rate_limit;
    let hits: Vec<RateHit> = [
        ratelimit::hit(
            SIGN_IN_EMAIL,
            &state.secret,
            email,
            limits.sign_in_failures_per_email,
            now,
        ),
        ratelimit::hit(
            SIGN_IN_ADDRESS,
            &state.secret,
            &ratelimit::address_key(ip),
            limits.sign_in_failures_per_address,
            now,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut retry_after = None;
    for hit in &hits {
        let n = state
            .db
            .hit_rate_window(&hit.bucket, hit.window_start)
            .await?;
        if let Decision::Limited { retry_after_secs } = ratelimit::decide(hit, n, now) {
            retry_after = retry_after.max(Some(retry_after_secs));
        }
    }
    match retry_after {
        Some(secs) => {
            let mut limited = Failure::new(guestpass_proto::ErrorCode::RateLimited);
            limited.retry_after_secs = Some(secs);
            Err(limited)
        }
        None => Ok(Attempt { hits }),
    }
}

/// The attempt opened the account: its hits are given back.
pub async fn succeeded(state: &AppState, attempt: Attempt) -> ApiResult<()> {
    for hit in &attempt.hits {
        state
            .db
            .refund_rate_hit(&hit.bucket, hit.window_start)
            .await?;
    }
    Ok(())
}

/// The attempt failed: its hits stay, and `user.sign_in_failed` is written.
/// The row belongs to the account when there is one; for an unknown email to
/// `email:<keyed hash of the email>`, so the failures against one address can
/// be listed together without the log holding the address. Never the password.
pub async fn failed(
    state: &AppState,
    attempt: Attempt,
    email: &str,
    user: Option<&UserRow>,
    reason: FailureReason,
    ip_hash: Option<String>,
) -> ApiResult<()> {
    let email_hash = keyed_hash(&state.secret, email);
    let subject = match user {
        Some(user) => user.id.clone(),
        None => format!("email:{email_hash}"),
    };
    let audit = AuditRow::new(
        AuditEventKind::UserSignInFailed,
        &subject,
        UNAUTHENTICATED,
        state.clock.now_ms(),
        ip_hash,
    )
    .with_detail(serde_json::json!({
        "reason": reason.as_str(),
        "emailHash": email_hash,
    }));
    drop(attempt);
    state.db.write_audit(&audit).await?;
    Ok(())
}

/// A password reset of `user_id` completed: its email's failures are
/// forgotten, so the owner signs in with the new password at once. Best
/// effort: the reset is already committed, and the count lapses anyway.
pub async fn forgive(state: &AppState, user_id: &str) {
    let email = match state.db.user_by_id(user_id).await {
        Ok(Some(UserRow {
            email: Some(email), ..
        })) => email,
        _ => return,
    };
    let bucket = ratelimit::bucket(SIGN_IN_EMAIL, &state.secret, &normalise(&email));
    if let Err(e) = state.db.clear_rate_bucket(&bucket).await {
        tracing::warn!(%user_id, error = %e, "could not clear the sign-in throttle after a reset");
    }
}

/// The email as the throttle keys it: the one normal form the sign-in looks up
/// (`jane@bücher.example` and `jane@xn--bcher-kva.example` share a count), or, for
/// an address that is not one, its trimmed lower-case spelling.
pub fn normalise(email: &str) -> String {
    guestpass_proto::normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase())
}
