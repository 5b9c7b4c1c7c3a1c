//! A real OpenID Connect provider for the social upgrade tests:
//! `node tests/peers/oidc/server.mjs` (npm `oauth2-mock-server`) on a free loopback port.
//!
//! Ready when it prints its one line `{"port":N,"issuer":"http://127.0.0.1:N"}` (no
//! sleeps). The child is killed when the [`OidcPeer`] is dropped, and it also exits by
//! itself when its stdin closes. It auto-approves every authorization; whoever plays the
//! browser picks the account with `login_hint=<email>` on the authorize URL, makes the
//! provider refuse with `peer_error=<code>`, or forges the audience with `peer_aud=<id>`
//! (see the peer's `server.mjs`).

use std::io::{BufRead, BufReader, Read, Seek};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long node gets to load the provider and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct OidcPeer {
    /// `http://127.0.0.1:N`: discovery at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub port: u16,
    child: Child,
    // Held open: closing stdin tells the provider to exit.
    stdin: Option<ChildStdin>,
    // Held so the provider never writes into a closed pipe.
    _stdout: Option<ChildStdout>,
    stderr: tempfile::NamedTempFile,
}

pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/oidc")
}

impl OidcPeer {
    pub fn start() -> Self {
        let dir = peer_dir();
        assert!(
            dir.join("node_modules/oauth2-mock-server").is_dir(),
            "the OpenID Connect test peer is not installed: run `npm ci` in {} (scripts/setup.sh test does it)",
            dir.display()
        );
        let mut stderr = tempfile::NamedTempFile::new().expect("temp file for the peer's stderr");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node` for the OpenID Connect peer: {e}"));
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
                    "the OpenID Connect peer did not start ({:?}); its stderr:\n{}",
                    outcome.map(|(o, _)| o),
                    read_all(&mut stderr)
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            panic!("the OpenID Connect peer's ready line {line:?} is not JSON: {e}")
        });
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("the OpenID Connect peer's ready line {line:?} has no port"));
        let issuer = ready["issuer"]
            .as_str()
            .map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
        Self {
            issuer,
            port,
            child,
            stdin,
            _stdout: Some(stdout),
            stderr,
        }
    }

    /// Kills the provider now and waits for it to be gone.
    pub fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the provider wrote to stderr so far, for diagnostics.
    pub fn stderr(&mut self) -> String {
        read_all(&mut self.stderr)
    }
}

impl Drop for OidcPeer {
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
