//! The sync engine (DESIGN.md §3). One pass, [`sync_once`], does all pending work in
//! order — register the guest, deliver a queued upgrade, pull profile changes — and is
//! safe to repeat: every step is idempotent in effect, so a crash or a lost answer at
//! any point only means the next pass finishes the job.

use chrono::Utc;
use guestpass_proto::{format_time, ApiError, ErrorCode, User};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, Dialect};
use crate::error::{Error, Result};
use crate::identity::device_user;
use crate::records;
use crate::register::{self, Registered};
use crate::store::Store;
use crate::upgrade::{self, Delivery};
use crate::vault::{Slot, Vault};

// The upgrade's delivery lives in `upgrade.rs`; these names are the engine's.
pub(crate) use crate::upgrade::{
    dismiss_upgrade, enqueue_upgrade, erase_stray_password, pending_upgrade,
};

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
    /// Something worth saying once, that needs nothing done (the server had
    /// forgotten this guest and got everything again). Kept until dismissed.
    pub notice: Option<String>,
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
            notice: None,
        }
    }
}

/// What a pass ended with, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    UpToDate,
    /// The backend refused something only the person can fix.
    NeedsAttention(ApiError),
}

pub(crate) fn db(store: &Store) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| store.err(e)
}

/// One sync pass. `Err(BackendError)` with a transient error means "try again later".
pub(crate) async fn sync_once(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    notice: &mut Option<String>,
) -> Result<Outcome, SyncError> {
    let Some(mut user) = device_user(&mut *store.pool().acquire().await.map_err(db(store))?)
        .await
        .map_err(db(store))?
    else {
        return Ok(Outcome::UpToDate);
    };
    // Before anything uses the guest's token: an upgrade that landed without its
    // answer replaced it; the token the device made for it is the one that works.
    if upgrade::adopt_pending_token(store, vault, backend, &user).await? {
        user = device_user(&mut *store.pool().acquire().await.map_err(db(store))?)
            .await
            .map_err(db(store))?
            .ok_or_else(|| Error::Database("the device's user vanished".into()))?;
    }
    let token = match register::ensure_registered(store, vault, backend, &user).await? {
        Registered::Token(t) => t,
        Registered::Revived(t) => {
            *notice = Some(register::REVIVED_NOTICE.to_owned());
            t
        }
        Registered::Lost(reason) => return Ok(Outcome::NeedsAttention(reason)),
    };
    let token = match upgrade::deliver_upgrade(store, vault, backend, &user, token).await? {
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

/// The remote session is gone: drop what we knew so the next pass starts over.
pub(crate) async fn forget_remote(store: &Store, vault: &Vault, user_id: &str) -> Result<()> {
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

/// Whether the user is still a guest (false if gone).
pub(crate) async fn is_anonymous(store: &Store, user_id: &str) -> Result<bool> {
    let anonymous: Option<bool> = sqlx::query_scalar("SELECT is_anonymous FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await
        .map_err(db(store))?;
    Ok(anonymous.unwrap_or(false))
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
