//! Test support for the workspace-level tests: a device (real SQLite file, real OS
//! keyring under its own service name) and the reference server on a port-0 listener
//! with its own SQLite file, plus a real SMTP listener to catch verification mail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod crash_child;
pub mod crash_relay;
pub mod keyring_daemon;
pub mod server_process;

pub use guestpass_testkit::{find_link, SmtpSink};

use std::net::SocketAddr;
use std::path::PathBuf;

use guestpass_core::{Config, Dialect, Guestpass, SocialProvider};
use guestpass_server::{launch_with_clock, launch_with_listener, Secret, ServerHandle};
use tokio::net::TcpListener;

pub const ADMIN_KEY: &str = "e2e-admin-key-0123456789";

/// A device: one data dir and one keyring service, launched as many times as a test likes.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub service: String,
    pub backend: Option<(String, Dialect)>,
    /// The social providers the app offers (empty unless a test sets them).
    pub social: Vec<SocialProvider>,
}

impl Device {
    pub fn new(backend_url: &str, dialect: Dialect) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            service: format!("guestpass-e2e-{}", guestpass_proto::new_session_id()),
            backend: Some((backend_url.to_owned(), dialect)),
            social: Vec::new(),
        }
    }

    pub async fn launch(&self) -> Guestpass {
        let config = Config {
            data_dir: self.dir.path().to_path_buf(),
            keyring_service: self.service.clone(),
            backend: self.backend.clone(),
            social: self.social.clone(),
        };
        Guestpass::open(config)
            .await
            .expect("open the device store")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(guestpass_core::store::DB_FILE)
    }

    fn entry(&self, user_id: &str, slot: &str) -> keyring::Entry {
        keyring::Entry::new(&self.service, &format!("{user_id}:{slot}")).expect("keyring entry")
    }

    /// What the OS keyring holds in a slot (`session`, `remote-session`,
    /// `pending-password`, `device-key`, `pending-token`).
    pub fn keyring(&self, user_id: &str, slot: &str) -> Option<String> {
        match self.entry(user_id, slot).get_password() {
            Ok(v) => Some(v),
            Err(keyring::Error::NoEntry) => None,
            Err(e) => panic!("keyring: {e}"),
        }
    }

    pub fn forget_keyring(&self, user_id: &str) {
        for slot in [
            "session",
            "remote-session",
            "pending-password",
            "device-key",
            "pending-token",
            "pending-revocation",
            "recovery-phrase",
        ] {
            let _ = self.entry(user_id, slot).delete_credential();
        }
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

    /// A second device of the same user: a copy of this data folder and of its
    /// keyring items under a service of its own, as if the folder had been copied
    /// to another machine. Close every app of this device first (so the copy is
    /// consistent); each opening of either gets its own CRDT actor.
    pub async fn twin(&self, user_id: &str) -> Device {
        use guestpass_core::vault::Slot;
        let twin = self.copy_data(format!(
            "guestpass-e2e-{}",
            guestpass_proto::new_session_id()
        ));
        // The app's vault keeps one keyring connection (the keyring crate's entries
        // open one per call, which costs a key exchange each).
        let (from, to) = (self.vault(), twin.vault());
        for slot in [Slot::Session, Slot::Remote, Slot::DeviceKey] {
            if let Some(secret) = from.get(user_id, slot).await.expect("read a keyring item") {
                to.set(user_id, slot, &secret)
                    .await
                    .expect("copy a keyring item");
            }
        }
        twin
    }

    /// Like [`Self::twin`] but reading this device's keyring items where they are
    /// (the same service name): cheaper, for tests that make many devices.
    pub fn twin_sharing_keyring(&self) -> Device {
        self.copy_data(self.service.clone())
    }

    fn copy_data(&self, service: String) -> Device {
        let twin = Device {
            dir: tempfile::tempdir().expect("temp dir"),
            service,
            backend: self.backend.clone(),
            social: self.social.clone(),
        };
        for entry in std::fs::read_dir(self.dir.path()).expect("read data dir") {
            let entry = entry.expect("dir entry");
            if entry.file_type().expect("file type").is_file() {
                std::fs::copy(entry.path(), twin.dir.path().join(entry.file_name()))
                    .expect("copy a data file");
            }
        }
        twin
    }

    /// This device's keyring, as the app reaches it.
    pub fn vault(&self) -> guestpass_core::Vault {
        guestpass_core::Vault::new(self.service.clone())
    }

    /// [`Self::forget_keyring`] over one connection.
    pub async fn forget_keyring_fast(&self, user_id: &str) {
        use guestpass_core::vault::Slot;
        let v = self.vault();
        for slot in [
            Slot::Session,
            Slot::Remote,
            Slot::PendingPassword,
            Slot::DeviceKey,
            Slot::PendingToken,
            Slot::RecoveryPhrase,
        ] {
            let _ = v.delete(user_id, slot).await;
        }
    }
}

/// Device A, registered with `server`, and B, its twin (a copy of A's data folder,
/// as if it moved to another machine): both launched, signed in as the same user,
/// whose id comes last.
pub async fn twin_devices(server: &RefServer) -> (Device, Guestpass, Device, Guestpass, String) {
    let a_dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = a_dev.launch().await;
    let me = a.ensure_session().await.expect("a guest on A");
    let s = a.sync_now().await;
    assert_eq!(s.state, guestpass_core::SyncState::UpToDate, "{s:?}");
    a.store().close().await;
    drop(a);
    let b_dev = a_dev.twin(&me.user.id).await;
    let a = a_dev.launch().await;
    let b = b_dev.launch().await;
    assert_eq!(
        a.ensure_session().await.expect("A resumes").user.id,
        me.user.id
    );
    assert_eq!(
        b.ensure_session().await.expect("B resumes").user.id,
        me.user.id
    );
    (a_dev, a, b_dev, b, me.user.id)
}

/// The bodies of the device user's notes, sorted (what a person sees, in a
/// stable order).
pub async fn note_bodies(g: &Guestpass) -> Vec<String> {
    let mut b: Vec<String> = g
        .list_notes()
        .await
        .expect("list notes")
        .into_iter()
        .map(|n| n.body)
        .collect();
    b.sort();
    b
}

/// A JSON POST with an optional bearer token, and its `(status, body)`: the raw
/// call tests make to set up other users and check the server's answer.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = http.post(url).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

pub async fn count(g: &Guestpass, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(g.store().pool())
        .await
        .expect("count")
}

/// The reference server with its own SQLite file, restartable on the same port.
pub struct RefServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub smtp_url: Option<String>,
    handle: Option<ServerHandle>,
}

impl RefServer {
    /// A port that nothing listens on yet: the backend a device knows before it runs.
    pub async fn reserve() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            addr,
            smtp_url: None,
            handle: None,
        }
    }

    pub async fn start() -> Self {
        let mut s = Self::reserve().await;
        s.up().await;
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> guestpass_server::Config {
        guestpass_server::Config {
            database_url: Secret::new(format!(
                "sqlite://{}",
                self.dir.path().join("server.db").display()
            )),
            secret: Some(Secret::new("e2e-secret")),
            admin_api_key: Some(Secret::new(ADMIN_KEY)),
            site_url: self.url(),
            smtp_url: self.smtp_url.clone().map(Secret::new),
            cleanup_interval_secs: 0,
            ..guestpass_server::Config::default()
        }
    }

    /// Starts (or restarts) the server on its port with its database.
    pub async fn up(&mut self) {
        self.up_with(self.config()).await;
    }

    /// The same, with a config the test adjusted (start from [`Self::config`]).
    pub async fn up_with(&mut self, config: guestpass_server::Config) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-bind the server port");
        self.handle = Some(
            launch_with_listener(config, listener)
                .await
                .expect("launch server"),
        );
    }

    /// The same on a clock the test holds: a limit's window (fixed, per minute
    /// or hour) then cannot roll over between two requests of one test.
    pub async fn up_with_clock(
        &mut self,
        config: guestpass_server::Config,
        clock: guestpass_server::ManualClock,
    ) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-bind the server port");
        self.handle = Some(
            launch_with_clock(config, listener, std::sync::Arc::new(clock))
                .await
                .expect("launch server"),
        );
    }

    /// Starts it with social providers `(name, client id, issuer)` configured.
    pub async fn up_with_social(&mut self, providers: &[(&str, &str, &str)]) {
        let mut config = self.config();
        for (name, client_id, issuer) in providers {
            config.social_providers.insert(
                (*name).to_owned(),
                guestpass_server::config::SocialProvider {
                    client_id: (*client_id).to_owned(),
                    issuer: (*issuer).to_owned(),
                },
            );
        }
        self.up_with(config).await;
    }

    /// One stale-guest cleanup now (`cleanupIntervalSecs` is 0 in tests).
    pub async fn run_cleanup(&self) -> usize {
        let h = self.handle.as_ref().expect("the server is up");
        h.run_cleanup().await.expect("cleanup").guests_deleted
    }

    /// Where its Prometheus metrics answer, when its config set `metricsListen`.
    pub fn metrics_url(&self) -> Option<String> {
        let addr = self.handle.as_ref()?.metrics_addr()?;
        Some(format!("http://{addr}/metrics"))
    }

    pub async fn down(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("server shutdown");
        }
    }

    /// A raw call, for setting up other users and checking the server's view.
    pub async fn post(
        &self,
        route: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}/api/auth{route}", self.url());
        post_json(&reqwest::Client::new(), &url, token, body).await
    }

    pub async fn get(&self, route: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new().get(format!("{}/api/auth{route}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The server's record of a user, through the admin API.
    pub async fn admin_user(&self, user_id: &str) -> Option<serde_json::Value> {
        let resp = reqwest::Client::new()
            .get(format!(
                "{}/api/auth/admin/list-users?limit=200",
                self.url()
            ))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .expect("admin list");
        let body: serde_json::Value = resp.json().await.expect("admin json");
        body["data"]
            .as_array()?
            .iter()
            .find(|u| u["id"] == user_id)
            .cloned()
    }

    /// Makes a full account with `email` directly on the server.
    pub async fn full_account(&self, email: &str) {
        let (s, guest) = self
            .post("/sign-in/anonymous", None, serde_json::json!({}))
            .await;
        assert_eq!(s, 200, "{guest}");
        let token = guest["token"].as_str().expect("token").to_owned();
        let (s, body) = self
            .post(
                "/anonymous/upgrade",
                Some(&token),
                serde_json::json!({"email": email, "password": "another-password"}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
}
