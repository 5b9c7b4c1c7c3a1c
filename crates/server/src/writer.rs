//! The write side of anonymous sign-in: one task that commits many sign-ins per
//! transaction (group commit).
//!
//! Handlers queue their guest (a bounded channel) and wait for their own answer
//! (a oneshot). The task takes everything waiting, up to [`MAX_BATCH`], writes it
//! in ONE transaction ([`Database::create_guests`]), commits, and only then
//! answers each. So the commit and its fsync are paid once per batch, an answer
//! never goes out before its rows are durable, and a sign-in that conflicts
//! (taken id) or is rate-limited is reported on its own without failing the others.
//! [`IN_FLIGHT`] batches run at once, so one's fsync overlaps the next one's writing,
//! and a batch is formed only once the one before has released the write lock, so
//! it takes every sign-in that arrived meanwhile. (Formed as soon as a slot was
//! free, it waited for that lock with what was there: one batch in five held one
//! sign-in, and each batch costs ~450 µs of writing before its first guest.)
//!
//! Never a hang: a full queue is refused at once, and a handler waits at most the
//! database timeout (plus a margin for the batch ahead of it); both answer 503.
//! Work whose handler has gone (client left, or timed out) is dropped unwritten.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::db::{Db, DbError, DbResult, GuestOutcome, NewGuest};

/// Most sign-ins in one transaction: enough to share an fsync among every
/// connection a busy server has open, few enough that one batch stays short.
pub const MAX_BATCH: usize = 256;

/// Sign-ins waiting beyond this are refused with 503 rather than queued.
pub const QUEUE: usize = 4096;

/// Dropped by [`Database::create_guests`](crate::db::Database::create_guests)
/// once the next batch may be written: the writer forms that batch only then, so
/// it takes every sign-in that arrived while this one held the write lock.
pub type Written = oneshot::Sender<()>;

struct Job {
    guest: NewGuest,
    deadline: Instant,
    reply: oneshot::Sender<DbResult<GuestOutcome>>,
}

/// The handle the handlers hold; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    wait: Duration,
}

impl Writer {
    /// Starts the task. `wait` is how long a sign-in may wait for the database
    /// (the configured database timeout).
    pub fn spawn(db: Db, wait: Duration) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Self { jobs, wait }
    }

    /// Creates the guest (or reports why not) once it is committed.
    pub async fn create_guest(&self, guest: NewGuest) -> DbResult<GuestOutcome> {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.wait;
        self.jobs
            .try_send(Job {
                guest,
                deadline,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    DbError::Unavailable("the sign-in queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    DbError::Unavailable("the sign-in writer has stopped".into())
                }
            })?;
        // Past the deadline the writer drops the job unwritten; the margin covers a
        // batch that was already running when the deadline passed.
        match tokio::time::timeout_at(deadline + self.wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DbError::Unavailable(
                "the sign-in writer stopped before answering".into(),
            )),
            Err(_) => Err(DbError::Unavailable(
                "timed out waiting for the database".into(),
            )),
        }
    }
}

/// How long a batch may wait for the sign-ins it expects (see [`gather`]).
const GATHER_MAX: Duration = Duration::from_millis(1);

/// Batches remembered to tell how many sign-ins are usually in flight.
const RECENT: usize = 8;

/// Under load the connections fall into two groups: while one batch is written,
/// the clients of the last one send their next sign-in, and the writer then takes
/// whoever is waiting: half the connections per batch, twice the commits. So when
/// the recent batches were bigger than what is waiting now, the writer waits (at
/// most [`GATHER_MAX`], less as soon as they are there) for the rest to arrive
/// and commits them together. A client left alone after a burst waits at most
/// GATHER_MAX on each of its next [`RECENT`] sign-ins; after that the recent
/// batches are of one and nothing waits.
async fn gather(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, expected: usize) {
    let until = Instant::now() + GATHER_MAX;
    while jobs.len() < expected.min(MAX_BATCH) {
        let room = MAX_BATCH - jobs.len();
        match tokio::time::timeout_at(until, rx.recv_many(jobs, room)).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Batches written at once. While one batch waits for its commit to reach the disk
/// (SQLite: `wal_sync.rs`; PostgreSQL: its WAL flush and the round trip), the next
/// one is already being written; a third would only queue behind the write lock.
pub const IN_FLIGHT: usize = 2;

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut recent = [1usize; RECENT];
    let mut next = 0;
    let mut writing: Option<oneshot::Receiver<()>> = None;
    loop {
        // A free slot first: while both are busy the sign-ins queue up and the
        // next batch takes them all.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // And the batch before done with the write lock: what arrived meanwhile
        // joins this one instead of waiting for a batch of its own.
        if let Some(before) = writing.take() {
            let _ = before.await;
        }
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        // Gathering pays only when nothing else is in flight: otherwise the
        // stragglers are waiting for that batch's answers and join the next one.
        let alone = slots.available_permits() == IN_FLIGHT - 1;
        let expected = recent.iter().copied().max().unwrap_or(1);
        if alone && jobs.len() < expected {
            gather(&mut rx, &mut jobs, expected).await;
        }
        recent[next] = jobs.len();
        next = (next + 1) % RECENT;
        let now = Instant::now();
        let (live, late): (Vec<Job>, Vec<Job>) = jobs
            .drain(..)
            .filter(|j| !j.reply.is_closed())
            .partition(|j| j.deadline > now);
        for job in late {
            let _ = job.reply.send(Err(DbError::Unavailable(
                "the database did not take the sign-in in time".into(),
            )));
        }
        if live.is_empty() {
            continue;
        }
        let db = db.clone();
        let (written, done) = oneshot::channel();
        writing = Some(done);
        tokio::spawn(async move {
            write_batch(&db, live, written).await;
            drop(slot);
        });
    }
}

/// Writes one batch and answers each of its sign-ins.
async fn write_batch(db: &Db, live: Vec<Job>, written: Written) {
    let (guests, replies): (Vec<NewGuest>, Vec<_>) =
        live.into_iter().map(|j| (j.guest, j.reply)).unzip();
    let started = std::time::Instant::now();
    let result = db.create_guests(&guests, written).await;
    tracing::debug!(
        guests = guests.len(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ok = result.is_ok(),
        "sign-in batch"
    );
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        // A uniqueness failure the batch does not expect (a session token
        // collision): redo each sign-in alone so only its own fails.
        Err(DbError::Conflict(_)) if guests.len() > 1 => {
            for (guest, reply) in guests.into_iter().zip(replies) {
                let one = db
                    .create_guests(std::slice::from_ref(&guest), oneshot::channel().0)
                    .await
                    .and_then(|o| {
                        o.into_iter().next().ok_or_else(|| {
                            DbError::Unavailable("a batch of one came back empty".into())
                        })
                    });
                let _ = reply.send(one);
            }
        }
        Err(e) => {
            // Nothing was committed: every sign-in of the batch fails alike.
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::db::{SessionRow, UserRow};

    fn job(n: usize) -> (Job, oneshot::Receiver<DbResult<GuestOutcome>>) {
        let id = format!("usr_writer_test_{n}");
        let guest = NewGuest {
            user: UserRow::new_guest(id.clone(), 1),
            session: SessionRow {
                id: format!("ses_{n}"),
                user_id: id,
                token_hash: format!("hash_{n}"),
                expires_at: i64::MAX,
                created_at: 1,
                updated_at: 1,
            },
            audits: Vec::new(),
            device_key_hash: None,
            rate: None,
        };
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(60);
        (
            Job {
                guest,
                deadline,
                reply,
            },
            answer,
        )
    }

    /// Polls `cond` (a deadline, not a sleep, bounds the wait).
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            tokio::task::yield_now().await;
        }
    }

    /// While a batch waits for the write lock (here held as the WAL checkpoint
    /// holds it), the sign-ins that arrive are not made into a batch of their own
    /// beside it: they stay queued, and all go into the next batch together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_ins_arriving_during_a_write_share_the_next_batch() {
        const LATER: usize = 10;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let options = crate::config::Config::default().store_options();
        let store = Arc::new(
            crate::store_connect::open_sqlite(&url, options)
                .await
                .unwrap(),
        );
        let writer = Writer::spawn(store.clone(), Duration::from_secs(60));
        let paused = store.writer.lock().await;

        let (first, first_answer) = job(0);
        writer.jobs.try_send(first).unwrap();
        until("the first sign-in taken into a batch", || {
            writer.jobs.capacity() == QUEUE
        })
        .await;
        let mut answers = vec![first_answer];
        for n in 1..=LATER {
            let (later, answer) = job(n);
            writer.jobs.try_send(later).unwrap();
            answers.push(answer);
        }
        until("the later sign-ins queued, not taken", || {
            writer.jobs.capacity() == QUEUE - LATER
        })
        .await;

        drop(paused);
        for answer in answers {
            assert_eq!(answer.await.unwrap().unwrap(), GuestOutcome::Created);
        }
        assert_eq!(
            store.wal_sync.commits(),
            2,
            "one commit for the first, one for the rest"
        );
    }
}
