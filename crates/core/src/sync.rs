//! The sync engine (DESIGN.md §3). One pass, [`sync_once`], does all pending work in
//! order — register the guest, deliver a queued upgrade, pull profile changes — and is
//! safe to repeat: every step is idempotent in effect, so a crash or a lost answer at
//! any point only means the next pass finishes the job.

use chrono::Utc;
use guestpass_proto::{format_time, ApiError, AuditEventKind, ErrorCode, UpgradeRequest, User};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::audit;
use crate::backend::{Backend, BackendError, Dialect, Remote, RemoteUser};
use crate::error::{Error, Result};
use crate::identity::device_user;
use crate::records;
use crate::store::Store;
use crate::vault::{Slot, Vault};

/// What the UI shows about sync, always.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub state: SyncState,
    /// Why we are offline or need attention, in words a person understands.
    pub reason: Option<ApiError>,
    /// An upgrade waiting for the backend (its email; the password waits in the keyring).
    pub pending_upgrade: Option<String>,
    /// A queued upgrade the backend refused: the form opens again with this reason.
    pub refused_upgrade: Option<ApiError>,
    pub backend_url: Option<String>,
    pub last_synced_at: Option<String>,
    /// Record changes made here and not yet held by the server ("3 changes waiting").
    pub pending_changes: u64,
    /// Changes the server refused for good (too large, over quota), set aside.
    pub refused_changes: u64,
    /// When the server last held every change of this user.
    pub last_saved_at: Option<String>,
    /// Whether records sync at all: false without a backend and on a stock Better
    /// Auth backend (no records API), where notes are kept on this device only.
    pub records_on_server: bool,
    /// A full account whose server session expired or was revoked: "Sign in again".
    pub sign_in_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncState {
    /// No backend configured: everything stays on the device.
    LocalOnly,
    Offline,
    Syncing,
    UpToDate,
    NeedsAttention,
}

impl SyncStatus {
    pub fn new(state: SyncState, backend_url: Option<String>) -> Self {
        Self {
            state,
            reason: None,
            pending_upgrade: None,
            refused_upgrade: None,
            backend_url,
            last_synced_at: None,
            pending_changes: 0,
            refused_changes: 0,
            last_saved_at: None,
            records_on_server: false,
            sign_in_required: false,
        }
    }
}

/// A queued upgrade as stored in the outbox (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpgrade {
    pub email: String,
    pub name: Option<String>,
    pub refused: Option<ApiError>,
}

/// What a pass ended with, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    UpToDate,
    /// The backend refused something only the person can fix.
    NeedsAttention(ApiError),
}

fn db(store: &Store) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| store.err(e)
}

/// One sync pass. `Err(BackendError)` with a transient error means "try again later".
pub(crate) async fn sync_once(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
) -> Result<Outcome, SyncError> {
    let Some(user) = device_user(&mut *store.pool().acquire().await.map_err(db(store))?)
        .await
        .map_err(db(store))?
    else {
        return Ok(Outcome::UpToDate);
    };
    let token = match ensure_registered(store, vault, backend, &user).await? {
        Registered::Token(t) => t,
        Registered::Lost(reason) => return Ok(Outcome::NeedsAttention(reason)),
    };
    let token = match deliver_upgrade(store, vault, backend, &user, token).await? {
        Delivery::Refused(reason) => return Ok(Outcome::NeedsAttention(reason)),
        Delivery::Token(t) => t,
    };
    // Records: only the reference server has the API; on Better Auth they stay here.
    let records_here = backend.dialect() == Dialect::Guestpass;
    if !records_here || profile_due(store, &user).await? {
        pull(store, vault, backend, &user.id, &token).await?;
    }
    if records_here {
        match records::sync_records(store, backend, &user.id, &token).await {
            Ok(_) => mark_synced(store, &user.id).await?,
            Err(SyncError::Backend(BackendError::Refused(e)))
                if e.code == ErrorCode::ClientTooOld =>
            {
                return Ok(Outcome::NeedsAttention(e))
            }
            // The records pull stood in for get-session: a dead session is forgotten
            // the same way.
            Err(SyncError::Backend(BackendError::Unauthorized)) => {
                forget_remote(store, vault, &user.id).await?;
                return Err(BackendError::Unauthorized.into());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::UpToDate)
}

/// How long a pass trusts the profile it last read (get-session). Meanwhile the
/// records round trip alone proves the session, so an idle pass is one request.
const PROFILE_REFRESH: chrono::Duration = chrono::Duration::minutes(15);

/// Whether this pass reads the profile: always for an account waiting for its
/// address to be verified (the click happens elsewhere), else once per
/// [`PROFILE_REFRESH`].
async fn profile_due(store: &Store, user: &User) -> Result<bool> {
    if !user.is_anonymous && !user.email_verified {
        return Ok(true);
    }
    let at: Option<Option<String>> =
        sqlx::query_scalar("SELECT profile_checked_at FROM remote_account WHERE user_id = ?")
            .bind(&user.id)
            .fetch_optional(store.pool())
            .await
            .map_err(db(store))?;
    let recent = at
        .flatten()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .is_some_and(|t| Utc::now().signed_duration_since(t) < PROFILE_REFRESH);
    Ok(!recent)
}

/// A round trip with the server succeeded.
async fn mark_synced(store: &Store, user_id: &str) -> Result<()> {
    sqlx::query("UPDATE remote_account SET synced_at = ? WHERE user_id = ?")
        .bind(format_time(&Utc::now()))
        .bind(user_id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error(transparent)]
    Local(#[from] Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

enum Registered {
    Token(SecretString),
    Lost(ApiError),
}

/// Registers the device's guest with the id it minted offline, once.
async fn ensure_registered(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user: &User,
) -> Result<Registered, SyncError> {
    let known: Option<String> =
        sqlx::query_scalar("SELECT remote_user_id FROM remote_account WHERE user_id = ?")
            .bind(&user.id)
            .fetch_optional(store.pool())
            .await
            .map_err(db(store))?;
    let held = vault.get(&user.id, Slot::Remote).await?;
    if let (Some(_), Some(token)) = (&known, &held) {
        return Ok(Registered::Token(token.clone()));
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
        Ok(Remote { user: remote, token: Some(token) }) => {
            // Token first: if we die before the row, the branch above recovers it.
            vault.set(&user.id, Slot::Remote, &token).await?;
            save_remote(store, backend, &user.id, &remote.id).await?;
            Ok(Registered::Token(token))
        }
        Ok(Remote { token: None, .. }) => Err(BackendError::Protocol("sign-in answer without a token".into()).into()),
        // Final: the server refused this device's key too (or the guest was upgraded there).
        Err(BackendError::Refused(e)) if e.code == ErrorCode::UserIdTaken => Ok(Registered::Lost(ApiError::new(
            ErrorCode::UserIdTaken,
            "The server already has this guest but this device lost its session there. Your data on this device is safe.",
        ))),
        Err(e) => Err(e.into()),
    }
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

/// Records (or re-maps) who `user_id` is on `backend`.
pub(crate) async fn map_remote(
    conn: &mut sqlx::SqliteConnection,
    backend: &Backend,
    user_id: &str,
    remote_id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO remote_account (user_id, backend_url, dialect, remote_user_id, synced_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(user_id) DO UPDATE SET backend_url = excluded.backend_url, dialect = excluded.dialect,
           remote_user_id = excluded.remote_user_id, synced_at = excluded.synced_at",
    )
    .bind(user_id)
    .bind(backend.base_url())
    .bind(serde_json::to_value(backend.dialect()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
    .bind(remote_id)
    .bind(format_time(&now))
    .execute(conn)
    .await?;
    Ok(())
}

/// What delivering the outbox left us with.
enum Delivery {
    /// The token to go on with (a new one when the upgrade rotated it).
    Token(SecretString),
    /// The backend refused the upgrade; the person must act.
    Refused(ApiError),
}

/// Delivers a pending upgrade, if any.
async fn deliver_upgrade(
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
        return Ok(Delivery::Refused(reason));
    };
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, updated_at = ? WHERE id = ?")
        .bind(format_time(&Utc::now()))
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    let req = UpgradeRequest {
        email: pending.email.clone(),
        password: password.expose_secret().to_owned(),
        name: pending.name.clone(),
    };
    match backend.upgrade(token, &req).await {
        Ok(remote) => {
            if let Some(new_token) = &remote.token {
                vault.set(&user.id, Slot::Remote, new_token).await?;
            }
            apply_upgrade(store, backend, &user.id, &remote.user, Some(id), "email").await?;
            vault.delete(&user.id, Slot::PendingPassword).await?;
            // Better Auth's link rotates the session: go on with the new token.
            Ok(Delivery::Token(remote.token.unwrap_or(held)))
        }
        // Delivered before but the answer was lost (crash, timeout): the backend
        // already has the full account. Adopt it instead of failing.
        Err(BackendError::Refused(e)) if e.code == ErrorCode::UserNotAnonymous => {
            match backend.get_session(token).await? {
                Some(remote) if remote_matches(&remote, &pending.email) => {
                    apply_upgrade(store, backend, &user.id, &remote, Some(id), "email").await?;
                    vault.delete(&user.id, Slot::PendingPassword).await?;
                    Ok(Delivery::Token(held))
                }
                _ => {
                    refuse(store, id, &e).await?;
                    vault.delete(&user.id, Slot::PendingPassword).await?;
                    Ok(Delivery::Refused(e))
                }
            }
        }
        Err(BackendError::Refused(e)) => {
            refuse(store, id, &e).await?;
            vault.delete(&user.id, Slot::PendingPassword).await?;
            Ok(Delivery::Refused(e))
        }
        Err(BackendError::Unauthorized) => {
            forget_remote(store, vault, &user.id).await?;
            Err(BackendError::Unauthorized.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn remote_matches(remote: &RemoteUser, email: &str) -> bool {
    !remote.is_anonymous
        && remote
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
}

/// The in-place upgrade of the local user row: same id, every record untouched.
/// `kind` goes to the audit detail: `email`, or `social:<provider>`.
pub(crate) async fn apply_upgrade(
    store: &Store,
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

/// The remote session is gone: drop what we knew so the next pass starts over.
async fn forget_remote(store: &Store, vault: &Vault, user_id: &str) -> Result<()> {
    vault.delete(user_id, Slot::Remote).await?;
    sqlx::query("DELETE FROM remote_account WHERE user_id = ?")
        .bind(user_id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    Ok(())
}

/// Pulls profile changes made on the backend (e.g. `emailVerified` turning true).
async fn pull(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
) -> Result<(), SyncError> {
    match backend.get_session(token).await {
        Ok(Some(remote)) => {
            sqlx::query(
                "UPDATE users SET email_verified = ?, updated_at = ?
                 WHERE id = ? AND is_anonymous = 0 AND email_verified <> ?",
            )
            .bind(remote.email_verified)
            .bind(format_time(&Utc::now()))
            .bind(user_id)
            .bind(remote.email_verified)
            .execute(store.pool())
            .await
            .map_err(db(store))?;
            let now = format_time(&Utc::now());
            sqlx::query(
                "UPDATE remote_account SET synced_at = ?1, profile_checked_at = ?1 WHERE user_id = ?2",
            )
                .bind(now)
                .bind(user_id)
                .execute(store.pool())
                .await
                .map_err(db(store))?;
            Ok(())
        }
        Ok(None) | Err(BackendError::Unauthorized) => {
            forget_remote(store, vault, user_id).await?;
            Err(BackendError::Unauthorized.into())
        }
        Err(e) => Err(e.into()),
    }
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

/// Whether the user is still a guest (false if gone).
pub(crate) async fn is_anonymous(store: &Store, user_id: &str) -> Result<bool> {
    let anonymous: Option<bool> = sqlx::query_scalar("SELECT is_anonymous FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await
        .map_err(db(store))?;
    Ok(anonymous.unwrap_or(false))
}

/// Erases the queued password unless a pending upgrade still needs it. Must not run
/// concurrently with [`enqueue_upgrade`] (the engine's pass lock serialises them).
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
    Ok(())
}

/// Drops a queued or refused upgrade and erases its password.
pub(crate) async fn dismiss_upgrade(store: &Store, vault: &Vault, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM outbox WHERE user_id = ? AND kind = 'upgrade'")
        .bind(user_id)
        .execute(store.pool())
        .await
        .map_err(db(store))?;
    vault.delete(user_id, Slot::PendingPassword).await
}

pub(crate) async fn last_synced(store: &Store, user_id: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT synced_at FROM remote_account WHERE user_id = ?")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await
        .map_err(db(store))
}

pub(crate) async fn device_user_id(store: &Store) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT user_id FROM device_account WHERE slot = 1")
        .fetch_optional(store.pool())
        .await
        .map_err(db(store))
}
