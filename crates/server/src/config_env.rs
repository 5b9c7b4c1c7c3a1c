//! `GUESTPASS_…` environment variables over the config file (config.rs): each one
//! names the setting it replaces, and a value that does not parse is an error that
//! names the variable (never a silent default).

use crate::config::{AnonymousOptions, AnonymousSetting, Config, ConfigError, Secret};

impl Config {
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
        if let Some(v) = get("GUESTPASS_METRICS_LISTEN") {
            self.metrics_listen = Some(parse("GUESTPASS_METRICS_LISTEN", &v)?);
        }
        if let Some(v) = get("GUESTPASS_DATABASE_URL") {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = get("GUESTPASS_DATABASE_TIMEOUT_SECS") {
            self.database_timeout_secs = parse("GUESTPASS_DATABASE_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("GUESTPASS_SQLITE_WAL_RESTART_KIB") {
            self.sqlite_wal_restart_kib = parse("GUESTPASS_SQLITE_WAL_RESTART_KIB", &v)?;
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
        if let Some(v) = get("GUESTPASS_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
        }
        if let Some(v) = get("GUESTPASS_PROXY_HEADER") {
            self.proxy_header = v;
        }
        if let Some(v) = get("GUESTPASS_PASSWORD_HASH_QUEUE") {
            self.password_hash_queue = parse("GUESTPASS_PASSWORD_HASH_QUEUE", &v)?;
        }
        for (var, field) in [
            (
                "GUESTPASS_RATE_LIMIT_SIGN_IN_FAILURES_PER_EMAIL",
                &mut self.rate_limit.sign_in_failures_per_email,
            ),
            (
                "GUESTPASS_RATE_LIMIT_SIGN_IN_FAILURES_PER_ADDRESS",
                &mut self.rate_limit.sign_in_failures_per_address,
            ),
            (
                "GUESTPASS_RATE_LIMIT_UPGRADE_PER_HOUR",
                &mut self.rate_limit.upgrade_per_hour,
            ),
            (
                "GUESTPASS_RATE_LIMIT_RECOVERY_PER_MINUTE",
                &mut self.rate_limit.recovery_per_minute,
            ),
            (
                "GUESTPASS_RATE_LIMIT_RECOVERY_GLOBAL_PER_MINUTE",
                &mut self.rate_limit.recovery_global_per_minute,
            ),
        ] {
            if let Some(v) = get(var) {
                *field = parse(var, &v)?;
            }
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
        if let Some(v) = get("GUESTPASS_EMAIL_CLAIM_DAYS") {
            self.email_claim_days = parse("GUESTPASS_EMAIL_CLAIM_DAYS", &v)?;
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
}
