//! The person's settings (`settings.json` in the data dir) and how they combine with
//! the environment and the build into the backend the device syncs with (issue 15).
//!
//! Precedence, highest first: the environment (`GUESTPASS_BACKEND_URL`,
//! `GUESTPASS_BACKEND_DIALECT`, `GUESTPASS_SOCIAL_PROVIDERS`: tests and the developer
//! run use them), then the file the settings screen writes, then the build's default
//! backend URL (empty in this repository, so an installed app starts on this device
//! only). "Work offline only" in the file turns the file's and the build's backend
//! off; an environment variable still wins, and the screen says so.

use std::path::{Path, PathBuf};

use guestpass_proto::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::backend::Dialect;
use crate::social::SocialProvider;

pub const SETTINGS_FILE: &str = "settings.json";
pub const ENV_BACKEND_URL: &str = "GUESTPASS_BACKEND_URL";
pub const ENV_BACKEND_DIALECT: &str = "GUESTPASS_BACKEND_DIALECT";
pub const ENV_SOCIAL_PROVIDERS: &str = "GUESTPASS_SOCIAL_PROVIDERS";

/// What the settings screen saves. Unknown fields are an error, so a typo in a
/// hand-edited file is named instead of silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_dialect: Option<Dialect>,
    /// Keep everything on this device even though a backend is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline_only: bool,
    /// The providers the server offered when the backend was last checked (public
    /// client ids only), or typed in for a Better Auth server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub social_providers: Vec<SocialProvider>,
}

/// One environment variable that overrides what the screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub name: &'static str,
    pub value: String,
}

/// The settings in effect, and where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub backend: Option<(String, Dialect)>,
    pub social: Vec<SocialProvider>,
    pub overrides: Vec<Override>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETTINGS_FILE)
}

/// The saved settings; none saved yet is the default.
pub fn read(data_dir: &Path) -> Result<Settings, ApiError> {
    let file = path(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| invalid(format!("{} is not valid: {e}", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(ApiError::new(
            ErrorCode::DatabaseError,
            format!("{} could not be read: {e}", file.display()),
        )),
    }
}

/// Saves atomically (a temporary file, synced, then renamed over the old one), so
/// a crash mid-save leaves the old settings or the new, never half a file.
pub fn write(data_dir: &Path, settings: &Settings) -> Result<(), ApiError> {
    let file = path(data_dir);
    let failed = |e: std::io::Error| {
        let code = if e.raw_os_error() == Some(28) {
            ErrorCode::DiskFull
        } else {
            ErrorCode::DatabaseError
        };
        ApiError::new(
            code,
            format!("The settings could not be saved to {}: {e}", file.display()),
        )
    };
    let text = serde_json::to_vec_pretty(settings)
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?;
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    let tmp = data_dir.join(format!("{SETTINGS_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(failed)?;
        f.write_all(&text).map_err(failed)?;
        f.sync_all().map_err(failed)?;
    }
    std::fs::rename(&tmp, &file).map_err(failed)
}

/// A backend URL as a person may type it: trimmed, `http(s)://` with a host, no
/// trailing slash. Anything else is named.
pub fn normalise_url(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let url = reqwest::Url::parse(raw).map_err(|_| {
        invalid(format!(
            "\u{201c}{raw}\u{201d} is not a web address: write it like https://auth.example.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "\u{201c}{raw}\u{201d} is not a web address: write it like https://auth.example.com"
        )));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Combines the saved settings with the environment (`env`) and the build's
/// default backend URL.
pub fn resolve(
    saved: Settings,
    env: impl Fn(&str) -> Option<String>,
    build_default: Option<&str>,
) -> Result<Resolved, ApiError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut overrides = Vec::new();
    let mut noted = |name: &'static str, value: &str| {
        overrides.push(Override {
            name,
            value: value.to_owned(),
        })
    };
    let env_url = env(ENV_BACKEND_URL);
    let env_dialect = env(ENV_BACKEND_DIALECT);
    let env_social = env(ENV_SOCIAL_PROVIDERS);
    if let Some(v) = &env_url {
        noted(ENV_BACKEND_URL, v);
    }
    if let Some(v) = &env_dialect {
        noted(ENV_BACKEND_DIALECT, v);
    }
    if env_social.is_some() {
        // Public client ids, but long: the screen only needs to know it is set.
        noted(ENV_SOCIAL_PROVIDERS, "(set)");
    }
    let file_url = if saved.offline_only {
        None
    } else {
        saved.backend_url.clone().or_else(|| {
            build_default
                .filter(|u| !u.trim().is_empty())
                .map(str::to_owned)
        })
    };
    let dialect = match env_dialect {
        Some(d) => d
            .parse::<Dialect>()
            .map_err(|e| invalid(format!("{ENV_BACKEND_DIALECT}: {e}")))?,
        None => saved.backend_dialect.unwrap_or(Dialect::Guestpass),
    };
    let backend = env_url.or(file_url).map(|url| (url, dialect));
    let social = match env_social {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| invalid(format!("{ENV_SOCIAL_PROVIDERS} is not valid: {e}")))?,
        None => saved.social_providers,
    };
    Ok(Resolved {
        backend,
        social,
        overrides,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn saved(url: &str) -> Settings {
        Settings {
            backend_url: Some(url.into()),
            backend_dialect: Some(Dialect::BetterAuth),
            ..Settings::default()
        }
    }

    #[test]
    fn the_file_then_the_build_default_and_offline_only_turns_both_off() {
        let r = resolve(Settings::default(), no_env, Some("https://build.example")).unwrap();
        assert_eq!(
            r.backend,
            Some(("https://build.example".into(), Dialect::Guestpass))
        );
        let r = resolve(saved("https://file.example"), no_env, Some("https://b")).unwrap();
        assert_eq!(
            r.backend,
            Some(("https://file.example".into(), Dialect::BetterAuth))
        );
        let off = Settings {
            offline_only: true,
            ..saved("https://file.example")
        };
        assert_eq!(
            resolve(off, no_env, Some("https://b")).unwrap().backend,
            None
        );
        assert_eq!(
            resolve(Settings::default(), no_env, Some(""))
                .unwrap()
                .backend,
            None
        );
    }

    #[test]
    fn the_environment_wins_and_is_named() {
        let env = |k: &str| match k {
            ENV_BACKEND_URL => Some("http://127.0.0.1:9".to_owned()),
            ENV_BACKEND_DIALECT => Some("guestpass".to_owned()),
            _ => None,
        };
        let off = Settings {
            offline_only: true,
            ..saved("https://file.example")
        };
        let r = resolve(off, env, None).unwrap();
        assert_eq!(
            r.backend,
            Some(("http://127.0.0.1:9".into(), Dialect::Guestpass))
        );
        let names: Vec<_> = r.overrides.iter().map(|o| o.name).collect();
        assert_eq!(names, [ENV_BACKEND_URL, ENV_BACKEND_DIALECT]);
    }

    #[test]
    fn saved_settings_read_back_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Settings::default());
        let s = Settings {
            offline_only: true,
            ..saved("https://file.example")
        };
        write(dir.path(), &s).unwrap();
        assert_eq!(read(dir.path()).unwrap(), s);
        std::fs::write(path(dir.path()), r#"{"backendUrl": 3}"#).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(
            e.message.contains("settings.json is not valid"),
            "{}",
            e.message
        );
    }

    #[test]
    fn urls_are_checked_and_tidied() {
        assert_eq!(
            normalise_url(" https://auth.example.com/ ").unwrap(),
            "https://auth.example.com"
        );
        for bad in ["", "auth.example.com", "ftp://x", "http://"] {
            let e = normalise_url(bad).unwrap_err();
            assert!(
                e.message.contains("is not a web address"),
                "{bad}: {}",
                e.message
            );
        }
    }
}
