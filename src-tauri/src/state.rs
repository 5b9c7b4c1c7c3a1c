//! What the app manages: the core, or the reason it could not open (shown by the UI).

use std::path::PathBuf;

use guestpass_core::{Config, Guestpass};
use guestpass_proto::ApiError;
use tauri::{AppHandle, Manager};

pub(crate) struct AppState(Result<Guestpass, ApiError>);

impl AppState {
    pub(crate) async fn open(app: &AppHandle) -> Self {
        let opened = match config(app) {
            Ok(config) => Guestpass::open(config).await.map_err(|e| e.to_api()),
            Err(e) => Err(e),
        };
        if let Err(e) = &opened {
            tracing::error!(code = %e.code, "the local store could not be opened: {}", e.message);
        }
        Self(opened)
    }

    pub(crate) fn core(&self) -> Result<&Guestpass, ApiError> {
        self.0.as_ref().map_err(Clone::clone)
    }
}

/// `GUESTPASS_DATA_DIR` and `GUESTPASS_KEYRING_SERVICE` let tests and side-by-side
/// installs keep their own data; by default the platform's app data dir and the app id.
fn config(app: &AppHandle) -> Result<Config, ApiError> {
    let data_dir = match std::env::var_os("GUESTPASS_DATA_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => app.path().app_data_dir().map_err(|e| {
            ApiError::new(guestpass_proto::ErrorCode::DatabaseError, format!("No data folder for the app: {e}"))
        })?,
    };
    let keyring_service = std::env::var("GUESTPASS_KEYRING_SERVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| app.config().identifier.clone());
    Ok(Config { data_dir, keyring_service })
}
