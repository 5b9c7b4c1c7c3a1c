//! Verification of OpenID Connect ID tokens for `POST /anonymous/upgrade-social`:
//! the signature against the provider's published keys (discovery document →
//! `jwks_uri`), the issuer, the audience (our client id), the expiry (against the
//! server clock) and the nonce. Keys are cached per issuer and refetched when a
//! token names a key id not seen yet (providers rotate keys).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::SocialProvider;

/// Keys are refetched at most this often on an unknown `kid`, and always after
/// [`KEYS_MAX_AGE`].
const REFETCH_AFTER: Duration = Duration::from_secs(60);
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid ID token: {0}")]
    Invalid(String),
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
}

/// The claims the upgrade uses.
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
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

pub struct OidcVerifier {
    http: reqwest::Client,
    cache: RwLock<HashMap<String, CachedKeys>>,
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
            http,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub async fn verify(
        &self,
        provider: &SocialProvider,
        id_token: &str,
        nonce: Option<&str>,
        now_secs: i64,
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
        let jwk = match self.key_for(provider, header.kid.as_deref(), false).await? {
            Some(jwk) => jwk,
            None => self
                .key_for(provider, header.kid.as_deref(), true)
                .await?
                .ok_or_else(|| invalid("unknown signing key"))?,
        };
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
        if claims.exp + LEEWAY_SECS < now_secs {
            return Err(invalid("expired"));
        }
        if claims.nonce.as_deref() != nonce {
            return Err(invalid("nonce mismatch"));
        }
        if claims.sub.is_empty() {
            return Err(invalid("empty subject"));
        }
        Ok(claims)
    }

    /// The key named `kid` (or the only key when the token names none).
    async fn key_for(
        &self,
        provider: &SocialProvider,
        kid: Option<&str>,
        refresh: bool,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>, OidcError> {
        let pick = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        {
            let cache = self.cache.read().await;
            if let Some(c) = cache.get(&provider.issuer) {
                let fresh = c.fetched.elapsed() < KEYS_MAX_AGE;
                let may_refetch = c.fetched.elapsed() >= REFETCH_AFTER;
                if fresh && !(refresh && may_refetch) {
                    return Ok(pick(&c.keys));
                }
            }
        }
        let keys = self.fetch_keys(&provider.issuer).await?;
        let found = pick(&keys);
        self.cache.write().await.insert(
            provider.issuer.clone(),
            CachedKeys {
                keys,
                fetched: Instant::now(),
            },
        );
        Ok(found)
    }

    async fn fetch_keys(&self, issuer: &str) -> Result<JwkSet, OidcError> {
        #[derive(Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let unreachable = |e: reqwest::Error| OidcError::Unreachable(e.without_url().to_string());
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self
            .http
            .get(&discovery_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        self.http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }
}
