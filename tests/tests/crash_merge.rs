//! Crash safety of the merge (DESIGN.md §2a): `merge-child` signs a guest with three
//! notes in to an existing account and merges, and is SIGKILLed at a random instant
//! of that (before the intent, between the server's fold and the local commit, after
//! the commit but before the guest's secrets are erased, …). The device is then
//! reopened in this process: a sync pass rolls an interrupted merge forward, and a
//! device killed before the merge began simply signs in and merges again. In every
//! case the end is the account holding each of the guest's notes exactly once, no
//! trace of the guest on the device or the server, and no merge left pending.
//!
//! Runs: `GUESTPASS_MERGE_CRASH_RUNS` (default 24). Seed printed;
//! `GUESTPASS_MERGE_CRASH_SEED` replays the plan. Needs the keyring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use guestpass_core::{Dialect, SignInChoice, SignInOutcome};
use guestpass_tests::crash_child::{run_and_kill, ChildArgs, Kill};
use guestpass_tests::{count, Device, RefServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_killed_anywhere_ends_merged_with_every_note_once() {
    let runs = env_number("GUESTPASS_MERGE_CRASH_RUNS").unwrap_or(24);
    let seed = env_number("GUESTPASS_MERGE_CRASH_SEED").unwrap_or_else(rand::random);
    tell(&format!(
        "merge crash: {runs} runs, seed {seed} (replay: GUESTPASS_MERGE_CRASH_SEED={seed})"
    ));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = RefServer::reserve().await;
    let mut config = server.config();
    // Every run signs in guests: the per-address limit is not what is tested here.
    config.rate_limit.anonymous_per_minute = 0;
    config.rate_limit.upgrade_per_hour = 0;
    server.up_with(config).await;
    let built = Path::new(env!("CARGO_BIN_EXE_merge-child"));
    // A link a concurrent `cargo build` cannot pull away mid-run.
    let held_dir = tempfile::tempdir_in(built.parent().unwrap()).unwrap();
    let bin = held_dir.path().join("merge-child");
    if std::fs::hard_link(built, &bin).is_err() {
        std::fs::copy(built, &bin).unwrap();
    }
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for run in 0..runs {
        let email = format!("merge-{run}-{seed}@example.com");
        server.full_account(&email).await;
        let device = Device::new(&server.url(), Dialect::Guestpass);
        let args = ChildArgs {
            bin: bin.clone(),
            data_dir: device.dir.path().to_path_buf(),
            service: device.service.clone(),
            backend: server.url(),
            email: email.clone(),
            seed: run,
            tag: format!("m{run}"),
        };
        // Five acks (session, three notes, sync) then a random slice of the merge.
        let slack = Duration::from_millis(rng.gen_range(0..250));
        let lines = run_and_kill(&args, Kill::Acks(5, slack));
        let mut notes: BTreeMap<String, String> = BTreeMap::new();
        let mut guest = None;
        for l in &lines {
            let w: Vec<&str> = l.split(' ').collect();
            match w.as_slice() {
                ["ack", "session", id, _] => guest = Some((*id).to_owned()),
                ["ack", "create", id, body] => {
                    notes.insert((*id).to_owned(), (*body).to_owned());
                }
                ["fail", ..] => panic!("merge-child failed: {lines:?}"),
                _ => {}
            }
        }
        let guest = guest.expect("the child acknowledged its guest");
        assert_eq!(notes.len(), 3, "three notes acknowledged: {lines:?}");
        let merged_by_child = lines.iter().any(|l| l == "ack merge");
        let started = lines.iter().any(|l| l == "try merge");

        let app = device.launch().await;
        app.ensure_session().await.unwrap();
        let intent: Option<String> =
            sqlx::query_scalar("SELECT state FROM merge_intent WHERE slot = 1")
                .fetch_optional(app.store().pool())
                .await
                .unwrap();
        app.sync_now().await; // rolls an interrupted merge forward
        let me = app.get_session().await.unwrap().unwrap();
        let outcome = if me.user.is_anonymous {
            // Killed before the merge began (or before its intent): do it again.
            assert_eq!(me.user.id, guest, "the same guest");
            match app.sign_in_email(&email, "another-password").await.unwrap() {
                SignInOutcome::ChoiceNeeded { guest: held, .. } => {
                    assert_eq!(held.notes, 3);
                    app.complete_sign_in(SignInChoice::Merge).await.unwrap();
                }
                other => panic!("the guest with notes must be asked: {other:?}"),
            }
            "merged again after restart"
        } else {
            match intent.as_deref() {
                Some("started") => "rolled forward from before the server's fold",
                Some(_) => "rolled forward from after the local commit",
                None if merged_by_child || started => "merged before the kill",
                None => "merged before the kill (unannounced)",
            }
        };
        *outcomes.entry(outcome).or_default() += 1;

        let me = app.get_session().await.unwrap().unwrap();
        assert!(!me.user.is_anonymous, "run {run}: signed in to the account");
        assert_eq!(me.user.email.as_deref(), Some(email.as_str()));
        let listed = app.list_notes().await.unwrap();
        let got: BTreeMap<String, String> = listed
            .iter()
            .map(|n| (n.id.clone(), n.body.clone()))
            .collect();
        assert_eq!(got, notes, "run {run}: every note once, as acknowledged");
        assert!(listed.iter().all(|n| n.user_id == me.user.id));
        assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 3);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM merge_intent").await, 0);
        assert_eq!(
            count(
                &app,
                &format!("SELECT COUNT(*) FROM users WHERE id = '{guest}'")
            )
            .await,
            0,
            "run {run}: the guest is gone from the device"
        );
        for slot in ["session", "remote-session", "device-key"] {
            assert!(
                device.keyring(&guest, slot).is_none(),
                "run {run}: the guest's {slot} is erased"
            );
        }
        assert!(
            server.admin_user(&guest).await.is_none(),
            "run {run}: the guest is gone from the server"
        );
        device.forget_keyring(&me.user.id);
    }
    tell(&format!("merge crash outcomes: {outcomes:?}"));
}
