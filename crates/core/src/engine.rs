//! Sync as the app sees it: the status it shows, the upgrade it asks for, and the
//! background loop that retries with backoff and jitter until the backend answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guestpass_proto::{
    normalize_email, normalize_name, validate_password, ApiError, ErrorCode, SessionResponse,
};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::{watch, Mutex, Notify};

use crate::backend::{Backend, BackendError, Dialect};
use crate::error::{Error, Result};
use crate::records;
use crate::sync::{self, Outcome, SyncError, SyncState, SyncStatus};
use crate::Guestpass;

pub(crate) struct Engine {
    pub(crate) backend: Option<Backend>,
    status: watch::Sender<SyncStatus>,
    /// One pass at a time: the loop and an upgrade never deliver the same work twice.
    /// Queuing an upgrade takes it too, so the first pass's clean-up cannot race it;
    /// so do a merge and a sign-out (accounts/).
    pub(crate) pass: Mutex<()>,
    /// Whether this process already erased a queued password left without its row.
    swept: AtomicBool,
    wake: Notify,
    /// The last few reasons sync stopped, for "Copy diagnostics".
    pub(crate) problems: crate::diagnostics::Problems,
}

impl Engine {
    pub(crate) fn new(backend: Option<Backend>) -> Self {
        let url = backend.as_ref().map(|b| b.base_url().to_owned());
        let state = if backend.is_some() {
            SyncState::Syncing
        } else {
            SyncState::LocalOnly
        };
        Self {
            backend,
            status: watch::channel(SyncStatus::new(state, url)).0,
            pass: Mutex::new(()),
            swept: AtomicBool::new(false),
            wake: Notify::new(),
            problems: crate::diagnostics::Problems::default(),
        }
    }
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum UpgradeOutcome {
    /// Done: the same user and session, now a full account.
    Upgraded(Box<SessionResponse>),
    /// The backend is unreachable; it will finish when it answers.
    #[serde(rename_all = "camelCase")]
    Queued { email: String },
}

/// Backoff between failed passes: 1 s doubling to 60 s, ±20 % jitter so a fleet of
/// devices coming back online does not knock in step.
fn backoff(failures: u32, hint: Option<Duration>) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
    let wait = hint.map_or(base, |h| h.max(base));
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    wait.mul_f64(jitter)
}

/// How often an idle, healthy device checks for profile changes.
const POLL: Duration = Duration::from_secs(60);

impl Guestpass {
    pub fn sync_status(&self) -> SyncStatus {
        self.sync.status.borrow().clone()
    }

    /// Status changes, for the UI bridge.
    pub fn subscribe_sync(&self) -> watch::Receiver<SyncStatus> {
        self.sync.status.subscribe()
    }

    /// Asks the background loop to run a pass now (e.g. after the network came back).
    pub fn wake_sync(&self) {
        self.sync.wake.notify_one();
    }

    /// One sync pass now; returns the status it ended in.
    pub async fn sync_now(&self) -> SyncStatus {
        self.pass().await.0
    }

    async fn pass(&self) -> (SyncStatus, Option<Duration>) {
        let Some(backend) = &self.sync.backend else {
            return (self.sync_status(), None);
        };
        let _one = self.sync.pass.lock().await;
        self.publish(|s| s.state = SyncState::Syncing);
        let mut notice = None;
        let result = match self.sweep_once().await {
            Ok(()) => self.account_work(backend).await,
            Err(e) => Err(SyncError::Local(e)),
        };
        let result = match result {
            Ok(()) => sync::sync_once(&self.store, &self.vault, backend, &mut notice).await,
            Err(e) => Err(e),
        };
        let mut hint = None;
        // A full account's session ended on the server: no pass can fix that, so say
        // "Sign in again" now rather than after the next pass finds the token gone.
        let account_lost = matches!(result, Err(SyncError::Backend(BackendError::Unauthorized)))
            && match sync::device_user_id(&self.store).await {
                Ok(Some(id)) => !sync::is_anonymous(&self.store, &id).await.unwrap_or(true),
                _ => false,
            };
        let (state, reason) = match result {
            Ok(Outcome::UpToDate) => (SyncState::UpToDate, None),
            Ok(Outcome::NeedsAttention(r)) => (SyncState::NeedsAttention, Some(r)),
            Err(SyncError::Backend(BackendError::RateLimited { retry_after })) => {
                hint = retry_after;
                (
                    SyncState::Offline,
                    Some(ApiError::new(
                        ErrorCode::RateLimited,
                        "The server is busy; retrying shortly.",
                    )),
                )
            }
            Err(SyncError::Backend(BackendError::Unauthorized)) if account_lost => (
                SyncState::NeedsAttention,
                Some(ApiError::new(
                    ErrorCode::Unauthorized,
                    "Your session on the server ended. Sign in again to sync; everything on this device is kept.",
                )),
            ),
            Err(SyncError::Backend(BackendError::Unauthorized)) => (
                SyncState::Offline,
                Some(ApiError::new(
                    ErrorCode::Unauthorized,
                    "The server session ended; reconnecting.",
                )),
            ),
            Err(SyncError::Backend(e)) => (
                SyncState::Offline,
                Some(ApiError::new(ErrorCode::BackendUnreachable, e.to_string())),
            ),
            Err(SyncError::Local(e)) => (SyncState::NeedsAttention, Some(e.to_api())),
        };
        let user = sync::device_user_id(&self.store).await.ok().flatten();
        let (pending, synced) = match &user {
            Some(id) => (
                sync::pending_upgrade(&self.store, id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(_, p)| p),
                sync::last_synced(&self.store, id).await.ok().flatten(),
            ),
            None => (None, None),
        };
        // A full account the server no longer knows: only signing in again helps.
        let sign_in_required = state == SyncState::NeedsAttention
            && reason
                .as_ref()
                .is_some_and(|r| r.code == ErrorCode::Unauthorized);
        let counts = match &user {
            Some(id) => records::status(&self.store, id).await.ok(),
            None => None,
        };
        let on_server = backend.dialect() == Dialect::Guestpass;
        self.publish(|s| {
            s.state = state;
            if notice.is_some() {
                s.notice = notice;
            }
            s.sign_in_required = sign_in_required;
            s.reason = reason;
            s.refused_upgrade = pending.as_ref().and_then(|p| p.refused.clone());
            s.pending_upgrade = pending.filter(|p| p.refused.is_none()).map(|p| p.email);
            s.last_synced_at = synced;
            s.records_on_server = on_server;
            if let Some(c) = counts {
                s.pending_changes = c.pending;
                s.refused_changes = c.refused;
                s.last_saved_at = c.last_saved_at;
            }
        });
        (self.sync_status(), hint)
    }

    /// Once per process, before its first pass: a crash can leave a queued password
    /// in the keyring without its outbox row (killed between the two writes of a
    /// queue, a delivery, a refusal or a dismissal); erase it. Called under the pass
    /// lock, which queuing also holds.
    async fn sweep_once(&self) -> Result<()> {
        if self.sync.swept.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(user_id) = sync::device_user_id(&self.store).await? {
            sync::erase_stray_password(&self.store, &self.vault, &user_id).await?;
        }
        self.sync.swept.store(true, Ordering::Release);
        Ok(())
    }

    /// A local change was committed: the pill counts it at once ("3 changes
    /// waiting"), and the background loop pushes it when the server answers.
    pub(crate) async fn changed_locally(&self, user_id: &str) {
        if let Ok(c) = records::status(&self.store, user_id).await {
            self.publish(|s| {
                s.pending_changes = c.pending;
                s.refused_changes = c.refused;
            });
        }
        self.wake_sync();
    }

    /// Account work that comes before any sync: finish an interrupted merge, send the
    /// revocations an offline sign-out queued.
    async fn account_work(&self, backend: &Backend) -> Result<(), SyncError> {
        match crate::accounts::roll_forward(self, backend).await {
            Ok(_) => {}
            Err(crate::accounts::FinishError::Local(e)) => return Err(SyncError::Local(e)),
            Err(crate::accounts::FinishError::Backend(e)) => return Err(SyncError::Backend(e)),
        }
        crate::accounts::revoke_pending(self, backend).await?;
        Ok(())
    }

    fn publish(&self, f: impl FnOnce(&mut SyncStatus)) {
        self.sync.status.send_modify(f);
        if let Some(reason) = self.sync.status.borrow().reason.clone() {
            self.sync.problems.note(reason);
        }
    }

    async fn current_user(&self) -> Option<String> {
        self.current.read().await.clone()
    }

    /// The spec's `anonymous.upgrade({email, password, name})`. Obvious mistakes are
    /// caught here before any request. Online, the backend's answer is the answer;
    /// offline, the upgrade is queued (password in the keyring only) and finishes when
    /// the backend is reachable.
    pub async fn upgrade(
        &self,
        email: &str,
        password: SecretString,
        name: Option<&str>,
    ) -> Result<UpgradeOutcome> {
        let user_id = self
            .current_user()
            .await
            .ok_or(Error::from(ErrorCode::NoSession))?;
        let session = self
            .get_session()
            .await?
            .ok_or(Error::from(ErrorCode::NoSession))?;
        if !session.user.is_anonymous {
            return Err(ErrorCode::UserNotAnonymous.into());
        }
        // The server's own normaliser: the same refusal offline, and the queued
        // row holds the spelling the server stores (the lost-answer adoption
        // compares it with the account's email).
        let email = normalize_email(email).map_err(Error::from)?;
        validate_password(password.expose_secret()).map_err(Error::from)?;
        let name = normalize_name(name).map_err(Error::from)?;
        if self.sync.backend.is_none() {
            return Err(Error::Api(ApiError::new(
                ErrorCode::BackendUnreachable,
                "No Guestpass server is configured, so an account cannot be created yet. Your guest data stays on this device.",
            )));
        }
        {
            let _one = self.sync.pass.lock().await;
            // The check above ran before this lock: a pass may have delivered an
            // earlier queued upgrade since. Queuing again would apply it twice.
            if !sync::is_anonymous(&self.store, &user_id).await? {
                return Err(ErrorCode::UserNotAnonymous.into());
            }
            sync::enqueue_upgrade(
                &self.store,
                &self.vault,
                &user_id,
                &email,
                &password,
                name.as_deref(),
            )
            .await?;
        }
        self.pass().await;
        match sync::pending_upgrade(&self.store, &user_id).await? {
            None => {
                let s = self
                    .get_session()
                    .await?
                    .ok_or(Error::from(ErrorCode::NoSession))?;
                Ok(UpgradeOutcome::Upgraded(Box::new(s)))
            }
            Some((_, p)) => match p.refused {
                // Shown in the form right away; nothing stays queued.
                Some(reason) => {
                    sync::dismiss_upgrade(&self.store, &self.vault, &user_id).await?;
                    self.publish(|s| {
                        s.state = SyncState::UpToDate;
                        s.reason = None;
                        s.pending_upgrade = None;
                        s.refused_upgrade = None;
                    });
                    Err(Error::Api(reason))
                }
                None => {
                    self.wake_sync();
                    Ok(UpgradeOutcome::Queued { email: p.email })
                }
            },
        }
    }

    /// Drops a queued or refused upgrade and erases its password ("Later").
    pub async fn dismiss_upgrade(&self) -> Result<SyncStatus> {
        let user_id = self
            .current_user()
            .await
            .ok_or(Error::from(ErrorCode::NoSession))?;
        sync::dismiss_upgrade(&self.store, &self.vault, &user_id).await?;
        Ok(self.sync_now().await)
    }

    /// The person read the notice ("OK").
    pub fn dismiss_notice(&self) -> SyncStatus {
        self.publish(|s| s.notice = None);
        self.sync_status()
    }

    /// Runs passes forever: right away, then every minute when healthy, with backoff
    /// and jitter after failures, and at once when woken.
    pub async fn run_sync(self: Arc<Self>) {
        let Some(backend) = self.sync.backend.clone() else {
            return;
        };
        // Live "pull now" from the server, with the polling loop below as the
        // fallback. Both run in this one future (not a spawned task), so whoever
        // aborts the sync task (the app, when the settings change the backend) stops
        // them both.
        let live = async {
            if backend.dialect() == Dialect::Guestpass {
                records::live::run(&self.store, &self.vault, &backend, &self.sync.wake, |f| {
                    backoff(f, None)
                })
                .await
            }
        };
        tokio::join!(live, self.poll_forever());
    }

    async fn poll_forever(&self) {
        let mut failures = 0u32;
        loop {
            let (status, hint) = self.pass().await;
            let wait = match status.state {
                SyncState::Offline => {
                    failures = failures.saturating_add(1);
                    backoff(failures, hint)
                }
                _ => {
                    failures = 0;
                    POLL
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.sync.wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert!(
            backoff(1, None) >= Duration::from_millis(1600)
                && backoff(1, None) <= Duration::from_millis(2400)
        );
        assert!(backoff(20, None) <= Duration::from_secs(72));
        assert!(backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(24));
    }
}
