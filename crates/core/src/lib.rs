//! Guestpass client library: everything the app does, without Tauri.
//!
//! [`Guestpass`] is the one entry point: it owns the local SQLite [`Store`] and the
//! keyring [`Vault`], and exposes the spec's client API (`get_session`,
//! `sign_in_anonymous`) plus the app's own data (notes, preferences).

mod accounts;
mod audit;
pub mod backend;
mod diagnostics;
mod engine;
mod error;
mod identity;
mod notes;
mod prefs;
mod records;
pub mod recovery;
mod register;
mod rows;
pub mod settings;
mod social;
pub mod store;
mod sync;
mod token;
mod upgrade;
pub mod vault;

use std::path::PathBuf;

use guestpass_proto::{ErrorCode, SessionResponse, User};
use tokio::sync::RwLock;

pub use accounts::{GuestSummary, SignInChoice, SignInOutcome};
pub use audit::LocalAuditEvent;
pub use backend::{Backend, Dialect};
pub use diagnostics::About;
pub use engine::UpgradeOutcome;
pub use error::{Error, Result};
pub use notes::{Note, NOTE_MAX_CHARS};
pub use recovery::{PhraseError, RecoveryPhraseView};
pub use social::{Opener, SocialProvider, SOCIAL_TIMEOUT, SOCIAL_TIMEOUT_ENV};
pub use store::Store;
pub use sync::{SyncState, SyncStatus};
pub use vault::Vault;

/// Where the device keeps its data and under which name its secrets sit in the keyring.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The keyring service name: the app id (`dev.guestpass.app`).
    pub keyring_service: String,
    /// The backend to sync with, if any: its origin URL and dialect.
    pub backend: Option<(String, Dialect)>,
    /// The social providers offered for the upgrade (public client ids only).
    pub social: Vec<SocialProvider>,
}

pub struct Guestpass {
    store: Store,
    vault: Vault,
    /// The signed-in user, once `get_session` or `sign_in_anonymous` succeeded.
    current: RwLock<Option<String>>,
    sync: engine::Engine,
    social: social::Social,
    /// A sign-in waiting for the person's answer to the merge question.
    pending_sign_in: tokio::sync::Mutex<Option<accounts::PendingSignIn>>,
}

impl Guestpass {
    /// Opens the local store. Touches neither the network nor any secret (it only
    /// connects to the keyring in the background).
    pub async fn open(config: Config) -> Result<Self> {
        let backend = match config.backend {
            Some((url, dialect)) => Some(Backend::new(&url, dialect).map_err(|e| {
                Error::Api(guestpass_proto::ApiError::new(
                    ErrorCode::BackendError,
                    e.to_string(),
                ))
            })?),
            None => None,
        };
        let vault = Vault::new(config.keyring_service);
        // The keyring connection (a D-Bus key exchange) is made while the store opens.
        vault.warm();
        Ok(Self {
            store: Store::open(&config.data_dir).await?,
            vault,
            current: RwLock::new(None),
            sync: engine::Engine::new(backend),
            social: social::Social::new(config.social),
            pending_sign_in: tokio::sync::Mutex::new(None),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The spec's `getSession()`: the device's user and session, resumed (renewed for
    /// the same user if expired), or `None` when this device has no account yet.
    pub async fn get_session(&self) -> Result<Option<SessionResponse>> {
        let found = identity::resume(&self.store, &self.vault).await?;
        *self.current.write().await = found.as_ref().map(|s| s.user.id.clone());
        Ok(found)
    }

    /// The spec's `signIn.anonymous()`: a guest and its session, created offline.
    pub async fn sign_in_anonymous(&self) -> Result<SessionResponse> {
        let created = identity::create_guest(&self.store, &self.vault).await?;
        *self.current.write().await = Some(created.user.id.clone());
        // A new guest is the first thing worth syncing.
        self.wake_sync();
        Ok(created)
    }

    /// The AppShell flow in one call: resume, else create; if another instance created
    /// the guest meanwhile, resume that one.
    pub async fn ensure_session(&self) -> Result<SessionResponse> {
        if let Some(s) = self.get_session().await? {
            return Ok(s);
        }
        match self.sign_in_anonymous().await {
            Err(e) if e.code() == ErrorCode::AnonymousUsersCannotSignInAgainAnonymously => self
                .get_session()
                .await?
                .ok_or_else(|| ErrorCode::NoSession.into()),
            other => other,
        }
    }

    async fn user_id(&self) -> Result<String> {
        self.current
            .read()
            .await
            .clone()
            .ok_or_else(|| ErrorCode::NoSession.into())
    }

    pub async fn list_notes(&self) -> Result<Vec<Note>> {
        notes::list(&self.store, &self.user_id().await?).await
    }

    // Every local write wakes the sync loop: online the change is pushed now rather
    // than at the next minute's poll, and offline the pass that fails at once still
    // publishes the new "N changes waiting" count to the pill.
    pub async fn create_note(&self, body: &str) -> Result<Note> {
        let user = self.user_id().await?;
        let note = notes::create(&self.store, &user, body).await?;
        self.changed_locally(&user).await;
        Ok(note)
    }

    pub async fn update_note(&self, id: &str, body: &str) -> Result<Note> {
        let user = self.user_id().await?;
        let note = notes::update(&self.store, &user, id, body).await?;
        self.changed_locally(&user).await;
        Ok(note)
    }

    pub async fn delete_note(&self, id: &str) -> Result<()> {
        let user = self.user_id().await?;
        notes::delete(&self.store, &user, id).await?;
        self.changed_locally(&user).await;
        Ok(())
    }

    /// Sets `metadata.preferences[key]` on the signed-in user.
    pub async fn set_preference(&self, key: &str, value: serde_json::Value) -> Result<User> {
        let user = self.user_id().await?;
        let updated = prefs::set(&self.store, key, value).await?;
        self.changed_locally(&user).await;
        Ok(updated)
    }

    /// The local audit trail, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<LocalAuditEvent>> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT event, user_id, actor, at FROM audit_log ORDER BY id")
                .fetch_all(self.store.pool())
                .await
                .map_err(|e| self.store.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(event, user_id, actor, at)| LocalAuditEvent {
                event,
                user_id,
                actor,
                at,
            })
            .collect())
    }
}
