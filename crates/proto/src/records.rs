//! Record sync on the wire (DESIGN.md §3a): an append-only log of opaque changes per
//! user. The server orders, stores, counts and re-owns changes; it never reads `change`.

use serde::{Deserialize, Serialize};

/// The record-sync protocol this build speaks, sent as [`crate::routes::SYNC_PROTOCOL_HEADER`].
/// 2: a change may carry `compacts` (a snapshot that replaces the record's log).
pub const SYNC_PROTOCOL_VERSION: u32 = 2;
/// The oldest protocol the server still accepts; older → 426 `CLIENT_TOO_OLD`.
pub const SYNC_PROTOCOL_MIN: u32 = 1;
/// One change's decoded size limit (413 `RECORD_TOO_LARGE` beyond).
pub const RECORD_CHANGE_MAX_BYTES: usize = 256 * 1024;
/// At most this many changes in one push (400 `INVALID_REQUEST` beyond).
pub const PUSH_MAX_CHANGES: usize = 500;
/// `limit` of a pull: default and maximum.
pub const PULL_DEFAULT_LIMIT: u32 = 500;
pub const PULL_MAX_LIMIT: u32 = 1000;

/// A collection name: 1–32 of `a-z 0-9 _ -`, starting with a letter.
pub fn valid_collection(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A record id: 1–128 of `A-Z a-z 0-9 _ - . :`.
pub fn valid_record_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

/// One change to one record, as pushed and as pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordChange {
    pub collection: String,
    pub id: String,
    /// Standard base64 (padded) of the opaque change bytes.
    pub change: String,
    /// A tombstone: the record was deleted by this change (counts for retention).
    #[serde(default)]
    pub deleted: bool,
    /// The schema version of the record this change was written with.
    pub schema_version: u32,
    /// Push only: this change is a snapshot of the whole record made by a device
    /// whose pull stood at this cursor, so it holds every change of the record up
    /// to there; the server drops those (compaction, DESIGN.md §3a) and moves the
    /// record's later changes after the snapshot, so a device that pulls from
    /// further back never meets a change before the ones it builds on. Ignored if
    /// the cursor is of another epoch. Never present in a pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacts: Option<String>,
}

/// `POST /sync/push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRequest {
    pub changes: Vec<RecordChange>,
}

/// `200` of a push: all of it is durable. `duplicates` were already held (same hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushResponse {
    pub accepted: u32,
    pub duplicates: u32,
}

/// `200` of `GET /sync/pull?after=<cursor>&limit=<n>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullResponse {
    /// In log order.
    pub changes: Vec<RecordChange>,
    /// Opaque; pass it as `after` next time (absent `after` = from the start).
    pub cursor: String,
    /// More changes wait beyond this page.
    pub more: bool,
    /// The server does not know the cursor's epoch (restored from a backup) or is
    /// behind it: these changes start from the beginning, and the device should push
    /// again everything it holds (pushes are idempotent).
    #[serde(default)]
    pub reset: bool,
}
