//! CPU time of the processes in a cell, from `/proc`: the server under test, the load
//! generator (wrk, a child of this process: its time shows in our `cutime`/`cstime`
//! once it has been waited for) and PostgreSQL's server processes (every `postgres`).
//! Requests per second drift with whatever else the 2 cores do; the server's CPU
//! time per request does not, and the load generator's share says how much of the
//! machine was left for the server.

use std::sync::OnceLock;

/// One reading, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    server: u64,
    waited_children: u64,
    postgres: u64,
}

/// CPU seconds spent between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub server_s: f64,
    pub load_s: f64,
    /// `None` when the cell does not use PostgreSQL.
    pub postgres_s: Option<f64>,
}

impl Spent {
    /// The server process's CPU per request, in microseconds.
    pub fn server_us_per_request(&self, requests: u64) -> Option<f64> {
        (requests > 0).then(|| self.server_s * 1e6 / requests as f64)
    }

    /// The same with PostgreSQL's processes added (PostgreSQL cells only).
    pub fn with_db_us_per_request(&self, requests: u64) -> Option<f64> {
        let pg = self.postgres_s?;
        (requests > 0).then(|| (self.server_s + pg) * 1e6 / requests as f64)
    }
}

impl Reading {
    pub fn now(server_pid: u32) -> Self {
        let own = stat_ticks(&server_pid.to_string()).map_or(0, |t| t.0);
        let children = stat_ticks("self").map_or(0, |t| t.1);
        Self {
            server: own,
            waited_children: children,
            postgres: postgres_ticks(),
        }
    }

    pub fn since(&self, before: &Reading, postgres: bool) -> Spent {
        let secs = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks_per_sec();
        Spent {
            server_s: secs(self.server, before.server),
            load_s: secs(self.waited_children, before.waited_children),
            postgres_s: postgres.then(|| secs(self.postgres, before.postgres)),
        }
    }
}

/// `(utime + stime, cutime + cstime)` of `/proc/<pid>/stat`.
fn stat_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from
    // after its closing one (the first there is field 3, the state).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    match f.as_slice() {
        [utime, stime, cutime, cstime] => Some((utime + stime, cutime + cstime)),
        _ => None,
    }
}

/// Every `postgres` process's own CPU ticks (the postmaster, backends, walwriter…).
/// A backend that exits during the cell takes its time with it; the pools keep
/// theirs open, so that is small.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "postgres")
        })
        .filter_map(|pid| stat_ticks(&pid).map(|t| t.0))
        .sum()
}

/// `getconf CLK_TCK` (100 on every Linux this runs on; asked once).
fn ticks_per_sec() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}
