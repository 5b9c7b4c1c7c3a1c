//! `guestpass-server`: the reference auth backend of Guestpass (DESIGN.md §4).
//!
//! Guests sign in anonymously (optionally with the id their device minted
//! offline), upgrade in place to an email/password account keeping their id and
//! session, and are cleaned up when stale. Storage is SQLite (default, one file)
//! or PostgreSQL (many instances), behind [`db::Database`].
//!
//! Start it with [`launch`] or, in tests, [`launch_with_listener`] on a port-0
//! listener.

pub mod account_care;
pub mod admin;
pub mod auth;
pub mod better_auth_compat;
pub mod cleanup;
pub mod client_addr;
pub mod clock;
mod coalesce;
pub mod config;
pub mod config_check;
mod config_env;
pub mod crypto;
pub mod db;
pub mod db_accounts;
pub mod db_care;
pub mod db_claims;
pub mod db_recovery;
pub mod db_throttle;
pub mod email_verification;
pub mod error;
pub mod extract;
pub mod guest_batch;
pub mod hashing;
pub mod link_social;
pub mod live;
pub mod mail;
pub mod merge;
pub mod metrics;
pub mod oidc;
pub mod oidc_keys;
pub mod ops;
pub mod pages;
pub mod password_reset;
mod pg_readers;
pub mod providers;
pub mod ratelimit;
mod readers;
pub mod records;
pub mod recovery;
pub mod request_id;
pub mod server;
pub mod sign_in_throttle;
pub mod social_nonce;
pub mod social_sign_in;
pub mod state;
pub mod store;
mod store_accounts;
mod store_care;
mod store_claims;
pub mod store_cleanup;
mod store_connect;
mod store_guests;
pub mod store_id_tokens;
pub mod store_records;
mod store_records_compact;
mod store_records_prune;
mod store_recovery;
mod store_sessions;
pub mod upgrade;
mod wal_checkpoint;
pub mod wal_sync;
pub mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Secret};
pub use server::{launch, launch_with_clock, launch_with_listener, ServerError, ServerHandle};
