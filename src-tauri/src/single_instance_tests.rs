//! Unit tests of `single_instance.rs`: the lock and the hand-over.

#![allow(clippy::unwrap_used)]
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn primary(dir: &Path) -> Instance {
    match claim(dir) {
        Ok(Claim::Primary(i)) => i,
        Ok(Claim::AlreadyRunning) => panic!("{} is already claimed", dir.display()),
        Err(e) => panic!("claim failed: {e}"),
    }
}

fn already_running(dir: &Path) -> bool {
    matches!(claim(dir), Ok(Claim::AlreadyRunning))
}

#[test]
fn one_claim_per_dir_released_on_drop_and_dirs_independent() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let b = root.path().join("b");

    let first = primary(&a);
    assert!(already_running(&a), "a second claim on the same dir");
    let other = primary(&b);
    assert!(already_running(&b));

    drop(first);
    let again = primary(&a);
    assert!(already_running(&a));
    drop((again, other));
}

#[test]
fn a_second_launch_reaches_the_holder_with_its_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let holder = primary(dir.path());
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    holder.attach_focus(Box::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
        Answer::Focused
    }));
    assert!(matches!(
        hand_over(dir.path()),
        Contact::Answered(Answer::Focused)
    ));
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(INSTANCE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Without the nonce: refused, and nothing focused.
    let text = std::fs::read(dir.path().join(INSTANCE_FILE)).unwrap();
    let r: Rendezvous = serde_json::from_slice(&text).unwrap();
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, r.port)).unwrap();
    writeln!(s, "{HELLO} not-the-nonce").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "refused");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

/// A holder that accepts but never answers (hung) is reported as such, not waited
/// for forever and not taken for gone.
#[test]
fn a_holder_that_never_answers_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let _holder = primary(dir.path());
    let hung = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = hung.local_addr().unwrap().port();
    let r = Rendezvous {
        port,
        nonce: "n".into(),
        pid: 1,
    };
    write_private(
        &dir.path().join(INSTANCE_FILE),
        &serde_json::to_vec(&r).unwrap(),
    )
    .unwrap();
    // The kernel completes the connection from the backlog; nobody reads it.
    assert!(matches!(hand_over(dir.path()), Contact::Silent(_)));
    drop(hung);
}

#[test]
fn a_holder_without_its_window_yet_answers_busy() {
    let dir = tempfile::tempdir().unwrap();
    let _holder = primary(dir.path());
    assert!(matches!(
        hand_over(dir.path()),
        Contact::Answered(Answer::Busy)
    ));
}
