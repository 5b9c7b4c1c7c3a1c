//! The remote auth backend, in one of two dialects (DESIGN.md §3):
//! - `guestpass`: the reference server; in-place upgrade, same id on both sides;
//! - `better-auth`: a stock Better Auth server with the `anonymous` and `bearer`
//!   plugins; its upgrade makes a new remote user, which we map to our local id.
//!
//! Every failure is one of [`BackendError`]'s variants so the sync engine can decide
//! between "retry later" and "tell the person".

mod accounts;
mod better_auth;
mod care;
mod guestpass;
mod probe;
mod records;
mod recovery;

pub use accounts::Merged;
pub use probe::{probe, Reached, NOTHING_ANSWERS};

use std::time::Duration;

use guestpass_proto::{ApiError, UpgradeRequest};
use secrecy::SecretString;

/// Which server speaks at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    Guestpass,
    BetterAuth,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "guestpass" => Ok(Self::Guestpass),
            "better-auth" | "betterauth" | "better_auth" => Ok(Self::BetterAuth),
            other => Err(format!(
                "unknown backend dialect {other:?} (expected guestpass or better-auth)"
            )),
        }
    }
}

/// The parts of the remote user the device cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUser {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub email_verified: bool,
    pub is_anonymous: bool,
}

/// A remote user and, when the answer created or rotated one, the new session token.
#[derive(Debug, Clone)]
pub struct Remote {
    pub user: RemoteUser,
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// Could not talk to it at all (refused, DNS, timeout): retry later.
    #[error("the server cannot be reached: {0}")]
    Unreachable(String),
    /// It said no, for a reason the person should hear (our codes, mapped from the dialect).
    #[error("{0}")]
    Refused(ApiError),
    /// The session we hold is no longer valid there.
    #[error("the server no longer accepts this device's session")]
    Unauthorized,
    /// Too many requests; try again after the given delay.
    #[error("the server asked us to slow down")]
    RateLimited { retry_after: Option<Duration> },
    /// It answered something we do not understand (garbage, 5xx): retry later.
    #[error("the server gave an unexpected answer: {0}")]
    Protocol(String),
}

impl BackendError {
    /// Worth trying again later without the person doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::RateLimited { .. } | Self::Protocol(_)
        )
    }
}

/// An HTTP client for one backend.
#[derive(Debug, Clone)]
pub struct Backend {
    http: reqwest::Client,
    base: String,
    dialect: Dialect,
}

/// Requests give up after this long; the sync engine retries with backoff.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Backend {
    /// `base_url` is the server's origin, e.g. `http://127.0.0.1:8787`; the routes live
    /// under `/api/auth` in both dialects.
    pub fn new(base_url: &str, dialect: Dialect) -> Result<Self, BackendError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            dialect,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn url(&self, route: &str) -> String {
        format!("{}{}{}", self.base, guestpass_proto::routes::BASE, route)
    }

    /// Registers the device's guest. The reference server keeps the id the device
    /// minted, and with `device_key` lets this device register it again (a new
    /// session) if an answer was lost; Better Auth mints its own id and has no key.
    pub async fn register(
        &self,
        local_user_id: &str,
        device_key: Option<&SecretString>,
    ) -> Result<(Remote, bool), BackendError> {
        // The flag: the reference server had deleted this guest as stale and made
        // it again from this device (issue 16), so the device sends its records again.
        match self.dialect {
            Dialect::Guestpass => guestpass::register(self, local_user_id, device_key).await,
            Dialect::BetterAuth => Ok((better_auth::register(self).await?, false)),
        }
    }

    /// The remote user behind `token`, or `None` if the session is gone.
    pub async fn get_session(
        &self,
        token: &SecretString,
    ) -> Result<Option<RemoteUser>, BackendError> {
        match self.dialect {
            Dialect::Guestpass => guestpass::get_session(self, token).await,
            Dialect::BetterAuth => better_auth::get_session(self, token).await,
        }
    }

    /// Links email and password to the guest behind `token`.
    pub async fn upgrade(
        &self,
        token: &SecretString,
        req: &UpgradeRequest,
    ) -> Result<Remote, BackendError> {
        match self.dialect {
            Dialect::Guestpass => guestpass::upgrade(self, token, req).await,
            Dialect::BetterAuth => better_auth::upgrade(self, token, req).await,
        }
    }

    /// Links the provider identity proven by `id_token` (issued for `nonce`) to the guest
    /// behind `token`. Only the reference server does this (DESIGN.md §5). With
    /// `next_token_hash` the session goes on under the token it names.
    pub async fn upgrade_social(
        &self,
        token: &SecretString,
        provider: &str,
        id_token: &SecretString,
        nonce: &str,
        next_token_hash: Option<&str>,
    ) -> Result<Remote, BackendError> {
        match self.dialect {
            Dialect::Guestpass => {
                guestpass::upgrade_social(self, token, provider, id_token, nonce, next_token_hash)
                    .await
            }
            Dialect::BetterAuth => Err(BackendError::Refused(ApiError::new(
                guestpass_proto::ErrorCode::UnknownProvider,
                "Social upgrade needs the Guestpass server",
            ))),
        }
    }

    /// The nonce for the next provider sign-in. The reference server issues it (and
    /// accepts only its own, unexpired, in the ID token: issue 14); Better Auth has no
    /// such route, so against it the device keeps making its own.
    pub async fn social_nonce(&self) -> Result<String, BackendError> {
        match self.dialect {
            Dialect::Guestpass => guestpass::social_nonce(self).await,
            Dialect::BetterAuth => Ok(oauth2::CsrfToken::new_random().secret().clone()),
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET <route>` holding `token`; transport failures mapped.
    pub(crate) async fn get_with(
        &self,
        route: &str,
        token: &SecretString,
    ) -> Result<reqwest::Response, BackendError> {
        use secrecy::ExposeSecret;
        self.http
            .get(self.url(route))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(transport)
    }

    /// `POST <route>` with a JSON body holding `token`; transport failures mapped.
    pub(crate) async fn post_with(
        &self,
        route: &str,
        token: &SecretString,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, BackendError> {
        use secrecy::ExposeSecret;
        self.http
            .post(self.url(route))
            .bearer_auth(token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(transport)
    }
}

/// Maps a transport failure.
pub(crate) fn transport(e: reqwest::Error) -> BackendError {
    // Never include the URL's query or any header: reqwest's Display shows the URL only.
    BackendError::Unreachable(e.without_url().to_string())
}

/// Parses `Retry-After` (seconds form).
pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The new token a response carries in `set-auth-token`, if any.
pub(crate) fn header_token(resp: &reqwest::Response) -> Option<SecretString> {
    resp.headers()
        .get(guestpass_proto::routes::SET_AUTH_TOKEN)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
}
