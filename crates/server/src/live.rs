//! "Pull now" (DESIGN.md §3a): `GET /sync/events` is a Server-Sent Events stream
//! that says `event: pull` whenever the caller's record log grew.
//!
//! In one process: a `watch` channel per user with open streams, bumped after a
//! push commits. A watch coalesces: a device that has not read the last event
//! yet gets one event for many pushes, which is all "pull now" needs.
//!
//! Several instances on one PostgreSQL: a push also sends `NOTIFY
//! guestpass_records, '<user id>'` inside its transaction (delivered on commit,
//! never for a rollback), and each instance runs one [`pg_listen`] task that
//! fans the notifications out to its own streams (its own pushes included, so
//! each push is one event). The payload is the user id and nothing else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::Stream;
use tokio::sync::watch;

use crate::auth::require_session;
use crate::crypto::sha256_hex;
use crate::error::ApiResult;
use crate::extract::bearer;
use crate::records::SyncProtocol;
use crate::state::SharedState;

/// The PostgreSQL channel of "this user's log grew".
pub const PG_CHANNEL: &str = "guestpass_records";

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An idle stream checks this often that its session is still live (signed
/// out, revoked, expired or deleted ends it); a stream with events checks
/// before each one.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The open streams of this process, by user.
pub struct Live {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Flips to `true` on shutdown: every stream ends, so a graceful shutdown
    /// (which waits for open responses) is not held forever by idle devices.
    closed: watch::Sender<bool>,
    /// PostgreSQL: pushes of this instance come back through its own LISTEN
    /// like everyone else's, so [`Live::pushed`] leaves them to it (one event
    /// per push, not two).
    via_database: AtomicBool,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            closed: watch::channel(false).0,
            via_database: AtomicBool::new(false),
        }
    }
}

impl Live {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // The map stays consistent whatever panicked while holding it.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A push by this instance committed: wake the user's streams, unless the
    /// database's notification will.
    pub fn pushed(&self, user_id: &str) {
        if !self.via_database.load(Ordering::Relaxed) {
            self.notify(user_id);
        }
    }

    /// From now on notifications arrive through the database (PostgreSQL LISTEN).
    pub fn listen_via_database(&self) {
        self.via_database.store(true, Ordering::Relaxed);
    }

    /// `user_id`'s log grew (after commit): wake its streams.
    pub fn notify(&self, user_id: &str) {
        let mut users = self.users();
        if let Some(tx) = users.get(user_id) {
            if tx.receiver_count() == 0 {
                users.remove(user_id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every stream: notifications may have been missed (the PostgreSQL
    /// listener lost its connection), and an extra pull costs one request.
    pub fn notify_all(&self) {
        let mut users = self.users();
        users.retain(|_, tx| tx.receiver_count() > 0);
        for tx in users.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Ends every stream (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Streams open in this process (for tests and logs).
    pub fn subscribers(&self) -> usize {
        self.users().values().map(|tx| tx.receiver_count()).sum()
    }

    fn subscribe(self: &Arc<Self>, user_id: &str) -> Subscription {
        let rx = self
            .users()
            .entry(user_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            live: self.clone(),
            user_id: user_id.to_string(),
            rx: Some(rx),
            closed: self.closed.subscribe(),
        }
    }
}

/// One open stream's receiver; dropping it (client gone) forgets the user once
/// its last stream is gone, so the map does not grow with every user ever seen.
struct Subscription {
    live: Arc<Live>,
    user_id: String,
    rx: Option<watch::Receiver<u64>>,
    closed: watch::Receiver<bool>,
}

/// What a stream waits for next.
enum Wake {
    /// The user's log grew.
    Grew,
    /// Time to check the session is still live.
    Recheck,
    /// Shutdown (or the channel is gone): end the stream.
    End,
}

impl Subscription {
    async fn next(&mut self, recheck: &mut tokio::time::Interval) -> Wake {
        let Some(rx) = self.rx.as_mut() else {
            return Wake::End;
        };
        if *self.closed.borrow() {
            return Wake::End;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_ok() { Wake::Grew } else { Wake::End },
            _ = self.closed.changed() => Wake::End,
            _ = recheck.tick() => Wake::Recheck,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut users = self.live.users();
        if users
            .get(&self.user_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            users.remove(&self.user_id);
        }
    }
}

fn pull_event() -> Event {
    Event::default().event("pull").data("{}")
}

/// `GET /sync/events` (bearer, protocol header). The first event is sent at
/// once: the device pulls after every (re)connect, which covers whatever it
/// missed while not connected, and knows from then on it is subscribed.
pub async fn events(
    State(state): State<SharedState>,
    _protocol: SyncProtocol,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let authed = require_session(&state, &headers).await?;
    let token_hash = bearer(&headers).map(sha256_hex).unwrap_or_default();
    let sub = state.live.subscribe(&authed.user.id);
    let watch = Watch {
        state,
        token_hash,
        sub,
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK),
    };
    Ok(Sse::new(stream(watch)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One open stream: its subscription and the session it was opened with.
struct Watch {
    state: SharedState,
    token_hash: String,
    sub: Subscription,
    recheck: tokio::time::Interval,
}

impl Watch {
    /// The session is still live for this user. A database that does not answer
    /// keeps the stream: an outage is no reason to drop every device.
    async fn live(&self) -> bool {
        let now = self.state.clock.now_ms();
        match self.state.db.session_by_token(&self.token_hash, now).await {
            Ok(found) => found.is_some_and(|(user, _)| user.id == self.sub.user_id),
            Err(_) => true,
        }
    }

    /// `true` when a `pull` event is due, `false` when the stream ends.
    async fn next(&mut self) -> bool {
        loop {
            match self.sub.next(&mut self.recheck).await {
                Wake::Grew => return self.live().await,
                Wake::Recheck if !self.live().await => return false,
                Wake::Recheck => {}
                Wake::End => return false,
            }
        }
    }
}

fn stream(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((watch, true), |(mut watch, first)| async move {
        if first || watch.next().await {
            Some((Ok(pull_event()), (watch, false)))
        } else {
            None
        }
    })
}

/// The one `LISTEN guestpass_records` of this instance. Connected (and
/// listening) before the server answers its first request, so a stream opened
/// on this instance hears every push committed on another one after that.
pub(crate) async fn pg_listener(
    pool: &sqlx::PgPool,
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(PG_CHANNEL).await?;
    Ok(listener)
}

/// Fans notifications out until the task is aborted. When the connection is
/// lost (the database restarted), a new listener is connected with backoff;
/// whatever was sent meanwhile is lost, so once it listens again every local
/// stream is woken to pull once.
pub(crate) async fn pg_listen(
    mut listener: sqlx::postgres::PgListener,
    pool: sqlx::PgPool,
    live: Arc<Live>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => live.notify(n.payload()),
            Ok(None) => {
                tracing::warn!("record notifications: connection lost; reconnecting");
                listener = reconnect(&pool).await;
                live.notify_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "record notifications failed; reconnecting");
                listener = reconnect(&pool).await;
                live.notify_all();
            }
        }
    }
}

/// A listening connection, retried (paced, not in a hot loop) until it works.
async fn reconnect(pool: &sqlx::PgPool) -> sqlx::postgres::PgListener {
    let mut backoff = Duration::from_millis(100);
    loop {
        match pg_listener(pool).await {
            Ok(listener) => {
                tracing::info!("record notifications: listening again");
                return listener;
            }
            Err(e) => {
                tracing::warn!(error = %e, "record notifications: reconnect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
