//! The app core signing a guest with notes in to an existing account and merging, as
//! a process the merge crash test (`tests/tests/crash_merge.rs`) can SIGKILL.
//!
//!   merge-child DATA_DIR KEYRING_SERVICE BACKEND_URL EMAIL SEED TAG
//!
//! It opens the device, gives the guest three notes (`TAG-0..2`) if it has none, runs a
//! sync pass (the guest reaches the server), then signs in as EMAIL and answers the
//! merge question with "bring them". Each step prints `try …` before and `ack …`
//! after, flushed; once merged it waits to be killed.

use std::io::Write;
use std::process::ExitCode;

use guestpass_core::{Config, Dialect, Guestpass, SignInChoice, SignInOutcome};

/// The account's password (a test value, not a secret).
pub const PASSWORD: &str = "another-password";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [dir, service, backend, email, _seed, tag] = a.as_slice() else {
        eprintln!("usage: merge-child DATA_DIR KEYRING_SERVICE BACKEND_URL EMAIL SEED TAG");
        return ExitCode::from(2);
    };
    let config = Config {
        data_dir: dir.into(),
        keyring_service: service.clone(),
        backend: Some((backend.clone(), Dialect::Guestpass)),
        social: Vec::new(),
    };
    match drive(config, email, tag).await {
        Ok(()) => loop {
            // Done: the harness kills us whenever it likes.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        },
        Err(e) => {
            say(&format!(
                "fail {}: {}",
                e.code().as_str(),
                e.to_api().message
            ));
            ExitCode::from(3)
        }
    }
}

async fn drive(config: Config, email: &str, tag: &str) -> guestpass_core::Result<()> {
    say("try open");
    let app = Guestpass::open(config).await?;
    let session = app.ensure_session().await?;
    say(&format!(
        "ack session {} {}",
        session.user.id, session.user.is_anonymous
    ));
    if !session.user.is_anonymous {
        return Ok(());
    }
    if app.list_notes().await?.is_empty() {
        for i in 0..3 {
            let body = format!("{tag}-{i}");
            say(&format!("try create {body}"));
            let n = app.create_note(&body).await?;
            say(&format!("ack create {} {body}", n.id));
        }
    }
    say("try sync");
    let status = app.sync_now().await;
    say(&format!("ack sync {:?}", status.state));
    say("try merge");
    match app.sign_in_email(email, PASSWORD).await? {
        SignInOutcome::ChoiceNeeded { .. } => {
            app.complete_sign_in(SignInChoice::Merge).await?;
        }
        SignInOutcome::SignedIn(_) => {}
    }
    say("ack merge");
    Ok(())
}
