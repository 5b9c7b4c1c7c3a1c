//! The storage contract of the account routes (issue 11): full accounts created
//! by a sign-in or a sign-up, identities looked up by provider, and the merge of
//! a guest into an account. A supertrait of [`Database`](crate::db::Database),
//! implemented for both stores in `store_accounts.rs`, so handlers keep speaking
//! to one `dyn Database`.

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult, SessionRow, UserRow};

/// A full account created in one transaction: the user, optionally a linked
/// identity (social sign-in), its first session and the audit rows.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub user: UserRow,
    /// `(provider, sub)` to link, for an account made from an ID token.
    pub identity: Option<(String, String)>,
    /// A verification link to record (email sign-up): `(token hash, expires at)`.
    pub verification: Option<(String, i64)>,
    pub session: SessionRow,
    pub audits: Vec<AuditRow>,
}

/// One fold of a guest into an account (`POST /anonymous/merge`, or a sign-in
/// that carries the guest's bearer).
#[derive(Debug, Clone)]
pub struct MergePlan {
    pub guest_id: String,
    /// SHA-256 (hex) of the guest's session token: the tombstone's key.
    pub guest_token_hash: String,
    pub account_id: String,
    pub now: i64,
    /// Keyed hash of the caller's address, for the audit rows.
    pub ip_hash: Option<String>,
    /// A session for the account written in the same transaction (a sign-in
    /// folding the guest in), with its `session.created` audit row.
    pub new_session: Option<(SessionRow, AuditRow)>,
}

/// A completed merge, as the tombstone keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MergeRow {
    pub guest_id: String,
    pub account_id: String,
    pub records: i64,
    pub merged_at: i64,
}

#[derive(Debug, Clone)]
pub enum MergeOutcome {
    /// Folded now: the account as it is after the merge and what moved.
    Merged { account: UserRow, merge: MergeRow },
    /// The guest was already folded (a retry raced the first request); the
    /// tombstone says into which account.
    AlreadyMerged(MergeRow),
    /// No live session for that token any more, and no tombstone either.
    GuestGone,
    /// The token's user is no longer a guest (upgraded meanwhile).
    NotAnonymous,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The user a `(provider, sub)` identity is linked to.
    async fn user_by_identity(&self, provider: &str, sub: &str) -> DbResult<Option<UserRow>>;

    /// Writes a [`NewAccount`] atomically. A taken email or identity is a
    /// `DbError::Conflict` and nothing is written.
    async fn create_account(&self, account: &NewAccount) -> DbResult<()>;

    /// The tombstone of a merge made with this guest token digest.
    async fn merge_by_token(&self, guest_token_hash: &str) -> DbResult<Option<MergeRow>>;

    /// Folds the guest into the account in one transaction: its record changes
    /// re-owned and renumbered after the account's (those of a record the
    /// account already has dropped), the guest deleted, both audited, the
    /// tombstone written.
    async fn merge_guest(&self, plan: &MergePlan) -> DbResult<MergeOutcome>;
}
