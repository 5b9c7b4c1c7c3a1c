//! gnome-keyring-daemon (42.x here, still in 50.x) aborts when a client vanishes in
//! the middle of its Secret Service handshake (upstream: GNOME/gnome-keyring work
//! items 190, 196, 199: "gkd_secret_service_get_pkcs11_session: assertion 'client'
//! failed") — and SIGKILLing an app at random instants is exactly that. The session bus
//! of `scripts/with-keyring.sh` then starts a fresh daemon, unlocked on the same keyring
//! files, at the next call; but a call in flight at the abort failed. The crash harness
//! and the convergence runs notice (the Secret Service name changed owner) and discard
//! the run: what a dead OS keyring did to it says nothing about the app.

use std::process::Command;
use std::sync::Mutex;

/// (daemon pid we trust, how many times it was replaced).
static KNOWN: Mutex<(Option<u32>, u64)> = Mutex::new((None, 0));

/// The pid owning `org.freedesktop.secrets` on this D-Bus session (asking does not
/// start a daemon).
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

/// Starts the daemon if none runs: a call to the name makes the bus activate it and
/// returns once it owns the name.
fn activate() {
    let _ = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.DBus.Peer.Ping",
        ])
        .output();
}

/// How many times the daemon was replaced so far; call before a run.
pub fn generation() -> u64 {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if known.0.is_none() {
        activate();
        known.0 = owner_pid();
    }
    known.1
}

/// True if the daemon died since `generation` (another lane may already have seen
/// it); makes sure a daemon runs again before the run is replayed.
pub fn crashed_since(generation: u64) -> bool {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    activate();
    let now = owner_pid();
    if now != known.0 {
        known.0 = now;
        known.1 += 1;
    }
    known.1 != generation
}
