//! The system save dialog for "Export my data" (`tauri-plugin-dialog`).
//! `GUESTPASS_EXPORT_PATH` names the file to write instead of asking, the seam the
//! end-to-end tests use to play the person choosing a file (as `GUESTPASS_BROWSER`
//! plays the browser).

use std::path::PathBuf;

use tauri::AppHandle;
use tauri_plugin_dialog::DialogExt;

/// The file the person chose, or `None` when they cancelled.
pub(crate) async fn ask(app: &AppHandle) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GUESTPASS_EXPORT_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Export my data")
        .set_file_name("guestpass-export.json")
        .add_filter("JSON", &["json"])
        .save_file(move |chosen| {
            let _ = tx.send(chosen.and_then(|p| p.into_path().ok()));
        });
    rx.await.ok().flatten()
}
