//! Verification of OpenID Connect ID tokens for `sign-in/social` and
//! `upgrade-social`: the signature against the provider's published keys
//! (`oidc_keys.rs`: discovery document, whose `issuer` must be the configured one →
//! `jwks_uri`), the key's `use`/`alg` against the token's header, the issuer, the
//! audience (our client id; `azp` when there are several), the expiry (against the
//! server clock) and the nonce the caller expects. Whether the nonce is one the
//! server issued, and whether the token was seen before, is `social_sign_in.rs`.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::SocialProvider;
use crate::oidc_keys::KeyCache;

/// Clock skew tolerated on `exp`.
pub const LEEWAY_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid ID token: {0}")]
    Invalid(String),
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
}

/// The claims the sign-in uses.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    pub exp: i64,
    /// A string or an array (checked by `jsonwebtoken`; counted here for `azp`).
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
}

pub struct OidcVerifier {
    keys: KeyCache,
}

impl Default for OidcVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl OidcVerifier {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            keys: KeyCache::new(http),
        }
    }

    /// Checks `id_token` for `provider` at `now_ms` (server clock) and that its
    /// `nonce` claim is `nonce`.
    pub async fn verify(
        &self,
        provider: &SocialProvider,
        id_token: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<IdClaims, OidcError> {
        let invalid = |why: &str| OidcError::Invalid(why.to_string());
        let header = decode_header(id_token).map_err(|_| invalid("malformed"))?;
        // Only the asymmetric algorithms a provider signs with; never a shared secret.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(invalid("symmetric algorithm"));
        }
        let kid = header.kid.as_deref();
        let jwk = match self.keys.key_for(&provider.issuer, kid, now_ms).await? {
            Some(jwk) => jwk,
            None => return Err(invalid("unknown signing key")),
        };
        key_fits(&jwk, header.alg)?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| invalid("unusable signing key"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[
            provider.issuer.trim_end_matches('/'),
            provider.issuer.as_str(),
        ]);
        validation.set_audience(&[provider.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the server clock (injectable in tests).
        validation.validate_exp = false;
        let claims = decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .claims;
        if claims.exp + LEEWAY_SECS < now_ms.div_euclid(1000) {
            return Err(invalid("expired"));
        }
        // OpenID Connect Core §3.1.3.7: with several audiences the token must say it
        // was issued to us (`azp`); an `azp` present must be us in any case.
        let audiences = claims.aud.as_array().map_or(1, Vec::len);
        match claims.azp.as_deref() {
            Some(azp) if azp == provider.client_id => {}
            Some(_) => return Err(invalid("authorized party is another client")),
            None if audiences > 1 => return Err(invalid("several audiences and no azp")),
            None => {}
        }
        let nonce_ok = claims.nonce.as_deref().is_some_and(|got| {
            subtle::ConstantTimeEq::ct_eq(got.as_bytes(), nonce.as_bytes()).into()
        });
        if !nonce_ok {
            return Err(invalid("nonce mismatch"));
        }
        if claims.sub.is_empty() {
            return Err(invalid("empty subject"));
        }
        Ok(claims)
    }
}

/// The key must be meant for signatures and, when it names an algorithm, for the
/// one the token's header claims (RFC 7517 §4.2–4.4): otherwise an RSA key published
/// for RS256 would verify whatever RSA variant a forger picks.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> Result<(), OidcError> {
    let invalid = |why: &str| Err(OidcError::Invalid(why.to_string()));
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return invalid("key is not for signatures"),
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return invalid("key is not for verifying");
        }
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        // Both enums spell the JOSE names the same way (`RS256`, `ES256`, …).
        if format!("{key_alg:?}") != format!("{alg:?}") {
            return invalid("token algorithm differs from the key's");
        }
    }
    Ok(())
}
