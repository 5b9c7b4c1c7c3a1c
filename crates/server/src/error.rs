//! Every failure leaves the server as `{"code", "message", "requestId"}` with the
//! status of DESIGN.md §4. Internal details go to the log, never to the client;
//! `requestId` finds them there (request_id.rs).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use guestpass_proto::{ApiError, ErrorCode};

use crate::db::{Conflict, DbError};

#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub error: ApiError,
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error: ApiError::from(code),
            retry_after_secs: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.error.message = message.into();
        self
    }

    /// For the routes where DESIGN.md gives a code a status other than its default.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest).with_message(message)
    }

    pub fn unavailable() -> Self {
        Self::new(ErrorCode::ServiceUnavailable)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError)
    }
}

impl From<ErrorCode> for Failure {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Conflict(Conflict::UserId) => Self::new(ErrorCode::UserIdTaken),
            DbError::Conflict(Conflict::Email) => Self::new(ErrorCode::EmailAlreadyInUse),
            DbError::Conflict(Conflict::ProviderAccount) => {
                Self::new(ErrorCode::ProviderAccountInUse)
            }
            DbError::Conflict(Conflict::SessionToken) => {
                tracing::error!("session token collision (random source broken?)");
                Self::internal()
            }
            DbError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                Self::unavailable()
            }
        }
    }
}

/// The wire form: the typed error and, inside a request, its id.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    error: &'a ApiError,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.error,
            request_id: crate::request_id::current(),
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

pub type ApiResult<T> = Result<T, Failure>;
