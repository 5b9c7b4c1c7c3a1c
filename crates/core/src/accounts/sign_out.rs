//! Signing a full account out: the server session revoked (queued when the server does
//! not answer), the account's keyring items erased, a fresh guest started. The
//! account's rows stay on the device, hidden, unless the person asked to remove them —
//! which happens only once a fresh round trip confirmed the server holds every change.

use chrono::Utc;
use guestpass_proto::{format_time, ErrorCode, SessionResponse};
use secrecy::SecretString;

use crate::backend::Backend;
use crate::error::Result;
use crate::sync::SyncState;
use crate::vault::Slot;
use crate::Guestpass;

use super::api;

impl Guestpass {
    /// Signs a full account out and starts a fresh guest. With `remove_data` the
    /// account's rows are erased from this computer once the server confirmed it holds
    /// every change; when it cannot confirm (offline, changes waiting, a backend that
    /// keeps no records) this fails with `UNSYNCED_CHANGES` naming how many would be
    /// lost, unless `force` says the person accepted that.
    pub async fn sign_out(&self, remove_data: bool, force: bool) -> Result<SessionResponse> {
        let user = self
            .current_device_user()
            .await?
            .ok_or_else(|| crate::Error::from(ErrorCode::NoSession))?;
        if user.is_anonymous {
            return Err(api(
                ErrorCode::InvalidRequest,
                "A guest cannot sign out: its data would be lost. Create an account first, or delete the guest.",
            ));
        }
        if remove_data && !force {
            self.confirm_all_on_server(&user.id).await?;
        }
        let _one = self.sync.pass.lock().await;
        if let Some(token) = self.vault.get(&user.id, Slot::Remote).await? {
            self.revoke_or_queue(&user.id, &token).await?;
        }
        for slot in [Slot::Remote, Slot::Session] {
            self.vault.delete(&user.id, slot).await?;
        }
        let mut tx = self.store.begin_write().await?;
        if remove_data {
            // Every connection runs with secure_delete (store.rs): the rows' bytes are
            // overwritten in the file, not just unlinked.
            sqlx::query("DELETE FROM users WHERE id = ?")
                .bind(&user.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.store.err(e))?;
        } else {
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(&user.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.store.err(e))?;
        }
        sqlx::query("DELETE FROM device_account")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.store.err(e))?;
        tx.commit().await.map_err(|e| self.store.err(e))?;
        if remove_data {
            self.truncate_wal().await?;
        }
        drop(_one);
        *self.current.write().await = None;
        self.sign_in_anonymous().await
    }

    /// A fresh round trip, then: nothing waiting, nothing refused. Otherwise
    /// `UNSYNCED_CHANGES` with the count in words.
    async fn confirm_all_on_server(&self, user_id: &str) -> Result<()> {
        let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| self.store.err(e))?;
        let status = self.sync_now().await;
        if !status.records_on_server {
            if notes == 0 {
                return Ok(());
            }
            return Err(api(
                ErrorCode::UnsyncedChanges,
                format!(
                    "{} kept only on this computer (this server does not store notes). Removing {} deletes {} for good.",
                    plural(notes, "note is", "notes are"),
                    if notes == 1 { "it" } else { "them" },
                    if notes == 1 { "it" } else { "them" },
                ),
            ));
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM record_outbox WHERE user_id = ? AND compacts IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.store.pool())
        .await
        .map_err(|e| self.store.err(e))?;
        if status.state == SyncState::UpToDate && waiting == 0 {
            return Ok(());
        }
        let count = waiting.max(1);
        let why = if status.state == SyncState::UpToDate {
            "are not on the server yet"
        } else {
            "could not be confirmed on the server (it does not answer)"
        };
        Err(api(
            ErrorCode::UnsyncedChanges,
            format!(
                "{} {why}. Removing your data now would lose {}.",
                plural(count, "change", "changes"),
                if count == 1 { "it" } else { "them" },
            ),
        ))
    }

    /// Revokes the server session now, or queues the revocation (token kept in the
    /// keyring) for the next pass that reaches the server.
    async fn revoke_or_queue(&self, user_id: &str, token: &SecretString) -> Result<()> {
        let Some(backend) = &self.sync.backend else {
            return Ok(());
        };
        match backend.sign_out(token).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::info!("sign-out queued, the server did not take it: {e}");
                self.vault
                    .set(user_id, Slot::PendingRevocation, token)
                    .await?;
                sqlx::query(
                    "INSERT INTO pending_revocations (user_id, backend_url, created_at) VALUES (?, ?, ?)
                     ON CONFLICT(user_id) DO UPDATE SET backend_url = excluded.backend_url",
                )
                .bind(user_id)
                .bind(backend.base_url())
                .bind(format_time(&Utc::now()))
                .execute(self.store.pool())
                .await
                .map_err(|e| self.store.err(e))?;
                Ok(())
            }
        }
    }

    /// After removing an account's rows: the WAL still holds the old pages until it is
    /// checkpointed, so copy it into the file (where secure_delete zeroed them) and cut it
    /// to nothing. Readers holding an old snapshot make a checkpoint partial: retry.
    pub(super) async fn truncate_wal(&self) -> Result<()> {
        for _ in 0..50 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(self.store.pool())
                .await
                .map_err(|e| self.store.err(e))?;
            if busy == 0 {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        tracing::warn!("the WAL could not be truncated after removing an account's data");
        Ok(())
    }
}

/// Revocations queued by an offline sign-out, sent when the server answers. Failures
/// stay queued for the next pass.
pub(crate) async fn revoke_pending(g: &Guestpass, backend: &Backend) -> Result<()> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM pending_revocations WHERE backend_url = ?")
            .bind(backend.base_url())
            .fetch_all(g.store.pool())
            .await
            .map_err(|e| g.store.err(e))?;
    for user_id in rows {
        if let Some(token) = g.vault.get(&user_id, Slot::PendingRevocation).await? {
            if backend.sign_out(&token).await.is_err() {
                continue;
            }
        }
        g.vault.delete(&user_id, Slot::PendingRevocation).await?;
        sqlx::query("DELETE FROM pending_revocations WHERE user_id = ?")
            .bind(&user_id)
            .execute(g.store.pool())
            .await
            .map_err(|e| g.store.err(e))?;
    }
    Ok(())
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
