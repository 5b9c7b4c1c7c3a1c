//! Tokens, hashes and password hashing. Bearer tokens, verification tokens and
//! the admin key are only ever stored or compared as SHA-256 digests; client
//! addresses are stored as an HMAC keyed with the server secret so they cannot
//! be reversed by hashing the (small) address space without the key.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// 256 random bits, URL-safe base64 without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Constant-time comparison of a presented key against a stored digest.
pub fn matches_digest(presented: &str, digest: &[u8; 32]) -> bool {
    let got = Sha256::digest(presented.as_bytes());
    got.as_slice().ct_eq(digest.as_slice()).into()
}

/// Constant-time comparison of two hex SHA-256 digests (a stored one against the
/// digest of a presented secret).
pub fn hex_digests_match(stored: &str, presented: &str) -> bool {
    stored.as_bytes().ct_eq(presented.as_bytes()).into()
}

pub fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// HMAC-SHA256 of `value` keyed with the server secret, hex, truncated to 128 bits.
pub fn keyed_hash(secret: &[u8], value: &str) -> String {
    // new_from_slice accepts keys of any length for HMAC; the fallback never runs.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return sha256_hex(value);
    };
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Password hashes running at once. Each holds 19 MiB and a core for tens of
/// milliseconds, so more than one per core only piles up memory: 20 concurrent
/// upgrades without this bound took the server to 2.9 GiB.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Runs a password hash or check on the blocking pool, at most one per core at a
/// time; `None` only if the task panicked.
pub async fn with_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _permit = HASHING.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// argon2id with the crate defaults (the OWASP recommended m=19 MiB, t=2, p=1).
/// CPU-heavy: call through [`with_hashing`].
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// False for a wrong password and for a malformed stored hash alike.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when the email is unknown
/// so that a sign-in takes as long for a missing account as for a wrong password.
pub fn decoy_hash() -> String {
    hash_password(&new_token()).unwrap_or_default()
}
