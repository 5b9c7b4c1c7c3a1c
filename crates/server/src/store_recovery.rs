//! [`RecoveryStore`] on SQLite and PostgreSQL (the same SQL on both, see
//! `store.rs`), stamped out by `recovery_store!`. Every transaction starts with
//! a write, so SQLite takes its write lock (and PostgreSQL the row lock) before
//! anything is read: an upgrade or a second restore cannot slip in between.

use async_trait::async_trait;

use crate::crypto::hex_digests_match;
use crate::db::{AuditRow, DbResult, NewGuest, SessionRow, UserRow};
use crate::db_recovery::{GoneReason, RecoveryKeySet, RecoveryStore};
use crate::store::{PostgresStore, SqliteStore, USER_COLUMNS};

macro_rules! recovery_store {
    ($store:ty) => {
        #[async_trait]
        impl RecoveryStore for $store {
            async fn set_recovery_key(
                &self,
                user_id: &str,
                key_hash: &str,
                audit: &AuditRow,
            ) -> DbResult<RecoveryKeySet> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE users SET recovery_key_hash = $2, updated_at = $3 \
                     WHERE id = $1 AND is_anonymous = TRUE",
                )
                .bind(user_id)
                .bind(key_hash)
                .bind(audit.created_at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(RecoveryKeySet::NotAnonymous);
                }
                Self::insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(RecoveryKeySet::Set)
            }

            async fn recovery_session(
                &self,
                key_hash: &str,
                device_key_hash: Option<&str>,
                mut session: SessionRow,
                mut audit: AuditRow,
            ) -> DbResult<Option<(UserRow, SessionRow)>> {
                let mut tx = self.pool.begin().await?;
                let user: Option<UserRow> = sqlx::query_as(&format!(
                    "UPDATE users SET last_active_at = $2, \
                     device_key_hash = COALESCE($3, device_key_hash) \
                     WHERE recovery_key_hash = $1 AND is_anonymous = TRUE \
                     RETURNING {USER_COLUMNS}"
                ))
                .bind(key_hash)
                .bind(session.created_at)
                .bind(device_key_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user) = user else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                session.user_id = user.id.clone();
                audit.user_id = user.id.clone();
                audit.actor = user.id.clone();
                Self::insert_session(&mut *tx, &session).await?;
                Self::insert_audit(&mut *tx, &audit).await?;
                tx.commit().await?;
                Ok(Some((user, session)))
            }

            async fn gone_user(&self, id: &str) -> DbResult<Option<GoneReason>> {
                let reason: Option<String> =
                    sqlx::query_scalar("SELECT reason FROM gone_users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(reason.as_deref().map(GoneReason::parse))
            }

            async fn revive_guest(&self, guest: &NewGuest) -> DbResult<bool> {
                let Some(presented) = guest.device_key_hash.as_deref() else {
                    return Ok(false);
                };
                let mut tx = self.pool.begin().await?;
                let gone: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                    "DELETE FROM gone_users WHERE id = $1 AND reason = 'cleanup' \
                     RETURNING device_key_hash, recovery_key_hash",
                )
                .bind(&guest.user.id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((Some(device), recovery)) = gone else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                if !hex_digests_match(&device, presented) {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Self::insert_user(&mut *tx, &guest.user).await?;
                sqlx::query(
                    "UPDATE users SET device_key_hash = $2, recovery_key_hash = $3 WHERE id = $1",
                )
                .bind(&guest.user.id)
                .bind(presented)
                .bind(recovery)
                .execute(&mut *tx)
                .await?;
                Self::insert_session(&mut *tx, &guest.session).await?;
                for audit in &guest.audits {
                    Self::insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

recovery_store!(SqliteStore);
recovery_store!(PostgresStore);
