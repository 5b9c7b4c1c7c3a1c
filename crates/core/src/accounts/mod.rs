//! Accounts on a device beyond the upgrade (DESIGN.md §2a): sign in (email or a
//! provider), the question a guest with data is asked, the merge that rolls forward
//! across a crash (`merge.rs`), sign out keeping or removing the account's data
//! (`sign_out.rs`), and signing in again after the server session expired.
//!
//! One account is active on a device at a time (`device_account`). Accounts that
//! signed out keep their rows here, hidden, for their next sign-in.

mod care;
mod local;
mod merge;
mod sign_out;

use chrono::Utc;
use guestpass_proto::{ApiError, ErrorCode, SessionResponse, User};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{Backend, BackendError, Remote, RemoteUser};
use crate::error::{Error, Result};
use crate::identity::{self, device_user, Reason};
use crate::vault::Slot;
use crate::Guestpass;

pub(crate) use merge::{roll_forward, FinishError};

pub(crate) use sign_out::revoke_pending;

/// What the current guest holds, for the merge question ("3 notes and 2 preferences").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestSummary {
    pub notes: u64,
    pub preferences: u64,
}

impl GuestSummary {
    pub fn is_empty(&self) -> bool {
        self.notes == 0 && self.preferences == 0
    }
}

/// The answer to a sign-in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum SignInOutcome {
    /// Signed in; nothing needed asking (no guest data, or the same account again).
    SignedIn(Box<SessionResponse>),
    /// The credentials were right and the guest holds data: ask, then call
    /// [`Guestpass::complete_sign_in`]. The account's token is held in memory only.
    #[serde(rename_all = "camelCase")]
    ChoiceNeeded {
        account: Box<User>,
        guest: GuestSummary,
    },
}

/// The person's answer to the merge question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInChoice {
    /// Bring the guest's notes and preferences into the account (the default).
    Merge,
    /// Delete the guest's data (the UI confirmed twice) and sign in.
    LeaveBehind,
    /// Stay a guest; the account's new session is revoked.
    Cancel,
}

/// A sign-in waiting for the person's answer. Secrets stay in memory (and `Debug`
/// prints none of them).
pub(crate) struct PendingSignIn {
    backend: Backend,
    guest_id: String,
    account_id: String,
    remote: RemoteUser,
    token: SecretString,
    /// Better Auth folds the guest when a sign-in carries its bearer, so the merge
    /// signs in once more; the password waits here for that, never on disk.
    password: Option<SecretString>,
    /// A guest restored by its recovery phrase: what the device keeps of it once
    /// the person's answer lets it in (`recovery/`).
    restored: Option<crate::recovery::Restored>,
}

fn api(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Api(ApiError::new(code, message))
}

/// A sign-in's failure in words.
fn sign_in_error(e: BackendError) -> Error {
    match e {
        BackendError::Refused(e) if e.code == ErrorCode::InvalidEmailOrPassword => api(
            ErrorCode::InvalidEmailOrPassword,
            "Wrong email or password. Check both and try again.",
        ),
        BackendError::Refused(e) => Error::Api(e),
        BackendError::Unreachable(_) => api(
            ErrorCode::BackendUnreachable,
            "Signing in needs the server, which does not answer. Check your connection and try again.",
        ),
        BackendError::RateLimited { retry_after } => api(
            ErrorCode::RateLimited,
            match retry_after {
                Some(d) => format!(
                    "Too many sign-in attempts. Try again in {} seconds.",
                    d.as_secs().max(1)
                ),
                None => "Too many sign-in attempts. Try again in a minute.".to_owned(),
            },
        ),
        BackendError::Unauthorized => api(
            ErrorCode::InvalidEmailOrPassword,
            "Wrong email or password. Check both and try again.",
        ),
        BackendError::Protocol(why) => api(
            ErrorCode::BackendError,
            format!("The server could not sign you in ({why}). Try again later."),
        ),
    }
}

/// The account as the UI shows it in the merge question.
fn account_view(account_id: &str, remote: &RemoteUser) -> User {
    let now = Utc::now();
    User {
        id: account_id.to_owned(),
        email: remote.email.clone(),
        name: remote.name.clone(),
        image: None,
        email_verified: remote.email_verified,
        is_anonymous: remote.is_anonymous,
        created_at: now,
        updated_at: now,
        metadata: json!({}),
    }
}

impl Guestpass {
    fn backend_for_sign_in(&self) -> Result<Backend> {
        self.sync.backend.clone().ok_or_else(|| {
            api(
                ErrorCode::BackendUnreachable,
                "No server is configured, so there is no account to sign in to. Your data stays on this device.",
            )
        })
    }

    /// What the current guest holds (zero for a full account or no account).
    pub async fn guest_summary(&self) -> Result<GuestSummary> {
        match self.current_device_user().await? {
            Some(u) if u.is_anonymous => {
                let mut conn = self
                    .store
                    .pool()
                    .acquire()
                    .await
                    .map_err(|e| self.store.err(e))?;
                local::summary(&mut conn, &u.id)
                    .await
                    .map_err(|e| self.store.err(e))
            }
            _ => Ok(GuestSummary::default()),
        }
    }

    /// Signs in to an existing account with email and password. The guest's data is
    /// never touched before the person answers (see [`SignInOutcome`]).
    pub async fn sign_in_email(&self, email: &str, password: &str) -> Result<SignInOutcome> {
        let email = email.trim();
        if email.is_empty() || password.is_empty() {
            return Err(api(
                ErrorCode::InvalidRequest,
                "Enter your email and password.",
            ));
        }
        let backend = self.backend_for_sign_in()?;
        let password = SecretString::from(password.to_owned());
        let remote = backend
            .sign_in_email(email, &password, None)
            .await
            .map_err(sign_in_error)?;
        self.after_sign_in(backend, remote, Some(password), "email", None)
            .await
    }

    /// Signs in with a provider through the system browser (DESIGN.md §5): the account
    /// linked to that identity, or a new full account made from it.
    pub async fn sign_in_social(
        &self,
        provider: &str,
        opener: &dyn crate::Opener,
    ) -> Result<SignInOutcome> {
        let config = self.social_config(provider)?;
        let label = crate::social::display_name(&config.name);
        let backend = self.backend_for_sign_in()?;
        let nonce = backend
            .social_nonce()
            .await
            .map_err(|e| crate::social::nonce_error(e, &label))?;
        let (id_token, nonce) = self.provider_flow(&config, &label, opener, nonce).await?;
        let remote = backend
            .sign_in_social(&config.name, &id_token, &nonce)
            .await
            .map_err(|e| match e {
                BackendError::Refused(e) if e.code == ErrorCode::InvalidIdToken => api(
                    ErrorCode::InvalidIdToken,
                    format!("The server could not verify your {label} sign-in. Please try again."),
                ),
                other => sign_in_error(other),
            })?;
        self.after_sign_in(
            backend,
            remote,
            None,
            &format!("social:{}", config.name),
            None,
        )
        .await
    }

    /// The credentials were good: the same account again resumes at once, another
    /// full account is signed out first (its data stays here, hidden), and a guest is
    /// asked what to do with its data — unless it has none.
    /// A guest restored by its phrase (`restored`) goes the same way: the same
    /// guest again resumes, and another guest with notes asks the question.
    pub(crate) async fn after_sign_in(
        &self,
        backend: Backend,
        remote: Remote,
        password: Option<SecretString>,
        method: &str,
        restored: Option<crate::recovery::Restored>,
    ) -> Result<SignInOutcome> {
        let token = remote.token.ok_or_else(|| {
            api(
                ErrorCode::BackendError,
                "The server signed in without a session.",
            )
        })?;
        if remote.user.is_anonymous && restored.is_none() {
            return Err(api(
                ErrorCode::BackendError,
                "The server answered with a guest.",
            ));
        }
        let account_id = local::account_id_for(&self.store, &backend, &remote.user.id).await?;
        // A new pending sign-in replaces an unanswered one (its session is dropped).
        if let Some(old) = self.pending_sign_in.lock().await.take() {
            let _ = old.backend.sign_out(&old.token).await;
        }
        let mut current = self.current_device_user().await?;
        if let Some(u) = &current {
            if u.id == account_id {
                if let Some(r) = &restored {
                    r.save(&self.vault, &account_id).await?;
                }
                return self
                    .resume_account(&backend, &account_id, &remote.user, &token)
                    .await;
            }
            if !u.is_anonymous {
                // Signing in as another account signs the first out, never merges two
                // accounts. Its rows stay here for its next sign-in.
                self.sign_out(false, true).await?;
                current = self.current_device_user().await?;
            }
        }
        let pending = PendingSignIn {
            backend,
            guest_id: current.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
            account_id: account_id.clone(),
            remote: remote.user.clone(),
            token,
            password,
            restored,
        };
        let summary = match &current {
            Some(_) => self.guest_summary().await?,
            None => GuestSummary::default(),
        };
        if current.is_none() || summary.is_empty() {
            // Nothing of the guest's to ask about.
            let s = self.leave_behind(pending, method).await?;
            return Ok(SignInOutcome::SignedIn(Box::new(s)));
        }
        *self.pending_sign_in.lock().await = Some(pending);
        Ok(SignInOutcome::ChoiceNeeded {
            account: Box::new(account_view(&account_id, &remote.user)),
            guest: summary,
        })
    }

    /// Finishes a sign-in that returned [`SignInOutcome::ChoiceNeeded`]. `Cancel`
    /// answers the guest's own session.
    pub async fn complete_sign_in(&self, choice: SignInChoice) -> Result<SessionResponse> {
        let pending = self.pending_sign_in.lock().await.take().ok_or_else(|| {
            api(
                ErrorCode::InvalidRequest,
                "No sign-in is waiting for an answer. Sign in again.",
            )
        })?;
        match choice {
            SignInChoice::Cancel => {
                // Best effort: the session we opened is not wanted.
                if let Err(e) = pending.backend.sign_out(&pending.token).await {
                    tracing::info!("the cancelled sign-in's session was not revoked: {e}");
                }
                self.get_session()
                    .await?
                    .ok_or_else(|| ErrorCode::NoSession.into())
            }
            SignInChoice::LeaveBehind => {
                let method = if pending.restored.is_some() {
                    "recovery"
                } else {
                    "email"
                };
                self.leave_behind(pending, method).await
            }
            SignInChoice::Merge => self.merge_guest(pending).await,
        }
    }

    /// The same account signs in again (its server session had expired or was
    /// revoked): the new token replaces the old, local data and queues untouched.
    async fn resume_account(
        &self,
        backend: &Backend,
        account_id: &str,
        remote: &RemoteUser,
        token: &SecretString,
    ) -> Result<SignInOutcome> {
        self.vault.set(account_id, Slot::Remote, token).await?;
        let mut tx = self.store.begin_write().await?;
        local::adopt(&mut tx, backend, account_id, remote, Utc::now())
            .await
            .map_err(|e| self.store.err(e))?;
        let session = identity::start_session(
            &self.store,
            &mut tx,
            &self.vault,
            account_id,
            Utc::now(),
            Reason::SignIn,
        )
        .await?;
        identity::commit_or_forget(&self.store, &self.vault, tx, account_id).await?;
        let _ = session;
        self.signed_in_now(account_id)
            .await
            .map(|s| SignInOutcome::SignedIn(Box::new(s)))
    }

    /// Makes `account_id` current in memory, wakes sync, and answers its session.
    async fn signed_in_now(&self, account_id: &str) -> Result<SessionResponse> {
        *self.current.write().await = Some(account_id.to_owned());
        self.wake_sync();
        self.get_session()
            .await?
            .ok_or_else(|| ErrorCode::NoSession.into())
    }

    pub(crate) async fn current_device_user(&self) -> Result<Option<User>> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(|e| self.store.err(e))?;
        device_user(&mut conn).await.map_err(|e| self.store.err(e))
    }
}
