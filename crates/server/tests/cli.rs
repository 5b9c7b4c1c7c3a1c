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

/// `serve --listen LISTEN` on a fresh SQLite file with exactly these secrets:
/// the child, its database file, and its stderr (read on another thread).
fn serve(
    listen: &str,
    secret: Option<&str>,
    admin_key: Option<&str>,
) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("server.db").display());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_guestpass-server"));
    cmd.args(["serve", "--listen", listen, "--database", &url])
        .env_remove("GUESTPASS_CONFIG")
        .env_remove("GUESTPASS_SECRET")
        .env_remove("GUESTPASS_ADMIN_API_KEY")
        .env_remove("GUESTPASS_LISTEN")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(v) = secret {
        cmd.env("GUESTPASS_SECRET", v);
    }
    if let Some(v) = admin_key {
        cmd.env("GUESTPASS_ADMIN_API_KEY", v);
    }
    (cmd.spawn().unwrap(), dir)
}

/// Waits for the server's "listening" line, then stops it (the child we started).
fn assert_starts(mut child: std::process::Child) {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("guestpass-server listening on") {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
    }
    // stderr closed without the line: the server exited.
    let status = child.wait().unwrap();
    panic!("the server did not start ({status}):\n{seen}");
}

const LONG_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
const LONG_ADMIN_KEY: &str = "admin-0123456789abcdef0123456789abcdef";

#[test]
fn a_reachable_server_refuses_to_start_with_short_secrets() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let cases = [
            (None, None, "secret is not set"),
            (
                Some("hunter2-but-short"),
                None,
                "secret is shorter than 32 bytes",
            ),
            (
                Some(LONG_SECRET),
                Some("adm1n-but-short"),
                "adminApiKey is shorter than 32 characters",
            ),
        ];
        for (secret, admin_key, why) in cases {
            let (child, dir) = serve(listen, secret, admin_key);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{listen} {why}: started\n{stderr}");
            assert!(
                stderr.contains(why) && stderr.contains("openssl rand -base64 32"),
                "{listen}: {stderr}"
            );
            for value in [secret, admin_key].into_iter().flatten() {
                assert!(!stderr.contains(value), "the value leaked: {stderr}");
            }
            // Refused before the database was touched.
            assert!(!dir.path().join("server.db").exists(), "{stderr}");
        }
    }
}

#[test]
fn loopback_starts_with_anything_and_a_reachable_server_with_long_secrets() {
    // The dev run: generated secret, short admin key, as before.
    let (child, _dir) = serve("127.0.0.1:0", None, Some("dev"));
    assert_starts(child);
    let (child, _dir) = serve("[::1]:0", Some("short"), None);
    assert_starts(child);
    // Reachable, with the secrets it needs; no admin key is fine (the API is closed).
    let (child, _dir) = serve("0.0.0.0:0", Some(LONG_SECRET), Some(LONG_ADMIN_KEY));
    assert_starts(child);
    let (child, _dir) = serve("0.0.0.0:0", Some(LONG_SECRET), None);
    assert_starts(child);
}

/// `check-config` before a restart: a bad file is refused with its line and the
/// reason, nothing is started or touched; a good one passes.
#[test]
fn check_config_names_the_line_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("server.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guestpass-server"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .env_remove("GUESTPASS_CONFIG")
            .env_remove("GUESTPASS_SECRET")
            .env_remove("GUESTPASS_LISTEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let good = format!(
        "listen = \"0.0.0.0:8080\"\nsecret = \"{LONG_SECRET}\"\ndatabaseUrl = \"sqlite:///var/lib/guestpass/server.db\"\ntrustedProxies = [\"10.0.0.0/8\"]\n"
    );
    let (ok, out) = check(&good);
    assert!(ok && out.contains("the config is valid"), "{out}");

    let cases = [
        // A value of the wrong type: toml's line and column.
        (
            "appName = \"x\"\nlisten = 3000\n",
            "line 2",
            "expected socket address",
        ),
        // An unknown key (a typo).
        (
            "appName = \"x\"\n\ntrustedProxy = []\n",
            "line 3",
            "unknown field `trustedProxy`",
        ),
        // A parsed value that breaks a rule: the line that sets it.
        (
            "listen = \"0.0.0.0:8080\"\nsecret = \"short\"\n",
            "server.toml:2:",
            "secret is shorter than 32 bytes",
        ),
        (
            "appName = \"x\"\ntrustedProxies = [\"10.0.0.0/33\"]\n",
            "server.toml:2:",
            "is not an address or CIDR",
        ),
        (
            "appName = \"x\"\ntrustedOrigins = [\"app.example.com\"]\n",
            "server.toml:2:",
            "is not an origin",
        ),
    ];
    for (text, line, reason) in cases {
        let (ok, out) = check(text);
        assert!(!ok, "accepted:\n{text}\n{out}");
        assert!(out.contains(line) && out.contains(reason), "{text}\n{out}");
        assert!(
            !out.contains("short\""),
            "the secret's value is not echoed: {out}"
        );
    }
    assert!(!dir.path().join("guestpass-server.db").exists());

    // The shipped example is valid as shipped.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../server.example.toml");
    let (ok, out) = check(&std::fs::read_to_string(example).unwrap());
    assert!(ok, "{out}");
}
