//! gnome-keyring-daemon (42.x here, still in 50.x) aborts when a client vanishes in
//! the middle of its Secret Service handshake (upstream: GNOME/gnome-keyring work
//! items 190, 196, 199: "gkd_secret_service_get_pkcs11_session: assertion 'client'
//! failed") — and SIGKILLing an app at random instants is exactly that. D-Bus then
//! activates a fresh daemon on the default, locked keyring, so every later keyring
//! call fails. The crash harness notices (the Secret Service name changed owner),
//! starts the daemon again unlocked on the session's keyring files
//! (`GUESTPASS_KEYRING_HOME`, exported by `scripts/with-keyring.sh`) and discards the
//! run: what a dead OS keyring did to it says nothing about the app.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The password `scripts/with-keyring.sh` unlocks its keyring with.
const KEYRING_PASSWORD: &str = "guestpass-ci";

/// (daemon pid we trust, how many times it was replaced).
static KNOWN: Mutex<(Option<u32>, u64)> = Mutex::new((None, 0));

/// The pid owning `org.freedesktop.secrets` on this D-Bus session.
fn owner_pid() -> Option<u32> {
    let out = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            "string:org.freedesktop.secrets",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// How many times the daemon was replaced so far; call before a run.
pub fn generation() -> u64 {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if known.0.is_none() {
        known.0 = owner_pid();
    }
    known.1
}

/// True if the daemon died since `generation` (another lane may already have restarted
/// it); restarts it if it is still dead.
pub fn crashed_since(generation: u64) -> bool {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let now = owner_pid();
    if now.is_none() || now != known.0 {
        restart();
        known.0 = owner_pid();
        known.1 += 1;
    }
    known.1 != generation
}

/// Makes sure the session's Secret Service is the unlocked daemon of
/// `scripts/with-keyring.sh`: a test binary that exits while a background keyring
/// handshake of its app core is in flight can trigger the same upstream abort, and
/// D-Bus then activates a locked daemon that would fail every later test with
/// "no result found". A probe write tells; a failed one restarts the daemon unlocked on
/// the session's keyring files (a no-op outside `with-keyring.sh`).
pub fn ensure_usable() {
    if std::env::var_os("GUESTPASS_KEYRING_HOME").is_none() {
        return;
    }
    let usable = keyring::Entry::new("guestpass-test-probe", "probe")
        .and_then(|e| e.set_password("probe"))
        .is_ok();
    if !usable {
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        restart();
        known.0 = owner_pid();
        known.1 += 1;
    }
}

fn restart() {
    let Ok(home) = std::env::var("GUESTPASS_KEYRING_HOME") else {
        panic!("gnome-keyring-daemon died and GUESTPASS_KEYRING_HOME is unset: run under scripts/with-keyring.sh");
    };
    let mut child = Command::new("gnome-keyring-daemon")
        .args(["--replace", "--unlock", "--components=secrets"])
        .env("XDG_DATA_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gnome-keyring-daemon");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(KEYRING_PASSWORD.as_bytes());
    }
    // It forks the daemon and exits once the daemon owns the name.
    let _ = child.wait();
}
