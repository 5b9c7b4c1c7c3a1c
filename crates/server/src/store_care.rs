//! [`CareStore`] on SQLite and PostgreSQL: the same SQL on both (see `store.rs`
//! for the shared dialect), stamped out by `care_store!`.
//!
//! Each write transaction starts with a write (SQLite then holds its write lock
//! from the first statement; see `store.rs`). The limits (resets and resends per
//! hour) lock the user's row first with a no-op `UPDATE … RETURNING`, so two
//! concurrent requests of one user are counted one after the other and never
//! both slip under the limit.

use async_trait::async_trait;
use guestpass_proto::AuditEventKind;

use crate::db::{AuditRow, DbResult, UserRow};
use crate::db_care::{
    CareStore, ExportRows, NewPasswordReset, PasswordChange, PasswordReset, Resend, ResendOutcome,
    ResetDone,
};
use crate::store::{PostgresStore, SqliteStore, USER_COLUMNS};

/// A link still works: unused, unexpired, and the account still has the
/// address it was mailed to. `{table}` is `verification_tokens` or
/// `password_reset_tokens`.
fn live_link_query(table: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM {table} t JOIN users u ON u.id = t.user_id AND u.email = t.email \
         WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2"
    )
}

macro_rules! care_store {
    ($store:ty, $for_update:literal) => {
        #[async_trait]
        impl CareStore for $store {
            async fn create_password_reset(&self, r: &NewPasswordReset) -> DbResult<bool> {
                let mut tx = self.pool.begin().await?;
                let user: Option<String> = sqlx::query_scalar(
                    "UPDATE users SET updated_at = updated_at \
                     WHERE id = $1 AND email = $2 AND is_anonymous = FALSE RETURNING id",
                )
                .bind(&r.user_id)
                .bind(&r.email)
                .fetch_optional(&mut *tx)
                .await?;
                if user.is_none() {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let recent: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM password_reset_tokens WHERE user_id = $1 AND created_at > $2",
                )
                .bind(&r.user_id)
                .bind(r.now - r.window_ms)
                .fetch_one(&mut *tx)
                .await?;
                if recent >= r.max_in_window {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO password_reset_tokens (token_hash, user_id, email, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.token_hash)
                .bind(&r.user_id)
                .bind(&r.email)
                .bind(r.expires_at)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn password_reset_live(&self, token_hash: &str, now: i64) -> DbResult<bool> {
                let n: i64 = sqlx::query_scalar(&live_link_query("password_reset_tokens"))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n > 0)
            }

            async fn reset_password(&self, r: &PasswordReset) -> DbResult<Option<ResetDone>> {
                let mut tx = self.pool.begin().await?;
                let link: Option<(String, String)> = sqlx::query_as(
                    "UPDATE password_reset_tokens SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     RETURNING user_id, email",
                )
                .bind(&r.token_hash)
                .bind(r.now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((user_id, email)) = link else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let verified: Option<bool> = sqlx::query_scalar(concat!(
                    "SELECT email_verified FROM users WHERE id = $1 AND email = $2",
                    $for_update
                ))
                .bind(&user_id)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(verified) = verified else {
                    // The account's email changed since the link was mailed.
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE users SET password_hash = $2, email_verified = TRUE, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(&user_id)
                .bind(&r.password_hash)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                let sessions_revoked = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                for table in ["password_reset_tokens", "verification_tokens"] {
                    sqlx::query(&format!(
                        "UPDATE {table} SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL"
                    ))
                    .bind(&user_id)
                    .bind(r.now)
                    .execute(&mut *tx)
                    .await?;
                }
                let audit = |detail| {
                    AuditRow::new(AuditEventKind::UserUpdated, &user_id, &user_id, r.now, r.ip_hash.clone())
                        .with_detail(detail)
                };
                Self::insert_audit(&mut *tx, &audit(serde_json::json!({ "change": "password" }))).await?;
                if !verified {
                    Self::insert_audit(&mut *tx, &audit(serde_json::json!({ "emailVerified": true })))
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(ResetDone {
                    user_id,
                    sessions_revoked,
                    email_verified_now: !verified,
                }))
            }

            async fn verification_live(&self, token_hash: &str, now: i64) -> DbResult<bool> {
                let n: i64 = sqlx::query_scalar(&live_link_query("verification_tokens"))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n > 0)
            }

            async fn resend_verification(&self, r: &Resend) -> DbResult<ResendOutcome> {
                let mut tx = self.pool.begin().await?;
                let user: Option<(Option<String>, bool)> = sqlx::query_as(
                    "UPDATE users SET updated_at = updated_at WHERE id = $1 \
                     RETURNING email, email_verified",
                )
                .bind(&r.user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let email = match user {
                    None => None,
                    Some((_, true)) => Some(Err(ResendOutcome::AlreadyVerified)),
                    Some((None, false)) => match &r.new_email {
                        Some(email) => Some(Ok((email.clone(), true))),
                        None => Some(Err(ResendOutcome::NoEmail)),
                    },
                    Some((Some(email), false)) => Some(Ok((email, false))),
                };
                let (email, adding) = match email {
                    Some(Ok(found)) => found,
                    Some(Err(refusal)) => {
                        tx.rollback().await?;
                        return Ok(refusal);
                    }
                    None => {
                        tx.rollback().await?;
                        return Ok(ResendOutcome::Gone);
                    }
                };
                let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(created_at) FROM verification_tokens \
                     WHERE user_id = $1 AND kind = 'resend' AND created_at > $2",
                )
                .bind(&r.user_id)
                .bind(r.now - r.window_ms)
                .fetch_one(&mut *tx)
                .await?;
                if count >= r.max_in_window {
                    tx.rollback().await?;
                    let leaves_at = oldest.unwrap_or(r.now) + r.window_ms;
                    return Ok(ResendOutcome::Limited {
                        retry_after_ms: (leaves_at - r.now).max(1),
                    });
                }
                // The claim (issue 14, `store_claims.rs`): a new address is claimed
                // from now, if nobody holds it (else a conflict on the unique
                // index: 409); a lapsed one is renewed, a live one is not extended.
                let cutoff = self.claim_cutoff(r.now);
                let change = if adding {
                    Self::release_lapsed_claim(&mut *tx, &email, r.now, cutoff).await?;
                    sqlx::query(
                        "UPDATE users SET email = $2, email_claimed_at = $3, updated_at = $3 \
                         WHERE id = $1 AND email IS NULL",
                    )
                    .bind(&r.user_id)
                    .bind(&email)
                    .bind(r.now)
                    .execute(&mut *tx)
                    .await?;
                    Some("emailClaimed")
                } else {
                    let renewed = sqlx::query(
                        "UPDATE users SET email_claimed_at = $2 \
                         WHERE id = $1 AND email_verified = FALSE AND email_claimed_at < $3",
                    )
                    .bind(&r.user_id)
                    .bind(r.now)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                    (renewed.rows_affected() > 0).then_some("emailClaimRenewed")
                };
                if let Some(change) = change {
                    let audit = AuditRow::new(AuditEventKind::UserUpdated, &r.user_id, &r.user_id, r.now, None)
                        .with_detail(serde_json::json!({ "change": change }));
                    Self::insert_audit(&mut *tx, &audit).await?;
                }
                sqlx::query(
                    "INSERT INTO verification_tokens (token_hash, user_id, email, expires_at, created_at, kind) \
                     VALUES ($1, $2, $3, $4, $5, 'resend')",
                )
                .bind(&r.token_hash)
                .bind(&r.user_id)
                .bind(&email)
                .bind(r.expires_at)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(ResendOutcome::Sent { email })
            }

            async fn change_password(&self, c: &PasswordChange) -> DbResult<Option<(UserRow, u64)>> {
                let mut tx = self.pool.begin().await?;
                let user: Option<UserRow> = sqlx::query_as(&format!(
                    "UPDATE users SET password_hash = $3, updated_at = $4, last_active_at = $4 \
                     WHERE id = $1 AND password_hash = $2 RETURNING {USER_COLUMNS}"
                ))
                .bind(&c.user_id)
                .bind(&c.old_hash)
                .bind(&c.new_hash)
                .bind(c.now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user) = user else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let revoked = if c.revoke_others {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                        .bind(&c.user_id)
                        .bind(&c.session_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                } else {
                    0
                };
                // A reset link mailed before the change must not undo it.
                sqlx::query(
                    "UPDATE password_reset_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(&c.user_id)
                .bind(c.now)
                .execute(&mut *tx)
                .await?;
                Self::insert_audit(&mut *tx, &c.audit).await?;
                tx.commit().await?;
                Ok(Some((user, revoked)))
            }

            async fn export_rows(&self, user_id: &str, now: i64) -> DbResult<ExportRows> {
                let providers: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT provider, created_at FROM accounts WHERE user_id = $1 \
                     ORDER BY created_at, provider",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                let sessions: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND expires_at > $2",
                )
                .bind(user_id)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                let collections: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT collection, COUNT(DISTINCT record_id), COUNT(*), \
                     CAST(COALESCE(SUM(length(change)), 0) AS BIGINT) \
                     FROM record_changes WHERE user_id = $1 GROUP BY collection ORDER BY collection",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(ExportRows {
                    providers,
                    sessions,
                    collections,
                })
            }
        }
    };
}

care_store!(SqliteStore, "");
care_store!(PostgresStore, " FOR UPDATE");
