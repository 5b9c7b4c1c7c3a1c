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
    /// The secret the guest was registered with on the backend; it lets this
    /// device register the same id again when an answer was lost. Kept for the
    /// guest's lifetime.
    DeviceKey,
    /// A signed-out account's server token, kept only until the server has revoked
    /// it (the sign-out happened offline).
    PendingRevocation,
    /// The backend session token an upgrade in flight installs (the device made it
    /// and sent its hash), kept until the answer or the next pass proves it works
    /// (`upgrade.rs`).
    PendingToken,
    /// A guest's recovery phrase (issue 16), kept so it can be shown again; the
    /// server has only the SHA-256 of a key derived from it.
    RecoveryPhrase,
}

impl Slot {
    /// Every slot, for erasing all a user has.
    pub const ALL: [Slot; 7] = [
        Slot::Session,
        Slot::Remote,
        Slot::PendingPassword,
        Slot::DeviceKey,
        Slot::PendingRevocation,
        Slot::PendingToken,
        Slot::RecoveryPhrase,
    ];
}

impl Slot {
    fn suffix(self) -> &'static str {
        match self {
            Slot::Session => "session",
            Slot::Remote => "remote-session",
            Slot::PendingPassword => "pending-password",
            Slot::DeviceKey => "device-key",
            Slot::PendingRevocation => "pending-revocation",
            Slot::PendingToken => "pending-token",
            Slot::RecoveryPhrase => "recovery-phrase",
        }
    }
}

#[cfg(target_os = "linux")]
mod secret_service;

#[derive(Debug, Clone)]
pub struct Vault {
    service: String,
    #[cfg(target_os = "linux")]
    conn: secret_service::Conn,
}

impl Vault {
    /// `service` is the app id (e.g. `dev.guestpass.app`); tests use their own.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            #[cfg(target_os = "linux")]
            conn: secret_service::Conn::default(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Fails with `KeyringUnavailable` when no keyring service answers.
    pub async fn probe(&self) -> Result<()> {
        let v = self.clone();
        blocking(move || v.read("probe", Slot::Session).map(drop)).await
    }

    /// Connects to the keyring in the background so the first secret does not wait
    /// for it (the app opens its store meanwhile). Failures are left for that secret
    /// to report.
    pub fn warm(&self) {
        #[cfg(target_os = "linux")]
        {
            let conn = self.conn.clone();
            tokio::task::spawn_blocking(move || conn.warm());
        }
    }

    pub async fn get(&self, user_id: &str, slot: Slot) -> Result<Option<SecretString>> {
        let (v, user) = (self.clone(), user_id.to_owned());
        blocking(move || v.read(&user, slot)).await
    }

    pub async fn set(&self, user_id: &str, slot: Slot, secret: &SecretString) -> Result<()> {
        let (v, user) = (self.clone(), user_id.to_owned());
        let secret = secret.clone();
        blocking(move || v.write(&user, slot, &secret)).await
    }

    pub async fn delete(&self, user_id: &str, slot: Slot) -> Result<()> {
        let (v, user) = (self.clone(), user_id.to_owned());
        blocking(move || v.remove(&user, slot)).await
    }
}

fn account(user_id: &str, slot: Slot) -> String {
    format!("{user_id}:{}", slot.suffix())
}

#[cfg(target_os = "linux")]
impl Vault {
    fn read(&self, user_id: &str, slot: Slot) -> Result<Option<SecretString>> {
        let found = self
            .conn
            .get(&self.service, &account(user_id, slot))
            .map_err(map_ss_err)?;
        found
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map(SecretString::from)
                    .map_err(|_| Error::KeyringUnavailable("a keyring entry is not text".into()))
            })
            .transpose()
    }

    fn write(&self, user_id: &str, slot: Slot, secret: &SecretString) -> Result<()> {
        self.conn
            .set(
                &self.service,
                &account(user_id, slot),
                secret.expose_secret().as_bytes(),
            )
            .map_err(map_ss_err)
    }

    fn remove(&self, user_id: &str, slot: Slot) -> Result<()> {
        self.conn
            .delete(&self.service, &account(user_id, slot))
            .map_err(map_ss_err)
    }
}

/// Secret Service errors describe the platform failure, never the secret.
#[cfg(target_os = "linux")]
fn map_ss_err(e: dbus_secret_service::Error) -> Error {
    use dbus_secret_service::Error as Ss;
    match &e {
        // A locked item or collection whose unlock prompt could not be shown or was
        // dismissed, or a write refused with the standard `IsLocked` error.
        Ss::Locked | Ss::Prompt => Error::KeyringLocked(e.to_string()),
        Ss::Dbus(d) if d.name() == Some("org.freedesktop.Secret.Error.IsLocked") => {
            Error::KeyringLocked(e.to_string())
        }
        _ => Error::KeyringUnavailable(e.to_string()),
    }
}

#[cfg(not(target_os = "linux"))]
impl Vault {
    fn entry(&self, user_id: &str, slot: Slot) -> Result<keyring::Entry> {
        keyring::Entry::new(&self.service, &account(user_id, slot)).map_err(map_err)
    }

    fn read(&self, user_id: &str, slot: Slot) -> Result<Option<SecretString>> {
        match self.entry(user_id, slot)?.get_password() {
            Ok(s) => Ok(Some(SecretString::from(s))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    fn write(&self, user_id: &str, slot: Slot, secret: &SecretString) -> Result<()> {
        self.entry(user_id, slot)?
            .set_password(secret.expose_secret())
            .map_err(map_err)
    }

    fn remove(&self, user_id: &str, slot: Slot) -> Result<()> {
        match self.entry(user_id, slot)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}

/// Keyring calls block on D-Bus; keep them off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::KeyringUnavailable(format!("keyring task failed: {e}")))?
}

#[cfg(not(target_os = "linux"))]
fn map_err(e: keyring::Error) -> Error {
    // The keyring crate's messages describe the platform failure, never the secret.
    match e {
        // A locked collection whose unlock prompt could not be shown or was dismissed.
        keyring::Error::NoStorageAccess(why) => Error::KeyringLocked(why.to_string()),
        other => Error::KeyringUnavailable(other.to_string()),
    }
}
