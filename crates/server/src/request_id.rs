//! A request id in every log line and every error body (issue 15), so a user's
//! "it said REQUEST_ID 01J…" finds the server's log lines of that request.
//!
//! The id is a ULID made here. An `x-request-id` from the client is not taken as
//! it is (it would let anyone write what they like into the logs), but is logged
//! beside ours when it is a short plain token, so a proxy's id still correlates.
//! The id goes back in the `x-request-id` response header, and `Failure` adds it to
//! the error body as `requestId` (read from the task-local set here).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// An inbound id worth logging: at most 64 characters of `[A-Za-z0-9._-]`.
fn upstream_id(req: &Request) -> Option<String> {
    let v = req.headers().get(HEADER)?.to_str().ok()?;
    (!v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    .then(|| v.to_owned())
}

/// The outermost layer: every log line of the request (the trace layer's and the
/// handlers') is inside a span carrying the id.
pub async fn assign(req: Request, next: Next) -> Response {
    let id = ulid::Ulid::new().to_string();
    let upstream = upstream_id(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        upstream_id = %upstream.as_deref().unwrap_or(""),
        method = %req.method(),
        // The path only: a query string can hold a verification token.
        path = %req.uri().path(),
    );
    let mut res = CURRENT
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}
