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

    /// The kernel refuses (busy) while any file on it is open for writing, so this
    /// also checks that the store closed every file it had (`Store::close`); a
    /// refusal lists which files are still open, and by whom.
    pub fn remount_read_only(&self) {
        if let Err(e) = run("mount", &["-o", "remount,ro", self.target()]) {
            panic!(
                "remount read-only: {e}; open here: {:?}",
                open_under(self.path())
            );
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

/// Every process's open files under `dir` (pid, path): why a remount is refused.
fn open_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(dir) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    found.push((format!("{pid} {}", comm.trim()), target));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) {
            for line in maps.lines().filter(|l| l.contains(&*dir.to_string_lossy())) {
                found.push((format!("{pid} map"), PathBuf::from(line)));
            }
        }
    }
    found
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
