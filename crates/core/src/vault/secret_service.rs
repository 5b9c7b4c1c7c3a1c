//! Linux: the Secret Service over one kept D-Bus connection. The keyring crate opens a
//! new connection, each with its own Diffie-Hellman session, for every call (two for a
//! write): that was most of a guest's creation time (`benches/device.rs`). Items carry
//! the keyring crate's attributes, so either can read what the other wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dbus_secret_service::{EncryptionType, Error, Item, SecretService};

/// The keyring crate's default target: its items live in the default collection.
const TARGET: &str = "default";

#[derive(Clone, Default)]
pub(super) struct Conn(Arc<Mutex<Option<SecretService>>>);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretServiceConnection")
    }
}

fn search<'a>(service: &'a str, user: &'a str) -> HashMap<&'a str, &'a str> {
    HashMap::from([("service", service), ("username", user), ("target", TARGET)])
}

impl Conn {
    /// Runs `op` on the kept connection, connecting first if there is none. A D-Bus
    /// failure on a kept connection (the daemon restarted) gets one fresh connection
    /// and one more try; every operation here may safely run twice.
    fn with<T>(&self, op: impl Fn(&SecretService) -> Result<T, Error>) -> Result<T, Error> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ss) = kept.as_ref() {
            match op(ss) {
                Err(Error::Dbus(_)) => *kept = None,
                done => return done,
            }
        }
        let ss = SecretService::connect(EncryptionType::Dh)?;
        let done = op(&ss);
        *kept = Some(ss);
        done
    }

    /// Opens the connection ahead of the first secret, off the critical path.
    pub(super) fn warm(&self) -> Result<(), Error> {
        self.with(|_| Ok(()))
    }

    pub(super) fn get(&self, service: &str, user: &str) -> Result<Option<Vec<u8>>, Error> {
        self.with(|ss| match unlocked(ss, service, user)?.as_slice() {
            [] => Ok(None),
            [one] => one.get_secret().map(Some),
            _ => Err(Error::Path(format!(
                "more than one keyring entry for {user} in {service}"
            ))),
        })
    }

    pub(super) fn set(&self, service: &str, user: &str, secret: &[u8]) -> Result<(), Error> {
        self.with(|ss| {
            let collection = ss.get_default_collection()?;
            collection.ensure_unlocked()?;
            let mut attributes = search(service, user);
            attributes.insert("application", "rust-keyring");
            // `replace`: one round trip updates the entry or creates it.
            collection.create_item(
                &format!("{user}@{service}:{TARGET} (guestpass)"),
                attributes,
                secret,
                true,
                "text/plain",
            )?;
            Ok(())
        })
    }

    pub(super) fn delete(&self, service: &str, user: &str) -> Result<(), Error> {
        self.with(|ss| {
            for item in unlocked(ss, service, user)? {
                item.delete()?;
            }
            Ok(())
        })
    }
}

/// The entries for `user`, unlocked (a locked one asks for its unlock, which fails
/// with `Prompt` where no one can answer).
fn unlocked<'a>(ss: &'a SecretService, service: &str, user: &str) -> Result<Vec<Item<'a>>, Error> {
    let found = ss.search_items(search(service, user))?;
    if !found.locked.is_empty() {
        ss.unlock_all(&found.locked.iter().collect::<Vec<_>>())?;
    }
    Ok(found.unlocked.into_iter().chain(found.locked).collect())
}
