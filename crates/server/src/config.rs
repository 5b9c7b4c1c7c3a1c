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
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value in {var}: {reason}")]
    Env { var: &'static str, reason: String },
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://guestpass-server.db";
pub const DEFAULT_ANONYMOUS_PER_MINUTE: u32 = 30;
pub const DEFAULT_PASSWORD_RESET_PER_MINUTE: u32 = 10;
pub const DEFAULT_CLEANUP_INTERVAL_SECS: u64 = 3600;
pub const DEFAULT_REQUEST_READ_TIMEOUT_SECS: u64 = 20;
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
    /// `sqlite://path` or `postgres://…`.
    pub database_url: Secret,
    /// Seconds to wait for a database connection (and SQLite's busy timeout)
    /// before answering 503.
    pub database_timeout_secs: u64,
    /// Opens `/admin/*`. Unset: the admin HTTP API is closed (the CLI still works).
    pub admin_api_key: Option<Secret>,
    /// e.g. `smtp://user:pass@mail.example.com:587?tls=required`. Unset: no email is sent.
    pub smtp_url: Option<Secret>,
    pub email_from: String,
    /// Header naming the client address when behind a proxy you trust, e.g.
    /// `x-forwarded-for` (its last entry is used). Unset: the socket address.
    pub trusted_proxy_header: Option<String>,
    /// Browser origins (`https://app.example.com`) allowed to call the API
    /// cross-origin. Empty (the default): no CORS headers at all, so browsers
    /// refuse every cross-origin call. The desktop app does not need it.
    pub trusted_origins: Vec<String>,
    /// Seconds a client gets to send its request head, and again its body. A
    /// slower one is cut off, so idle or trickling connections cannot pile up.
    pub request_read_timeout_secs: u64,
    pub cleanup_interval_secs: u64,
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
            database_url: Secret::new(DEFAULT_DATABASE_URL),
            database_timeout_secs: 5,
            admin_api_key: None,
            smtp_url: None,
            email_from: "Guestpass <no-reply@localhost>".into(),
            trusted_proxy_header: None,
            trusted_origins: Vec::new(),
            request_read_timeout_secs: DEFAULT_REQUEST_READ_TIMEOUT_SECS,
            cleanup_interval_secs: DEFAULT_CLEANUP_INTERVAL_SECS,
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
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            anonymous_per_minute: DEFAULT_ANONYMOUS_PER_MINUTE,
            password_reset_per_minute: DEFAULT_PASSWORD_RESET_PER_MINUTE,
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

    /// Applies `GUESTPASS_…` variables; `get` is injectable so tests need not touch
    /// the process environment.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, raw: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            raw.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                var,
                reason: e.to_string(),
            })
        }
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(v) = get("GUESTPASS_APP_NAME") {
            self.app_name = v;
        }
        if let Some(v) = get("GUESTPASS_SITE_URL") {
            self.site_url = v;
        }
        if let Some(v) = get("GUESTPASS_SECRET") {
            self.secret = Some(Secret::new(v));
        }
        if let Some(v) = get("GUESTPASS_LISTEN") {
            self.listen = parse("GUESTPASS_LISTEN", &v)?;
        }
        if let Some(v) = get("GUESTPASS_DATABASE_URL") {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = get("GUESTPASS_DATABASE_TIMEOUT_SECS") {
            self.database_timeout_secs = parse("GUESTPASS_DATABASE_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("GUESTPASS_ADMIN_API_KEY") {
            self.admin_api_key = Some(Secret::new(v));
        }
        if let Some(v) = get("GUESTPASS_SMTP_URL") {
            self.smtp_url = Some(Secret::new(v));
        }
        if let Some(v) = get("GUESTPASS_EMAIL_FROM") {
            self.email_from = v;
        }
        if let Some(v) = get("GUESTPASS_TRUSTED_PROXY_HEADER") {
            self.trusted_proxy_header = Some(v);
        }
        if let Some(v) = get("GUESTPASS_TRUSTED_ORIGINS") {
            self.trusted_origins = v
                .split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = get("GUESTPASS_REQUEST_READ_TIMEOUT_SECS") {
            self.request_read_timeout_secs = parse("GUESTPASS_REQUEST_READ_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("GUESTPASS_CLEANUP_INTERVAL_SECS") {
            self.cleanup_interval_secs = parse("GUESTPASS_CLEANUP_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = get("GUESTPASS_SESSION_MAX_AGE_DAYS") {
            self.session_max_age_days = parse("GUESTPASS_SESSION_MAX_AGE_DAYS", &v)?;
        }
        if let Some(v) = get("GUESTPASS_RATE_LIMIT_ANONYMOUS_PER_MINUTE") {
            self.rate_limit.anonymous_per_minute =
                parse("GUESTPASS_RATE_LIMIT_ANONYMOUS_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("GUESTPASS_RATE_LIMIT_PASSWORD_RESET_PER_MINUTE") {
            self.rate_limit.password_reset_per_minute =
                parse("GUESTPASS_RATE_LIMIT_PASSWORD_RESET_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("GUESTPASS_EMAIL_PASSWORD") {
            self.auth_methods.email_password = parse("GUESTPASS_EMAIL_PASSWORD", &v)?;
        }
        let records = &mut self.records;
        for (var, field) in [
            (
                "GUESTPASS_RECORDS_GUEST_MAX_RECORDS",
                &mut records.guest_max_records,
            ),
            (
                "GUESTPASS_RECORDS_GUEST_MAX_BYTES",
                &mut records.guest_max_bytes,
            ),
            (
                "GUESTPASS_RECORDS_ACCOUNT_MAX_RECORDS",
                &mut records.account_max_records,
            ),
            (
                "GUESTPASS_RECORDS_ACCOUNT_MAX_BYTES",
                &mut records.account_max_bytes,
            ),
            (
                "GUESTPASS_RECORDS_TOMBSTONE_RETENTION_DAYS",
                &mut records.tombstone_retention_days,
            ),
        ] {
            if let Some(v) = get(var) {
                *field = parse(var, &v)?;
            }
        }
        let enabled = match get("GUESTPASS_ANONYMOUS") {
            Some(v) => parse("GUESTPASS_ANONYMOUS", &v)?,
            None => self.auth_methods.anonymous.enabled(),
        };
        let max_age = match get("GUESTPASS_ANONYMOUS_MAX_AGE") {
            Some(v) => Some(parse("GUESTPASS_ANONYMOUS_MAX_AGE", &v)?).filter(|s| *s > 0),
            None => self.auth_methods.anonymous.max_age_secs(),
        };
        self.auth_methods.anonymous =
            AnonymousSetting::Detailed(AnonymousOptions { enabled, max_age });
        Ok(())
    }

    /// The absolute lifetime of a session (`sessionMaxAgeDays`, at least a day).
    pub fn session_max_age(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.session_max_age_days.max(1)))
    }

    /// How long a client may take to send its request head, and again its body.
    pub fn request_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_read_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_the_spec_shape_and_env_overrides() {
        let text = r#"
            appName = "My App"
            siteUrl = "https://auth.example.com"
            secret = "s3cr3t"
            adminApiKey = "k"
            [authMethods]
            anonymous = { enabled = true, maxAge = 2592000 }
            emailPassword = true
            [rateLimit]
            anonymousPerMinute = 10
            [socialProviders.google]
            clientId = "abc"
            issuer = "https://accounts.google.com"
        "#;
        let mut c = Config::from_toml(text).unwrap();
        assert_eq!(c.auth_methods.anonymous.max_age_secs(), Some(2_592_000));
        assert_eq!(c.rate_limit.anonymous_per_minute, 10);
        assert_eq!(c.social_providers["google"].client_id, "abc");
        let env = |k: &str| match k {
            "GUESTPASS_RATE_LIMIT_ANONYMOUS_PER_MINUTE" => Some("0".to_string()),
            "GUESTPASS_LISTEN" => Some("127.0.0.1:0".to_string()),
            "GUESTPASS_RECORDS_GUEST_MAX_RECORDS" => Some("10".to_string()),
            "GUESTPASS_SESSION_MAX_AGE_DAYS" => Some("30".to_string()),
            "GUESTPASS_TRUSTED_ORIGINS" => {
                Some(" https://a.example , https://b.example:8443".into())
            }
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.rate_limit.anonymous_per_minute, 0);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.records.guest_max_records, 10);
        assert_eq!(c.session_max_age(), chrono::Duration::days(30));
        assert_eq!(c.records.account_max_records, 50_000);
        assert_eq!(
            c.trusted_origins,
            ["https://a.example", "https://b.example:8443"]
        );
        assert_eq!(c.auth_methods.anonymous.max_age_secs(), Some(2_592_000));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("<redacted>"),
            "{shown}"
        );

        let example = Config::from_toml(include_str!("../../../server.example.toml")).unwrap();
        assert_eq!(
            example.auth_methods.anonymous.max_age_secs(),
            Some(2_592_000)
        );
        assert_eq!(example.rate_limit.anonymous_per_minute, 30);
        assert_eq!(example.rate_limit.password_reset_per_minute, 10);
        assert_eq!(example.request_read_timeout_secs, 20);
        assert!(example.trusted_origins.is_empty(), "CORS closed by default");
        assert_eq!(example.records.tombstone_retention_days, 90);
        assert_eq!(example.session_max_age_days, 90);
        assert_eq!(
            Config::default().session_max_age(),
            chrono::Duration::days(90)
        );
        assert_eq!(example.records.guest_max_bytes, 8 * 1024 * 1024);

        let plain = Config::from_toml("[authMethods]\nanonymous = true\n").unwrap();
        assert!(plain.auth_methods.anonymous.enabled());
        assert!(Config::from_toml("bogus = 1").is_err());
    }
}
