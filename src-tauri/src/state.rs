//! What the app manages: the core, or the reason it could not open (shown by the UI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use guestpass_core::{Config, Dialect, Guestpass, SocialProvider};
use guestpass_proto::{ApiError, ErrorCode};
use tauri::{AppHandle, Emitter, Manager};

/// The opened core. A store that could not open (read-only or full disk, locked
/// keyring, damaged file) is tried again by the next command, so the UI's "Try again"
/// works once the person has fixed the cause, without restarting the app.
pub(crate) struct AppState {
    app: AppHandle,
    opened: tokio::sync::Mutex<Option<Arc<Guestpass>>>,
}

impl AppState {
    pub(crate) async fn open(app: &AppHandle) -> Self {
        let state = Self {
            app: app.clone(),
            opened: tokio::sync::Mutex::new(None),
        };
        // Open now so sync starts at launch; a failure is only logged here and
        // answered to the UI's first command.
        let _ = state.core().await;
        state
    }

    pub(crate) async fn core(&self) -> Result<Arc<Guestpass>, ApiError> {
        let mut slot = self.opened.lock().await;
        if let Some(core) = slot.as_ref() {
            return Ok(core.clone());
        }
        let opened = match config(&self.app) {
            Ok(config) => Guestpass::open(config).await.map_err(|e| e.to_api()),
            Err(e) => Err(e),
        };
        match opened {
            Ok(core) => {
                let core = Arc::new(core);
                start_sync(&self.app, core.clone());
                *slot = Some(core.clone());
                Ok(core)
            }
            Err(e) => {
                tracing::error!(code = %e.code, "the local store could not be opened: {}", e.message);
                Err(e)
            }
        }
    }
}

/// The background sync loop, and its status forwarded to the UI as `sync-status`.
fn start_sync(app: &AppHandle, core: Arc<Guestpass>) {
    let mut changes = core.subscribe_sync();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        while changes.changed().await.is_ok() {
            let status = changes.borrow_and_update().clone();
            if let Err(e) = handle.emit("sync-status", status) {
                tracing::warn!("could not forward the sync status: {e}");
            }
        }
    });
    tauri::async_runtime::spawn(core.run_sync());
}

/// Settings a person may keep in `settings.json` in the data dir; the environment
/// (`GUESTPASS_BACKEND_URL`, `GUESTPASS_BACKEND_DIALECT`) overrides them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    backend_url: Option<String>,
    backend_dialect: Option<String>,
    /// `[{"name": "google", "issuer": "…", "clientId": "…"}]`: public client ids only;
    /// any client secret stays on the server.
    #[serde(default)]
    social_providers: Vec<SocialProvider>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

fn read_settings(data_dir: &Path) -> Result<Settings, ApiError> {
    let path = data_dir.join("settings.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("{} is not valid: {e}", path.display()),
            )
        }),
        Err(_) => Ok(Settings::default()),
    }
}

/// `GUESTPASS_DATA_DIR`, if set: also read before the app starts, by the one-instance
/// lock (`single_instance.rs`).
pub(crate) fn data_dir_override() -> Option<PathBuf> {
    env("GUESTPASS_DATA_DIR").map(PathBuf::from)
}

/// `GUESTPASS_DATA_DIR` and `GUESTPASS_KEYRING_SERVICE` let tests and side-by-side
/// installs keep their own data; by default the platform's app data dir and the app id.
fn config(app: &AppHandle) -> Result<Config, ApiError> {
    let data_dir = match data_dir_override() {
        Some(dir) => dir,
        None => app.path().app_data_dir().map_err(|e| {
            ApiError::new(
                ErrorCode::DatabaseError,
                format!("No data folder for the app: {e}"),
            )
        })?,
    };
    let settings = read_settings(&data_dir)?;
    let keyring_service =
        env("GUESTPASS_KEYRING_SERVICE").unwrap_or_else(|| app.config().identifier.clone());
    let url = env("GUESTPASS_BACKEND_URL").or(settings.backend_url);
    let dialect = env("GUESTPASS_BACKEND_DIALECT")
        .or(settings.backend_dialect)
        .unwrap_or_else(|| "guestpass".into());
    let backend = match url {
        Some(url) => Some((
            url,
            dialect
                .parse::<Dialect>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?,
        )),
        None => None,
    };
    let social = match env("GUESTPASS_SOCIAL_PROVIDERS") {
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("GUESTPASS_SOCIAL_PROVIDERS is not valid: {e}"),
            )
        })?,
        None => settings.social_providers,
    };
    Ok(Config {
        data_dir,
        keyring_service,
        backend,
        social,
    })
}
