//! [`AccountStore`] on SQLite and PostgreSQL: the same SQL on both (see
//! `store.rs` for the shared dialect), stamped out by `accounts_store!`.
//!
//! The merge never reads a record's value: it moves rows of `record_changes`
//! from the guest to the account by key and renumbers them, and sums the stored
//! sizes for the usage counters. Locks, on PostgreSQL, are taken in the order a
//! push takes them (a user's `record_heads` row, then its `users` row through
//! the foreign key), so a merge and a concurrent push of the guest queue up
//! instead of deadlocking. SQLite starts with `BEGIN IMMEDIATE`: the write lock
//! is held from the first read (see `store.rs`).

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult, UserRow};
use crate::db_accounts::{AccountStore, MergeOutcome, MergePlan, MergeRow, NewAccount};
use crate::store::{PostgresStore, SqliteStore, USER_COLUMNS};

const MERGE_COLUMNS: &str = "guest_id, account_id, records, merged_at";

/// Re-owns the guest's changes ($1) by the account ($2), numbered from $3 in
/// their old order. A change of a record the account's log already has (same
/// collection and id, or the very same hash) stays behind and goes with the
/// guest: the account's log wins, without anyone reading either value. The list
/// is MATERIALIZED, and compared only with the account's rows from before $3,
/// so rows moving while the statement runs cannot change what moves or its order.
const RENUMBER: &str = "WITH moved AS MATERIALIZED ( \
       SELECT g.seq AS old_seq, ROW_NUMBER() OVER (ORDER BY g.seq) AS rank \
       FROM record_changes g WHERE g.user_id = $1 AND NOT EXISTS ( \
         SELECT 1 FROM record_changes a WHERE a.user_id = $2 AND a.seq < $3 AND \
         ((a.collection = g.collection AND a.record_id = g.record_id) OR a.hash = g.hash))) \
     UPDATE record_changes SET user_id = $2, seq = $3 + moved.rank - 1 FROM moved \
     WHERE record_changes.user_id = $1 AND record_changes.seq = moved.old_seq";

macro_rules! accounts_store {
    ($store:ty, $begin:literal, $for_update:literal) => {
        impl $store {
            async fn tombstone<'c, E>(exec: E, token_hash: &str) -> Result<Option<MergeRow>, sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = <$store as crate::store::StoreDb>::Db>,
            {
                sqlx::query_as(&format!(
                    "SELECT {MERGE_COLUMNS} FROM merges WHERE guest_token_hash = $1"
                ))
                .bind(token_hash)
                .fetch_optional(exec)
                .await
            }
        }

        #[async_trait]
        impl AccountStore for $store {
            async fn user_by_identity(&self, provider: &str, sub: &str) -> DbResult<Option<UserRow>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = \
                     (SELECT user_id FROM accounts WHERE provider = $1 AND provider_account_id = $2)"
                ))
                .bind(provider)
                .bind(sub)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn create_account(&self, a: &NewAccount) -> DbResult<()> {
                let u = &a.user;
                let mut tx = self.pool.begin().await?;
                if let Some(email) = &u.email {
                    // A lapsed claim on the address gives way (`store_claims.rs`).
                    Self::release_lapsed_claim(&mut *tx, email, u.created_at, self.claim_cutoff(u.created_at))
                        .await?;
                }
                Self::insert_user(&mut *tx, u).await?;
                if let Some((provider, sub)) = &a.identity {
                    sqlx::query(
                        "INSERT INTO accounts (id, user_id, provider, provider_account_id, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(format!("acc_{}", ulid::Ulid::new()))
                    .bind(&u.id)
                    .bind(provider)
                    .bind(sub)
                    .bind(u.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                if let (Some((token_hash, expires_at)), Some(email)) = (&a.verification, &u.email) {
                    sqlx::query(
                        "INSERT INTO verification_tokens (token_hash, user_id, email, expires_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(token_hash)
                    .bind(&u.id)
                    .bind(email)
                    .bind(expires_at)
                    .bind(u.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Self::insert_session(&mut *tx, &a.session).await?;
                for audit in &a.audits {
                    Self::insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn merge_by_token(&self, guest_token_hash: &str) -> DbResult<Option<MergeRow>> {
                Ok(Self::tombstone(&self.pool, guest_token_hash).await?)
            }

            async fn merge_guest(&self, p: &MergePlan) -> DbResult<MergeOutcome> {
                let mut tx = self.pool.begin_with($begin).await?;
                // The guest's head first, as its pushes take it.
                sqlx::query(concat!(
                    "SELECT user_id FROM record_heads WHERE user_id = $1",
                    $for_update
                ))
                .bind(&p.guest_id)
                .fetch_optional(&mut *tx)
                .await?;
                // Still this guest's live session, locked until the commit: a
                // concurrent retry waits here and then finds the tombstone.
                let guest: Option<bool> = sqlx::query_scalar(concat!(
                    "SELECT u.is_anonymous FROM users u JOIN sessions s ON s.user_id = u.id \
                     WHERE s.token_hash = $1 AND u.id = $2 AND s.expires_at > $3",
                    $for_update
                ))
                .bind(&p.guest_token_hash)
                .bind(&p.guest_id)
                .bind(p.now)
                .fetch_optional(&mut *tx)
                .await?;
                match guest {
                    None => {
                        let done = Self::tombstone(&mut *tx, &p.guest_token_hash).await?;
                        tx.rollback().await?;
                        return Ok(done.map_or(MergeOutcome::GuestGone, MergeOutcome::AlreadyMerged));
                    }
                    Some(false) => {
                        tx.rollback().await?;
                        return Ok(MergeOutcome::NotAnonymous);
                    }
                    Some(true) => {}
                }
                let pending: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM record_changes WHERE user_id = $1")
                        .bind(&p.guest_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let moved = if pending == 0 {
                    0
                } else {
                    Self::move_changes(&mut tx, &p.guest_id, &p.account_id).await?
                };
                // Sessions, the guest's head and the changes left behind go with it
                // (ON DELETE CASCADE).
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(&p.guest_id)
                    .execute(&mut *tx)
                    .await?;
                let merge = MergeRow {
                    guest_id: p.guest_id.clone(),
                    account_id: p.account_id.clone(),
                    records: moved,
                    merged_at: p.now,
                };
                // A guest id can come back (a device registering the id it minted
                // offline); its newest merge is the one kept.
                sqlx::query(
                    "INSERT INTO merges (guest_id, account_id, guest_token_hash, records, merged_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (guest_id) DO UPDATE SET \
                     account_id = excluded.account_id, guest_token_hash = excluded.guest_token_hash, \
                     records = excluded.records, merged_at = excluded.merged_at",
                )
                .bind(&merge.guest_id)
                .bind(&merge.account_id)
                .bind(&p.guest_token_hash)
                .bind(merge.records)
                .bind(merge.merged_at)
                .execute(&mut *tx)
                .await?;
                for audit in merge_audits(p, moved) {
                    Self::insert_audit(&mut *tx, &audit).await?;
                }
                if let Some((session, audit)) = &p.new_session {
                    Self::insert_session(&mut *tx, session).await?;
                    Self::insert_audit(&mut *tx, audit).await?;
                }
                let account: UserRow = sqlx::query_as(&format!(
                    "UPDATE users SET last_active_at = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
                ))
                .bind(&p.account_id)
                .bind(p.now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(MergeOutcome::Merged { account, merge })
            }
        }

        impl $store {
            /// Renumbers the guest's changes onto the end of the account's log
            /// under the account's head lock and adds them to its usage; returns
            /// how many moved.
            async fn move_changes(
                tx: &mut sqlx::Transaction<'_, <$store as crate::store::StoreDb>::Db>,
                guest_id: &str,
                account_id: &str,
            ) -> DbResult<i64> {
                // Takes (or creates) the account's head row, locking it: the
                // account's own pushes wait, so no position is handed out twice.
                let base: i64 = sqlx::query_scalar(
                    "INSERT INTO record_heads (user_id) VALUES ($1) ON CONFLICT (user_id) \
                     DO UPDATE SET next_seq = record_heads.next_seq RETURNING next_seq",
                )
                .bind(account_id)
                .fetch_one(&mut **tx)
                .await?;
                let moved = sqlx::query(RENUMBER)
                    .bind(guest_id)
                    .bind(account_id)
                    .bind(base)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                let moved = i64::try_from(moved).unwrap_or(i64::MAX);
                if moved == 0 {
                    return Ok(0);
                }
                // Every moved record is new to the account (those it had stayed behind).
                let (records, bytes): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(b), 0) AS BIGINT) FROM (SELECT SUM(length(change)) AS b \
                     FROM record_changes WHERE user_id = $1 AND seq >= $2 \
                     GROUP BY collection, record_id) per_record",
                )
                .bind(account_id)
                .bind(base)
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query(
                    "UPDATE record_heads SET next_seq = $2, records = records + $3, \
                     bytes = bytes + $4 WHERE user_id = $1",
                )
                .bind(account_id)
                .bind(base + moved)
                .bind(records)
                .bind(bytes)
                .execute(&mut **tx)
                .await?;
                Ok(moved)
            }
        }
    };
}

/// `user.deleted` for the guest (by the account) and `user.updated` for the account.
fn merge_audits(p: &MergePlan, moved: i64) -> [AuditRow; 2] {
    use guestpass_proto::AuditEventKind;
    [
        AuditRow::new(
            AuditEventKind::UserDeleted,
            &p.guest_id,
            &p.account_id,
            p.now,
            p.ip_hash.clone(),
        )
        .with_detail(serde_json::json!({ "reason": "merged", "into": p.account_id })),
        AuditRow::new(
            AuditEventKind::UserUpdated,
            &p.account_id,
            &p.account_id,
            p.now,
            p.ip_hash.clone(),
        )
        .with_detail(serde_json::json!({ "merged": p.guest_id, "records": moved })),
    ]
}

accounts_store!(SqliteStore, "BEGIN IMMEDIATE", "");
accounts_store!(PostgresStore, "BEGIN", " FOR UPDATE");
