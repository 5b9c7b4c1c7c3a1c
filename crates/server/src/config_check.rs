//! The rules a config must meet beyond parsing, checked by `serve` before it touches
//! the database and by `guestpass-server check-config` before an operator restarts
//! a service on a new file. Each problem names its setting, so the checker can point
//! at the line that sets it.

use std::net::SocketAddr;

use crate::config::Config;

/// One problem: the setting (its camelCase key, to find its line) and a message
/// that names it and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub setting: String,
    pub message: String,
}

impl Invalid {
    /// From a message of the form `setting: reason` (the convention of the checks
    /// in client_addr.rs and server.rs).
    fn from_message(fallback: &str, message: &str) -> Self {
        let setting = match message.split_once(": ") {
            Some((setting, _)) if !setting.contains(' ') => setting,
            _ => fallback,
        };
        Self::new(setting, message)
    }

    fn new(setting: &str, message: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Every rule, for a server about to listen on `listen`. The first problem wins.
    pub fn validate(&self, listen: SocketAddr) -> Result<(), Invalid> {
        if let Err(e) = self.check_secrets(listen) {
            let setting = match &e {
                crate::config::ConfigError::WeakSecret { setting, .. } => *setting,
                _ => "secret",
            };
            return Err(Invalid::new(setting, e.to_string()));
        }
        let db = self.database_url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            // The URL itself is not shown: it can hold a password.
            return Err(Invalid::new(
                "databaseUrl",
                "databaseUrl: expected sqlite://FILE or postgres://…",
            ));
        }
        if url::Url::parse(&self.site_url).is_err() {
            return Err(Invalid::new(
                "siteUrl",
                format!(
                    "siteUrl: {:?} is not a URL like https://auth.example.com",
                    self.site_url
                ),
            ));
        }
        crate::client_addr::ClientAddr::from_config(self)
            .map_err(|m| Invalid::from_message("trustedProxies", &m))?;
        crate::server::cors_layer(&self.trusted_origins).map_err(|e| {
            let m = e.to_string();
            let m = m.strip_prefix("invalid configuration: ").unwrap_or(&m);
            Invalid::from_message("trustedOrigins", m)
        })?;
        if let Some(metrics) = self.metrics_listen {
            if metrics == listen && metrics.port() != 0 {
                return Err(Invalid::new(
                    "metricsListen",
                    format!("metricsListen: {metrics} is the API's own address"),
                ));
            }
        }
        for (name, p) in &self.social_providers {
            if p.client_id.trim().is_empty() {
                return Err(Invalid::new(
                    "clientId",
                    format!("socialProviders.{name}: clientId is empty"),
                ));
            }
            if !url::Url::parse(&p.issuer).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
                return Err(Invalid::new(
                    "issuer",
                    format!(
                        "socialProviders.{name}: issuer {:?} is not an http(s) URL",
                        p.issuer
                    ),
                ));
            }
        }
        if let Some(smtp) = &self.smtp_url {
            crate::mail::Mailer::new(smtp.expose(), &self.email_from, &self.app_name).map_err(
                |e| {
                    let setting = match e {
                        crate::mail::MailError::From(_) => "emailFrom",
                        crate::mail::MailError::Url(_) => "smtpUrl",
                    };
                    Invalid::new(setting, format!("{setting}: {e}"))
                },
            )?;
        }
        Ok(())
    }
}

/// The 1-based line of `text` (a TOML file) that sets `setting`, if one does: the
/// first line whose key, before `=`, is the setting's name.
pub fn line_of(text: &str, setting: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.split_once('=')
                .map(|(key, _)| key.trim().trim_matches('"') == setting)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}
