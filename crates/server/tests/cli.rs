//! The `guestpass-server admin …` commands, run as a real process on the database
//! of a running server (SQLite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;

fn cli(db_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guestpass-server"))
        .arg("--database")
        .arg(db_url)
        .args(args)
        .env_remove("GUESTPASS_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_on_the_database() {
    let s = TestServer::start(&Backend::Sqlite).await;
    // The CLI uses the system clock: make these guests two hours old.
    s.clock.set(Utc::now() - Duration::hours(2));
    let (g1, _) = s.guest().await;
    let (g2, _) = s.guest().await;
    let (full, _) = s.full_user("cli@example.com").await;
    let url = s.db.url.clone();

    let (ok, out, err) = cli(&url, &["admin", "list-users", "--anonymous"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&g1) && out.contains(&g2) && !out.contains(&full),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &["admin", "list-users"]);
    assert!(
        ok && out.contains(&full) && out.contains("cli@example.com"),
        "{out}"
    );

    let (ok, _, err) = cli(&url, &["admin", "cleanup", "--dry-run"]);
    assert!(!ok && err.contains("maxAge"), "no maxAge configured: {err}");
    let (ok, out, _) = cli(
        &url,
        &["admin", "cleanup", "--dry-run", "--max-age", "3600"],
    );
    assert!(
        ok && out.starts_with("2 stale guest(s) would be deleted"),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &["admin", "cleanup", "--max-age", "3600"]);
    assert!(ok && out.starts_with("deleted 2 stale guest(s)"), "{out}");

    let (ok, out, _) = cli(&url, &["admin", "remove-user", &full]);
    assert!(ok && out.contains(&full), "{out}");
    let (ok, _, err) = cli(&url, &["admin", "remove-user", &full]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = cli(&url, &["admin", "remove-user", "usr_' OR 1=1"]);
    assert!(!ok && err.contains("Invalid user id"), "{err}");

    let (ok, out, _) = cli(&url, &["admin", "audit-log", "--limit", "200"]);
    assert!(ok);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deleted: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "user.deleted")
        .map(|e| {
            (
                e["userId"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert!(deleted.contains(&(g1.clone(), "system".into())));
    assert!(deleted.contains(&(g2.clone(), "system".into())));
    assert!(deleted.contains(&(full.clone(), "admin".into())));
    s.stop().await;
}
