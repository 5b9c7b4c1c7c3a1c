//! Tauri commands: each delegates to `guestpass-core` and returns errors as
//! `{code, message}` for the UI to branch on.

use guestpass_core::backend::Reached;
use guestpass_core::{GuestSummary, Note, SignInChoice, SignInOutcome, SyncStatus, UpgradeOutcome};
use guestpass_proto::{ApiError, SessionResponse, User};
use secrecy::SecretString;
use tauri::{AppHandle, State};

use crate::opener::SystemBrowser;
use crate::settings::{SaveSettings, Saved, SettingsView};
use crate::state::AppState;

type Reply<T> = Result<T, ApiError>;

fn api(e: guestpass_core::Error) -> ApiError {
    e.to_api()
}

#[tauri::command]
pub(crate) async fn get_session(state: State<'_, AppState>) -> Reply<Option<SessionResponse>> {
    state.core().await?.get_session().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn sign_in_anonymous(state: State<'_, AppState>) -> Reply<SessionResponse> {
    state.core().await?.sign_in_anonymous().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn list_notes(state: State<'_, AppState>) -> Reply<Vec<Note>> {
    state.core().await?.list_notes().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn create_note(state: State<'_, AppState>, body: String) -> Reply<Note> {
    state.core().await?.create_note(&body).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn update_note(
    state: State<'_, AppState>,
    id: String,
    body: String,
) -> Reply<Note> {
    state
        .core()
        .await?
        .update_note(&id, &body)
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn delete_note(state: State<'_, AppState>, id: String) -> Reply<()> {
    state.core().await?.delete_note(&id).await.map_err(api)
}

#[tauri::command]
pub(crate) async fn set_preference(
    state: State<'_, AppState>,
    key: String,
    value: serde_json::Value,
) -> Reply<User> {
    state
        .core()
        .await?
        .set_preference(&key, value)
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn upgrade(
    state: State<'_, AppState>,
    email: String,
    password: String,
    name: Option<String>,
) -> Reply<UpgradeOutcome> {
    state
        .core()
        .await?
        .upgrade(&email, SecretString::from(password), name.as_deref())
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn dismiss_upgrade(state: State<'_, AppState>) -> Reply<SyncStatus> {
    state.core().await?.dismiss_upgrade().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn sync_status(state: State<'_, AppState>) -> Reply<SyncStatus> {
    Ok(state.core().await?.sync_status())
}

#[tauri::command]
pub(crate) async fn sync_now(state: State<'_, AppState>) -> Reply<SyncStatus> {
    Ok(state.core().await?.sync_now().await)
}

#[tauri::command]
pub(crate) async fn social_providers(state: State<'_, AppState>) -> Reply<Vec<String>> {
    Ok(state.core().await?.social_providers())
}

#[tauri::command]
pub(crate) async fn upgrade_with_social(
    app: AppHandle,
    state: State<'_, AppState>,
    provider: String,
) -> Reply<SessionResponse> {
    state
        .core()
        .await?
        .upgrade_with_social(&provider, &SystemBrowser(app))
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn cancel_social(state: State<'_, AppState>) -> Reply<()> {
    state.core().await?.cancel_social();
    Ok(())
}

#[tauri::command]
pub(crate) async fn guest_summary(state: State<'_, AppState>) -> Reply<GuestSummary> {
    state.core().await?.guest_summary().await.map_err(api)
}

/// The password crosses the IPC boundary once and is handed straight to core; it is
/// never logged or kept here.
#[tauri::command]
pub(crate) async fn sign_in_email(
    state: State<'_, AppState>,
    email: String,
    password: String,
) -> Reply<SignInOutcome> {
    state
        .core()
        .await?
        .sign_in_email(&email, &password)
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn sign_in_social(
    app: AppHandle,
    state: State<'_, AppState>,
    provider: String,
) -> Reply<SignInOutcome> {
    state
        .core()
        .await?
        .sign_in_social(&provider, &SystemBrowser(app))
        .await
        .map_err(api)
}

/// `choice` is "merge" | "leaveBehind" | "cancel"; anything else is refused by Tauri
/// while reading the arguments, before core is called.
#[tauri::command]
pub(crate) async fn complete_sign_in(
    state: State<'_, AppState>,
    choice: SignInChoice,
) -> Reply<SessionResponse> {
    state
        .core()
        .await?
        .complete_sign_in(choice)
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn sign_out(
    state: State<'_, AppState>,
    remove_data: bool,
    force: bool,
) -> Reply<SessionResponse> {
    state
        .core()
        .await?
        .sign_out(remove_data, force)
        .await
        .map_err(api)
}

// Account care (issue 13). Passwords cross the IPC boundary once and go straight to
// core, wrapped; they are never logged or kept here.

#[tauri::command]
pub(crate) async fn request_password_reset(state: State<'_, AppState>, email: String) -> Reply<()> {
    state
        .core()
        .await?
        .request_password_reset(&email)
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn resend_verification(state: State<'_, AppState>) -> Reply<()> {
    state.core().await?.resend_verification().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn change_password(
    state: State<'_, AppState>,
    current: String,
    new: String,
) -> Reply<()> {
    state
        .core()
        .await?
        .change_password(SecretString::from(current), SecretString::from(new))
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn deletion_summary(state: State<'_, AppState>) -> Reply<GuestSummary> {
    state.core().await?.deletion_summary().await.map_err(api)
}

#[tauri::command]
pub(crate) async fn delete_account(
    state: State<'_, AppState>,
    password: Option<String>,
) -> Reply<SessionResponse> {
    state
        .core()
        .await?
        .delete_account(password.map(SecretString::from))
        .await
        .map_err(api)
}

#[tauri::command]
pub(crate) async fn require_full_account(state: State<'_, AppState>) -> Reply<User> {
    state
        .core()
        .await?
        .require_full_account()
        .await
        .map_err(api)
}

/// Gates first (a guest is never shown the dialog), then asks where, then writes.
/// `None`: the person cancelled the dialog.
#[tauri::command]
pub(crate) async fn export_data(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Reply<Option<String>> {
    let core = state.core().await?;
    core.require_full_account().await.map_err(api)?;
    let Some(path) = crate::save_dialog::ask(&app).await else {
        return Ok(None);
    };
    core.export_to_file(&path).await.map_err(api)?;
    Ok(Some(path.display().to_string()))
}

// The settings screen (settings.rs).

#[tauri::command]
pub(crate) async fn settings(state: State<'_, AppState>) -> Reply<SettingsView> {
    crate::settings::view(&state).await
}

#[tauri::command]
pub(crate) async fn check_backend(url: String) -> Reply<Reached> {
    crate::settings::check(&url).await
}

#[tauri::command]
pub(crate) async fn save_settings(
    state: State<'_, AppState>,
    settings: SaveSettings,
) -> Reply<Saved> {
    crate::settings::save(&state, settings).await
}

#[tauri::command]
pub(crate) async fn diagnostics(state: State<'_, AppState>) -> Reply<String> {
    crate::settings::diagnostics(&state).await
}
