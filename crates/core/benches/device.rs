//! The device's timings, measured on real parts: a real SQLite file in a temp dir and the
//! real OS keyring (run under `scripts/with-keyring.sh`). Prints a markdown table.
//!
//! ```text
//! scripts/with-keyring.sh cargo bench -p guestpass-core --bench device            # full
//! scripts/with-keyring.sh cargo bench -p guestpass-core --bench device -- --smoke # seconds
//! ```
//!
//! "First launch" is what the app does on a new device: open the store (creating the file
//! and running the migrations), `getSession()` (none), `signIn.anonymous()` (user, session,
//! audit rows, token into the keyring, commit). "Relaunch" is open + `getSession()` on the
//! same data dir. The keyring and fsync rows isolate what those two cost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use clap::Parser;
use guestpass_core::{store::Store, vault::Slot, Config, Guestpass, Vault};
use secrecy::SecretString;

#[derive(Parser)]
#[command(about = "Device-side timings of guestpass-core")]
struct Args {
    /// A few runs of each, for CI: proves the bench works, figures are not meaningful.
    #[arg(long)]
    smoke: bool,
    /// First launches (each a fresh data dir and keyring service) and relaunches.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Notes written before the list is timed.
    #[arg(long, default_value_t = 10_000)]
    notes: usize,
    /// Also write the table to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Samples of one measured step.
struct Samples {
    name: String,
    runs: Vec<Duration>,
}

impl Samples {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            runs: Vec::new(),
        }
    }

    async fn time<T>(&mut self, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.runs.push(start.elapsed());
        out
    }

    fn row(&mut self) -> String {
        self.runs.sort();
        let pick = |q: f64| {
            let i = ((self.runs.len() as f64 - 1.0) * q).round() as usize;
            ms(self.runs[i])
        };
        format!(
            "| {} | {} | {} | {} | {} |",
            self.name,
            self.runs.len(),
            pick(0.5),
            pick(0.99),
            ms(*self.runs.last().expect("at least one run")),
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn config(dir: &std::path::Path, service: &str) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        keyring_service: service.to_owned(),
        backend: None,
        social: Vec::new(),
    }
}

fn service() -> String {
    format!("guestpass-bench-{}", guestpass_proto::new_session_id())
}

async fn launches(runs: usize) -> Vec<Samples> {
    let mut first = Samples::new("first launch: open + getSession + signIn.anonymous");
    let mut open_new = Samples::new("  open store, new file (migrations)");
    let mut create = Samples::new("  signIn.anonymous (rows + keyring + commit)");
    let mut relaunch = Samples::new("relaunch: open + getSession (resume)");
    let mut open_old = Samples::new("  open store, existing file");
    let mut resume = Samples::new("  getSession (keyring read + slide check)");
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = service();
        let start = Instant::now();
        let app = open_new
            .time(Guestpass::open(config(dir.path(), &service)))
            .await
            .expect("open");
        assert!(app.get_session().await.expect("getSession").is_none());
        let s = create
            .time(app.sign_in_anonymous())
            .await
            .expect("signIn.anonymous");
        first.runs.push(start.elapsed());
        app.store().close().await;
        drop(app);

        let start = Instant::now();
        let app = open_old
            .time(Guestpass::open(config(dir.path(), &service)))
            .await
            .expect("reopen");
        let resumed = resume.time(app.get_session()).await.expect("resume");
        relaunch.runs.push(start.elapsed());
        assert_eq!(resumed.expect("a session").user.id, s.user.id);
        app.store().close().await;
        app.vault()
            .delete(&s.user.id, Slot::Session)
            .await
            .expect("clean the keyring");
    }
    vec![first, open_new, create, relaunch, open_old, resume]
}

/// The keyring on its own: one write, one read and one delete of a token-sized secret.
async fn keyring(runs: usize) -> Vec<Samples> {
    let vault = Vault::new(service());
    let secret = SecretString::from("0".repeat(64));
    let (mut set, mut get, mut del) = (
        Samples::new("keyring: set one secret"),
        Samples::new("keyring: get one secret"),
        Samples::new("keyring: delete one secret"),
    );
    for i in 0..runs {
        let user = format!("usr_bench{i}");
        set.time(vault.set(&user, Slot::Session, &secret))
            .await
            .expect("keyring set");
        get.time(vault.get(&user, Slot::Session))
            .await
            .expect("keyring get");
        del.time(vault.delete(&user, Slot::Session))
            .await
            .expect("keyring delete");
    }
    vec![set, get, del]
}

/// One durable commit on this disk: an empty-ish write transaction in WAL mode.
async fn commits(runs: usize) -> Vec<Samples> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).await.expect("open");
    let mut commit = Samples::new("sqlite: one write transaction (commit)");
    for i in 0..runs {
        commit
            .time(async {
                let mut tx = store.pool().begin().await.expect("begin");
                sqlx::query("INSERT INTO audit_log (event, user_id, actor, at) VALUES ('user.updated', ?, 'bench', 'now')")
                    .bind(i.to_string())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            })
            .await;
    }
    store.close().await;
    vec![commit]
}

async fn notes(count: usize, lists: usize) -> Vec<Samples> {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service();
    let app = Guestpass::open(config(dir.path(), &service))
        .await
        .expect("open");
    let s = app.ensure_session().await.expect("guest");
    let mut insert = Samples::new(&format!("note insert (table growing 0 → {count})"));
    for i in 0..count {
        let body = format!("Note {i}: buy oat milk, call the plumber, water the plants.");
        insert
            .time(app.create_note(&body))
            .await
            .expect("create note");
    }
    let mut list = Samples::new(&format!("note list ({count} notes)"));
    for _ in 0..lists {
        let all = list.time(app.list_notes()).await.expect("list");
        assert_eq!(all.len(), count);
    }
    app.store().close().await;
    app.vault()
        .delete(&s.user.id, Slot::Session)
        .await
        .expect("clean the keyring");
    vec![insert, list]
}

fn main() {
    let args = Args::parse();
    let (runs, notes_n, lists) = if args.smoke {
        (3, 200, 3)
    } else {
        (args.runs, args.notes, 20)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut all = Vec::new();
    rt.block_on(async {
        // One unmeasured launch warms the page cache and the keyring daemon.
        launches(1).await;
        all.extend(launches(runs).await);
        all.extend(keyring(runs).await);
        all.extend(commits(runs).await);
        all.extend(notes(notes_n, lists).await);
    });
    let mut table = String::from(
        "| device step | runs | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for s in &mut all {
        table.push_str(&s.row());
        table.push('\n');
    }
    print!("{table}");
    if let Some(path) = args.markdown {
        std::fs::write(&path, &table).expect("write the markdown table");
    }
}
