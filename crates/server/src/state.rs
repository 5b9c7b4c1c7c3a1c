//! What every handler can reach.

use std::sync::Arc;

use chrono::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::live::Live;
use crate::mail::Mailer;
use crate::oidc::OidcVerifier;
use crate::writer::Writer;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    /// Commits anonymous sign-ins in batches (group commit).
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    /// Keys the client-address hashes (from config, or generated and kept in the DB).
    pub secret: Vec<u8>,
    /// SHA-256 of the admin API key; `None` closes the admin HTTP API.
    pub admin_key_digest: Option<[u8; 32]>,
    pub mailer: Option<Mailer>,
    pub oidc: OidcVerifier,
    /// Verified against when a sign-in names an unknown email (equal timing).
    pub decoy_hash: String,
    /// Open `sync/events` streams of this process ("pull now").
    pub live: Arc<Live>,
    /// Who the client is (`trustedProxies`).
    pub client_addr: crate::client_addr::ClientAddr,
    /// The slots of this server's password hashing (`passwordHashQueue`).
    pub hash_queue: crate::hashing::HashQueue,
    /// Served on `metricsListen` (metrics.rs).
    pub metrics: crate::metrics::Metrics,
}

pub type SharedState = Arc<AppState>;

/// Sessions last 7 days and slide at most once per day of use.
pub fn session_ttl() -> Duration {
    Duration::days(guestpass_proto::SESSION_TTL_DAYS)
}

pub fn session_slide_after() -> Duration {
    Duration::hours(guestpass_proto::SESSION_SLIDE_AFTER_HOURS)
}

/// Activity on a guest is recorded at most this often between slides, so the
/// cleanup sees use to within an hour without a write per request.
pub fn activity_granularity() -> Duration {
    Duration::hours(1)
}

/// A verification link works once, within this time.
pub fn verification_ttl() -> Duration {
    Duration::hours(24)
}

/// A password reset link works once, within this time.
pub fn password_reset_ttl() -> Duration {
    Duration::minutes(guestpass_proto::PASSWORD_RESET_TTL_MINUTES)
}

/// The window of the per-user limits of account care (reset emails, resends).
pub fn care_limit_window() -> Duration {
    Duration::hours(1)
}

/// How recent a sign-in must be for a social-only account to delete itself.
pub fn fresh_session() -> Duration {
    Duration::minutes(guestpass_proto::DELETE_FRESH_SESSION_MINUTES)
}

/// `{site_url}/api/auth{route}?token=…`: the link a mail carries.
pub fn mailed_link(state: &AppState, route: &str, token: &str) -> String {
    format!(
        "{}{}{}?token={}",
        state.config.site_url.trim_end_matches('/'),
        guestpass_proto::routes::BASE,
        route,
        token
    )
}
