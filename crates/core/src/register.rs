//! Registering the device's guest with the backend, once, under the id it minted
//! offline (DESIGN.md §3): resuming a registration whose answer was lost, and moving
//! to another server when the settings change the backend (issue 15).

use chrono::Utc;
use guestpass_proto::{ApiError, ErrorCode, User};
use secrecy::SecretString;

use crate::backend::{Backend, BackendError, Dialect, Remote};
use crate::error::Result;
use crate::records;
use crate::store::Store;
use crate::sync::{db, map_remote, SyncError};
use crate::upgrade;
use crate::vault::{Slot, Vault};

pub(crate) enum Registered {
    Token(SecretString),
    /// The server had deleted this guest as stale while the device was away and
    /// made it again from this device's key: every record was queued to go up
    /// again (issue 16), and the person is told once.
    Revived(SecretString),
    Lost(ApiError),
}

/// What the app says once after [`Registered::Revived`].
pub(crate) const REVIVED_NOTICE: &str = "The server had forgotten this guest after a long time without contact. Everything on this device has been sent to it again; nothing was lost.";

/// Registers the device's guest with the id it minted offline, once.
pub(crate) async fn ensure_registered(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user: &User,
) -> Result<Registered, SyncError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT remote_user_id, backend_url FROM remote_account WHERE user_id = ?")
            .bind(&user.id)
            .fetch_optional(store.pool())
            .await
            .map_err(db(store))?;
    let held = vault.get(&user.id, Slot::Remote).await?;
    let (known, held) = match row {
        // Another address: the same server under another name (a proxy, a new port,
        // a host name for an IP) still knows this device's session; a new server
        // does not, and the user moves there (or, for an account, is told).
        Some((remote_id, url)) if url != backend.base_url() => {
            let same_server = match &held {
                Some(token) => match backend.get_session(token).await {
                    Ok(Some(remote)) => remote.id == remote_id,
                    Ok(None) | Err(BackendError::Unauthorized) => false,
                    Err(e) => return Err(e.into()),
                },
                None => false,
            };
            if same_server {
                save_remote(store, backend, &user.id, &remote_id).await?;
                (Some(remote_id), held)
            } else if let Some(lost) = moved_server(store, vault, user, &url).await? {
                return Ok(Registered::Lost(lost));
            } else {
                // Moved: the old server's row and token are gone.
                (None, None)
            }
        }
        other => (other.map(|(id, _)| id), held),
    };
    if let (Some(_), Some(token)) = (&known, &held) {
        return Ok(Registered::Token(token.clone()));
    }
    if known.is_some() && held.is_none() {
        // The server knows this user, and the keyring no longer holds its token:
        // the keyring was reset under the app (on Linux, often a login password
        // change). Notes are all here. A guest's device key may survive in it:
        // then the registration below gets a new session. Without it nothing
        // here can prove the guest, and minting a key (or a guest) would only
        // make it worse: the recovery phrase (or a sign-in) brings sync back.
        if !user.is_anonymous {
            return Ok(Registered::Lost(ApiError::new(
                ErrorCode::Unauthorized,
                "This device lost its session (the system keyring was reset). Sign in again to sync; everything on this device is kept.",
            )));
        }
        if vault.get(&user.id, Slot::DeviceKey).await?.is_none() {
            return Ok(Registered::Lost(ApiError::new(
                ErrorCode::DeviceKeysLost,
                "The system keyring lost this device's keys, so this guest cannot sync. Your notes are safe here and keep working on this device. Enter your recovery phrase to sync again.",
            )));
        }
    }
    // A token without its row: a previous pass stored the token and died before the
    // row. Ask the backend who it is instead of registering twice.
    if let Some(token) = held {
        match backend.get_session(&token).await {
            Ok(Some(remote)) => {
                save_remote(store, backend, &user.id, &remote.id).await?;
                return Ok(Registered::Token(token));
            }
            Ok(None) | Err(BackendError::Unauthorized) => {
                vault.delete(&user.id, Slot::Remote).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !user.is_anonymous && known.is_none() {
        // A full account whose remote session is gone: only signing in again helps.
        return Ok(Registered::Lost(ApiError::new(
            ErrorCode::Unauthorized,
            "The server no longer knows this device's session. Sign in again to sync.",
        )));
    }
    // The key is in the keyring before the first attempt and the same on every
    // retry: if the server committed the guest but the answer was lost, the retry
    // proves this device minted the id and gets a session instead of USER_ID_TAKEN.
    let device_key = match backend.dialect() {
        Dialect::Guestpass => Some(device_key(vault, &user.id).await?),
        Dialect::BetterAuth => None,
    };
    match backend.register(&user.id, device_key.as_ref()).await {
        Ok((Remote { user: remote, token: Some(token) }, revived)) => {
            if revived {
                // The server lost the records with the guest: all of them go up
                // again (idempotent by hash), and the cursor starts over. First of
                // all, as the server says `revived` once: a retry after a crash here
                // resumes the guest without saying it (the window is this commit).
                let mut tx = store.begin_write().await?;
                records::reseed(&mut tx, &user.id).await.map_err(db(store))?;
                tx.commit().await.map_err(db(store))?;
                tracing::info!("the server had deleted this guest as stale; it was made again from this device");
            }
            // Token before the row: if we die between them, the branch above recovers it.
            vault.set(&user.id, Slot::Remote, &token).await?;
            save_remote(store, backend, &user.id, &remote.id).await?;
            crate::recovery::resend_key(vault, backend, &user.id, &token).await;
            Ok(if revived { Registered::Revived(token) } else { Registered::Token(token) })
        }
        Ok((Remote { token: None, .. }, _)) => Err(BackendError::Protocol("sign-in answer without a token".into()).into()),
        // Final: the server refused this device's key too (or the guest was upgraded there).
        // A social upgrade whose answer was lost, and the token made for it did not
        // open it (`upgrade::adopt_pending_token`): the account exists, this device
        // cannot prove it. Only signing in helps.
        Err(BackendError::Refused(e))
            if e.code == ErrorCode::UserIdTaken
                && vault.get(&user.id, Slot::PendingToken).await?.is_some() =>
        {
            Ok(Registered::Lost(upgrade::social_answer_lost()))
        }
        Err(BackendError::Refused(e)) if e.code == ErrorCode::GuestRemoved => Ok(Registered::Lost(ApiError::new(
            ErrorCode::GuestRemoved,
            "This guest was deleted from the server (on another device, or by its administrator), so it no longer syncs. Everything on this device is still here.",
        ))),
        Err(BackendError::Refused(e)) if e.code == ErrorCode::UserIdTaken => Ok(Registered::Lost(ApiError::new(
            ErrorCode::UserIdTaken,
            "The server has this guest but no longer lets this device in: it may have become an account on another device. Sign in to that account to sync again; everything on this device is kept.",
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The settings point the device at another server than the one that knows its
/// user. A guest moves: the old server's session is forgotten and every record is
/// queued for the new one, where the guest registers under the same id. A full
/// account cannot move by itself (it exists on the old server only): the person
/// signs in on the new one, or sets the old one back.
async fn moved_server(
    store: &Store,
    vault: &Vault,
    user: &User,
    old_url: &str,
) -> Result<Option<ApiError>, SyncError> {
    if !user.is_anonymous {
        return Ok(Some(ApiError::new(
            ErrorCode::Unauthorized,
            format!("This account is kept on {old_url}. Sign in to an account on this server, or set {old_url} back in Settings. Your data on this device is safe."),
        )));
    }
    vault.delete(&user.id, Slot::Remote).await?;
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM remote_account WHERE user_id = ?")
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .map_err(db(store))?;
    records::reseed(&mut tx, &user.id)
        .await
        .map_err(db(store))?;
    tx.commit().await.map_err(db(store))?;
    tracing::info!("the guest moved from {old_url} to another server");
    Ok(None)
}

/// This guest's device key, made (and kept in the keyring) the first time it is needed.
async fn device_key(vault: &Vault, user_id: &str) -> Result<SecretString> {
    if let Some(key) = vault.get(user_id, Slot::DeviceKey).await? {
        return Ok(key);
    }
    let key = crate::token::new_device_key();
    vault.set(user_id, Slot::DeviceKey, &key).await?;
    Ok(key)
}

async fn save_remote(
    store: &Store,
    backend: &Backend,
    user_id: &str,
    remote_id: &str,
) -> Result<()> {
    let mut conn = store.pool().acquire().await.map_err(db(store))?;
    map_remote(&mut conn, backend, user_id, remote_id, Utc::now())
        .await
        .map_err(db(store))
}
