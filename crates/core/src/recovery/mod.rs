//! Guest recovery on the device (issue 16; DESIGN.md §2a): a guest's recovery
//! phrase, shown on request and kept in the keyring only, and restoring a guest
//! from it on a fresh install, after a wiped keyring, or from the sign-in form.
//!
//! Showing a phrase the first time makes one and has the server accept its key
//! before it is kept or shown: a phrase the server does not know is never
//! shown. Restoring is a sign-in (`accounts/`): the same question about the
//! current guest's notes, then the restored guest is the device's user and its
//! records come down with the next pass. An upgrade revokes the phrase.

mod phrase;

use guestpass_proto::{ApiError, ErrorCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

pub use phrase::{Phrase, PhraseError, WORDS};

use crate::accounts::SignInOutcome;
use crate::backend::{Backend, BackendError, Dialect};
use crate::error::{Error, Result};
use crate::vault::{Slot, Vault};
use crate::Guestpass;

/// A phrase as the UI shows it: the words, numbered by the UI, and a QR code.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPhraseView {
    pub words: Vec<String>,
    /// An SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for RecoveryPhraseView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhraseView(<redacted>)")
    }
}

impl From<&Phrase> for RecoveryPhraseView {
    fn from(p: &Phrase) -> Self {
        Self {
            words: p.words(),
            qr_svg: p.qr_svg(),
        }
    }
}

/// What a restored guest's device keeps once the person's answer lets it in:
/// its own device key (the server now has its digest) and the phrase.
pub(crate) struct Restored {
    device_key: SecretString,
    phrase: SecretString,
}

impl Restored {
    pub(crate) async fn save(&self, vault: &Vault, user_id: &str) -> Result<()> {
        vault
            .set(user_id, Slot::DeviceKey, &self.device_key)
            .await?;
        vault.set(user_id, Slot::RecoveryPhrase, &self.phrase).await
    }
}

fn api(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Api(ApiError::new(code, message))
}

fn server_error(e: BackendError, doing: &str) -> Error {
    match e {
        BackendError::Refused(e) if e.code == ErrorCode::InvalidRecoveryPhrase => api(
            ErrorCode::InvalidRecoveryPhrase,
            "No guest has this phrase. Check each word; a guest that became an account, was merged into one, or was deleted has no phrase any more.",
        ),
        BackendError::Refused(e) => Error::Api(e),
        BackendError::RateLimited { retry_after } => api(
            ErrorCode::RateLimited,
            format!(
                "Too many tries. Try again in {} seconds.",
                retry_after.map_or(60, |d| d.as_secs().max(1))
            ),
        ),
        BackendError::Unreachable(_) => api(
            ErrorCode::BackendUnreachable,
            format!("{doing} needs the server, which does not answer. Check your connection and try again."),
        ),
        BackendError::Unauthorized => api(
            ErrorCode::Unauthorized,
            "The server no longer knows this device's session. Wait for the next sync and try again.",
        ),
        BackendError::Protocol(why) => api(
            ErrorCode::BackendError,
            format!("The server gave an unexpected answer ({why}). Try again later."),
        ),
    }
}

impl Guestpass {
    fn backend_for_recovery(&self) -> Result<Backend> {
        match &self.sync.backend {
            Some(b) if b.dialect() == Dialect::Guestpass => Ok(b.clone()),
            Some(_) => Err(api(
                ErrorCode::NotFound,
                "This server (Better Auth) keeps no recovery phrases. Your guest stays on this device; create an account to keep it safe.",
            )),
            None => Err(api(
                ErrorCode::BackendUnreachable,
                "A recovery phrase is kept with a server, and none is set. Choose one in Settings.",
            )),
        }
    }

    /// The current guest's recovery phrase: the one this device keeps, or a new
    /// one (made with the server, which must answer).
    pub async fn recovery_phrase(&self) -> Result<RecoveryPhraseView> {
        let user_id = self.recovery_guest().await?;
        if let Some(kept) = self.vault.get(&user_id, Slot::RecoveryPhrase).await? {
            if let Ok(p) = Phrase::parse(kept.expose_secret()) {
                return Ok(RecoveryPhraseView::from(&p));
            }
        }
        self.make_phrase(&user_id).await
    }

    /// "Make a new phrase": the server takes the new key in place of the old one
    /// at once, so the old phrase stops working the moment this answers.
    pub async fn new_recovery_phrase(&self) -> Result<RecoveryPhraseView> {
        let user_id = self.recovery_guest().await?;
        self.make_phrase(&user_id).await
    }

    /// Restores the guest `typed` is the phrase of. Typing mistakes are named
    /// before any request ("Word 7 is not on the list…"). The answer is a
    /// sign-in's: signed in, or the bring / leave / cancel question when the
    /// current guest holds notes ([`Guestpass::complete_sign_in`]).
    pub async fn restore_guest(&self, typed: &str) -> Result<SignInOutcome> {
        let phrase = Phrase::parse(typed)
            .map_err(|e| api(ErrorCode::InvalidRecoveryPhrase, e.to_string()))?;
        let backend = self.backend_for_recovery()?;
        let device_key = crate::token::new_device_key();
        let remote = backend
            .sign_in_recovery(&phrase.sign_in_key(), &device_key)
            .await
            .map_err(|e| server_error(e, "Restoring a guest"))?;
        if !remote.user.is_anonymous {
            return Err(api(
                ErrorCode::BackendError,
                "The server answered with an account instead of a guest.",
            ));
        }
        let restored = Restored {
            device_key,
            phrase: SecretString::from(phrase.expose().to_owned()),
        };
        self.after_sign_in(backend, remote, None, "recovery", Some(restored))
            .await
    }

    /// The device's user, if it is a guest: accounts recover by email.
    async fn recovery_guest(&self) -> Result<String> {
        match self.current_device_user().await? {
            Some(u) if u.is_anonymous => Ok(u.id),
            Some(_) => Err(api(
                ErrorCode::UserNotAnonymous,
                "Accounts recover by email (Forgot password?); a recovery phrase is for guests.",
            )),
            None => Err(ErrorCode::NoSession.into()),
        }
    }

    async fn make_phrase(&self, user_id: &str) -> Result<RecoveryPhraseView> {
        let backend = self.backend_for_recovery()?;
        let mut token = self.vault.get(user_id, Slot::Remote).await?;
        if token.is_none() {
            // Not registered yet (or the session was just lost): one pass first.
            self.sync_now().await;
            token = self.vault.get(user_id, Slot::Remote).await?;
        }
        let token = token.ok_or_else(|| {
            api(
                ErrorCode::BackendUnreachable,
                "Your recovery phrase is kept with the server, which this device has not reached yet. Connect and try again.",
            )
        })?;
        let phrase = Phrase::generate();
        backend
            .set_recovery_key(&token, &phrase.sign_in_key())
            .await
            .map_err(|e| server_error(e, "Making a recovery phrase"))?;
        // Kept only once the server holds its key. If this write fails the server
        // has a key nobody holds; the next "show" makes another one.
        self.vault
            .set(
                user_id,
                Slot::RecoveryPhrase,
                &SecretString::from(phrase.expose().to_owned()),
            )
            .await?;
        tracing::info!("a recovery phrase was made for this guest");
        Ok(RecoveryPhraseView::from(&phrase))
    }
}

/// After the guest registered on a server that does not know its phrase yet
/// (a new server in Settings), its key is sent there too. Best effort: until it
/// is, only that server's restore fails, and "Make a new phrase" fixes it.
pub(crate) async fn resend_key(
    vault: &Vault,
    backend: &Backend,
    user_id: &str,
    token: &SecretString,
) {
    if backend.dialect() != Dialect::Guestpass {
        return;
    }
    let Ok(Some(kept)) = vault.get(user_id, Slot::RecoveryPhrase).await else {
        return;
    };
    let Ok(phrase) = Phrase::parse(kept.expose_secret()) else {
        return;
    };
    if let Err(e) = backend.set_recovery_key(token, &phrase.sign_in_key()).await {
        tracing::info!("the recovery phrase's key did not reach the server yet: {e}");
    }
}
