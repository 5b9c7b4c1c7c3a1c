//! Delivering an upgrade to the backend, and what the device holds meanwhile
//! (DESIGN.md §3, issue 14): the queued upgrade (an `outbox` row with the email and
//! name, the password in the keyring) and, on the Guestpass dialect, the session's
//! next token.
//!
//! The reference server replaces the session's token when it upgrades the guest,
//! so the guest's token dies on the way. The device therefore makes the next token
//! itself before it sends the upgrade, keeps it in the keyring
//! ([`Slot::PendingToken`]) and sends its SHA-256 (`nextTokenHash`). When the answer
//! arrives the new token replaces the session token and the pending slots are
//! erased. When it is lost (a timeout, a crash), the next pass tries, in order:
//! the pending token (`get-session`: the server installed it), then
//! `sign-in/email` with the still-kept pending password; the password is erased
//! only once a working token is stored. A social upgrade has the pending token
//! only (an ID token cannot be replayed): if that does not work the person signs
//! in again.
//!
//! Better Auth takes no `nextTokenHash`: its sign-up hands out a new token in
//! `set-auth-token`, which the device follows, and a lost answer is recovered by
//! its sign-in (`backend/better_auth.rs`).

use chrono::Utc;
use guestpass_proto::{format_time, ApiError, AuditEventKind, ErrorCode, UpgradeRequest, User};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::audit;
use crate::backend::{Backend, BackendError, Dialect, Remote, RemoteUser};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::sync::{db, forget_remote, map_remote, SyncError};
use crate::vault::{Slot, Vault};

/// A queued upgrade as stored in the outbox (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpgrade {
    pub email: String,
    pub name: Option<String>,
    pub refused: Option<ApiError>,
}

/// What delivering the outbox left us with.
pub(crate) enum Delivery {
    /// The token to go on with (a new one when the upgrade rotated it).
    Token(SecretString),
    /// The backend refused the upgrade; the person must act.
    Refused(ApiError),
}

/// The next session token for `user_id`'s upgrade: the one already kept (a retry
/// must name the same token, the earlier attempt may have landed), else a new one,
/// in the keyring before anything is sent.
pub(crate) async fn next_token(vault: &Vault, user_id: &str) -> Result<SecretString> {
    if let Some(t) = vault.get(user_id, Slot::PendingToken).await? {
        return Ok(t);
    }
    let t = crate::token::new_remote_token();
    vault.set(user_id, Slot::PendingToken, &t).await?;
    Ok(t)
}

/// The pending slots of an upgrade that is over (delivered, adopted or refused).
async fn erase_pending(vault: &Vault, user_id: &str) -> Result<()> {
    vault.delete(user_id, Slot::PendingPassword).await?;
    vault.delete(user_id, Slot::PendingToken).await
}

/// The start of every pass, before anything uses the session token: an upgrade
/// whose answer was lost (email or social) is adopted through the token the
/// device made for it. Returns whether it adopted one (the user row changed).
pub(crate) async fn adopt_pending_token(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user: &User,
) -> Result<bool, SyncError> {
    if backend.dialect() != Dialect::Guestpass || !user.is_anonymous {
        return Ok(false);
    }
    let Some(pending) = vault.get(&user.id, Slot::PendingToken).await? else {
        return Ok(false);
    };
    let queued = pending_upgrade(store, &user.id).await?;
    let remote = match backend.get_session(&pending).await {
        Ok(found) => found,
        Err(BackendError::Unauthorized) => None,
        Err(e) => return Err(e.into()),
    };
    // The reference server keeps the id the device minted: anything else is not ours.
    match remote {
        Some(remote) if !remote.is_anonymous && remote.id == user.id => {
            let (outbox, kind) = match &queued {
                Some((id, p)) if remote_matches(&remote, &p.email) => (Some(*id), "email"),
                _ => (None, "social"),
            };
            // Token first: a crash before the row change finds it here again.
            vault.set(&user.id, Slot::Remote, &pending).await?;
            let mut conn = store.pool().acquire().await.map_err(db(store))?;
            map_remote(&mut conn, backend, &user.id, &remote.id, Utc::now())
                .await
                .map_err(db(store))?;
            drop(conn);
            apply_upgrade(store, vault, backend, &user.id, &remote, outbox, kind).await?;
            erase_pending(vault, &user.id).await?;
            Ok(true)
        }
        // Not installed. A queued email upgrade sends it (again) in this pass. A
        // social one did not land if the guest's own token still works; if that is
        // dead too, it may have: the token stays, so registering again explains
        // itself (`sync::ensure_registered`).
        _ if queued.as_ref().is_some_and(|(_, p)| p.refused.is_none()) => Ok(false),
        _ => {
            let guest_alive = match vault.get(&user.id, Slot::Remote).await? {
                Some(t) => matches!(backend.get_session(&t).await, Ok(Some(_))),
                None => false,
            };
            if guest_alive {
                vault.delete(&user.id, Slot::PendingToken).await?;
            }
            Ok(false)
        }
    }
}

/// What a social upgrade that may have landed without its answer says when the
/// device cannot prove it did: only signing in helps.
pub(crate) fn social_answer_lost() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "Your account may have been created, but this device lost the server's answer. \
         Sign in with the provider you chose to continue; everything on this device is kept.",
    )
}

/// Delivers a pending upgrade, if any.
pub(crate) async fn deliver_upgrade(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user: &User,
    held: SecretString,
) -> Result<Delivery, SyncError> {
    let token = &held;
    let Some((id, pending)) = pending_upgrade(store, &user.id).await? else {
        return Ok(Delivery::Token(held));
    };
    if let Some(refused) = pending.refused {
        return Ok(Delivery::Refused(refused));
    }
    let Some(password) = vault.get(&user.id, Slot::PendingPassword).await? else {
        let reason = ApiError::new(
            ErrorCode::InvalidRequest,
            "The queued account creation lost its password. Please enter it again.",
        );
        refuse(store, id, &reason).await?;
        vault.delete(&user.id, Slot::PendingToken).await?;
        return Ok(Delivery::Refused(reason));
    };
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, updated_at = ? WHERE id = ?")
        .bind(format_time(&Utc::now()))
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    let next = match backend.dialect() {
        Dialect::Guestpass => Some(next_token(vault, &user.id).await?),
        Dialect::BetterAuth => None,
    };
    let req = UpgradeRequest {
        email: pending.email.clone(),
        password: password.expose_secret().to_owned(),
        name: pending.name.clone(),
        next_token_hash: next.as_ref().map(crate::token::hash),
    };
    match backend.upgrade(token, &req).await {
        Ok(remote) => {
            // A token the server sent wins (it chose, or it is Better Auth's);
            // otherwise the one we named.
            let new_token = remote.token.or(next).unwrap_or(held);
            adopt(store, vault, backend, user, &new_token, &remote.user, id).await?;
            Ok(Delivery::Token(new_token))
        }
        // The guest's token is alive but the user is upgraded (a server that does
        // not rotate tokens; or one we signed in again below, then crashed): adopt
        // it if the account is this upgrade's.
        Err(BackendError::Refused(e)) if e.code == ErrorCode::UserNotAnonymous => {
            match backend.get_session(token).await? {
                Some(remote) if remote_matches(&remote, &pending.email) => {
                    adopt(store, vault, backend, user, token, &remote, id).await?;
                    Ok(Delivery::Token(held))
                }
                _ => {
                    refuse(store, id, &e).await?;
                    erase_pending(vault, &user.id).await?;
                    Ok(Delivery::Refused(e))
                }
            }
        }
        Err(BackendError::Refused(e)) => {
            refuse(store, id, &e).await?;
            erase_pending(vault, &user.id).await?;
            Ok(Delivery::Refused(e))
        }
        // The guest's token is dead: its session ended, or this very upgrade
        // landed and its answer was lost (the upgrade replaced that token, and the
        // pending one did not open it: `adopt_pending_token` ran first). The queued
        // password tells the two apart.
        Err(BackendError::Unauthorized) if backend.dialect() == Dialect::Guestpass => {
            match sign_in_again(backend, user, &pending.email, &password).await? {
                Some(found) => {
                    let new_token = found.token.ok_or_else(|| {
                        BackendError::Protocol("sign-in answer without a token".into())
                    })?;
                    adopt(store, vault, backend, user, &new_token, &found.user, id).await?;
                    Ok(Delivery::Token(new_token))
                }
                None => {
                    forget_remote(store, vault, &user.id).await?;
                    Err(BackendError::Unauthorized.into())
                }
            }
        }
        Err(BackendError::Unauthorized) => {
            forget_remote(store, vault, &user.id).await?;
            Err(BackendError::Unauthorized.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `sign-in/email` with the queued credentials: the account if it is this guest
/// upgraded (same id), `None` if the credentials open nothing of ours.
async fn sign_in_again(
    backend: &Backend,
    user: &User,
    email: &str,
    password: &SecretString,
) -> Result<Option<Remote>, SyncError> {
    match backend.sign_in_email(email, password, None).await {
        Ok(found) if !found.user.is_anonymous && found.user.id == user.id => Ok(Some(found)),
        Ok(_) => Ok(None),
        Err(BackendError::Refused(_)) | Err(BackendError::Unauthorized) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A delivered email upgrade: the working token into the keyring first, then the
/// user row, then the pending slots go.
async fn adopt(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user: &User,
    token: &SecretString,
    remote: &RemoteUser,
    outbox_id: i64,
) -> Result<()> {
    vault.set(&user.id, Slot::Remote, token).await?;
    apply_upgrade(
        store,
        vault,
        backend,
        &user.id,
        remote,
        Some(outbox_id),
        "email",
    )
    .await?;
    erase_pending(vault, &user.id).await
}

fn remote_matches(remote: &RemoteUser, email: &str) -> bool {
    !remote.is_anonymous
        && remote
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
}

/// The social upgrade's request, with a next token of the device's own: `Ok(Ok)`
/// once the new token is in the keyring and the local user upgraded in place.
/// Runs under the engine's pass lock, so no pass sees the pending token mid-flight.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn link_social(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user_id: &str,
    held: &SecretString,
    provider: &str,
    id_token: &SecretString,
    nonce: &str,
) -> Result<std::result::Result<RemoteUser, BackendError>> {
    let next = next_token(vault, user_id).await?;
    let hash = crate::token::hash(&next);
    match backend
        .upgrade_social(held, provider, id_token, nonce, Some(&hash))
        .await
    {
        Ok(remote) => {
            let token = remote.token.unwrap_or(next);
            vault.set(user_id, Slot::Remote, &token).await?;
            apply_upgrade(
                store,
                vault,
                backend,
                user_id,
                &remote.user,
                None,
                &format!("social:{provider}"),
            )
            .await?;
            vault.delete(user_id, Slot::PendingToken).await?;
            Ok(Ok(remote.user))
        }
        // The answer may be lost with the upgrade done: the next pass tries the token.
        Err(e @ (BackendError::Unreachable(_) | BackendError::Protocol(_))) => Ok(Err(e)),
        // Refused before anything changed: the token was never installed.
        Err(e) => {
            vault.delete(user_id, Slot::PendingToken).await?;
            Ok(Err(e))
        }
    }
}

/// The in-place upgrade of the local user row: same id, every record untouched.
/// `kind` goes to the audit detail: `email`, or `social:<provider>`.
pub(crate) async fn apply_upgrade(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user_id: &str,
    remote: &RemoteUser,
    outbox_id: Option<i64>,
    kind: &str,
) -> Result<()> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    sqlx::query("UPDATE users SET is_anonymous = 0, email = ?, name = COALESCE(?, name), email_verified = ?, updated_at = ? WHERE id = ?")
        .bind(&remote.email)
        .bind(&remote.name)
        .bind(remote.email_verified)
        .bind(format_time(&now))
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db(store))?;
    if let Some(id) = outbox_id {
        sqlx::query("DELETE FROM outbox WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db(store))?;
    }
    sqlx::query("UPDATE remote_account SET remote_user_id = ?, synced_at = ? WHERE user_id = ?")
        .bind(&remote.id)
        .bind(format_time(&now))
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db(store))?;
    audit::record(
        &mut tx,
        AuditEventKind::UserUpdated,
        user_id,
        user_id,
        now,
        json!({ "upgrade": kind, "backend": backend.base_url() }),
    )
    .await
    .map_err(db(store))?;
    tx.commit().await.map_err(db(store))?;
    // The server revoked the guest's recovery phrase with the upgrade (an account
    // recovers by email): a phrase kept here would only mislead.
    if let Err(e) = vault.delete(user_id, Slot::RecoveryPhrase).await {
        tracing::warn!("the upgraded guest's recovery phrase stayed in the keyring: {e}");
    }
    Ok(())
}

async fn refuse(store: &Store, id: i64, reason: &ApiError) -> Result<()> {
    sqlx::query("UPDATE outbox SET state = 'refused', last_error = ?, updated_at = ? WHERE id = ?")
        .bind(serde_json::to_string(reason).unwrap_or_default())
        .bind(format_time(&Utc::now()))
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    Ok(())
}

pub(crate) async fn pending_upgrade(
    store: &Store,
    user_id: &str,
) -> Result<Option<(i64, PendingUpgrade)>> {
    let row = sqlx::query(
        "SELECT id, payload, state, last_error FROM outbox WHERE user_id = ? AND kind = 'upgrade'",
    )
    .bind(user_id)
    .fetch_optional(store.pool())
    .await
    .map_err(db(store))?;
    let Some(row) = row else { return Ok(None) };
    let id: i64 = row.try_get("id").map_err(db(store))?;
    let payload: String = row.try_get("payload").map_err(db(store))?;
    let state: String = row.try_get("state").map_err(db(store))?;
    let last_error: Option<String> = row.try_get("last_error").map_err(db(store))?;
    let p: serde_json::Value =
        serde_json::from_str(&payload).map_err(|e| Error::Database(e.to_string()))?;
    let refused = (state == "refused")
        .then(|| last_error.and_then(|s| serde_json::from_str(&s).ok()))
        .flatten();
    Ok(Some((
        id,
        PendingUpgrade {
            email: p["email"].as_str().unwrap_or_default().to_owned(),
            name: p["name"].as_str().map(str::to_owned),
            refused,
        },
    )))
}

/// Queues an upgrade: the password into the keyring first, then the outbox row (which
/// replaces any earlier one). Only the row makes it real.
pub(crate) async fn enqueue_upgrade(
    store: &Store,
    vault: &Vault,
    user_id: &str,
    email: &str,
    password: &SecretString,
    name: Option<&str>,
) -> Result<()> {
    // The password goes in first so a queued row never lacks it. If the row then cannot
    // be written (disk full, read-only), the keyring goes back to what it held, so no
    // password is left behind without its row and an earlier queued one keeps its own.
    let before = vault.get(user_id, Slot::PendingPassword).await?;
    vault.set(user_id, Slot::PendingPassword, password).await?;
    let now = format_time(&Utc::now());
    let queued = sqlx::query(
        "INSERT INTO outbox (user_id, kind, payload, state, attempts, created_at, updated_at) VALUES (?, 'upgrade', ?, 'pending', 0, ?, ?)
         ON CONFLICT(user_id, kind) DO UPDATE SET payload = excluded.payload, state = 'pending', attempts = 0,
           last_error = NULL, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(json!({ "email": email, "name": name }).to_string())
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await;
    if let Err(e) = queued {
        let restored = match &before {
            Some(earlier) => vault.set(user_id, Slot::PendingPassword, earlier).await,
            None => vault.delete(user_id, Slot::PendingPassword).await,
        };
        if let Err(k) = restored {
            tracing::warn!("could not take back the password of an unqueued upgrade: {k}");
        }
        return Err(store.err(e));
    }
    Ok(())
}

/// Erases the queued password unless a pending upgrade still needs it. Must not run
/// concurrently with [`enqueue_upgrade`] (the engine's pass lock serialises them).
/// A guest's pending token without its row is left to [`adopt_pending_token`],
/// which first finds out whether it opens an upgraded account.
pub(crate) async fn erase_stray_password(
    store: &Store,
    vault: &Vault,
    user_id: &str,
) -> Result<()> {
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE user_id = ? AND kind = 'upgrade' AND state = 'pending'",
    )
    .bind(user_id)
    .fetch_optional(store.pool())
    .await
    .map_err(db(store))?;
    if pending.is_none() {
        vault.delete(user_id, Slot::PendingPassword).await?;
    }
    // Upgraded here already (killed between the row and the erasure): the token
    // that works is the session token, the pending one is left over.
    if !crate::sync::is_anonymous(store, user_id).await? {
        vault.delete(user_id, Slot::PendingToken).await?;
    }
    Ok(())
}

/// Drops a queued or refused upgrade and erases its password. (Its pending token
/// stays for [`adopt_pending_token`]: an attempt may have landed.)
pub(crate) async fn dismiss_upgrade(store: &Store, vault: &Vault, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM outbox WHERE user_id = ? AND kind = 'upgrade'")
        .bind(user_id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    vault.delete(user_id, Slot::PendingPassword).await
}
