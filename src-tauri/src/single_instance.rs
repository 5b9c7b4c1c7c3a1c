//! One app per data dir: a second launch on the same data dir brings the open window to
//! the front and exits, so two windows never race on one store. Another data dir
//! (`GUESTPASS_DATA_DIR`) is another instance: the tests run several devices side by
//! side in one desktop session, so a lock keyed by the app identifier (what
//! `tauri-plugin-single-instance` does) would not fit.
//!
//! Two files in the data dir:
//! - `guestpass.instance.lock`: an exclusive advisory lock (`flock` on Unix, `LockFileEx` on
//!   Windows, through `fs4`). The OS drops it when the process ends, however it ends,
//!   so a crash never leaves a stale lock, and whoever holds it is the instance.
//! - `guestpass.instance` (0600): the loopback TCP port the holder listens on and a
//!   random 256-bit nonce. A second launch connects, proves it could read the file (so it
//!   runs as the same user), and asks for the window. Loopback TCP on port 0 rather than
//!   a Unix socket: one code path on every platform the app ships to (Windows has no
//!   Unix sockets in std), no 108-byte `sun_path` limit on long data dir paths, and no
//!   socket file to unlink after a crash; the nonce keeps other local users out.
//!
//! The check runs in `run()` before the Tauri builder, so a second launch never shows a
//! window. The holder answers `focused` only once its main thread really ran
//! unminimize/show/set_focus; a holder whose window is gone (it is quitting) or whose
//! main thread does not get to it answers `closing` / `busy`, and the newcomer waits for
//! the lock (a relaunch right after a quit finds the old process still exiting). A holder
//! that accepts but never answers, or never gets free within the deadline, is reported
//! and the newcomer exits non-zero rather than open a second window on the store.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tauri::{AppHandle, Emitter, Manager};

// Not `guestpass.lock`: that one is the store's, held only while it opens (core `store.rs`).
const LOCK_FILE: &str = "guestpass.instance.lock";
const INSTANCE_FILE: &str = "guestpass.instance";
/// The event the holder's window gets when a second launch brought it to the front.
pub(crate) const FOCUS_EVENT: &str = "focus-requested";
const HELLO: &str = "guestpass-focus";

/// How long the holder waits for its app to be attached (a launch that arrives before
/// the holder's setup ran) and for its main thread to run the focus.
const ATTACH_WAIT: Duration = Duration::from_secs(3);
const MAIN_THREAD_WAIT: Duration = Duration::from_secs(3);
/// The newcomer: connect, then the answer (longer than the holder's own waits).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the newcomer waits for a holder that is starting or quitting.
const HAND_OVER_DEADLINE: Duration = Duration::from_secs(15);
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The holder's answer to a second launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The window was unminimized, shown and focused on the main thread.
    Focused,
    /// No window any more: the holder is quitting.
    Closing,
    /// The app was not attached yet, or its main thread did not run the request in time.
    Busy,
    /// The request did not carry this instance's nonce.
    Refused,
}

impl Answer {
    fn word(self) -> &'static str {
        match self {
            Answer::Focused => "focused",
            Answer::Closing => "closing",
            Answer::Busy => "busy",
            Answer::Refused => "refused",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [Self::Focused, Self::Closing, Self::Busy, Self::Refused]
            .into_iter()
            .find(|a| a.word() == word)
    }
}

type FocusFn = Box<dyn Fn() -> Answer + Send + Sync>;

struct Shared {
    focus: Mutex<Option<FocusFn>>,
    attached: Condvar,
}

/// This process holds the data dir. Keep it alive as long as the app runs (the app
/// manages it): dropping it releases the lock.
pub(crate) struct Instance {
    _lock: File,
    data_dir: PathBuf,
    shared: Arc<Shared>,
}

/// The outcome of [`claim`].
pub(crate) enum Claim {
    Primary(Instance),
    AlreadyRunning,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Rendezvous {
    port: u16,
    nonce: String,
    pid: u32,
}

/// Takes the data dir's lock, or says another process holds it. The holder starts
/// listening for second launches at once (answering `busy` until [`Instance::attach`]).
pub(crate) fn claim(data_dir: &Path) -> std::io::Result<Claim> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(LOCK_FILE);
    // A data dir that turned read-only still has its lock file from an earlier run, and
    // `flock` works on a read-only descriptor: the app then opens and explains why the
    // store cannot be written, as it did before this lock.
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => File::open(&path).map_err(|_| e)?,
    };
    // Through the trait: std's inherent `File::try_lock` (Rust 1.89) is newer than the
    // workspace's rust-version.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Ok(Claim::AlreadyRunning),
        Err(fs4::TryLockError::Error(e)) => return Err(e),
    }
    let shared = Arc::new(Shared {
        focus: Mutex::new(None),
        attached: Condvar::new(),
    });
    if let Err(e) = listen(data_dir, shared.clone()) {
        // The lock still keeps a second window off the store; a second launch will say
        // this one does not answer.
        tracing::warn!(
            "could not set up the way a second launch reaches this window ({}): {e}",
            data_dir.display()
        );
    }
    Ok(Claim::Primary(Instance {
        _lock: file,
        data_dir: data_dir.to_path_buf(),
        shared,
    }))
}

fn listen(data_dir: &Path, shared: Arc<Shared>) -> std::io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let nonce: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rendezvous = Rendezvous {
        port,
        nonce: nonce.clone(),
        pid: std::process::id(),
    };
    write_private(
        &data_dir.join(INSTANCE_FILE),
        &serde_json::to_vec(&rendezvous).map_err(std::io::Error::other)?,
    )?;
    std::thread::Builder::new()
        .name("single-instance".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &nonce, &shared) {
                            tracing::warn!("a second launch's request failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("could not accept a second launch: {e}"),
                }
            }
        })?;
    Ok(())
}

/// Written beside and renamed over, readable by this user only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("instance.tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn answer(stream: TcpStream, nonce: &str, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let answer = if line.trim_end() == format!("{HELLO} {nonce}") {
        focus(shared)
    } else {
        Answer::Refused
    };
    let mut stream = stream;
    writeln!(stream, "{}", answer.word())
}

fn focus(shared: &Shared) -> Answer {
    let Ok(guard) = shared.focus.lock() else {
        return Answer::Busy;
    };
    let Ok((guard, _)) = shared
        .attached
        .wait_timeout_while(guard, ATTACH_WAIT, |f| f.is_none())
    else {
        return Answer::Busy;
    };
    match guard.as_ref() {
        Some(focus) => focus(),
        None => Answer::Busy,
    }
}

impl Instance {
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// From now on a second launch brings `app`'s main window to the front.
    pub(crate) fn attach(&self, app: &AppHandle) {
        self.attach_focus(Box::new(focus_window(app.clone())));
    }

    fn attach_focus(&self, focus: FocusFn) {
        match self.shared.focus.lock() {
            Ok(mut slot) => *slot = Some(focus),
            Err(e) => tracing::error!("could not attach the window to the instance lock: {e}"),
        }
        self.shared.attached.notify_all();
    }
}

/// Unminimize, show and focus the main window on the main thread, then tell its page
/// (`focus-requested`). `Focused` only once that ran.
fn focus_window(app: AppHandle) -> impl Fn() -> Answer + Send + Sync {
    move || {
        let (done, ran) = mpsc::channel();
        let handle = app.clone();
        let queued = app.run_on_main_thread(move || {
            let Some(window) = handle.get_webview_window("main") else {
                let _ = done.send(Answer::Closing);
                return;
            };
            for (what, result) in [
                ("unminimize", window.unminimize()),
                ("show", window.show()),
                ("focus", window.set_focus()),
            ] {
                if let Err(e) = result {
                    tracing::warn!("a second launch asked for the window: {what} failed: {e}");
                }
            }
            if let Err(e) = window.emit(FOCUS_EVENT, ()) {
                tracing::warn!("could not tell the window about the second launch: {e}");
            }
            tracing::info!("a second launch on this data folder: brought the window to the front");
            let _ = done.send(Answer::Focused);
        });
        if queued.is_err() {
            return Answer::Closing;
        }
        ran.recv_timeout(MAIN_THREAD_WAIT).unwrap_or(Answer::Busy)
    }
}

/// What a second launch learnt from the holder.
#[derive(Debug)]
pub(crate) enum Contact {
    Answered(Answer),
    /// Nothing to talk to yet or any more (no rendezvous file, connection refused).
    Unreachable(String),
    /// It accepted the connection but did not answer in time.
    Silent(String),
}

/// Asks the holder of `data_dir` for its window.
pub(crate) fn hand_over(data_dir: &Path) -> Contact {
    let text = match std::fs::read(data_dir.join(INSTANCE_FILE)) {
        Ok(text) => text,
        Err(e) => return Contact::Unreachable(format!("no {INSTANCE_FILE}: {e}")),
    };
    let rendezvous: Rendezvous = match serde_json::from_slice(&text) {
        Ok(r) => r,
        Err(e) => return Contact::Unreachable(format!("{INSTANCE_FILE} is not readable: {e}")),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, rendezvous.port));
    let mut stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return Contact::Unreachable(format!("port {}: {e}", rendezvous.port)),
    };
    let silent = |e: std::io::Error| {
        Contact::Silent(format!(
            "process {} on port {}: {e}",
            rendezvous.pid, rendezvous.port
        ))
    };
    // A holder that is quitting still had its listener: the connection is reset or
    // closed unanswered. That is a holder going away (try the lock again), not a hung
    // one; only silence until the timeout, or garbage, is.
    let gone_or_silent = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => {
            Contact::Unreachable(format!("process {} is closing: {e}", rendezvous.pid))
        }
        _ => silent(e),
    };
    if let Err(e) = stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| writeln!(stream, "{HELLO} {}", rendezvous.nonce))
    {
        return gone_or_silent(e);
    }
    let mut line = String::new();
    match BufReader::new(&stream).read_line(&mut line) {
        Ok(0) => gone_or_silent(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        Ok(_) => match Answer::parse(line.trim_end()) {
            Some(answer) => Contact::Answered(answer),
            None => silent(std::io::Error::other(format!(
                "unexpected answer {:?}",
                line.trim_end()
            ))),
        },
        Err(e) => gone_or_silent(e),
    }
}

/// What `run()` does next.
pub(crate) enum Start {
    /// Open the app; `None` when the data dir could not be locked (logged).
    Open(Option<Instance>),
    /// Another process has this data dir: exit with this status (the line is printed).
    Exit(i32),
}

/// The data dir without an `AppHandle`: `GUESTPASS_DATA_DIR`, else what Tauri's
/// `app_data_dir()` gives (`dirs::data_dir()/<identifier>`, e.g.
/// `$XDG_DATA_HOME/dev.guestpass.app`); [`Instance::attach`] checks the two agree.
pub(crate) fn resolve_data_dir(identifier: &str) -> Option<PathBuf> {
    crate::state::data_dir_override().or_else(|| dirs::data_dir().map(|d| d.join(identifier)))
}

/// Claims the data dir, or hands over to the process that has it.
pub(crate) fn start(identifier: &str) -> Start {
    let Some(data_dir) = resolve_data_dir(identifier) else {
        tracing::warn!("no data folder for the app; starting without the one-instance lock");
        return Start::Open(None);
    };
    let deadline = Instant::now() + HAND_OVER_DEADLINE;
    let mut last;
    loop {
        match claim(&data_dir) {
            Ok(Claim::Primary(instance)) => return Start::Open(Some(instance)),
            // The store reports what is wrong with the folder in the window.
            Err(e) => {
                tracing::error!(
                    "could not lock the data folder {}: {e}; starting without the one-instance lock",
                    data_dir.display()
                );
                return Start::Open(None);
            }
            Ok(Claim::AlreadyRunning) => {}
        }
        match hand_over(&data_dir) {
            Contact::Answered(Answer::Focused) => {
                println!(
                    "guestpass: Guestpass is already open on this data folder ({}); brought its window to the front.",
                    data_dir.display()
                );
                return Start::Exit(0);
            }
            Contact::Silent(why) => {
                let line = format!(
                    "Guestpass is already open on this data folder ({}) but does not answer ({why}); not opening a second window on its store. Close it, or end that process, and try again.",
                    data_dir.display()
                );
                tracing::error!("{line}");
                eprintln!("guestpass: {line}");
                return Start::Exit(1);
            }
            // Starting or quitting: wait for it, or for the lock.
            Contact::Answered(answer) => last = format!("it answered {}", answer.word()),
            Contact::Unreachable(why) => last = why,
        }
        if Instant::now() >= deadline {
            let line = format!(
                "Guestpass holds this data folder ({}) but did not hand over its window within {} s (last: {last}); not opening a second window on its store.",
                data_dir.display(),
                HAND_OVER_DEADLINE.as_secs()
            );
            tracing::error!("{line}");
            eprintln!("guestpass: {line}");
            return Start::Exit(1);
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// Says so in the log when the data dir the lock guards is not the one the store opens
/// (Tauri's `app_data_dir` would then have learnt an override this module mirrors not).
pub(crate) fn check_same_dir(instance: &Instance, app: &AppHandle) {
    if crate::state::data_dir_override().is_some() {
        return;
    }
    match app.path().app_data_dir() {
        Ok(dir) if dir == instance.data_dir() => {}
        Ok(dir) => tracing::error!(
            "the one-instance lock guards {} but the app's data dir is {}",
            instance.data_dir().display(),
            dir.display()
        ),
        Err(e) => tracing::warn!("no app data dir to compare the lock with: {e}"),
    }
}

#[cfg(test)]
#[path = "single_instance_tests.rs"]
mod tests;
