//! What the figures were measured on, printed with them.

use std::process::Command;

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub node: String,
    pub better_auth: String,
    pub wrk: String,
    pub commit: String,
}

impl Machine {
    pub fn probe(root: &std::path::Path, wrk: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let better_auth = std::fs::read_to_string(
            root.join("tests/peers/better-auth/node_modules/better-auth/package.json"),
        )
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
        let commit = output(
            Command::new("git")
                .args(["-C"])
                .arg(root)
                .args(["describe", "--always", "--dirty"]),
        );
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            node: output(Command::new("node").arg("--version")),
            better_auth,
            wrk,
            commit,
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "- machine: {} CPU(s), {}, Linux {}\n- load generator: {} ({} threads), on the same machine, 127.0.0.1\n- Better Auth {} on Node {}; Guestpass at {}\n",
            self.cpus, self.cpu_model, self.kernel, self.wrk, crate::load::THREADS, self.better_auth, self.node, self.commit
        )
    }
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
