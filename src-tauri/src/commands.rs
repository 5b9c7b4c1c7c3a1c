//! Tauri commands: each delegates to `guestpass-core` and returns errors as
//! `{code, message}` for the UI to branch on.

use guestpass_core::{Note, SyncStatus, UpgradeOutcome};
use guestpass_proto::{ApiError, SessionResponse, User};
use secrecy::SecretString;
use tauri::{AppHandle, State};

use crate::opener::SystemBrowser;
use crate::state::AppState;

type Reply<T> = Result<T, ApiError>;

fn api(e: guestpass_core::Error) -> ApiError {
    e.to_api()
}

#[tauri::command]
pub(crate) async fn get_session(state: State<'_, AppState>) -> Reply<Option<SessionResponse>> {
    state.core()?.get_session().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn sign_in_anonymous(state: State<'_, AppState>) -> Reply<SessionResponse> {
    state.core()?.sign_in_anonymous().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn list_notes(state: State<'_, AppState>) -> Reply<Vec<Note>> {
    state.core()?.list_notes().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn create_note(state: State<'_, AppState>, body: String) -> Reply<Note> {
    state.core()?.create_note(&body).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn update_note(
    state: State<'_, AppState>,
    id: String,
    body: String,
) -> Reply<Note> {
    state.core()?.update_note(&id, &body).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn delete_note(state: State<'_, AppState>, id: String) -> Reply<()> {
    state.core()?.delete_note(&id).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn set_preference(
    state: State<'_, AppState>,
    key: String,
    value: serde_json::Value,
) -> Reply<User> {
    state.core()?.set_preference(&key, value).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn upgrade(
    state: State<'_, AppState>,
    email: String,
    password: String,
    name: Option<String>,
) -> Reply<UpgradeOutcome> {
    state
        .core()?
        .upgrade(&email, SecretString::from(password), name.as_deref())
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn dismiss_upgrade(state: State<'_, AppState>) -> Reply<SyncStatus> {
    state.core()?.dismiss_upgrade().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn sync_status(state: State<'_, AppState>) -> Reply<SyncStatus> {
    Ok(state.core()?.sync_status())
}

#[tauri::command]
pub(crate) async fn sync_now(state: State<'_, AppState>) -> Reply<SyncStatus> {
    Ok(state.core()?.sync_now().await)
}

#[tauri::command]
pub(crate) async fn social_providers(state: State<'_, AppState>) -> Reply<Vec<String>> {
    Ok(state.core()?.social_providers())
}

#[tauri::command]
pub(crate) async fn upgrade_with_social(
    app: AppHandle,
    state: State<'_, AppState>,
    provider: String,
) -> Reply<SessionResponse> {
    state
        .core()?
        .upgrade_with_social(&provider, &SystemBrowser(app))
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn cancel_social(state: State<'_, AppState>) -> Reply<()> {
    state.core()?.cancel_social();
    Ok(())
}
