//! The providers' signing keys: discovery document (its `issuer` must be the one
//! configured) → `jwks_uri` → the key set, cached per issuer.
//!
//! Ages are measured on the server clock (injectable in tests). Keys are refetched
//! after [`KEYS_MAX_AGE_MS`], or sooner when a token names a key id not seen yet
//! (providers rotate keys), but at most once per [`REFETCH_AFTER_MS`]. One fetch per
//! issuer runs at a time: concurrent verifies that need keys wait for it and use
//! its answer, so a cold cache under N sign-ins costs the provider one round trip.
//! When the provider cannot be reached the keys already held keep being used, and
//! the next attempt waits [`RETRY_AFTER_FAILURE_MS`], so an outage does not make every
//! sign-in wait for a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::oidc::OidcError;

/// A key set younger than this is not refetched, even for an unknown `kid`.
pub const REFETCH_AFTER_MS: i64 = 60 * 1000;
/// A key set older than this is refetched before use (and used if that fails).
pub const KEYS_MAX_AGE_MS: i64 = 3600 * 1000;
/// After a failed fetch the next one waits this long (the held keys serve meanwhile).
pub const RETRY_AFTER_FAILURE_MS: i64 = 10 * 1000;

#[derive(Default)]
struct Entry {
    keys: Option<JwkSet>,
    /// Server-clock ms of the last successful fetch.
    fetched_ms: i64,
    /// Server-clock ms of the last failed attempt since then.
    failed_ms: Option<i64>,
}

#[derive(Default)]
struct Issuer {
    entry: SyncMutex<Entry>,
    /// Held while fetching: the coalescing point.
    fetching: Mutex<()>,
}

pub struct KeyCache {
    http: reqwest::Client,
    issuers: SyncMutex<HashMap<String, Arc<Issuer>>>,
}

impl KeyCache {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            issuers: SyncMutex::new(HashMap::new()),
        }
    }

    fn issuer(&self, issuer: &str) -> Arc<Issuer> {
        self.issuers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(issuer.to_owned())
            .or_default()
            .clone()
    }

    /// The key named `kid` (or the only key when the token names none). `Ok(None)`:
    /// the provider's current keys do not have it.
    pub async fn key_for(
        &self,
        issuer: &str,
        kid: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Jwk>, OidcError> {
        let pick = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let slot = self.issuer(issuer);
        let age = |e: &Entry| now_ms.saturating_sub(e.fetched_ms);
        {
            let e = slot.entry.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(keys) = &e.keys {
                if age(&e) < KEYS_MAX_AGE_MS {
                    if let Some(key) = pick(keys) {
                        return Ok(Some(key));
                    }
                }
            }
        }
        // Stale, cold, or an unknown kid: one fetch at a time for this issuer.
        let _fetching = slot.fetching.lock().await;
        {
            // Whoever held the lock before may have just done the work.
            let e = slot.entry.lock().unwrap_or_else(PoisonError::into_inner);
            let just_fetched = e.keys.is_some() && age(&e) < REFETCH_AFTER_MS;
            let just_failed = e
                .failed_ms
                .is_some_and(|f| now_ms.saturating_sub(f) < RETRY_AFTER_FAILURE_MS);
            if just_fetched || just_failed {
                return match (&e.keys, just_fetched) {
                    (Some(keys), _) => match pick(keys) {
                        Some(key) => Ok(Some(key)),
                        None if just_fetched => Ok(None),
                        None => Err(unreachable_now()),
                    },
                    (None, _) => Err(unreachable_now()),
                };
            }
        }
        match self.fetch(issuer).await {
            Ok(keys) => {
                let found = pick(&keys);
                let mut e = slot.entry.lock().unwrap_or_else(PoisonError::into_inner);
                *e = Entry {
                    keys: Some(keys),
                    fetched_ms: now_ms,
                    failed_ms: None,
                };
                Ok(found)
            }
            Err(OidcError::Unreachable(why)) => {
                let mut e = slot.entry.lock().unwrap_or_else(PoisonError::into_inner);
                e.failed_ms = Some(now_ms);
                match e.keys.as_ref().and_then(pick) {
                    Some(key) => {
                        tracing::warn!(%issuer, %why, "identity provider unreachable; using the keys fetched before");
                        Ok(Some(key))
                    }
                    None => Err(OidcError::Unreachable(why)),
                }
            }
            Err(refused) => Err(refused),
        }
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, OidcError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
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
        // OpenID Connect Discovery §4.3: the document must name the issuer it was
        // fetched for; anything else is not this provider's key set.
        if discovery.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            tracing::warn!(configured = %issuer, announced = %discovery.issuer, "discovery document names another issuer; its keys are not used");
            return Err(OidcError::Invalid(
                "discovery document names another issuer".into(),
            ));
        }
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

fn unreachable_now() -> OidcError {
    OidcError::Unreachable("the last attempt failed moments ago".into())
}
