//! Tokens and hashes (passwords: `hashing.rs`). Bearer tokens, verification tokens and
//! the admin key are only ever stored or compared as SHA-256 digests; client
//! addresses are stored as an HMAC keyed with the server secret so they cannot
//! be reversed by hashing the (small) address space without the key.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
