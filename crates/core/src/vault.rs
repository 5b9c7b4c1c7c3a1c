//! The token vault: secrets live only in the OS keyring (Secret Service on Linux,
//! Keychain on macOS, Credential Manager on Windows), keyed by app id and user id.
//! There is deliberately no fallback store: without a keyring we refuse and say why.

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// What a keyring entry holds for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The local session token.
    Session,
    /// The backend's session token for this user.
    Remote,
    /// The password of a queued upgrade, erased once delivered or abandoned.
    PendingPassword,
}

impl Slot {
    fn suffix(self) -> &'static str {
        match self {
            Slot::Session => "session",
            Slot::Remote => "remote-session",
            Slot::PendingPassword => "pending-password",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vault {
    service: String,
}

impl Vault {
    /// `service` is the app id (e.g. `dev.guestpass.app`); tests use their own.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, user_id: &str, slot: Slot) -> Result<keyring::Entry> {
        keyring::Entry::new(&self.service, &format!("{user_id}:{}", slot.suffix())).map_err(map_err)
    }

    /// Fails with `KeyringUnavailable` when no keyring service answers.
    pub async fn probe(&self) -> Result<()> {
        let v = self.clone();
        blocking(
            move || match v.entry("probe", Slot::Session)?.get_password() {
                Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(map_err(e)),
            },
        )
        .await
    }

    pub async fn get(&self, user_id: &str, slot: Slot) -> Result<Option<SecretString>> {
        let (v, user) = (self.clone(), user_id.to_owned());
        blocking(move || match v.entry(&user, slot)?.get_password() {
            Ok(s) => Ok(Some(SecretString::from(s))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_err(e)),
        })
        .await
    }

    pub async fn set(&self, user_id: &str, slot: Slot, secret: &SecretString) -> Result<()> {
        let (v, user) = (self.clone(), user_id.to_owned());
        let secret = secret.clone();
        blocking(move || {
            v.entry(&user, slot)?
                .set_password(secret.expose_secret())
                .map_err(map_err)
        })
        .await
    }

    pub async fn delete(&self, user_id: &str, slot: Slot) -> Result<()> {
        let (v, user) = (self.clone(), user_id.to_owned());
        blocking(move || match v.entry(&user, slot)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_err(e)),
        })
        .await
    }
}

/// Keyring calls block on D-Bus; keep them off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::KeyringUnavailable(format!("keyring task failed: {e}")))?
}

fn map_err(e: keyring::Error) -> Error {
    // The keyring crate's messages describe the platform failure, never the secret.
    match e {
        // A locked collection whose unlock prompt could not be shown or was dismissed.
        keyring::Error::NoStorageAccess(why) => Error::KeyringLocked(why.to_string()),
        keyring::Error::PlatformFailure(why) if is_locked(why.as_ref()) => {
            Error::KeyringLocked(why.to_string())
        }
        other => Error::KeyringUnavailable(other.to_string()),
    }
}

/// Secret Service answers a write into a locked collection with its standard
/// `IsLocked` error, which the keyring crate passes on as a platform failure.
#[cfg(target_os = "linux")]
fn is_locked(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        e.downcast_ref::<dbus_secret_service::Error>(),
        Some(dbus_secret_service::Error::Dbus(d)) if d.name() == Some("org.freedesktop.Secret.Error.IsLocked")
    )
}

#[cfg(not(target_os = "linux"))]
fn is_locked(_: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    false
}
