//! Real faults for the device's data dir: a small tmpfs (a disk that fills up) that can
//! be remounted read-only. Needs root (CI is root); elsewhere the tests say why they skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a fresh temp dir, unmounted when dropped — also when the test
/// panics, so a failing test never leaves a mount behind.
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Tmpfs {
    /// `size` as mount(8) takes it, e.g. `"2m"`. `Err` says why it cannot be done here.
    pub fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = dir
            .path()
            .to_str()
            .ok_or("temp dir is not UTF-8")?
            .to_owned();
        let mut fs = Self {
            dir: Some(dir),
            mounted: false,
        };
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                &target,
            ],
        )?;
        fs.mounted = true;
        Ok(fs)
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("mounted").path()
    }

    fn target(&self) -> &str {
        self.path().to_str().expect("UTF-8")
    }

    /// The kernel refuses (busy) while any file on it is open for writing. A closed
    /// sqlx pool lets its connection threads finish closing their files a moment
    /// later, so poll until the remount is accepted, within a deadline.
    pub fn remount_read_only(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match run("mount", &["-o", "remount,ro", self.target()]) {
                Ok(()) => return,
                Err(e) if e.contains("busy") && std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                Err(e) => panic!("remount read-only: {e}"),
            }
        }
    }

    pub fn remount_read_write(&self) {
        run("mount", &["-o", "remount,rw", self.target()]).expect("remount read-write");
    }

    /// Fills every free byte with a file of its own; returns that file to free the space.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk).and_then(|()| f.flush()) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // A last partial page, so not even a few bytes are left.
        while let Ok(1) = f.write(&[0u8; 1]) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a connection the test still holds must not keep the mount alive.
            if let Err(e) = run("umount", &["-l", self.target()]) {
                eprintln!("could not unmount {}: {e}", self.target());
            }
        }
        drop(self.dir.take());
    }
}

/// The fault tests need root to mount. CI is root; elsewhere each test prints why it
/// skipped and returns.
#[macro_export]
macro_rules! tmpfs_or_skip {
    ($size:expr) => {
        match faults::Tmpfs::mount($size) {
            Ok(fs) => fs,
            Err(why) => {
                println!("SKIPPED: cannot mount a tmpfs for this fault ({why}); run as root");
                return;
            }
        }
    };
}
