//! Opens the provider's sign-in page in the system browser (RFC 8252: never a webview
//! inside the app). `GUESTPASS_BROWSER` names another program to hand the URL to, the
//! seam the end-to-end tests use to play the browser.

use guestpass_core::Opener;
use tauri::AppHandle;
use tauri_plugin_opener::OpenerExt;

pub(crate) struct SystemBrowser(pub(crate) AppHandle);

impl Opener for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        match std::env::var("GUESTPASS_BROWSER")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            Some(program) => std::process::Command::new(program)
                .arg(url)
                .spawn()
                .map(drop)
                .map_err(|e| format!("could not start the browser: {e}")),
            None => self
                .0
                .opener()
                .open_url(url, None::<&str>)
                .map_err(|e| format!("could not open the system browser: {e}")),
        }
    }
}
