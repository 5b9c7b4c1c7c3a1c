//! Session tokens: 256 random bits, shown to nobody but the keyring. SQLite keeps only
//! their SHA-256, compared in constant time.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(hex::encode(bytes))
}

/// The secret a device registers its guest with (see `sync::ensure_registered`):
/// 256 random bits, URL-safe base64 like the server's tokens. Only the keyring
/// and the server's sign-in request ever see it.
pub fn new_device_key() -> SecretString {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A session token for the backend made on the device (the next token of an
/// upgrade, `upgrade.rs`): shaped like the server's own, 256 random bits in URL-safe
/// base64 (43 characters). Only the keyring and the answer's owner ever see it; the
/// server gets its SHA-256.
pub fn new_remote_token() -> SecretString {
    new_device_key()
}

pub fn hash(token: &SecretString) -> String {
    hex::encode(Sha256::digest(token.expose_secret().as_bytes()))
}

/// Constant-time check of a token against a stored hash.
pub fn matches(token: &SecretString, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    hash(token).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_matches() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 64);
        assert!(matches(&a, &hash(&a)));
        assert!(!matches(&a, &hash(&b)));
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }
}
