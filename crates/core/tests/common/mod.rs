//! A device for the tests: a real SQLite file in a temp dir and the real OS keyring
//! under a service name of its own, cleaned up afterwards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use guestpass_core::{Config, Guestpass};

pub struct Device {
    pub dir: tempfile::TempDir,
    pub service: String,
}

impl Device {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            service: format!("guestpass-test-{}", guestpass_proto::new_session_id()),
        }
    }

    pub fn config(&self) -> Config {
        Config {
            data_dir: self.dir.path().to_path_buf(),
            keyring_service: self.service.clone(),
            backend: None,
            social: Vec::new(),
        }
    }

    /// One launch of the app on this device.
    pub async fn launch(&self) -> Guestpass {
        Guestpass::open(self.config()).await.expect("open store")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(guestpass_core::store::DB_FILE)
    }

    /// Every byte of the database and its WAL/SHM files.
    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db_path().into_os_string();
            p.push(suffix);
            if let Ok(b) = std::fs::read(&p) {
                all.extend(b);
            }
        }
        all
    }

    /// The session token as the OS keyring holds it.
    pub fn keyring_token(&self, user_id: &str) -> Option<String> {
        let entry =
            keyring::Entry::new(&self.service, &format!("{user_id}:session")).expect("entry");
        match entry.get_password() {
            Ok(t) => Some(t),
            Err(keyring::Error::NoEntry) => None,
            Err(e) => panic!("keyring: {e}"),
        }
    }

    pub fn forget_keyring(&self, user_id: &str) {
        let entry =
            keyring::Entry::new(&self.service, &format!("{user_id}:session")).expect("entry");
        let _ = entry.delete_credential();
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn count(g: &Guestpass, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(g.store().pool())
        .await
        .expect("count")
}
