//! The record-sync routes of the reference server (DESIGN.md §3a, §4). Every request
//! carries the app's protocol version, so a server that no longer speaks it answers
//! 426 `CLIENT_TOO_OLD` instead of misreading the changes.

use std::time::Duration;

use guestpass_proto::{routes, ApiError, ErrorCode};
use guestpass_proto::{PullResponse, PushRequest, PushResponse, SYNC_PROTOCOL_VERSION};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use super::guestpass::{body, failure};
use super::{transport, Backend, BackendError};

/// How long the events stream may stay open before it is reopened anyway.
const EVENTS_MAX: Duration = Duration::from_secs(30 * 60);

impl Backend {
    fn sync_request(&self, req: RequestBuilder, token: &SecretString) -> RequestBuilder {
        req.bearer_auth(token.expose_secret()).header(
            routes::SYNC_PROTOCOL_HEADER,
            SYNC_PROTOCOL_VERSION.to_string(),
        )
    }

    /// `POST /sync/push`: all of `changes` durable on 200.
    pub(crate) async fn push_records(
        &self,
        token: &SecretString,
        req: &PushRequest,
    ) -> Result<PushResponse, BackendError> {
        let resp = self
            .sync_request(self.http().post(self.url(routes::SYNC_PUSH)), token)
            .json(req)
            .send()
            .await
            .map_err(transport)?;
        if resp.status().is_success() {
            return body(resp).await;
        }
        Err(sync_failure(resp).await)
    }

    /// `GET /sync/pull?after=<cursor>&limit=<n>` (no `after`: from the start).
    pub(crate) async fn pull_records(
        &self,
        token: &SecretString,
        after: Option<&str>,
        limit: u32,
    ) -> Result<PullResponse, BackendError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(a) = after {
            query.push(("after", a.to_owned()));
        }
        let resp = self
            .sync_request(self.http().get(self.url(routes::SYNC_PULL)), token)
            .query(&query)
            .send()
            .await
            .map_err(transport)?;
        if resp.status().is_success() {
            return body(resp).await;
        }
        Err(sync_failure(resp).await)
    }

    /// Opens `GET /sync/events` (server-sent events); the caller reads the body.
    pub(crate) async fn record_events(
        &self,
        token: &SecretString,
    ) -> Result<Response, BackendError> {
        let resp = self
            .sync_request(self.http().get(self.url(routes::SYNC_EVENTS)), token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            // The client's short timeout covers the whole body; this body is meant to
            // stay open. Idleness is watched by the reader instead.
            .timeout(EVENTS_MAX)
            .send()
            .await
            .map_err(transport)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(sync_failure(resp).await)
    }
}

/// Like the dialect's mapping, but a 413 whose body is not ours (a proxy's or the
/// framework's body limit) still reads as "too large", which the push splits on.
async fn sync_failure(resp: Response) -> BackendError {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return match resp.json::<ApiError>().await {
            Ok(e) if e.code != ErrorCode::Unknown => BackendError::Refused(e),
            _ => BackendError::Refused(ErrorCode::RecordTooLarge.into()),
        };
    }
    failure(resp).await
}
