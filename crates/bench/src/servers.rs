//! The servers under test, each a child process on a loopback port: the reference
//! server's binary with a generated config, and the stock Better Auth peer of
//! `tests/peers/better-auth` (in memory, or on PostgreSQL). Dropping a [`Server`]
//! kills it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server gets to open its database and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server, and on what storage: a row label in the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    GuestpassSqlite,
    GuestpassPostgres {
        url: String,
    },
    BetterAuthMemory,
    /// Better Auth on the same PostgreSQL server as Guestpass's: the durable,
    /// like-for-like baseline (the in-memory one writes nothing).
    BetterAuthPostgres {
        url: String,
    },
}

impl Target {
    pub fn server(&self) -> &'static str {
        match self {
            Target::GuestpassSqlite | Target::GuestpassPostgres { .. } => "Guestpass",
            Target::BetterAuthMemory | Target::BetterAuthPostgres { .. } => "Better Auth",
        }
    }

    pub fn storage(&self) -> &'static str {
        match self {
            Target::GuestpassSqlite => "SQLite (WAL)",
            Target::GuestpassPostgres { .. } => "PostgreSQL",
            Target::BetterAuthMemory => "in-memory adapter (no disk)",
            Target::BetterAuthPostgres { .. } => "PostgreSQL (pg Pool)",
        }
    }

    pub fn is_guestpass(&self) -> bool {
        matches!(
            self,
            Target::GuestpassSqlite | Target::GuestpassPostgres { .. }
        )
    }

    /// The PostgreSQL server's URL, for a target that runs on one.
    pub fn postgres_url(&self) -> Option<&str> {
        match self {
            Target::GuestpassPostgres { url } | Target::BetterAuthPostgres { url } => Some(url),
            Target::GuestpassSqlite | Target::BetterAuthMemory => None,
        }
    }

    /// The same server on another PostgreSQL database (a fresh one per run); any
    /// other target as it is.
    pub fn with_postgres_url(&self, url: String) -> Self {
        match self {
            Target::GuestpassPostgres { .. } => Target::GuestpassPostgres { url },
            Target::BetterAuthPostgres { .. } => Target::BetterAuthPostgres { url },
            Target::GuestpassSqlite | Target::BetterAuthMemory => self.clone(),
        }
    }
}

/// Where to find what the bench starts.
pub struct Paths {
    pub server_bin: PathBuf,
    pub better_auth_dir: PathBuf,
}

pub struct Server {
    pub base_url: String,
    /// A Guestpass server's database URL (None for Better Auth, whose database the
    /// bench never opens itself).
    pub database_url: Option<String>,
    child: Child,
    // Held open: the Better Auth peer exits when its stdin closes, so it cannot
    // outlive the bench even if the bench is killed.
    _stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl Server {
    pub fn start(target: &Target, paths: &Paths) -> anyhow::Result<Self> {
        match target {
            Target::GuestpassSqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("guestpass.db").display());
                start_guestpass(paths, &url, dir)
            }
            Target::GuestpassPostgres { url } => start_guestpass(paths, url, tempfile::tempdir()?),
            Target::BetterAuthMemory => start_better_auth(paths, None),
            Target::BetterAuthPostgres { url } => start_better_auth(paths, Some(url)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        peak_rss_kib(self.pid())
    }

    /// The generated config of a Guestpass server (its database, maxAge, …), for the
    /// admin CLI to work on the same database.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.toml")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The config a user would write for a benchmark: rate limit off (the one thing a
/// load test must change), cleanup only when asked, guests given an account's record
/// quota (the record-sync bench's users are guests), everything else the defaults —
/// in particular the password hash parameters, which are not configurable.
pub fn guestpass_config(port: u16, database_url: &str) -> String {
    format!(
        r#"siteUrl = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
databaseUrl = "{database_url}"
cleanupIntervalSecs = 0

[authMethods]
anonymous = {{ enabled = true, maxAge = 2592000 }}
emailPassword = true

[rateLimit]
anonymousPerMinute = 0
upgradePerHour = 0

# The record-sync bench's devices are guests holding 10,000 notes (and more): they get
# an account's quota (the default) instead of a guest's 2,000 records / 8 MiB.
[records]
guestMaxRecords = 50000
guestMaxBytes = 67108864
"#
    )
}

fn start_guestpass(paths: &Paths, url: &str, dir: tempfile::TempDir) -> anyhow::Result<Server> {
    if !paths.server_bin.is_file() {
        bail!(
            "no server binary at {} (build it first: cargo build -p guestpass-server)",
            paths.server_bin.display()
        );
    }
    let port = free_port()?;
    let config = dir.path().join("server.toml");
    std::fs::write(&config, guestpass_config(port, url))?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut child = Command::new(&paths.server_bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        // Per-request logging is off by default; warnings (e.g. "no SMTP configured")
        // go to the log file, not the terminal.
        .env("RUST_LOG", "warn")
        .env_remove("GUESTPASS_CONFIG")
        .env_remove("GUESTPASS_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", paths.server_bin.display()))?;
    let base_url = format!("http://127.0.0.1:{port}");
    let health = format!("{base_url}/health");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            bail!("guestpass-server exited during start ({status}):\n{log}");
        }
        if http_ok(&health) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("guestpass-server did not answer {health} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        base_url,
        database_url: Some(url.to_string()),
        child,
        _stdin: None,
        dir,
    })
}

/// A bare HTTP/1.0 GET over std, so readiness polling needs no runtime.
fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The peer on its in-memory adapter, or on the PostgreSQL database `database_url`
/// (it creates Better Auth's schema there before it says it is ready).
fn start_better_auth(paths: &Paths, database_url: Option<&str>) -> anyhow::Result<Server> {
    let dir = &paths.better_auth_dir;
    let needed = if database_url.is_some() {
        "node_modules/pg"
    } else {
        "node_modules/better-auth"
    };
    if !dir.join(needed).is_dir() {
        bail!(
            "the Better Auth peer is not installed (no {needed}): run `npm ci` in {}",
            dir.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let log = std::fs::File::create(tmp.path().join("better-auth.log"))?;
    let mut cmd = Command::new("node");
    cmd.arg("server.mjs")
        .arg("0")
        .current_dir(dir)
        // "production" would turn Better Auth's rate limiter on.
        .env_remove("NODE_ENV")
        .env_remove("PEER_ANON_RATE_LIMIT");
    match database_url {
        Some(url) => cmd.env("PEER_DATABASE_URL", url),
        None => cmd.env_remove("PEER_DATABASE_URL"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting `node server.mjs` (is Node.js installed?)")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let got = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(got);
        // Keep draining so the peer never writes into a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            let log =
                std::fs::read_to_string(tmp.path().join("better-auth.log")).unwrap_or_default();
            bail!("the Better Auth peer did not start ({outcome:?}):\n{log}");
        }
    };
    let ready: serde_json::Value =
        serde_json::from_str(line.trim()).context("the Better Auth peer's ready line")?;
    let port = ready["port"]
        .as_u64()
        .context("no port in the ready line")?;
    Ok(Server {
        base_url: format!("http://127.0.0.1:{port}"),
        database_url: None,
        child,
        _stdin: stdin,
        dir: tmp,
    })
}

/// `tests/peers/better-auth` under the repository root.
pub fn better_auth_dir(root: &Path) -> PathBuf {
    root.join("tests/peers/better-auth")
}
