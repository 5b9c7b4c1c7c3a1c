//! Bringing a guest's data into an account, or leaving it behind.
//!
//! Device and server cannot commit together, so the merge rolls forward:
//! 1. the account's token into the keyring, then a durable `merge_intent` row;
//! 2. the server folds the guest into the account (`POST /anonymous/merge`; a retry is
//!    answered from its merge tombstone; on Better Auth a sign-in holding the guest's
//!    bearer, or deleting the guest, does the server half);
//! 3. one local transaction re-owns the guest's rows, makes the account current, starts
//!    its local session, deletes the guest and marks the intent `committed`;
//! 4. the guest's keyring items are erased and the intent deleted.
//!
//! A crash anywhere leaves the intent; [`roll_forward`] (every sync pass) finishes it
//! from the step it reached, so the end is always the merged account with every
//! record once. The guest's token is kept until step 3 has committed.

use chrono::Utc;
use guestpass_proto::{format_time, AuditEventKind, ErrorCode, SessionResponse};
use secrecy::SecretString;
use serde_json::json;
use sqlx::Row;

use crate::audit;
use crate::backend::{Backend, BackendError, Dialect, RemoteUser};
use crate::error::{Error, Result};
use crate::identity::{self, Reason};
use crate::vault::Slot;
use crate::Guestpass;

use super::{api, local, PendingSignIn};

/// The guest's keyring items, erased once the guest is gone.
const GUEST_SLOTS: [Slot; 6] = [
    Slot::Session,
    Slot::Remote,
    Slot::DeviceKey,
    Slot::PendingPassword,
    Slot::PendingToken,
    Slot::RecoveryPhrase,
];

impl Guestpass {
    /// Sign in and bring the guest's data along (steps 1–4 above).
    pub(super) async fn merge_guest(&self, p: PendingSignIn) -> Result<SessionResponse> {
        if let Some(r) = &p.restored {
            r.save(&self.vault, &p.account_id).await?;
        }
        self.vault
            .set(&p.account_id, Slot::Remote, &p.token)
            .await?;
        let account_json = json!({
            "id": p.remote.id,
            "email": p.remote.email,
            "name": p.remote.name,
            "emailVerified": p.remote.email_verified,
            "isAnonymous": p.remote.is_anonymous,
        });
        sqlx::query(
            "INSERT INTO merge_intent (slot, guest_id, account_id, account, state, started_at)
             VALUES (1, ?, ?, ?, 'started', ?)
             ON CONFLICT(slot) DO UPDATE SET guest_id = excluded.guest_id, account_id = excluded.account_id,
               account = excluded.account, state = 'started', started_at = excluded.started_at",
        )
        .bind(&p.guest_id)
        .bind(&p.account_id)
        .bind(account_json.to_string())
        .bind(format_time(&Utc::now()))
        .execute(self.store.pool())
        .await
        .map_err(|e| self.store.err(e))?;
        let intent = Intent {
            guest_id: p.guest_id,
            account_id: p.account_id,
            remote: p.remote,
            committed: false,
        };
        // Hold the sync pass lock so a background pass cannot register or sync the
        // guest halfway through (roll_forward runs under it too).
        let _one = self.sync.pass.lock().await;
        finish(self, &p.backend, &intent, p.password.as_ref())
            .await
            .map_err(|e| match e {
                FinishError::Local(e) => e,
                FinishError::Backend(e) if e.is_transient() => api(
                    ErrorCode::BackendUnreachable,
                    "Signed in, but the server stopped answering before your notes were moved. They will be moved into the account as soon as it answers; nothing is lost.",
                ),
                FinishError::Backend(e) => api(
                    ErrorCode::BackendError,
                    format!("The server could not bring your notes into the account ({e}). They are still here; try again later."),
                ),
            })?;
        self.signed_in_now(&intent.account_id).await
    }

    /// Sign in and delete the guest with its data (the person confirmed twice, or the
    /// guest held nothing). Nothing rolls forward: a crash before the commit leaves the
    /// guest as it was.
    pub(super) async fn leave_behind(
        &self,
        p: PendingSignIn,
        method: &str,
    ) -> Result<SessionResponse> {
        let _one = self.sync.pass.lock().await;
        if let Some(r) = &p.restored {
            r.save(&self.vault, &p.account_id).await?;
        }
        if !p.guest_id.is_empty() {
            if let Some(guest_token) = self.vault.get(&p.guest_id, Slot::Remote).await? {
                // Best effort: a guest the server still has is cleaned up there later.
                if let Err(e) = p.backend.delete_guest(&guest_token).await {
                    tracing::info!("the guest left behind was not deleted on the server: {e}");
                }
            }
        }
        self.vault
            .set(&p.account_id, Slot::Remote, &p.token)
            .await?;
        let now = Utc::now();
        let mut tx = self.store.begin_write().await?;
        local::adopt(&mut tx, &p.backend, &p.account_id, &p.remote, now)
            .await
            .map_err(|e| self.store.err(e))?;
        if !p.guest_id.is_empty() {
            local::delete_user(
                &mut tx,
                &p.guest_id,
                &p.guest_id,
                now,
                json!({ "reason": "left-behind", "signedInTo": p.account_id }),
            )
            .await
            .map_err(|e| self.store.err(e))?;
        }
        identity::start_session(
            &self.store,
            &mut tx,
            &self.vault,
            &p.account_id,
            now,
            Reason::SignIn,
        )
        .await?;
        audit::record(
            &mut tx,
            AuditEventKind::UserUpdated,
            &p.account_id,
            &p.account_id,
            now,
            json!({ "signIn": method }),
        )
        .await
        .map_err(|e| self.store.err(e))?;
        identity::commit_or_forget(&self.store, &self.vault, tx, &p.account_id).await?;
        if !p.guest_id.is_empty() {
            erase_guest_secrets(self, &p.guest_id).await;
        }
        drop(_one);
        self.signed_in_now(&p.account_id).await
    }
}

/// A merge as the intent row records it.
struct Intent {
    guest_id: String,
    account_id: String,
    remote: RemoteUser,
    committed: bool,
}

#[derive(Debug)]
pub(crate) enum FinishError {
    Local(Error),
    Backend(BackendError),
}

impl From<Error> for FinishError {
    fn from(e: Error) -> Self {
        Self::Local(e)
    }
}

/// Finishes a merge a crash or an outage interrupted. Called by every sync pass, under
/// the pass lock, before anything else syncs. `Ok(true)` when one was finished.
pub(crate) async fn roll_forward(g: &Guestpass, backend: &Backend) -> Result<bool, FinishError> {
    let row =
        sqlx::query("SELECT guest_id, account_id, account, state FROM merge_intent WHERE slot = 1")
            .fetch_optional(g.store.pool())
            .await
            .map_err(|e| g.store.err(e))?;
    let Some(row) = row else { return Ok(false) };
    let get = |k: &str| row.try_get::<String, _>(k).map_err(|e| g.store.err(e));
    let account: serde_json::Value = serde_json::from_str(&get("account")?)
        .map_err(|e| Error::Database(format!("merge intent unreadable: {e}")))?;
    let text = |k: &str| account.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let intent = Intent {
        guest_id: get("guest_id")?,
        account_id: get("account_id")?,
        remote: RemoteUser {
            id: text("id").unwrap_or_default(),
            email: text("email"),
            name: text("name"),
            email_verified: account
                .get("emailVerified")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            // A guest restored by its phrase, bringing the guest that was here.
            is_anonymous: account
                .get("isAnonymous")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        },
        committed: get("state")? == "committed",
    };
    finish(g, backend, &intent, None).await?;
    *g.current.write().await = Some(intent.account_id.clone());
    Ok(true)
}

/// Steps 2–4 from wherever the intent stands.
async fn finish(
    g: &Guestpass,
    backend: &Backend,
    intent: &Intent,
    password: Option<&SecretString>,
) -> Result<(), FinishError> {
    if !intent.committed {
        fold_on_server(g, backend, intent, password).await?;
        commit_locally(g, backend, intent).await?;
    }
    erase_guest_secrets(g, &intent.guest_id).await;
    sqlx::query("DELETE FROM merge_intent WHERE slot = 1")
        .execute(g.store.pool())
        .await
        .map_err(|e| g.store.err(e))?;
    Ok(())
}

/// Step 2. A guest the server never knew (no remote token) has nothing to fold: its
/// records reach the server as the account's from the device's queue.
async fn fold_on_server(
    g: &Guestpass,
    backend: &Backend,
    intent: &Intent,
    password: Option<&SecretString>,
) -> Result<(), FinishError> {
    let Some(guest_token) = g.vault.get(&intent.guest_id, Slot::Remote).await? else {
        return Ok(());
    };
    let Some(account_token) = g.vault.get(&intent.account_id, Slot::Remote).await? else {
        return Err(FinishError::Local(api(
            ErrorCode::NoSession,
            "The account's session was lost while signing in. Sign in again; your notes are still here.",
        )));
    };
    let done = match backend.dialect() {
        // Into a restored guest (issue 16): two guests are never folded on the
        // server, so the guest here is deleted there and its records go up again
        // as the restored guest's from the local commit (`records::reseed`).
        Dialect::Guestpass if intent.remote.is_anonymous => {
            backend.delete_guest(&guest_token).await
        }
        Dialect::Guestpass => backend.merge(&account_token, &guest_token).await.map(drop),
        Dialect::BetterAuth => match (password, intent.remote.email.as_deref()) {
            // Better Auth's own way: a sign-in that holds the anonymous bearer links
            // the account and deletes the anonymous user. It opens a second session:
            // keep that one, revoke the first.
            (Some(password), Some(email)) => {
                match backend
                    .sign_in_email(email, password, Some(&guest_token))
                    .await
                {
                    Ok(remote) => {
                        if let Some(t) = remote.token {
                            g.vault.set(&intent.account_id, Slot::Remote, &t).await?;
                            let _ = backend.sign_out(&account_token).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            // Rolling forward after a restart, with no password in memory.
            _ => backend.delete_guest(&guest_token).await,
        },
    };
    match done {
        Ok(()) => Ok(()),
        // The guest's session is gone on the server (expired, cleaned up, or this very
        // merge finished with another token): nothing is left there to fold.
        Err(BackendError::Unauthorized) => Ok(()),
        Err(BackendError::Refused(e)) if e.code == ErrorCode::UserNotAnonymous => Ok(()),
        Err(e) => Err(FinishError::Backend(e)),
    }
}

/// Step 3, in one transaction.
async fn commit_locally(g: &Guestpass, backend: &Backend, intent: &Intent) -> Result<()> {
    let now = Utc::now();
    let store = &g.store;
    let mut tx = store.begin_write().await?;
    local::adopt(&mut tx, backend, &intent.account_id, &intent.remote, now)
        .await
        .map_err(|e| store.err(e))?;
    let notes = local::reown(&mut tx, &intent.guest_id, &intent.account_id)
        .await
        .map_err(|e| store.err(e))?;
    if intent.remote.is_anonymous {
        // The server did not fold these records (see `fold_on_server`): every
        // record the restored guest now has here goes up again, as its own.
        crate::records::reseed(&mut tx, &intent.account_id)
            .await
            .map_err(|e| store.err(e))?;
    }
    local::delete_user(
        &mut tx,
        &intent.guest_id,
        &intent.guest_id,
        now,
        json!({ "reason": "merged", "into": intent.account_id }),
    )
    .await
    .map_err(|e| store.err(e))?;
    audit::record(
        &mut tx,
        AuditEventKind::UserUpdated,
        &intent.account_id,
        &intent.account_id,
        now,
        json!({ "merged": intent.guest_id, "notes": notes }),
    )
    .await
    .map_err(|e| store.err(e))?;
    sqlx::query("UPDATE merge_intent SET state = 'committed' WHERE slot = 1")
        .execute(&mut *tx)
        .await
        .map_err(|e| store.err(e))?;
    identity::start_session(
        store,
        &mut tx,
        &g.vault,
        &intent.account_id,
        now,
        Reason::SignIn,
    )
    .await?;
    identity::commit_or_forget(store, &g.vault, tx, &intent.account_id).await
}

/// Step 4. A failure only leaves a secret of a deleted user in the keyring; it is
/// logged, and never blocks the person.
async fn erase_guest_secrets(g: &Guestpass, guest_id: &str) {
    for slot in GUEST_SLOTS {
        if let Err(e) = g.vault.delete(guest_id, slot).await {
            tracing::warn!("could not erase a keyring item of the merged guest: {e}");
        }
    }
}
