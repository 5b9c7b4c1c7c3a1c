//! The storage contract of guest recovery (issue 16; crates/server/README.md
//! "Guest recovery"): a guest's recovery key (its SHA-256, `users.recovery_key_hash`)
//! and the tombstones of deleted ids (`gone_users`). A supertrait of
//! [`Database`](crate::db::Database), implemented for both stores in
//! `store_recovery.rs`.

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult, NewGuest, SessionRow, UserRow};

/// Why a user id went (`gone_users.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// The stale-guest cleanup: the guest's own device may bring it back.
    Cleanup,
    /// Its owner deleted it.
    Deleted,
    /// An admin removed it.
    Removed,
}

impl GoneReason {
    pub fn parse(s: &str) -> Self {
        match s {
            "cleanup" => Self::Cleanup,
            "deleted" => Self::Deleted,
            _ => Self::Removed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryKeySet {
    Set,
    /// The user is a full account (an account recovers by email) or gone.
    NotAnonymous,
}

#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// Sets the guest's recovery key digest, replacing the old one at once, and
    /// writes `audit`, in one transaction.
    async fn set_recovery_key(
        &self,
        user_id: &str,
        key_hash: &str,
        audit: &AuditRow,
    ) -> DbResult<RecoveryKeySet>;

    /// The guest whose recovery key digest is `key_hash` gets `session` (its
    /// `user_id` is filled in here), its device key digest becomes
    /// `device_key_hash` when one is given, and `audit` (user filled in too) is
    /// written: one transaction. `None` when no guest holds that key.
    async fn recovery_session(
        &self,
        key_hash: &str,
        device_key_hash: Option<&str>,
        session: SessionRow,
        audit: AuditRow,
    ) -> DbResult<Option<(UserRow, SessionRow)>>;

    /// Why `id` went, if it is a deleted user's.
    async fn gone_user(&self, id: &str) -> DbResult<Option<GoneReason>>;

    /// Makes again, under its id, a guest the cleanup deleted: when its tombstone
    /// is a cleanup's and its device key digest equals `guest.device_key_hash`,
    /// the tombstone goes and the guest (with its old recovery key), its session
    /// and its audits are written, in one transaction. False otherwise.
    async fn revive_guest(&self, guest: &NewGuest) -> DbResult<bool>;
}
