//! What the app manages: the core, or the reason it could not open (shown by the UI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use guestpass_core::{settings, Config, Guestpass};
use guestpass_proto::{ApiError, ErrorCode};
use tauri::{AppHandle, Emitter, Manager};

/// The opened core. A store that could not open (read-only or full disk, locked
/// keyring, damaged file) is tried again by the next command, so the UI's "Try again"
/// works once the person has fixed the cause, without restarting the app.
pub(crate) struct AppState {
    app: AppHandle,
    opened: tokio::sync::Mutex<Option<Opened>>,
}

/// A core and the two tasks that belong to it (its sync loop, and the forwarding of
/// its status to the UI), stopped together when the settings change the backend.
struct Opened {
    core: Arc<Guestpass>,
    tasks: [tauri::async_runtime::JoinHandle<()>; 2],
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
        if let Some(opened) = slot.as_ref() {
            return Ok(opened.core.clone());
        }
        let opened = match config(&self.app) {
            Ok(config) => Guestpass::open(config).await.map_err(|e| e.to_api()),
            Err(e) => Err(e),
        };
        match opened {
            Ok(core) => {
                let core = Arc::new(core);
                let tasks = start_sync(&self.app, core.clone());
                *slot = Some(Opened {
                    core: core.clone(),
                    tasks,
                });
                Ok(core)
            }
            Err(e) => {
                tracing::error!(code = %e.code, "the local store could not be opened: {}", e.message);
                Err(e)
            }
        }
    }

    /// Stops the core's sync and opens it again with the settings as now saved. A
    /// command still holding the old core finishes on it; its store is the same file.
    pub(crate) async fn reopen(&self) -> Result<Arc<Guestpass>, ApiError> {
        if let Some(old) = self.opened.lock().await.take() {
            for task in old.tasks {
                task.abort();
            }
        }
        self.core().await
    }

    pub(crate) fn app(&self) -> &AppHandle {
        &self.app
    }
}

/// The background sync loop, and its status forwarded to the UI as `sync-status`.
fn start_sync(app: &AppHandle, core: Arc<Guestpass>) -> [tauri::async_runtime::JoinHandle<()>; 2] {
    let mut changes = core.subscribe_sync();
    let handle = app.clone();
    // The first status of a reopened core is news to the UI too.
    changes.mark_changed();
    let forward = tauri::async_runtime::spawn(async move {
        while changes.changed().await.is_ok() {
            let status = changes.borrow_and_update().clone();
            if let Err(e) = handle.emit("sync-status", status) {
                tracing::warn!("could not forward the sync status: {e}");
            }
        }
    });
    [tauri::async_runtime::spawn(core.run_sync()), forward]
}

/// The backend a build for end users starts with when nothing else is set: a
/// build-time setting (`GUESTPASS_DEFAULT_BACKEND_URL` when compiling), empty in this
/// repository, so an installed app starts "On this device only" until one is set.
pub(crate) const BUILD_DEFAULT_BACKEND: Option<&str> = option_env!("GUESTPASS_DEFAULT_BACKEND_URL");

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// `GUESTPASS_DATA_DIR`, if set: also read before the app starts, by the one-instance
/// lock (`single_instance.rs`).
pub(crate) fn data_dir_override() -> Option<PathBuf> {
    env("GUESTPASS_DATA_DIR").map(PathBuf::from)
}

/// `GUESTPASS_DATA_DIR` lets tests and side-by-side installs keep their own data; by
/// default the platform's app data dir.
pub(crate) fn data_dir(app: &AppHandle) -> Result<PathBuf, ApiError> {
    match data_dir_override() {
        Some(dir) => Ok(dir),
        None => app.path().app_data_dir().map_err(|e| {
            ApiError::new(
                ErrorCode::DatabaseError,
                format!("No data folder for the app: {e}"),
            )
        }),
    }
}

/// The settings in effect for `data_dir`: the environment, its `settings.json`, the
/// build's default (core `settings.rs`).
pub(crate) fn resolved_settings(data_dir: &Path) -> Result<settings::Resolved, ApiError> {
    settings::resolve(settings::read(data_dir)?, env, BUILD_DEFAULT_BACKEND)
}

/// `GUESTPASS_KEYRING_SERVICE` keeps a test's secrets apart; by default the app id.
fn config(app: &AppHandle) -> Result<Config, ApiError> {
    let data_dir = data_dir(app)?;
    let resolved = resolved_settings(&data_dir)?;
    let keyring_service =
        env("GUESTPASS_KEYRING_SERVICE").unwrap_or_else(|| app.config().identifier.clone());
    Ok(Config {
        data_dir,
        keyring_service,
        backend: resolved.backend,
        social: resolved.social,
    })
}
