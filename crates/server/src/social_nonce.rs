//! `POST /social/nonce`: the nonce a device puts in its next authorization request,
//! and the check that `sign-in/social` and `upgrade-social` make on the `nonce` claim.
//!
//! The nonce is stateless: `<expires ms>.<128 random bits>.<HMAC-SHA256>`, keyed with
//! the server secret (from config, or generated once and kept in the database, so
//! every instance on one database accepts every instance's nonces). Nothing is
//! written per request, so this unauthenticated route costs no storage under a
//! flood. A nonce may be presented more than once while it lives; what makes a
//! sign-in single-use is the ID token, which is remembered once accepted
//! (`store_id_tokens.rs`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::{TimeZone, Utc};
use guestpass_proto::SocialNonceResponse;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::{ApiResult, Failure};
use crate::state::{AppState, SharedState};

/// How long a nonce is accepted: the device's whole flow (the provider's page may
/// stay open 5 minutes, `SOCIAL_TIMEOUT`) plus the code exchange, with room.
pub const NONCE_TTL_MS: i64 = 10 * 60 * 1000;

/// Longest nonce looked at (ours are about 80 characters).
const NONCE_MAX: usize = 200;

/// Separates this use of the server secret from its others (address hashes).
const DOMAIN: &[u8] = b"guestpass social nonce v1\0";

fn mac(secret: &[u8], body: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(DOMAIN);
    mac.update(body.as_bytes());
    Some(mac)
}

/// A nonce valid until `now_ms + NONCE_TTL_MS`, and that expiry.
pub fn issue(secret: &[u8], now_ms: i64) -> Option<(String, i64)> {
    let expires = now_ms.saturating_add(NONCE_TTL_MS);
    let mut random = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = format!("{expires}.{}", b64.encode(random));
    let tag = mac(secret, &body)?.finalize().into_bytes();
    Some((format!("{body}.{}", b64.encode(tag)), expires))
}

/// Why a presented nonce is not one of ours (for the log, never for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    Missing,
    NotIssuedHere,
    Expired,
}

impl NonceRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "no nonce",
            Self::NotIssuedHere => "nonce not issued by this server",
            Self::Expired => "nonce expired",
        }
    }
}

/// Accepts a nonce this server (or one on the same secret) issued and that has not
/// expired at `now_ms`. The tag is compared in constant time (`verify_slice`).
pub fn check(secret: &[u8], nonce: Option<&str>, now_ms: i64) -> Result<(), NonceRefusal> {
    let nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or(NonceRefusal::Missing)?;
    if nonce.len() > NONCE_MAX {
        return Err(NonceRefusal::NotIssuedHere);
    }
    let (body, tag) = nonce.rsplit_once('.').ok_or(NonceRefusal::NotIssuedHere)?;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| NonceRefusal::NotIssuedHere)?;
    mac(secret, body)
        .ok_or(NonceRefusal::NotIssuedHere)?
        .verify_slice(&tag)
        .map_err(|_| NonceRefusal::NotIssuedHere)?;
    // Signed by us, so the expiry is ours too.
    let expires: i64 = body
        .split_once('.')
        .and_then(|(e, _)| e.parse().ok())
        .ok_or(NonceRefusal::NotIssuedHere)?;
    if expires <= now_ms {
        return Err(NonceRefusal::Expired);
    }
    Ok(())
}

pub async fn social_nonce(State(state): State<SharedState>) -> ApiResult<Response> {
    nonce_response(&state)
}

fn nonce_response(state: &AppState) -> ApiResult<Response> {
    let (nonce, expires) =
        issue(&state.secret, state.clock.now_ms()).ok_or_else(Failure::internal)?;
    let expires_at = Utc
        .timestamp_millis_opt(expires)
        .single()
        .ok_or_else(Failure::internal)?;
    Ok(Json(SocialNonceResponse { nonce, expires_at }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_ours_until_it_expires_and_nobody_elses() {
        let secret = b"a server secret of thirty-two bytes!";
        let (nonce, expires) = issue(secret, 1_000).unwrap_or_default();
        assert_eq!(expires, 1_000 + NONCE_TTL_MS);
        assert_eq!(check(secret, Some(&nonce), 1_000), Ok(()));
        assert_eq!(check(secret, Some(&nonce), expires - 1), Ok(()));
        assert_eq!(
            check(secret, Some(&nonce), expires),
            Err(NonceRefusal::Expired)
        );
        // Another server's secret, a moved expiry, a made-up nonce, none at all.
        assert_eq!(
            check(b"another secret", Some(&nonce), 1_000),
            Err(NonceRefusal::NotIssuedHere)
        );
        let (_, rest) = nonce.split_once('.').unwrap_or_default();
        let later = format!("{}.{rest}", expires + NONCE_TTL_MS);
        assert_eq!(
            check(secret, Some(&later), 1_000),
            Err(NonceRefusal::NotIssuedHere)
        );
        for made_up in ["n-1", "1.2.3", "", &"x".repeat(500)] {
            assert!(check(secret, Some(made_up), 1_000).is_err(), "{made_up}");
        }
        assert_eq!(check(secret, None, 1_000), Err(NonceRefusal::Missing));
    }
}
