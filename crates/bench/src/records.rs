//! Record sync on real devices against the real server (issue 12's bench): guestpass-core
//! apps with their own SQLite files and OS keyring services (run under
//! `scripts/with-keyring.sh`), talking to the `guestpass-server` binary on loopback.
//!
//! - a new device's first full sync of N notes, until it lists all N;
//! - a push of M changes made on one device;
//! - an idle pass (nothing to do), with the requests it sent counted by a relay;
//! - the live delay: A writes a note and syncs, B (its loop and `/sync/events`
//!   running) lists it.
//!
//! "New device": a copy of A's data folder and keyring items taken after A registered
//! and before it wrote any note (as the workspace tests make a user's second device),
//! so its first pass pulls everything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use guestpass_core::vault::Slot;
use guestpass_core::{Config, Dialect, Guestpass, SyncState, SyncStatus, Vault};

use crate::proxy::Proxy;
use crate::servers::{Paths, Server, Target};

/// Bounds a live-delay round that never arrives (a failure, not a figure).
const LIVE_PATIENCE: Duration = Duration::from_secs(20);

pub struct Sizes {
    pub notes: usize,
    pub push: usize,
    pub live_rounds: usize,
}

pub struct Outcome {
    pub notes: usize,
    pub seed_push: Duration,
    pub first_sync: Duration,
    pub push: usize,
    pub push_pass: Duration,
    pub idle_pass: Duration,
    /// The request lines the idle pass sent.
    pub idle_requests: Vec<String>,
    /// Sorted.
    pub live: Vec<Duration>,
}

/// One device: a data dir and a keyring service of its own.
struct Device {
    dir: tempfile::TempDir,
    service: String,
    backend: String,
}

impl Device {
    fn new(backend: &str) -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
            service: format!("guestpass-bench-{}", guestpass_proto::new_session_id()),
            backend: backend.to_owned(),
        })
    }

    async fn launch(&self) -> anyhow::Result<Guestpass> {
        Guestpass::open(Config {
            data_dir: self.dir.path().to_path_buf(),
            keyring_service: self.service.clone(),
            backend: Some((self.backend.clone(), Dialect::Guestpass)),
            social: Vec::new(),
        })
        .await
        .context("opening a device")
    }

    /// The same user on another "machine" (see the module doc), reaching the server
    /// at `backend`. Close every app of this device first.
    async fn twin(&self, user_id: &str, backend: &str) -> anyhow::Result<Device> {
        let twin = Device::new(backend)?;
        for entry in std::fs::read_dir(self.dir.path())? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), twin.dir.path().join(entry.file_name()))?;
            }
        }
        let (from, to) = (self.vault(), twin.vault());
        for slot in [Slot::Session, Slot::Remote, Slot::DeviceKey] {
            if let Some(secret) = from.get(user_id, slot).await? {
                to.set(user_id, slot, &secret).await?;
            }
        }
        Ok(twin)
    }

    fn vault(&self) -> Vault {
        Vault::new(self.service.clone())
    }

    /// Leaves nothing of the bench in the user's keyring.
    async fn forget(&self, user_id: &str) {
        let v = self.vault();
        for slot in [
            Slot::Session,
            Slot::Remote,
            Slot::PendingPassword,
            Slot::DeviceKey,
        ] {
            let _ = v.delete(user_id, slot).await;
        }
    }
}

async fn sync(app: &Guestpass) -> anyhow::Result<SyncStatus> {
    let s = app.sync_now().await;
    if s.state != SyncState::UpToDate || s.pending_changes != 0 || s.refused_changes != 0 {
        bail!("a sync pass did not end up to date: {s:?}");
    }
    Ok(s)
}

/// A relaunched app resumes its guest (the session is loaded before notes are written).
async fn same_user(app: &Guestpass, user: &str) -> anyhow::Result<()> {
    let me = app.ensure_session().await?.user.id;
    if me != user {
        bail!("a device resumed {me}, not the user {user}");
    }
    Ok(())
}

async fn write_notes(app: &Guestpass, n: usize, tag: &str) -> anyhow::Result<()> {
    for i in 0..n {
        app.create_note(&format!(
            "{tag} {i}: buy oat milk, call the plumber, water the plants."
        ))
        .await?;
    }
    Ok(())
}

pub async fn run(paths: &Paths, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let server = Server::start(&Target::GuestpassSqlite, paths)?;
    let upstream = server
        .base_url
        .strip_prefix("http://")
        .context("the server's URL")?
        .to_owned();
    // B reaches the server through the counting relay (a loopback hop of a few µs).
    let relay = Proxy::start(upstream).await?;

    let a_dev = Device::new(&server.base_url)?;
    let a = a_dev.launch().await?;
    let user = a.ensure_session().await?.user.id;
    sync(&a).await?;
    a.store().close().await;
    drop(a);
    let b_dev = a_dev.twin(&user, &relay.url).await?;
    let outcome = measure(&a_dev, &b_dev, &user, &relay, sizes).await;
    a_dev.forget(&user).await;
    b_dev.forget(&user).await;
    outcome
}

async fn measure(
    a_dev: &Device,
    b_dev: &Device,
    user: &str,
    relay: &Proxy,
    sizes: &Sizes,
) -> anyhow::Result<Outcome> {
    let a = a_dev.launch().await?;
    same_user(&a, user).await?;
    eprintln!("==> records: device A writes {} notes", sizes.notes);
    write_notes(&a, sizes.notes, "Note").await?;
    let start = Instant::now();
    sync(&a).await?;
    let seed_push = start.elapsed();

    eprintln!(
        "==> records: a new device's first sync of {} notes",
        sizes.notes
    );
    let b = Arc::new(b_dev.launch().await?);
    same_user(&b, user).await?;
    let start = Instant::now();
    sync(&b).await?;
    let listed = b.list_notes().await?.len();
    let first_sync = start.elapsed();
    if listed != sizes.notes {
        bail!("the new device lists {listed} notes, not {}", sizes.notes);
    }

    eprintln!("==> records: a push of {} changes", sizes.push);
    write_notes(&a, sizes.push, "Pushed").await?;
    let start = Instant::now();
    sync(&a).await?;
    let push_pass = start.elapsed();
    // B takes those in (unmeasured) so that its next pass has nothing to do.
    sync(&b).await?;

    let before = relay.requests().len();
    let start = Instant::now();
    sync(&b).await?;
    let idle_pass = start.elapsed();
    let idle_requests = relay.requests().split_off(before);

    eprintln!(
        "==> records: live delay A → B, {} rounds",
        sizes.live_rounds
    );
    let mut live = live_rounds(&a, &b, sizes.live_rounds).await?;
    live.sort();
    a.store().close().await;
    Ok(Outcome {
        notes: sizes.notes,
        seed_push,
        first_sync,
        push: sizes.push,
        push_pass,
        idle_pass,
        idle_requests,
        live,
    })
}

/// Each round: A writes a note and syncs; the clock stops when B lists it. B runs its
/// own loop (`run_sync`: a pass on every `event: pull` of its `/sync/events`).
async fn live_rounds(
    a: &Guestpass,
    b: &Arc<Guestpass>,
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut status = b.subscribe_sync();
    let looping = tokio::spawn(Arc::clone(b).run_sync());
    // B's loop starts with a pass; wait until it settles so round 1 is not it.
    wait_up_to_date(&mut status).await?;
    // The events stream opens beside the loop, with no signal of its own: one
    // unmeasured round proves it delivers before any is timed.
    let result = async {
        round(a, b, &mut status, "warm-up").await?;
        let mut out = Vec::with_capacity(rounds);
        for i in 0..rounds {
            out.push(round(a, b, &mut status, &format!("live {i}")).await?);
        }
        Ok(out)
    }
    .await;
    looping.abort();
    result
}

async fn wait_up_to_date(
    status: &mut tokio::sync::watch::Receiver<SyncStatus>,
) -> anyhow::Result<()> {
    tokio::time::timeout(
        LIVE_PATIENCE,
        status.wait_for(|s| s.state == SyncState::UpToDate),
    )
    .await
    .context("B's loop never reached up to date")??;
    Ok(())
}

async fn round(
    a: &Guestpass,
    b: &Guestpass,
    status: &mut tokio::sync::watch::Receiver<SyncStatus>,
    body: &str,
) -> anyhow::Result<Duration> {
    status.borrow_and_update();
    let start = Instant::now();
    let note = a.create_note(body).await?;
    sync(a).await?;
    let wait = async {
        loop {
            if b.list_notes().await?.iter().any(|n| n.id == note.id) {
                return anyhow::Ok(start.elapsed());
            }
            // B's status moves on every pass it runs: look again after each.
            status.changed().await?;
        }
    };
    tokio::time::timeout(LIVE_PATIENCE, wait)
        .await
        .with_context(|| format!("B never listed the note of round {body:?}"))?
}
