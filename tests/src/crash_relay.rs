//! A TCP relay between `crash-child` and the reference server that aims a kill at a
//! record push or pull: it watches the requests go by and, at the n-th
//! `POST …/sync/push` or `GET …/sync/pull`, cues the kill at one of three points —
//! before the server sees the request, after the server answered but before the
//! child hears it, or just after the child got the answer (while it applies it).
//! From outside the app, so the core needs no test hook, and the relay knows for
//! sure where the kill landed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use guestpass_proto::routes;

use crate::crash_child::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request a kill is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Push,
    Pull,
}

/// Where in that request's round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The request is held back: the server never sees it.
    Request,
    /// The server committed and answered; the answer is held back.
    Answer,
    /// The answer reached the child; the kill follows this long after (the child is
    /// deleting the acknowledged outbox rows or applying the pulled page).
    Applying(Duration),
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub target: Target,
    /// Which occurrence of the request (1 = the first the child sends).
    pub nth: usize,
    pub point: Point,
}

impl Plan {
    /// The tally's name for a kill that landed as planned.
    pub fn phase(&self) -> &'static str {
        match (self.target, self.point) {
            (Target::Push, Point::Request) => RECORD_PHASES[0],
            (Target::Push, Point::Answer) => RECORD_PHASES[1],
            (Target::Push, Point::Applying(_)) => RECORD_PHASES[2],
            (Target::Pull, Point::Request) => RECORD_PHASES[3],
            (Target::Pull, Point::Answer) => RECORD_PHASES[4],
            (Target::Pull, Point::Applying(_)) => RECORD_PHASES[5],
        }
    }
}

/// Kills inside record sync, by where they landed.
pub const RECORD_PHASES: [&str; 6] = [
    "record push: request held",
    "record push: answer held",
    "record push: applying the answer",
    "record pull: request held",
    "record pull: answer held",
    "record pull: applying the answer",
];

/// The line between the relay and [`crate::crash_child::run_and_kill`]: the child's
/// driver installs its sender while the child lives; the relay fires it once.
#[derive(Default)]
pub struct Cue {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    fired: AtomicBool,
}

impl Cue {
    pub(crate) fn install(&self, tx: mpsc::Sender<Event>) {
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Called before the child is reaped: a late fire then reaches nobody.
    pub(crate) fn uninstall(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Asks for the kill now. True if a live child's driver got the cue.
    fn fire(&self) -> bool {
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some_and(|tx| tx.send(Event::Cue).is_ok());
        if sent {
            self.fired.store(true, Ordering::SeqCst);
        }
        sent
    }

    /// Whether the kill was the relay's (it landed at the planned point).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Cue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cue")
    }
}

struct Armed {
    plan: Plan,
    seen: usize,
    cue: Arc<Cue>,
}

struct Shared {
    upstream: SocketAddr,
    armed: Mutex<Option<Armed>>,
}

/// A relay listening on its own port 0, forwarding to `upstream`.
pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let shared = Arc::new(Shared {
            upstream,
            armed: Mutex::new(None),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, s.clone()));
            }
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Aims the next kill; the returned cue goes to `Kill::Cue`.
    pub fn arm(&self, plan: Plan) -> Arc<Cue> {
        let cue = Arc::new(Cue::default());
        *self.shared.armed.lock().unwrap() = Some(Armed {
            plan,
            seen: 0,
            cue: cue.clone(),
        });
        cue
    }

    pub fn disarm(&self) {
        self.shared.armed.lock().unwrap().take();
    }
}

/// A kill due at this point of the request's round trip.
type Cued = (Point, Arc<Cue>);

/// What a request starting in this chunk means for the armed plan, if anything.
fn aimed_at(shared: &Shared, chunk: &[u8]) -> Option<Cued> {
    let push = format!("POST /api/auth{} ", routes::SYNC_PUSH);
    let pull = format!("GET /api/auth{}", routes::SYNC_PULL);
    // HTTP/1.1 without pipelining: a request starts a chunk of its connection.
    let target = if chunk.starts_with(push.as_bytes()) {
        Target::Push
    } else if chunk.starts_with(pull.as_bytes())
        && matches!(chunk.get(pull.len()), Some(b' ' | b'?'))
    {
        Target::Pull
    } else {
        return None;
    };
    let mut armed = shared.armed.lock().unwrap_or_else(|e| e.into_inner());
    let a = armed.as_mut()?;
    if a.plan.target != target {
        return None;
    }
    a.seen += 1;
    if a.seen != a.plan.nth {
        return None;
    }
    let a = armed.take()?;
    Some((a.plan.point, a.cue))
}

/// One connection: bytes both ways until either side closes, with the kill cued at
/// the planned point. After a cue nothing more passes; the dying child closes it.
async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return; // the server is down: the child sees the connection close
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // The cue waiting for the answer of the request just forwarded.
    let pending: Arc<Mutex<Option<Cued>>> = Arc::default();
    let p = pending.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let cued = p.lock().unwrap_or_else(|e| e.into_inner()).take();
            match cued {
                Some((Point::Answer, cue)) => {
                    cue.fire();
                    return;
                }
                Some((Point::Applying(after), cue)) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(after).await;
                    cue.fire();
                    return;
                }
                _ => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = cw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match aimed_at(&shared, &buf[..n]) {
            Some((Point::Request, cue)) => {
                cue.fire();
                // Held: drain until the killed child's socket closes.
                while matches!(cr.read(&mut buf).await, Ok(n) if n > 0) {}
                break;
            }
            Some(cued) => {
                *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(cued);
            }
            None => {}
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
}
