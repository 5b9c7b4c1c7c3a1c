//! The load generator: wrk with one Lua script per request kind, for a fixed time.
//! The scripts end with `report.lua`, whose `done` hook prints one `BENCH {json}` line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

const REPORT: &str = include_str!("../lua/report.lua");
const SIGN_IN: &str = include_str!("../lua/sign_in.lua");
const GET_SESSION: &str = include_str!("../lua/get_session.lua");
const UPGRADE: &str = include_str!("../lua/upgrade.lua");
const PUSH: &str = include_str!("../lua/push.lua");
const PULL: &str = include_str!("../lua/pull.lua");

/// wrk threads. Two keeps the generator's share of this 2-core machine the same for
/// every server; each thread drives connections/2 connections.
pub const THREADS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    SignIn,
    GetSession,
    Upgrade,
    /// Record sync (Guestpass only): run by the records scenario, not the side-by-side.
    Push,
    Pull,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::SignIn, Kind::GetSession, Kind::Upgrade];
    pub const RECORDS: [Kind; 2] = [Kind::Push, Kind::Pull];

    pub fn label(self) -> &'static str {
        match self {
            Kind::SignIn => "POST sign-in/anonymous",
            Kind::GetSession => "GET get-session",
            Kind::Upgrade => "email upgrade",
            Kind::Push => "POST sync/push (1 change)",
            Kind::Pull => "GET sync/pull (a page)",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Kind::SignIn => SIGN_IN,
            Kind::GetSession => GET_SESSION,
            Kind::Upgrade => UPGRADE,
            Kind::Push => PUSH,
            Kind::Pull => PULL,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Kind::SignIn => "sign_in.lua",
            Kind::GetSession => "get_session.lua",
            Kind::Upgrade => "upgrade.lua",
            Kind::Push => "push.lua",
            Kind::Pull => "pull.lua",
        }
    }
}

/// What wrk measured in one cell.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Measured {
    pub requests: u64,
    pub duration_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Responses with status >= 400.
    pub status_errors: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

impl Measured {
    pub fn per_sec(&self) -> f64 {
        if self.duration_us == 0 {
            return 0.0;
        }
        self.requests as f64 * 1e6 / self.duration_us as f64
    }

    /// Failed requests: HTTP >= 400 plus socket errors (connect, read, write, timeout).
    pub fn errors(&self) -> u64 {
        self.status_errors + self.connect + self.read + self.write + self.timeout
    }
}

/// The scripts, written once into a directory wrk can read.
#[derive(Clone)]
pub struct Scripts {
    dir: Arc<tempfile::TempDir>,
}

impl Scripts {
    pub fn write() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        for kind in Kind::ALL.into_iter().chain(Kind::RECORDS) {
            std::fs::write(
                dir.path().join(kind.file_name()),
                format!("{}\n{REPORT}", kind.script()),
            )?;
        }
        Ok(Self { dir: Arc::new(dir) })
    }

    fn path(&self, kind: Kind) -> PathBuf {
        self.dir.path().join(kind.file_name())
    }
}

pub fn check_wrk() -> anyhow::Result<String> {
    let out = Command::new("wrk")
        .arg("--version")
        .output()
        .context("wrk is not installed (scripts/bench.sh installs it: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer": keep the version.
    let first = text.lines().next().unwrap_or("wrk");
    Ok(first
        .split(" Copyright")
        .next()
        .unwrap_or(first)
        .trim()
        .to_string())
}

/// One running wrk.
pub struct Load {
    child: Child,
}

impl Load {
    /// Starts wrk against `base_url` + the kind's path. `tokens` is the file the
    /// get-session and upgrade scripts read.
    pub fn start(
        scripts: &Scripts,
        kind: Kind,
        url: &str,
        connections: usize,
        duration: Duration,
        tokens: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let threads = THREADS.min(connections).max(1);
        let mut cmd = Command::new("wrk");
        cmd.arg("-t")
            .arg(threads.to_string())
            .arg("-c")
            .arg(connections.to_string())
            .arg("-d")
            .arg(format!("{}s", duration.as_secs().max(1)))
            // A stalled request counts as a timeout error instead of hanging the cell.
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(scripts.path(kind))
            .arg(url);
        if let Some(tokens) = tokens {
            cmd.arg("--").arg(tokens).arg(threads.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wrk")?;
        Ok(Self { child })
    }

    /// Asks wrk to stop early; it still prints its report (it handles SIGINT).
    pub fn interrupt(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .context("running kill -INT")?;
        if !status.success() {
            bail!("kill -INT {} failed", self.child.id());
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<Measured> {
        let out = self.child.wait_with_output().context("waiting for wrk")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find_map(|l| l.strip_prefix("BENCH "));
        match line {
            Some(json) => serde_json::from_str(json).context("wrk's BENCH line"),
            None => bail!(
                "wrk gave no report ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

pub fn run(
    scripts: &Scripts,
    kind: Kind,
    url: &str,
    connections: usize,
    duration: Duration,
    tokens: Option<&Path>,
) -> anyhow::Result<Measured> {
    Load::start(scripts, kind, url, connections, duration, tokens)?.finish()
}
