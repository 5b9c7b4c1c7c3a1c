//! "Pull now", live: holds `GET /sync/events` (server-sent events) open with the
//! remote session and wakes the sync engine on every `event: pull`. It reconnects
//! with backoff; while it is down, the engine's periodic pass is the fallback.

use std::time::Duration;

use tokio::sync::Notify;

use crate::backend::Backend;
use crate::store::Store;
use crate::vault::{Slot, Vault};

/// A stream silent this long is presumed dead (a peer that vanished without a FIN)
/// and reopened; the server's keep-alives come far more often.
const IDLE: Duration = Duration::from_secs(90);

/// Runs forever. `backoff(failures)` says how long to wait before reconnecting.
pub(crate) async fn run(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    wake: &Notify,
    backoff: impl Fn(u32) -> Duration,
) {
    let mut failures = 0u32;
    loop {
        match listen(store, vault, backend, wake).await {
            // The stream was open and ended: reconnect soon, not at once.
            Ok(()) => failures = 1,
            Err(why) => {
                tracing::debug!("live sync events unavailable: {why}");
                failures = failures.saturating_add(1);
            }
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// One connection, until it ends. `Err` when it could not be opened.
async fn listen(
    store: &Store,
    vault: &Vault,
    backend: &Backend,
    wake: &Notify,
) -> Result<(), String> {
    let user = crate::sync::device_user_id(store)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no user yet")?;
    let token = vault
        .get(&user, Slot::Remote)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("not registered yet")?;
    let mut resp = backend
        .record_events(&token)
        .await
        .map_err(|e| e.to_string())?;
    // Whatever happened while we were not listening: pull once now.
    wake.notify_one();
    let mut events = EventParser::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return Ok(()),
        };
        if events.feed(&chunk) > 0 {
            wake.notify_one();
        }
    }
}

/// The little of the SSE format we need: `event:` lines and the blank line that
/// ends an event. Counts the `pull` events completed by each chunk.
#[derive(Default)]
struct EventParser {
    line: Vec<u8>,
    event: Option<String>,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut pulls = 0;
        for &b in bytes {
            if b != b'\n' {
                // A hostile or broken server must not grow this without bound.
                if self.line.len() < 4096 {
                    self.line.push(b);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if self.event.take().as_deref() == Some("pull") {
                    pulls += 1;
                }
            } else if let Some(name) = line.strip_prefix("event:") {
                self.event = Some(name.trim().to_owned());
            }
            self.line.clear();
        }
        pulls
    }
}

#[cfg(test)]
mod tests {
    use super::EventParser;

    #[test]
    fn pull_events_are_counted_across_chunk_boundaries() {
        let mut p = EventParser::default();
        assert_eq!(p.feed(b": keep-alive\n\nevent: pu"), 0);
        assert_eq!(p.feed(b"ll\r\ndata: {}\r\n\r\nevent: other\n\n"), 1);
        assert_eq!(p.feed(b"event: pull\ndata:\n\nevent: pull\n\n"), 2);
        assert_eq!(p.feed(b"data: no event name\n\n"), 0);
    }
}
