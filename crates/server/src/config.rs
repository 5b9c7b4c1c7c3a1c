//! Server configuration: a TOML file shaped like the spec's `BanataAuthConfig`
//! (camelCase keys), then `GUESTPASS_…` environment variables on top, then the
//! command line on top of that. Every field has a default, so no file at all
//! gives a working server on an embedded SQLite file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// A value that must never reach a log: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Deliberately named so every read of the plain value stands out in review.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The source is not repeated here: it follows as the error's cause.
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value in {var}: {reason}")]
    Env { var: &'static str, reason: String },
    #[error(
        "{setting} {problem}, which a server listening on {listen} (not a loopback \
         address) must have: make one with `openssl rand -base64 32` and set it as \
         {setting} in the config file or {var}"
    )]
    WeakSecret {
        setting: &'static str,
        var: &'static str,
        problem: &'static str,
        listen: SocketAddr,
    },
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://guestpass-server.db";
pub const DEFAULT_ANONYMOUS_PER_MINUTE: u32 = 30;
pub const DEFAULT_PASSWORD_RESET_PER_MINUTE: u32 = 10;
pub const DEFAULT_SIGN_IN_FAILURES_PER_EMAIL: u32 = 10;
pub const DEFAULT_SIGN_IN_FAILURES_PER_ADDRESS: u32 = 100;
pub const DEFAULT_UPGRADE_PER_HOUR: u32 = 20;
pub const DEFAULT_RECOVERY_PER_MINUTE: u32 = 10;
pub const DEFAULT_RECOVERY_GLOBAL_PER_MINUTE: u32 = 600;
pub const DEFAULT_PASSWORD_HASH_QUEUE: usize = 32;
/// 64 MiB: about a second of sign-ins at full load on a small machine (p99 at
/// 20 connections 9.5-10.8 ms; 16 MiB paused the writer four times as often,
/// 10.9-12.3 ms).
pub const DEFAULT_SQLITE_WAL_RESTART_KIB: u64 = 65_536;
pub const DEFAULT_CLEANUP_INTERVAL_SECS: u64 = 3600;
pub const DEFAULT_REQUEST_READ_TIMEOUT_SECS: u64 = 20;
pub const DEFAULT_EMAIL_CLAIM_DAYS: u64 = 7;
pub const DEFAULT_SESSION_MAX_AGE_DAYS: u32 = guestpass_proto::SESSION_MAX_AGE_DAYS as u32;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    pub app_name: String,
    /// Public base URL of this server; verification links point here.
    pub site_url: String,
    /// Keys the client-address hashes. Generated and kept in the database when unset.
    pub secret: Option<Secret>,
    pub listen: SocketAddr,
    /// Where Prometheus metrics are served (`GET /metrics`), apart from the API so
    /// they need not be exposed with it. Unset: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: Secret,
    /// Seconds to wait for a database connection (and SQLite's busy timeout)
    /// before answering 503.
    pub database_timeout_secs: u64,
    /// SQLite only: KiB of WAL past which the server writes its WAL from the start
    /// again (pausing sign-ins for the copy of the last few pages), so the WAL file
    /// stays near this size on disk (`wal_checkpoint.rs`). Lower bounds the disk it
    /// takes at the cost of more pauses; at least one 4 KiB page.
    pub sqlite_wal_restart_kib: u64,
    /// Opens `/admin/*`. Unset: the admin HTTP API is closed (the CLI still works).
    pub admin_api_key: Option<Secret>,
    /// e.g. `smtp://user:pass@mail.example.com:587?tls=required`. Unset: no email is sent.
    pub smtp_url: Option<Secret>,
    pub email_from: String,
    /// Deprecated (use `trusted_proxies`): a header whose last entry is the
    /// client address, trusted from any peer. Honoured this release only when
    /// `trusted_proxies` is empty, with a warning (`client_addr.rs`).
    pub trusted_proxy_header: Option<String>,
    /// Addresses or CIDRs of your reverse proxies. Only from these peers is
    /// `proxy_header` read (`client_addr.rs`). Empty: the socket address.
    pub trusted_proxies: Vec<String>,
    /// `x-forwarded-for` (default) or `forwarded` (RFC 7239).
    pub proxy_header: String,
    /// Password hashes (sign-in checks, sign-ups) waiting or running at once;
    /// one more is answered 503 `BUSY` at once instead of queueing.
    pub password_hash_queue: usize,
    /// Browser origins (`https://app.example.com`) allowed to call the API
    /// cross-origin. Empty (the default): no CORS headers at all, so browsers
    /// refuse every cross-origin call. The desktop app does not need it.
    pub trusted_origins: Vec<String>,
    /// Seconds a client gets to send its request head, and again its body. A
    /// slower one is cut off, so idle or trickling connections cannot pile up.
    pub request_read_timeout_secs: u64,
    pub cleanup_interval_secs: u64,
    /// Days an unverified email holds its address (issue 14: a claim, not a
    /// proof). After that the address is free for its verified owner and no
    /// longer signs in; see ARCHITECTURE.md "Email claims".
    pub email_claim_days: u64,
    /// Days a session lives at most, however often it is used: the 7-day sliding
    /// expiry never reaches past `createdAt` + this. At least 1.
    pub session_max_age_days: u32,
    pub auth_methods: AuthMethods,
    pub rate_limit: RateLimitConfig,
    pub social_providers: BTreeMap<String, SocialProvider>,
    /// Record sync (DESIGN.md §3a): quotas and the tombstone horizon.
    pub records: RecordsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_name: "Guestpass".into(),
            site_url: format!("http://{DEFAULT_LISTEN}"),
            secret: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            metrics_listen: None,
            database_url: Secret::new(DEFAULT_DATABASE_URL),
            database_timeout_secs: 5,
            sqlite_wal_restart_kib: DEFAULT_SQLITE_WAL_RESTART_KIB,
            admin_api_key: None,
            smtp_url: None,
            email_from: "Guestpass <no-reply@localhost>".into(),
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            proxy_header: "x-forwarded-for".into(),
            password_hash_queue: DEFAULT_PASSWORD_HASH_QUEUE,
            trusted_origins: Vec::new(),
            request_read_timeout_secs: DEFAULT_REQUEST_READ_TIMEOUT_SECS,
            cleanup_interval_secs: DEFAULT_CLEANUP_INTERVAL_SECS,
            email_claim_days: DEFAULT_EMAIL_CLAIM_DAYS,
            session_max_age_days: DEFAULT_SESSION_MAX_AGE_DAYS,
            auth_methods: AuthMethods::default(),
            rate_limit: RateLimitConfig::default(),
            social_providers: BTreeMap::new(),
            records: RecordsConfig::default(),
        }
    }
}

/// `[records]`: what one user may keep, and how long tombstones are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RecordsConfig {
    /// Distinct records (tombstones included) a guest may hold: anonymous storage
    /// is free to abuse, so it is small.
    pub guest_max_records: u64,
    /// Sum of a guest's change sizes, in bytes.
    pub guest_max_bytes: u64,
    pub account_max_records: u64,
    pub account_max_bytes: u64,
    /// Days a record's log is kept after its latest change became a tombstone.
    /// After that the cleanup deletes it, and a cursor older than it gets
    /// CURSOR_EXPIRED. 0 keeps tombstones forever.
    pub tombstone_retention_days: u64,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            guest_max_records: 2_000,
            guest_max_bytes: 8 * 1024 * 1024,
            account_max_records: 50_000,
            account_max_bytes: 64 * 1024 * 1024,
            tombstone_retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuthMethods {
    pub anonymous: AnonymousSetting,
    pub email_password: bool,
}

impl Default for AuthMethods {
    fn default() -> Self {
        Self {
            anonymous: AnonymousSetting::Enabled(true),
            email_password: true,
        }
    }
}

/// `anonymous = true` or `anonymous = { enabled = true, maxAge = 2592000 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AnonymousSetting {
    Enabled(bool),
    Detailed(AnonymousOptions),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousOptions {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds of inactivity after which a guest is deleted by the cleanup.
    pub max_age: Option<u64>,
}

fn yes() -> bool {
    true
}

impl AnonymousSetting {
    pub fn enabled(&self) -> bool {
        match self {
            Self::Enabled(on) => *on,
            Self::Detailed(o) => o.enabled,
        }
    }

    pub fn max_age_secs(&self) -> Option<u64> {
        match self {
            Self::Enabled(_) => None,
            Self::Detailed(o) => o.max_age,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Anonymous sign-ins per client address per minute; 0 turns the limit off.
    pub anonymous_per_minute: u32,
    /// `request-password-reset` calls per client address per minute (429
    /// beyond); 0 turns the limit off. Each account also gets at most 3 reset
    /// emails an hour, whatever this says.
    pub password_reset_per_minute: u32,
    /// Failed email sign-ins per normalised email per 15 minutes, whether or
    /// not the account exists (429 beyond, until the window ends or a password
    /// reset of that account); 0 turns it off.
    pub sign_in_failures_per_email: u32,
    /// Failed email sign-ins per client address (IPv6: per /64) per 15 minutes,
    /// whatever the email; 0 turns it off.
    pub sign_in_failures_per_address: u32,
    /// `anonymous/upgrade` calls per client address per hour; 0 turns it off.
    pub upgrade_per_hour: u32,
    /// `sign-in/recovery` attempts per client address (IPv6: per /64) per
    /// minute, right or wrong; 0 turns it off.
    pub recovery_per_minute: u32,
    /// `sign-in/recovery` attempts per minute from everyone together (on every
    /// instance of one database): a guesser with many addresses still gets few
    /// tries at 2^128 keys; 0 turns it off.
    pub recovery_global_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            anonymous_per_minute: DEFAULT_ANONYMOUS_PER_MINUTE,
            password_reset_per_minute: DEFAULT_PASSWORD_RESET_PER_MINUTE,
            sign_in_failures_per_email: DEFAULT_SIGN_IN_FAILURES_PER_EMAIL,
            sign_in_failures_per_address: DEFAULT_SIGN_IN_FAILURES_PER_ADDRESS,
            upgrade_per_hour: DEFAULT_UPGRADE_PER_HOUR,
            recovery_per_minute: DEFAULT_RECOVERY_PER_MINUTE,
            recovery_global_per_minute: DEFAULT_RECOVERY_GLOBAL_PER_MINUTE,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SocialProvider {
    pub client_id: String,
    pub issuer: String,
}

impl Config {
    /// The file (if any), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source: Box::new(source),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// [`Self::email_claim_days`] in milliseconds (at least one day).
    pub fn email_claim_lapse_ms(&self) -> i64 {
        let days = i64::try_from(self.email_claim_days.max(1)).unwrap_or(i64::MAX / 86_400_000);
        days.saturating_mul(86_400_000)
    }

    /// The absolute lifetime of a session (`sessionMaxAgeDays`, at least a day).
    pub fn session_max_age(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.session_max_age_days.max(1)))
    }

    /// How the database is opened: its timeout and, on SQLite, the WAL's bound.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            timeout: std::time::Duration::from_secs(self.database_timeout_secs.max(1)),
            wal_restart_frames: i64::try_from(self.sqlite_wal_restart_kib / 4)
                .unwrap_or(i64::MAX)
                .max(1),
        }
    }

    /// How long a client may take to send its request head, and again its body.
    pub fn request_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_read_timeout_secs.max(1))
    }

    /// A server listening on `listen` beyond loopback (a LAN or public address,
    /// or `0.0.0.0` / `::`) can be reached by others, so it needs a `secret` of
    /// at least [`SECRET_MIN_BYTES`] set here (not the one generated into the
    /// database, which anyone with a copy of it can read) and, if the admin API
    /// is on at all, an `adminApiKey` of at least [`ADMIN_KEY_MIN_CHARS`]. No
    /// `adminApiKey` means the admin HTTP API is closed, which is fine anywhere.
    /// On loopback (the dev run, tests) anything goes, as before. The error names
    /// the setting, never its value.
    pub fn check_secrets(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if listen.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        let weak = |setting, var, problem| ConfigError::WeakSecret {
            setting,
            var,
            problem,
            listen,
        };
        match &self.secret {
            None => return Err(weak("secret", "GUESTPASS_SECRET", "is not set")),
            Some(s) if s.expose().len() < SECRET_MIN_BYTES => {
                return Err(weak(
                    "secret",
                    "GUESTPASS_SECRET",
                    "is shorter than 32 bytes",
                ))
            }
            Some(_) => {}
        }
        match &self.admin_api_key {
            Some(k) if k.expose().chars().count() < ADMIN_KEY_MIN_CHARS => Err(weak(
                "adminApiKey",
                "GUESTPASS_ADMIN_API_KEY",
                "is shorter than 32 characters",
            )),
            _ => Ok(()),
        }
    }
}

/// See [`Config::check_secrets`].
pub const SECRET_MIN_BYTES: usize = 32;
pub const ADMIN_KEY_MIN_CHARS: usize = 32;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
