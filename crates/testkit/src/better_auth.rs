//! A real, stock Better Auth server for the `better-auth` dialect tests:
//! `node tests/peers/better-auth/server.mjs` on a free loopback port.
//!
//! Ready when it prints its one line `{"port":N}` (no sleeps). The child is killed when
//! the [`BetterAuthPeer`] is dropped, and it also exits by itself when its stdin closes,
//! so even a test process that dies hard leaves nothing behind.

use std::io::{BufRead, BufReader, Read, Seek};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long node gets to load Better Auth and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct BetterAuthPeer {
    pub base_url: String,
    pub port: u16,
    child: Child,
    // Held open: closing stdin tells the server to exit.
    stdin: Option<ChildStdin>,
    // Held so the server never writes into a closed pipe.
    _stdout: Option<ChildStdout>,
    _stderr: tempfile::NamedTempFile,
}

pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/better-auth")
}

impl BetterAuthPeer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts it with extra environment, e.g. `("PEER_ANON_RATE_LIMIT", "2")`.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = peer_dir();
        assert!(
            dir.join("node_modules/better-auth").is_dir(),
            "the Better Auth test peer is not installed: run `npm ci` in {} (scripts/setup.sh test does it)",
            dir.display()
        );
        let mut stderr = tempfile::NamedTempFile::new().expect("temp file for the peer's stderr");
        let mut cmd = Command::new("node");
        // `("PORT", "N")` in `env` picks the port (e.g. one a device already points at).
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map_or("0", |(_, v)| *v);
        cmd.arg("server.mjs")
            .arg(port)
            .current_dir(&dir)
            .env_remove("NODE_ENV") // "production" would turn Better Auth's rate limiter on
            .env_remove("PORT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node` for the Better Auth peer: {e}"));
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
            Ok((outcome, _)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the Better Auth peer did not start ({outcome:?}); its stderr:\n{}",
                    read_all(&mut stderr)
                );
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the Better Auth peer printed nothing in {READY_TIMEOUT:?}; its stderr:\n{}",
                    read_all(&mut stderr)
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            panic!("the Better Auth peer's ready line {line:?} is not JSON: {e}")
        });
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let port = port
            .unwrap_or_else(|| panic!("the Better Auth peer's ready line {line:?} has no port"));
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            child,
            stdin,
            _stdout: Some(stdout),
            _stderr: stderr,
        }
    }

    /// Kills the server now (the "server went away" case) and waits for it to be gone,
    /// so its port refuses connections afterwards.
    pub fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server wrote to stderr so far (Better Auth's own log), for diagnostics.
    pub fn stderr(&mut self) -> String {
        read_all(&mut self._stderr)
    }
}

impl Drop for BetterAuthPeer {
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
