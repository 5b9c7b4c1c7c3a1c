//! Guest recovery commands (issue 16): show or replace the guest's phrase,
//! restore a guest from one, and acknowledge the "the server had forgotten this
//! guest" notice. The phrase crosses the IPC boundary only when the person asks
//! to see it or types it; it is never logged or kept here.

use guestpass_core::{RecoveryPhraseView, SignInOutcome, SyncStatus};
use guestpass_proto::ApiError;
use tauri::State;

use crate::state::AppState;

type Reply<T> = Result<T, ApiError>;

#[tauri::command]
pub(crate) async fn recovery_phrase(state: State<'_, AppState>) -> Reply<RecoveryPhraseView> {
    state
        .core()
        .await?
        .recovery_phrase()
        .await
        .map_err(|e| e.to_api())
}

#[tauri::command]
pub(crate) async fn new_recovery_phrase(state: State<'_, AppState>) -> Reply<RecoveryPhraseView> {
    state
        .core()
        .await?
        .new_recovery_phrase()
        .await
        .map_err(|e| e.to_api())
}

#[tauri::command]
pub(crate) async fn restore_guest(
    state: State<'_, AppState>,
    phrase: String,
) -> Reply<SignInOutcome> {
    state
        .core()
        .await?
        .restore_guest(&phrase)
        .await
        .map_err(|e| e.to_api())
}

#[tauri::command]
pub(crate) async fn dismiss_notice(state: State<'_, AppState>) -> Reply<SyncStatus> {
    Ok(state.core().await?.dismiss_notice())
}
