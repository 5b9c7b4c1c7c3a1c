//! Wire types shared by the Guestpass client (`guestpass-core`) and the reference
//! server (`guestpass-server`): the JSON shapes of DESIGN.md §4, the route paths,
//! the id formats and the input rules both sides check. No I/O lives here.

mod address;
mod care;
mod error;
mod ids;
mod model;
mod records;
mod recovery;
pub mod routes;
mod time;
mod token_hash;
mod validate;

pub use address::{name_from_provider, normalize_email, normalize_name, NAME_MAX};
pub use care::*;
pub use error::{ApiError, ErrorCode};
pub use ids::{new_note_id, new_session_id, new_user_id, parse_user_id, IdError};
pub use model::*;
pub use records::*;
pub use recovery::*;
pub use time::{format_time, rfc3339_millis};
pub use token_hash::{validate_token_hash, TOKEN_HASH_LEN};
pub use validate::{validate_email, validate_password, PASSWORD_MAX, PASSWORD_MIN};

/// Default session lifetime (spec: "7 days by default").
pub const SESSION_TTL_DAYS: i64 = 7;
/// Default absolute session lifetime: however often it is used, a session dies
/// this long after it was created (the server's `sessionMaxAgeDays`).
pub const SESSION_MAX_AGE_DAYS: i64 = 90;
/// Sessions slide at most once per day of use.
pub const SESSION_SLIDE_AFTER_HOURS: i64 = 24;
