//! The storage contract of email claims (issue 14, item 2; ARCHITECTURE.md
//! "Email claims"). An unverified address on an account is a claim, made at
//! `users.email_claimed_at`: it holds the address for the configured lapse
//! (`emailClaimDays`), then the address is free. Lapse is a rule of the queries
//! (`email_holder`, and the release a taker runs in its own transaction), never
//! of a cleanup job. A supertrait of [`Database`](crate::db::Database),
//! implemented for both stores in `store_claims.rs`.

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult, UserRow};

/// Links a provider identity to a signed-in full account (`POST /link-social`).
#[derive(Debug, Clone)]
pub struct LinkIdentity {
    pub user_id: String,
    pub provider: String,
    /// The ID token's `sub`.
    pub provider_account_id: String,
    /// The address the provider verified, if any: equal to the account's own
    /// unverified address, it proves that address too.
    pub email: Option<String>,
    pub now: i64,
    /// `user.updated` `{change: "link", provider}`.
    pub audit: AuditRow,
}

#[derive(Debug, Clone)]
pub enum LinkOutcome {
    /// Linked now; the account as it is afterwards.
    Linked(UserRow),
    /// This identity was already linked to this account (a retry).
    AlreadyLinked(UserRow),
    /// The identity belongs to another user.
    InUse,
    /// The account is gone (or is a guest).
    Gone,
}

#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// How long an unverified address holds (milliseconds); set once at start.
    fn set_email_claim_lapse(&self, lapse_ms: i64);

    /// The user whose address `email` is and whose hold on it is live at `now`:
    /// verified, or claimed less than the lapse ago. A lapsed claim is nobody's
    /// for sign-in and for the "already in use" checks. (The password reset
    /// still reaches it through `user_by_email`: the mailed link is a proof.)
    async fn email_holder(&self, email: &str, now: i64) -> DbResult<Option<UserRow>>;

    /// Links the identity in one transaction, audited; an equal, provider-verified
    /// email marks the account's unverified address verified (audited
    /// `{"emailVerified": true}`).
    async fn link_identity(&self, link: &LinkIdentity) -> DbResult<LinkOutcome>;
}
