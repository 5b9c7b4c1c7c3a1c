//! A Node.js test peer: `node server.mjs <port>` in a folder under `tests/peers/`, ready
//! when it prints one JSON line with its `port` (no sleeps). The child is killed when
//! the [`NodePeer`] is dropped, and it also exits by itself when its stdin closes, so
//! even a test process that dies hard leaves nothing behind.

use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long node gets to load the peer and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/peers/<name>` in this repository.
pub fn peer_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(name)
}

pub struct NodePeer {
    /// The peer's ready line.
    pub ready: serde_json::Value,
    pub port: u16,
    child: Child,
    // Held open: closing stdin tells the peer to exit.
    stdin: Option<ChildStdin>,
    // Held so the peer never writes into a closed pipe.
    _stdout: Option<ChildStdout>,
    stderr: tempfile::NamedTempFile,
}

impl NodePeer {
    /// Starts `node server.mjs <port>` in `dir` (which must have `node_modules/<package>`),
    /// with `env` added and `env_remove` taken away. `label` names it in failures.
    pub fn start(
        label: &str,
        dir: &Path,
        package: &str,
        port: &str,
        env: &[(&str, &str)],
        env_remove: &[&str],
    ) -> Self {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "the {label} is not installed: run `npm ci` in {} (scripts/setup.sh test does it)",
            dir.display()
        );
        let mut stderr = tempfile::NamedTempFile::new().expect("temp file for the peer's stderr");
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs")
            .arg(port)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"));
        for k in env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node` for the {label}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");

        // Read the ready line on a thread so a hung node cannot hang the test forever.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let got = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((got, reader.into_inner()));
        });
        let (line, stdout) = match rx.recv_timeout(READY_TIMEOUT) {
            Ok((Ok(line), stdout)) if !line.trim().is_empty() => (line, stdout),
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the {label} did not start within {READY_TIMEOUT:?} ({:?}); its stderr:\n{}",
                    outcome.map(|(o, _)| o),
                    read_all(&mut stderr)
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the {label}'s ready line {line:?} is not JSON: {e}"));
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("the {label}'s ready line {line:?} has no port"));
        Self {
            ready,
            port,
            child,
            stdin,
            _stdout: Some(stdout),
            stderr,
        }
    }

    /// Kills the peer now and waits for it to be gone, so its port refuses connections.
    pub fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the peer wrote to stderr so far, for diagnostics.
    pub fn stderr(&mut self) -> String {
        read_all(&mut self.stderr)
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_all(f: &mut tempfile::NamedTempFile) -> String {
    let mut s = String::new();
    let file = f.as_file_mut();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    s
}
