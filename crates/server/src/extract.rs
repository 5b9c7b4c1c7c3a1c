//! Request extractors whose rejections are `{code, message}` JSON, so axum's
//! plain-text rejections never reach a client, plus the bearer token and the
//! socket peer (the client address is `client_addr.rs`'s), and the session extractors: [`SignedIn`] (any live
//! session) and [`FullAccount`], the server's gate of sensitive operations.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use guestpass_proto::ErrorCode;
use serde::de::DeserializeOwned;

use crate::auth::{require_session, Authed};
use crate::error::Failure;
use crate::state::SharedState;

/// Largest request body accepted (every legitimate body is well under 1 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A route's own body limit (the push of record sync carries more than any
/// other body), set as a request extension beside axum's `DefaultBodyLimit`.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// How long a request's body may take to arrive (set on every request by the
/// router from `requestReadTimeoutSecs`).
#[derive(Clone, Copy, Debug)]
pub struct ReadTimeout(pub Duration);

/// A JSON body: `content-type: application/json`, at most [`BODY_LIMIT`] bytes
/// (or the route's [`BodyLimit`]),
/// no unknown fields (the proto types deny them).
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`] but an empty body means `T::default()` (`POST /sign-in/anonymous`
/// is called with no body by some clients).
pub struct JsonOrEmpty<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let (content_type_ok, bytes) = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(Failure::bad_request("A JSON body is required"));
        }
        if !content_type_ok {
            return Err(wrong_content_type());
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let (content_type_ok, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !content_type_ok {
            return Err(wrong_content_type());
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), Failure> {
    let content_type_ok = is_json(req.headers());
    // A body announced as too large is refused before any of it is read (the
    // limit alone would only trip once BODY_LIMIT bytes had arrived).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = req.extensions().get::<ReadTimeout>().copied();
    let max = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(BODY_LIMIT, |l| l.0);
    if let Some(n) = announced.filter(|&n| n > max as u64) {
        // A client still sending when we close gets a reset that can swallow the 413;
        // read and discard a modest excess first so it sees the typed answer. A huge
        // announcement is refused at once: that client is not owed the courtesy.
        // The excess is what counts: a route with a larger limit (sync push)
        // drains as modest an excess as the others.
        let most = max as u64 + DRAIN_LIMIT;
        if n <= most {
            let drain = drain(req.into_body(), most);
            match limit {
                Some(ReadTimeout(limit)) => {
                    let _ = tokio::time::timeout(limit, drain).await;
                }
                None => drain.await,
            }
        }
        return Err(too_large());
    }
    let read = Bytes::from_request(req, state);
    // One deadline for the whole body: a client trickling a byte at a time must
    // not hold a connection (and a task) for minutes.
    let read = match limit {
        Some(ReadTimeout(limit)) => match tokio::time::timeout(limit, read).await {
            Ok(read) => read,
            Err(_) => {
                return Err(
                    Failure::bad_request("The request body did not arrive in time")
                        .with_status(StatusCode::REQUEST_TIMEOUT),
                )
            }
        },
        None => read.await,
    };
    let bytes = read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Failure::bad_request("Could not read the request body")
        }
    })?;
    Ok((content_type_ok, bytes))
}

/// The most an oversized body may exceed the limit by and still be read (and
/// thrown away) before answering 413.
const DRAIN_LIMIT: u64 = 1024 * 1024;

async fn drain(mut body: axum::body::Body, most: u64) {
    use http_body_util::BodyExt;
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > most {
            break;
        }
    }
}

fn too_large() -> Failure {
    Failure::new(ErrorCode::PayloadTooLarge).with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn wrong_content_type() -> Failure {
    Failure::bad_request("Expected content-type: application/json")
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        // Name unknown or missing fields, but never echo values: a mistyped field
        // could carry a password.
        let text = e.to_string();
        let message = if text.starts_with("unknown field") || text.starts_with("missing field") {
            format!(
                "Invalid request body: {}",
                text.split(" at line").next().unwrap_or(&text)
            )
        } else {
            "Invalid JSON body".to_string()
        };
        Failure::bad_request(message)
    })
}

/// A body posted by the server's own pages (`application/x-www-form-urlencoded`,
/// then `html` is true and the answer is a page) or by an app
/// (`application/json`). A body that does not parse is handed to the handler
/// as `Err`, so a page can answer it with a page; a body of another type, or
/// too large or too slow, is refused as JSON before the handler runs.
pub struct FormOrJson<T> {
    pub html: bool,
    pub body: Result<T, Failure>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let html = is_form(req.headers());
        let (json, bytes) = read_body(req, state).await?;
        let body = if html {
            serde_urlencoded::from_bytes(&bytes)
                .map_err(|_| Failure::bad_request("Invalid form body"))
        } else if bytes.is_empty() {
            Err(Failure::bad_request("A JSON body is required"))
        } else if !json {
            return Err(wrong_content_type());
        } else {
            parse_json(&bytes)
        };
        Ok(FormOrJson { html, body })
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The caller's live session from `Authorization: Bearer`, guest or full
/// account; 401 `UNAUTHORIZED` without one.
pub struct SignedIn(pub Authed);

impl FromRequestParts<SharedState> for SignedIn {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Failure> {
        require_session(state, &parts.headers).await.map(SignedIn)
    }
}

/// The gate of the operations the spec calls sensitive ("use the isAnonymous
/// flag to gate sensitive operations (payments, data exports, etc.)"): a full
/// account's live session. 401 `UNAUTHORIZED` without a session, 403
/// `ANONYMOUS_NOT_ALLOWED` for a guest. Put it on every route only an account
/// may use; the device has the same rule as `require_full_account` in core.
pub struct FullAccount(pub Authed);

impl FromRequestParts<SharedState> for FullAccount {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Failure> {
        let authed = require_session(state, &parts.headers).await?;
        if authed.user.is_anonymous {
            return Err(Failure::new(ErrorCode::AnonymousNotAllowed));
        }
        Ok(FullAccount(authed))
    }
}

/// Query string parsed into `T`, with JSON rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(query).map(ApiQuery)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(query: &str) -> Result<T, Failure> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Failure::bad_request("Invalid query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| Failure::bad_request(format!("Invalid query string: {}", e.body_text())))
}

/// `Authorization: Bearer <token>`, if present and well-formed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The socket peer, present when the server was started with connect info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}
