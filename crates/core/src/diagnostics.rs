//! "Copy diagnostics" (issue 15): what a person pastes into a support request —
//! versions, where the data lives, the backend, the sync state and the last
//! problems. Never a secret: no token, password, device key, email address or note
//! text is read here, and the problems are the `{code, message}` the UI already
//! showed (messages are written never to carry a secret).

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;

use guestpass_proto::{format_time, ApiError};

use crate::identity::device_user;
use crate::sync::SyncState;
use crate::Guestpass;

/// What the app knows and the core does not.
#[derive(Debug, Clone)]
pub struct About {
    pub app_version: String,
    pub data_dir: String,
    /// Environment variables that override the saved settings (names only).
    pub overrides: Vec<String>,
}

/// How many problems are kept.
const KEPT: usize = 10;

/// The last [`KEPT`] distinct reasons sync stopped, newest last.
#[derive(Debug, Default)]
pub(crate) struct Problems(Mutex<VecDeque<(String, ApiError)>>);

impl Problems {
    pub(crate) fn note(&self, reason: ApiError) {
        let Ok(mut kept) = self.0.lock() else { return };
        if kept.back().is_some_and(|(_, last)| *last == reason) {
            return;
        }
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((format_time(&chrono::Utc::now()), reason));
    }

    fn list(&self) -> Vec<(String, ApiError)> {
        self.0
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn state_word(state: SyncState) -> &'static str {
    match state {
        SyncState::LocalOnly => "on this device only (no server set)",
        SyncState::Offline => "offline",
        SyncState::Syncing => "syncing",
        SyncState::UpToDate => "up to date",
        SyncState::NeedsAttention => "needs attention",
    }
}

impl Guestpass {
    /// The diagnostics text. A part that cannot be read says so instead of failing
    /// the whole report: it is asked for when something is already wrong.
    pub async fn diagnostics(&self, about: &About) -> String {
        let mut out = String::new();
        let status = self.sync_status();
        let user = match self.store.pool().acquire().await {
            Ok(mut conn) => device_user(&mut conn)
                .await
                .map_err(|e| self.store.err(e).to_string()),
            Err(e) => Err(self.store.err(e).to_string()),
        };
        // `write!` to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(
            out,
            "Guestpass diagnostics (no passwords, tokens, email addresses or notes)"
        );
        let _ = writeln!(
            out,
            "App: {} (core {}), {} {}",
            about.app_version,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        let _ = writeln!(out, "Data folder: {}", about.data_dir);
        let backend = match &self.sync.backend {
            Some(b) => format!("{} ({:?})", b.base_url(), b.dialect()),
            None => "none: on this device only".into(),
        };
        let _ = writeln!(out, "Server: {backend}");
        if !about.overrides.is_empty() {
            let _ = writeln!(
                out,
                "Set by the environment: {}",
                about.overrides.join(", ")
            );
        }
        let _ = match user {
            Ok(Some(u)) => writeln!(
                out,
                "User: {} {}{}",
                if u.is_anonymous {
                    "guest"
                } else {
                    "full account"
                },
                u.id,
                if u.is_anonymous {
                    ""
                } else if u.email_verified {
                    ", email verified"
                } else {
                    ", email not verified"
                }
            ),
            Ok(None) => writeln!(out, "User: none yet"),
            Err(e) => writeln!(out, "User: could not be read ({e})"),
        };
        let _ =
            writeln!(
            out,
            "Sync: {}; last synced {}; {} change(s) waiting, {} set aside; notes on the server: {}",
            state_word(status.state),
            status.last_synced_at.as_deref().unwrap_or("never"),
            status.pending_changes,
            status.refused_changes,
            if status.records_on_server { "yes" } else { "no" }
        );
        if status.pending_upgrade.is_some() {
            // Its address stays out of the report.
            let _ = writeln!(out, "An upgrade is waiting for the server.");
        }
        let problems = self.sync.problems.list();
        if problems.is_empty() {
            let _ = writeln!(out, "Recent problems: none");
        } else {
            let _ = writeln!(out, "Recent problems (oldest first):");
            for (at, e) in problems {
                let _ = writeln!(out, "  {at} {} {}", e.code, e.message);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use guestpass_proto::ErrorCode;

    #[test]
    fn problems_keep_the_last_ten_distinct() {
        let p = Problems::default();
        for i in 0..12 {
            p.note(ApiError::new(
                ErrorCode::BackendUnreachable,
                format!("try {i}"),
            ));
            p.note(ApiError::new(
                ErrorCode::BackendUnreachable,
                format!("try {i}"),
            ));
        }
        let kept = p.list();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].1.message, "try 2");
        assert_eq!(kept[9].1.message, "try 11");
    }
}
