//! [`ClaimStore`] on SQLite and PostgreSQL (the same SQL on both, see
//! `store.rs`), stamped out by `claims_store!`, and the release of a lapsed
//! claim that every writer of an address runs first in its own transaction.
//!
//! Why a release and not a partial unique index: lapse depends on the time of
//! the query, an index cannot. So the address stays unique in `users.email`,
//! and whoever takes a lapsed address first clears it from the lapsed account
//! (audited `user.updated` `{"change": "emailClaimLapsed"}` by `system`), in the
//! same transaction as its own write. Two takers race on the unique index; a
//! lapsed account renewing its claim at the same moment either updates the row
//! first (the release then matches nothing and the taker gets 409) or finds its
//! address gone.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use guestpass_proto::AuditEventKind;

use crate::db::{AuditRow, DbResult, UserRow};
use crate::db_claims::{ClaimStore, LinkIdentity, LinkOutcome};
use crate::store::{PostgresStore, SqliteStore, StoreDb, USER_COLUMNS};

/// A row's hold on its address is live at `$2` (the cutoff: now − lapse):
/// verified, or claimed since the cutoff. A claim with no time (none is written
/// so; the migration stamps old ones) counts as live rather than free.
pub(crate) const LIVE_HOLD: &str =
    "(email_verified = TRUE OR email_claimed_at IS NULL OR email_claimed_at >= $2)";

macro_rules! claims_store {
    ($store:ty) => {
        impl $store {
            /// The cutoff of live claims at `now`.
            pub(crate) fn claim_cutoff(&self, now: i64) -> i64 {
                now.saturating_sub(self.claim_lapse_ms.load(Ordering::Relaxed))
            }

            /// Frees `email` from an account whose unverified claim on it lapsed
            /// before `cutoff`, audited. Run by a writer of the address first,
            /// inside its transaction; no-op when the address is free or held.
            pub(crate) async fn release_lapsed_claim(
                conn: &mut <<$store as StoreDb>::Db as sqlx::Database>::Connection,
                email: &str,
                now: i64,
                cutoff: i64,
            ) -> Result<(), sqlx::Error> {
                let lapsed: Option<String> = sqlx::query_scalar(
                    "UPDATE users SET email = NULL, email_claimed_at = NULL, updated_at = $3 \
                     WHERE email = $1 AND email_verified = FALSE AND email_claimed_at < $2 \
                     RETURNING id",
                )
                .bind(email)
                .bind(cutoff)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(id) = lapsed {
                    let audit = AuditRow::new(AuditEventKind::UserUpdated, &id, "system", now, None)
                        .with_detail(serde_json::json!({ "change": "emailClaimLapsed" }));
                    Self::insert_audit(&mut *conn, &audit).await?;
                    tracing::info!(user_id = %id, "a lapsed email claim was released to its new owner");
                }
                Ok(())
            }
        }

        #[async_trait]
        impl ClaimStore for $store {
            fn set_email_claim_lapse(&self, lapse_ms: i64) {
                self.claim_lapse_ms.store(lapse_ms.max(0), Ordering::Relaxed);
            }

            async fn email_holder(&self, email: &str, now: i64) -> DbResult<Option<UserRow>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND {LIVE_HOLD}"
                ))
                .bind(email)
                .bind(self.claim_cutoff(now))
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn link_identity(&self, l: &LinkIdentity) -> DbResult<LinkOutcome> {
                let mut tx = self.pool.begin().await?;
                // The account's row first (a write: SQLite takes its lock here,
                // PostgreSQL locks the row against a concurrent delete).
                let user: Option<String> = sqlx::query_scalar(
                    "UPDATE users SET updated_at = $2 WHERE id = $1 AND is_anonymous = FALSE RETURNING id",
                )
                .bind(&l.user_id)
                .bind(l.now)
                .fetch_optional(&mut *tx)
                .await?;
                if user.is_none() {
                    tx.rollback().await?;
                    return Ok(LinkOutcome::Gone);
                }
                let owner: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM accounts WHERE provider = $1 AND provider_account_id = $2",
                )
                .bind(&l.provider)
                .bind(&l.provider_account_id)
                .fetch_optional(&mut *tx)
                .await?;
                let select_user = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                match owner {
                    Some(owner) if owner == l.user_id => {
                        let user: UserRow = sqlx::query_as(&select_user)
                            .bind(&l.user_id)
                            .fetch_one(&mut *tx)
                            .await?;
                        tx.rollback().await?;
                        return Ok(LinkOutcome::AlreadyLinked(user));
                    }
                    Some(_) => {
                        tx.rollback().await?;
                        return Ok(LinkOutcome::InUse);
                    }
                    None => {}
                }
                // A concurrent link of the same identity elsewhere loses on the
                // unique index: DbError::Conflict(ProviderAccount).
                sqlx::query(
                    "INSERT INTO accounts (id, user_id, provider, provider_account_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(format!("acc_{}", ulid::Ulid::new()))
                .bind(&l.user_id)
                .bind(&l.provider)
                .bind(&l.provider_account_id)
                .bind(l.now)
                .execute(&mut *tx)
                .await?;
                Self::insert_audit(&mut *tx, &l.audit).await?;
                if let Some(email) = &l.email {
                    // The provider vouches for the very address the account only
                    // claimed: that proves the mailbox as a mailed link would.
                    let proved = sqlx::query(
                        "UPDATE users SET email_verified = TRUE, email_claimed_at = NULL \
                         WHERE id = $1 AND email = $2 AND email_verified = FALSE",
                    )
                    .bind(&l.user_id)
                    .bind(email)
                    .execute(&mut *tx)
                    .await?;
                    if proved.rows_affected() > 0 {
                        let audit = AuditRow::new(
                            AuditEventKind::UserUpdated,
                            &l.user_id,
                            &l.user_id,
                            l.now,
                            l.audit.ip_hash.clone(),
                        )
                        .with_detail(serde_json::json!({
                            "emailVerified": true, "provider": l.provider
                        }));
                        Self::insert_audit(&mut *tx, &audit).await?;
                    }
                }
                let user: UserRow = sqlx::query_as(&select_user)
                    .bind(&l.user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(LinkOutcome::Linked(user))
            }
        }
    };
}

claims_store!(SqliteStore);
claims_store!(PostgresStore);
