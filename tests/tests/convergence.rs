//! Convergence: three devices of one user (the real core, real SQLite files, one
//! real server) make random edits — insertions of unique marker words — deletes,
//! syncs and restarts, in schedules drawn from a printed seed. At the end every
//! device, and a fresh device that knows only what the server holds, show the same
//! notes, and every marker survives unless a delete made after seeing it removed
//! its note. Half the schedules compact aggressively (a snapshot after every two
//! pulled changes of a note), so snapshots race the other devices' offline edits.
//!
//! Replay: `GUESTPASS_CONVERGENCE_SEED=<seed>`; more schedules:
//! `GUESTPASS_CONVERGENCE_SCHEDULES=<n>` (default 200). A failure names the
//! schedule and its own seed, which replays it alone with `..._SCHEDULES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use guestpass_core::{Dialect, Guestpass, SyncState};
use guestpass_tests::{keyring_daemon, Device, RefServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEVICES: usize = 3;
const STEPS: usize = 10;
/// Schedules run at once.
const PARALLEL: usize = 2;

/// One event of the model: a write to a note's `alive` (creates and edits write
/// true, deletes false), with the events its device knew when it was made.
struct Event {
    note: usize,
    alive: bool,
    knew: BTreeSet<usize>,
}

/// What the test knows should happen: which events each device and the server
/// hold, per note the markers inserted, and every `alive` write.
#[derive(Default)]
struct Model {
    events: Vec<Event>,
    known: Vec<BTreeSet<usize>>,
    server: BTreeSet<usize>,
    markers: BTreeMap<usize, Vec<String>>,
}

impl Model {
    fn record(&mut self, device: usize, note: usize, alive: bool) {
        let id = self.events.len();
        let knew = self.known[device].clone();
        self.events.push(Event { note, alive, knew });
        self.known[device].insert(id);
    }

    /// A full round trip: push everything the device holds, pull everything.
    fn sync(&mut self, device: usize) {
        self.server.extend(self.known[device].iter().copied());
        self.known[device] = self.server.clone();
    }

    /// Alive iff some true write is not known to any other write of the note
    /// (an edit concurrent with a delete keeps it; a delete that saw it wins).
    fn alive(&self, note: usize) -> bool {
        let writes: Vec<(usize, &Event)> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.note == note)
            .collect();
        writes
            .iter()
            .any(|(id, e)| e.alive && !writes.iter().any(|(_, other)| other.knew.contains(id)))
    }
}

struct Schedule {
    server_url: String,
    rng: StdRng,
    log: Vec<String>,
}

async fn sync_ok(g: &Guestpass, log: &[String]) {
    let s = g.sync_now().await;
    assert_eq!(
        s.state,
        SyncState::UpToDate,
        "{s:?}\nschedule so far:\n{}",
        log.join("\n")
    );
    assert_eq!(s.pending_changes, 0, "{s:?}");
}

/// The notes a device shows, by id.
async fn shown(g: &Guestpass) -> BTreeMap<String, String> {
    g.list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, n.body))
        .collect()
}

impl Schedule {
    async fn run(mut self) {
        let first = Device::new(&self.server_url, Dialect::Guestpass);
        let app = first.launch().await;
        let user = app.ensure_session().await.unwrap().user.id;
        sync_ok(&app, &self.log).await;
        app.store().close().await;
        drop(app);
        let mut devices = vec![first];
        // The twins read the first device's keyring items in place: copying them
        // costs more than the rest of a schedule, and sync does not care.
        for _ in 1..DEVICES {
            let twin = devices[0].twin_sharing_keyring();
            devices.push(twin);
        }
        // Half the schedules compact a note's log after two pulled changes, so
        // snapshots race offline edits; the others never compact (STEPS is short).
        let compact_after = if self.rng.gen_bool(0.5) { 2 } else { i64::MAX };
        self.log.push(format!("compact after {compact_after}"));
        let mut apps = Vec::new();
        for d in &devices {
            let g = d.launch().await;
            g.store().set_compact_after(compact_after);
            g.ensure_session().await.unwrap();
            apps.push(g);
        }
        let mut model = Model {
            known: vec![BTreeSet::new(); DEVICES],
            ..Model::default()
        };
        // Model note index → the note's id (the same on every device).
        let mut ids: Vec<String> = Vec::new();
        let mut next_marker = 0usize;
        for _ in 0..STEPS {
            let d = self.rng.gen_range(0..DEVICES);
            let live = shown(&apps[d]).await;
            let roll = self.rng.gen_range(0..100);
            if roll < 20 || (roll < 60 && live.is_empty()) {
                let marker = format!("m{next_marker}");
                next_marker += 1;
                let n = apps[d].create_note(&marker).await.unwrap();
                self.log
                    .push(format!("{d}: create {} = {marker}", ids.len()));
                model.markers.insert(ids.len(), vec![marker]);
                model.record(d, ids.len(), true);
                ids.push(n.id);
            } else if roll < 60 {
                let pick = self.rng.gen_range(0..live.len());
                let (id, body) = live.iter().nth(pick).unwrap();
                let note = ids.iter().position(|i| i == id).unwrap();
                let marker = format!("m{next_marker}");
                next_marker += 1;
                let mut words: Vec<&str> = body.split(' ').collect();
                let at = self.rng.gen_range(0..=words.len());
                words.insert(at, &marker);
                apps[d].update_note(id, &words.join(" ")).await.unwrap();
                self.log
                    .push(format!("{d}: insert {marker} into {note} at word {at}"));
                model.markers.get_mut(&note).unwrap().push(marker);
                model.record(d, note, true);
            } else if roll < 70 && !live.is_empty() {
                let pick = self.rng.gen_range(0..live.len());
                let id = live.keys().nth(pick).unwrap().clone();
                let note = ids.iter().position(|i| *i == id).unwrap();
                apps[d].delete_note(&id).await.unwrap();
                self.log.push(format!("{d}: delete {note}"));
                model.record(d, note, false);
            } else if roll < 92 {
                sync_ok(&apps[d], &self.log).await;
                self.log.push(format!("{d}: sync"));
                model.sync(d);
            } else {
                // A restart: the next opening writes under a new actor.
                apps[d].store().close().await;
                apps[d] = devices[d].launch().await;
                apps[d].store().set_compact_after(compact_after);
                apps[d].ensure_session().await.unwrap();
                self.log.push(format!("{d}: restart"));
            }
        }
        // Everyone online: two rounds bring every change everywhere.
        for d in (0..DEVICES).chain(0..DEVICES - 1) {
            sync_ok(&apps[d], &self.log).await;
            model.sync(d);
        }
        // What the server alone holds: a device that forgets every record and pulls.
        apps[0].store().close().await;
        let fresh_dev = devices[0].twin_sharing_keyring();
        apps[0] = devices[0].launch().await;
        apps[0].store().set_compact_after(compact_after);
        apps[0].ensure_session().await.unwrap();
        let fresh = fresh_dev.launch().await;
        fresh.ensure_session().await.unwrap();
        for table in ["records", "record_outbox", "record_sync", "notes"] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(fresh.store().pool())
                .await
                .unwrap();
        }
        sync_ok(&fresh, &self.log).await;

        let expected = shown(&apps[0]).await;
        let log = self.log.join("\n");
        for (i, g) in apps.iter().chain(std::iter::once(&fresh)).enumerate() {
            assert_eq!(shown(g).await, expected, "device {i} differs\n{log}");
        }
        for (note, id) in ids.iter().enumerate() {
            let alive = model.alive(note);
            assert_eq!(
                expected.contains_key(id),
                alive,
                "note {note} alive?\n{log}"
            );
            if let Some(body) = expected.get(id) {
                let mut words: Vec<&str> = body.split_whitespace().collect();
                let mut want: Vec<&str> = model.markers[&note].iter().map(String::as_str).collect();
                words.sort_unstable();
                want.sort_unstable();
                assert_eq!(words, want, "note {note}'s markers: {body:?}\n{log}");
            }
        }
        devices[0].forget_keyring_fast(&user).await;
    }
}

/// Runs schedule `i` from its own seed. If gnome-keyring-daemon died meanwhile (the
/// upstream abort when a client vanishes mid-handshake, see `keyring_daemon`), the
/// schedule says nothing about the app: the daemon is restarted and the same
/// schedule replayed, up to three times.
async fn run_schedule(server_url: String, own: u64, i: u64) {
    let mut replays = 0;
    loop {
        let generation = keyring_daemon::generation();
        let schedule = Schedule {
            server_url: server_url.clone(),
            rng: StdRng::seed_from_u64(own),
            log: vec![format!(
                "schedule {i}, replay with GUESTPASS_CONVERGENCE_SEED={own} GUESTPASS_CONVERGENCE_SCHEDULES=1"
            )],
        };
        match tokio::spawn(schedule.run()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() && replays < 3 && keyring_daemon::crashed_since(generation) => {
                replays += 1;
                println!("convergence: schedule {i} replayed: the keyring daemon died under it");
            }
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("schedule {i} did not finish: {e}"),
            },
        }
    }
}

/// A failed schedule fails the test with its own panic (which names its seed).
fn finish(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = done {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a schedule did not finish: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_and_keep_every_marker() {
    let seed: u64 = std::env::var("GUESTPASS_CONVERGENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let schedules: u64 = std::env::var("GUESTPASS_CONVERGENCE_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!("convergence: GUESTPASS_CONVERGENCE_SEED={seed} GUESTPASS_CONVERGENCE_SCHEDULES={schedules}");
    let mut server = RefServer::reserve().await;
    let mut config = server.config();
    // Hundreds of guests from one address in a minute.
    config.rate_limit.anonymous_per_minute = 0;
    config.rate_limit.upgrade_per_hour = 0;
    server.up_with(config).await;
    let started = std::time::Instant::now();
    // A few schedules at a time (each its own user and devices): most of a step is
    // waiting on SQLite, D-Bus or the server, so they overlap well on two cores.
    let mut running = tokio::task::JoinSet::new();
    for i in 0..schedules {
        if running.len() >= PARALLEL {
            finish(running.join_next().await);
        }
        running.spawn(run_schedule(server.url(), seed.wrapping_add(i), i));
    }
    while let Some(done) = running.join_next().await {
        finish(Some(done));
    }
    println!(
        "convergence: {schedules} schedules in {:?}",
        started.elapsed()
    );
}
