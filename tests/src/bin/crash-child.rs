//! The app core as a process the crash harness (`tests/tests/crash.rs`) can SIGKILL.
//!
//!   crash-child DATA_DIR KEYRING_SERVICE BACKEND_URL EMAIL SEED TAG
//!
//! It opens the device (creating the guest on first launch), runs the background sync
//! loop as the app does, then writes, edits and deletes notes, queues an upgrade and
//! runs sync passes, forever. Before each operation it prints `try …`, after it
//! `ack …` (one line each, flushed), so the harness knows exactly what was
//! acknowledged when the kill landed, and which one operation may have been cut in
//! half. Note bodies are `TAG-N` (`TAG-N-edit` after an edit): unique per run, no
//! spaces.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use guestpass_core::{Config, Dialect, Guestpass, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;

/// The password of every crash device's upgrade (a test value, not a secret).
const PASSWORD: &str = "crash-harness-password";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe means the harness is gone; nothing left to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Args {
    config: Config,
    email: String,
    seed: u64,
    tag: String,
}

fn args() -> Option<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [dir, service, backend, email, seed, tag] = a.as_slice() else {
        return None;
    };
    Some(Args {
        config: Config {
            data_dir: dir.into(),
            keyring_service: service.clone(),
            backend: Some((backend.clone(), Dialect::Guestpass)),
            social: Vec::new(),
        },
        email: email.clone(),
        seed: seed.parse().ok()?,
        tag: tag.clone(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let Some(args) = args() else {
        eprintln!("usage: crash-child DATA_DIR KEYRING_SERVICE BACKEND_URL EMAIL SEED TAG");
        return ExitCode::from(2);
    };
    match drive(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The harness treats any exit of its own as a failure and shows this line.
            say(&format!(
                "fail {}: {}",
                e.code().as_str(),
                e.to_api().message
            ));
            ExitCode::from(3)
        }
    }
}

async fn drive(args: Args) -> guestpass_core::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    say("try open");
    let app = Arc::new(Guestpass::open(args.config).await?);
    let session = app.ensure_session().await?;
    let mut anonymous = session.user.is_anonymous;
    say(&format!("ack session {} {anonymous}", session.user.id));
    tokio::spawn(app.clone().run_sync());

    let mut ids: Vec<String> = app.list_notes().await?.into_iter().map(|n| n.id).collect();
    for i in 0u64.. {
        let roll = rng.gen_range(0..100);
        if roll < 55 || ids.is_empty() || (roll >= 88 && !anonymous) {
            let body = format!("{}-{i}", args.tag);
            say(&format!("try create {body}"));
            let n = app.create_note(&body).await?;
            say(&format!("ack create {} {body}", n.id));
            ids.push(n.id);
        } else if roll < 70 {
            let id = ids[rng.gen_range(0..ids.len())].clone();
            let body = format!("{}-{i}-edit", args.tag);
            say(&format!("try update {id} {body}"));
            app.update_note(&id, &body).await?;
            say(&format!("ack update {id} {body}"));
        } else if roll < 80 {
            let id = ids.swap_remove(rng.gen_range(0..ids.len()));
            say(&format!("try delete {id}"));
            app.delete_note(&id).await?;
            say(&format!("ack delete {id}"));
        } else if roll < 88 {
            say("try sync");
            let status = app.sync_now().await;
            say(&format!("ack sync {:?}", status.state));
        } else {
            say(&format!("try upgrade {}", args.email));
            let password = SecretString::from(PASSWORD.to_owned());
            let how = match app.upgrade(&args.email, password, None).await {
                Ok(UpgradeOutcome::Upgraded(_)) => "upgraded",
                Ok(UpgradeOutcome::Queued { .. }) => "queued",
                // The background pass delivered an earlier life's queued upgrade (same
                // email) since this one started.
                Err(e) if e.code() == ErrorCode::UserNotAnonymous => "already",
                Err(e) => return Err(e),
            };
            anonymous = false;
            say(&format!("ack upgrade {how} {}", args.email));
        }
    }
    Ok(())
}
