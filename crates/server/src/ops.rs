//! What a load balancer and an operator's scraper ask (issue 15):
//! - `/healthz`: the process answers (no database call: a database outage must not
//!   get every instance restarted);
//! - `/readyz`: the database answers and its schema is this build's (a load balancer
//!   sends no traffic to an instance that would answer 503, or that a newer
//!   release has migrated past);
//! - `/health`: the old name of `/readyz` with its old body, kept for existing probes;
//! - `GET /metrics` on the separate `metricsListen` address (metrics.rs).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use guestpass_proto::ErrorCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::Failure;
use crate::state::SharedState;

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const HEALTH: &str = "/health";

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(State(state): State<SharedState>) -> Response {
    match ready(&state).await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// `/health`, as it answered before `/readyz` existed (`{"status":"ok"}`), so
/// existing probes that read the body keep working.
pub async fn health(State(state): State<SharedState>) -> Response {
    match ready(&state).await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn ready(state: &SharedState) -> Result<(), Failure> {
    state.db.ping().await?;
    if state.db.schema_is_current().await? {
        Ok(())
    } else {
        Err(Failure::new(ErrorCode::ServiceUnavailable).with_message(
            "The database was migrated by a newer guestpass-server; upgrade this instance",
        ))
    }
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub fn spawn_metrics(listener: TcpListener, state: SharedState) -> JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(crate::metrics::serve_metrics))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })
}
