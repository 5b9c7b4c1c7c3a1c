//! Drives `crash-child` (`src/bin/crash-child.rs`) for the crash harness: spawn it on a
//! device, SIGKILL it at the chosen point, and keep the ledger of what it acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::crash_relay::Cue;

/// When to kill the child.
#[derive(Debug, Clone)]
pub enum Kill {
    /// This long after it was spawned (lands anywhere, including start-up).
    After(Duration),
    /// Right after its n-th acknowledgement, plus a little slack so the kill also lands
    /// inside the next operation.
    Acks(usize, Duration),
    /// When the relay (`crash_relay`) cues it, or this long after the spawn if the
    /// planned request never came.
    Cue(Arc<Cue>, Duration),
}

/// What the driver of one child waits for: its next line, or the relay's cue.
pub(crate) enum Event {
    Line(String),
    Cue,
}

/// What the child was told, and where.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub service: String,
    pub backend: String,
    pub email: String,
    pub seed: u64,
    pub tag: String,
}

/// Spawns the child, kills it, and returns every line it printed before it died.
/// Panics if it exits on its own (it never should) or prints nothing for 30 s.
pub fn run_and_kill(args: &ChildArgs, kill: Kill) -> Vec<String> {
    let (tx, rx) = mpsc::channel::<Event>();
    if let Kill::Cue(cue, _) = &kill {
        // Before the spawn: the child's first request may come at once.
        cue.install(tx.clone());
    }
    let mut child = Command::new(&args.bin)
        .arg(&args.data_dir)
        .arg(&args.service)
        .arg(&args.backend)
        .arg(&args.email)
        .arg(args.seed.to_string())
        .arg(&args.tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash-child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(Event::Line(line)).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    let deadline = Duration::from_secs(30);
    match kill {
        Kill::After(d) => {
            // The fault itself: a kill at an arbitrary instant, not a wait for anything.
            while started.elapsed() < d {
                match rx.recv_timeout(d.saturating_sub(started.elapsed())) {
                    Ok(Event::Line(l)) => lines.push(l),
                    Ok(Event::Cue) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        Kill::Acks(n, slack) => {
            let mut acks = 0;
            while acks < n {
                match rx.recv_timeout(deadline.saturating_sub(started.elapsed())) {
                    Ok(Event::Line(l)) => {
                        acks += usize::from(l.starts_with("ack "));
                        lines.push(l);
                    }
                    Ok(Event::Cue) => {}
                    Err(_) => break,
                }
            }
            std::thread::sleep(slack);
        }
        Kill::Cue(_, fallback) => {
            // Until the cue (or the fallback, or the child's own end).
            while let Ok(Event::Line(l)) =
                rx.recv_timeout(fallback.saturating_sub(started.elapsed()))
            {
                lines.push(l);
            }
        }
    }
    if let Kill::Cue(cue, _) = &kill {
        cue.uninstall();
    }

    let _ = child.kill(); // SIGKILL on Unix
    let status = child.wait().expect("wait for crash-child");
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter().filter_map(|e| match e {
        Event::Line(l) => Some(l),
        Event::Cue => None,
    }));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "crash-child exited on its own ({status}) before the kill\nstdout:\n{}\nstderr:\n{stderr}",
        lines.join("\n")
    );
    lines
}

/// One operation as the child announced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Open,
    Create { body: String },
    Update { id: String, body: String },
    Delete { id: String },
    Sync,
    Upgrade { email: String },
}

impl Op {
    fn parse(words: &[&str]) -> Option<Self> {
        Some(match words {
            ["open"] => Op::Open,
            ["create", body] => Op::Create {
                body: (*body).into(),
            },
            ["update", id, body] => Op::Update {
                id: (*id).into(),
                body: (*body).into(),
            },
            ["delete", id] => Op::Delete { id: (*id).into() },
            ["sync"] => Op::Sync,
            ["upgrade", email] => Op::Upgrade {
                email: (*email).into(),
            },
            _ => return None,
        })
    }

    /// The phase a kill during this operation belongs to.
    pub fn phase(&self, new_device: bool) -> &'static str {
        match self {
            Op::Open if new_device => ALL_PHASES[0],
            Op::Open => ALL_PHASES[1],
            Op::Create { .. } | Op::Update { .. } | Op::Delete { .. } => ALL_PHASES[2],
            Op::Upgrade { .. } => ALL_PHASES[3],
            Op::Sync => ALL_PHASES[4],
        }
    }
}

/// Where kills land, for the harness's tally.
pub const ALL_PHASES: [&str; 5] = [
    "guest creation",
    "restart",
    "note write",
    "upgrade",
    "sync pass",
];

/// What a device's children acknowledged over all their lives.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The guest the device acknowledged (`ack session`).
    pub user: Option<String>,
    /// Acknowledged notes and their acknowledged bodies.
    pub notes: BTreeMap<String, String>,
    /// Acknowledged deletions.
    pub deleted: BTreeSet<String>,
    /// An upgrade acknowledged as upgraded or queued: its email.
    pub upgrade: Option<String>,
    /// The operation cut by the last kill, if it never got its `ack`.
    pub in_flight: Option<Op>,
    /// How many operations were acknowledged in all.
    pub acks: usize,
}

impl Ledger {
    /// Folds one child's output in. Returns the phase its kill landed in.
    pub fn apply(&mut self, lines: &[String]) -> &'static str {
        self.in_flight = None;
        let new_device = self.user.is_none();
        let mut last = Op::Open;
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["try", rest @ ..] => {
                    let op = Op::parse(rest).unwrap_or_else(|| panic!("bad line {line:?}"));
                    last = op.clone();
                    self.in_flight = Some(op);
                }
                ["ack", "session", user, _anonymous] => {
                    self.ack((*user).to_owned(), |l, u| {
                        if let Some(known) = &l.user {
                            assert_eq!(known, &u, "the device changed its guest");
                        }
                        l.user = Some(u);
                    });
                }
                ["ack", "create", id, body] => self.ack((id, body), |l, (id, body)| {
                    l.notes.insert((*id).into(), (*body).into());
                }),
                ["ack", "update", id, body] => self.ack((id, body), |l, (id, body)| {
                    l.notes.insert((*id).into(), (*body).into());
                }),
                ["ack", "delete", id] => self.ack(id, |l, id| {
                    l.notes.remove(*id);
                    l.deleted.insert((*id).into());
                }),
                ["ack", "sync", _state] => self.ack((), |_, ()| {}),
                ["ack", "upgrade", _how, email] => self.ack(email, |l, email| {
                    l.upgrade = Some((*email).into());
                }),
                _ => panic!("crash-child said something unexpected: {line:?}"),
            }
        }
        // Killed between two operations counts with the one that just finished.
        last.phase(new_device)
    }

    fn ack<T>(&mut self, v: T, f: impl FnOnce(&mut Self, T)) {
        f(self, v);
        self.acks += 1;
        self.in_flight = None;
    }
}
