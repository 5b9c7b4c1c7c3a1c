//! Opens the provider's sign-in page in the system browser (RFC 8252: never a webview
//! inside the app). Only the Rust side opens it: the window has no opener permission
//! (`capabilities/default.json`), so a script in the webview cannot open URLs.
//!
//! Test builds only (cargo feature `e2e-seams`, which `scripts/test.sh` turns on for
//! the WebDriver suite): `GUESTPASS_BROWSER` names another program to hand the URL to,
//! the seam the end-to-end tests use to play the browser. A build without the feature
//! does not read that variable at all (the test below, and `strings` on the binary).

use guestpass_core::Opener;
use tauri::AppHandle;
use tauri_plugin_opener::OpenerExt;

pub(crate) struct SystemBrowser(pub(crate) AppHandle);

/// The program the end-to-end tests put in place of the browser.
#[cfg(feature = "e2e-seams")]
fn browser_override() -> Option<String> {
    std::env::var("GUESTPASS_BROWSER")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

#[cfg(not(feature = "e2e-seams"))]
fn browser_override() -> Option<String> {
    None
}

impl Opener for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        match browser_override() {
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

#[cfg(test)]
mod tests {
    /// A shipped build hands every URL to the system browser, whatever the
    /// environment says.
    #[cfg(not(feature = "e2e-seams"))]
    #[test]
    fn a_build_without_the_test_seam_ignores_guestpass_browser() {
        std::env::set_var("GUESTPASS_BROWSER", "/bin/true");
        assert_eq!(super::browser_override(), None);
        std::env::remove_var("GUESTPASS_BROWSER");
    }

    #[cfg(feature = "e2e-seams")]
    #[test]
    fn the_e2e_build_takes_the_stand_in_browser() {
        std::env::set_var("GUESTPASS_BROWSER", "/bin/true");
        assert_eq!(super::browser_override().as_deref(), Some("/bin/true"));
        std::env::remove_var("GUESTPASS_BROWSER");
    }
}
