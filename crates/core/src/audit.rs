//! The local audit log, written inside the caller's transaction so an event exists
//! exactly when its change does.

use chrono::{DateTime, Utc};
use guestpass_proto::{format_time, AuditEventKind};
use sqlx::SqliteConnection;

pub(crate) async fn record(
    conn: &mut SqliteConnection,
    event: AuditEventKind,
    user_id: &str,
    actor: &str,
    at: DateTime<Utc>,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (event, user_id, actor, at, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(event.as_str())
        .bind(user_id)
        .bind(actor)
        .bind(format_time(&at))
        .bind(detail.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// One local audit row, for the app's own views and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalAuditEvent {
    pub event: String,
    pub user_id: String,
    pub actor: String,
    pub at: String,
}
