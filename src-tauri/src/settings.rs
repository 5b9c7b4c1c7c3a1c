//! The settings screen's three calls (issue 15): what is set and in effect, "who
//! answers at this address?", and save. Saving checks the server first and saves
//! nothing when nothing (or the wrong thing) answers; a saved change reopens the
//! core so sync moves to the new backend at once.

use guestpass_core::backend::{probe, Dialect, Reached};
use guestpass_core::settings::{self, Override, Settings};
use guestpass_core::About;
use guestpass_proto::ApiError;
use serde::{Deserialize, Serialize};

use crate::state::{data_dir, env, resolved_settings, AppState, BUILD_DEFAULT_BACKEND};

/// What the screen shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingsView {
    /// As saved by this screen (the field's value).
    backend_url: Option<String>,
    backend_dialect: Option<Dialect>,
    offline_only: bool,
    /// What the app syncs with now, whoever set it.
    in_effect: Option<String>,
    in_effect_dialect: Option<Dialect>,
    /// Environment variables that win over the screen.
    overrides: Vec<Override>,
    /// The providers offered now ("Continue with …").
    providers: Vec<String>,
    app_version: String,
    data_dir: String,
    /// The build's default server, if this build has one.
    build_default: Option<String>,
}

/// What the screen saves.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SaveSettings {
    backend_url: String,
    offline_only: bool,
}

/// The answer to a save: what was reached (if a server was checked) and the
/// settings now in effect.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Saved {
    reached: Option<Reached>,
    settings: SettingsView,
}

pub(crate) async fn view(state: &AppState) -> Result<SettingsView, ApiError> {
    let dir = data_dir(state.app())?;
    let saved = settings::read(&dir)?;
    let resolved = settings::resolve(saved.clone(), env, BUILD_DEFAULT_BACKEND)?;
    let providers = match state.core().await {
        Ok(core) => core.social_providers(),
        Err(_) => resolved.social.iter().map(|p| p.name.clone()).collect(),
    };
    Ok(SettingsView {
        backend_url: saved.backend_url,
        backend_dialect: saved.backend_dialect,
        offline_only: saved.offline_only,
        in_effect: resolved.backend.as_ref().map(|(u, _)| u.clone()),
        in_effect_dialect: resolved.backend.map(|(_, d)| d),
        overrides: resolved.overrides,
        providers,
        app_version: state.app().package_info().version.to_string(),
        data_dir: dir.display().to_string(),
        build_default: BUILD_DEFAULT_BACKEND
            .filter(|u| !u.trim().is_empty())
            .map(str::to_owned),
    })
}

pub(crate) async fn check(url: &str) -> Result<Reached, ApiError> {
    probe(&settings::normalise_url(url)?).await
}

pub(crate) async fn save(state: &AppState, input: SaveSettings) -> Result<Saved, ApiError> {
    let dir = data_dir(state.app())?;
    // A file damaged by hand is replaced by what the screen saves.
    let before = settings::read(&dir).unwrap_or_default();
    let url = input.backend_url.trim();
    let (next, reached) = if input.offline_only {
        // The address field is not used while offline only: what was saved stays,
        // unchecked, for the day the box is unticked.
        (
            Settings {
                offline_only: true,
                ..before.clone()
            },
            None,
        )
    } else if url.is_empty() {
        (Settings::default(), None)
    } else {
        let url = settings::normalise_url(url)?;
        let reached = probe(&url).await?;
        let social_providers = match reached.dialect {
            Dialect::Guestpass => reached.providers.clone(),
            // Better Auth lists no providers: keep any written into the file by hand.
            Dialect::BetterAuth => before.social_providers.clone(),
        };
        (
            Settings {
                backend_url: Some(url),
                backend_dialect: Some(reached.dialect),
                offline_only: false,
                social_providers,
            },
            Some(reached),
        )
    };
    if next != before {
        settings::write(&dir, &next)?;
        state.reopen().await?;
    }
    Ok(Saved {
        reached,
        settings: view(state).await?,
    })
}

pub(crate) async fn diagnostics(state: &AppState) -> Result<String, ApiError> {
    let core = state.core().await?;
    let dir = data_dir(state.app())?;
    let about = About {
        app_version: state.app().package_info().version.to_string(),
        data_dir: dir.display().to_string(),
        overrides: resolved_settings(&dir)?
            .overrides
            .iter()
            .map(|o| o.name.to_owned())
            .collect(),
    };
    Ok(core.diagnostics(&about).await)
}
