//! Identifiers: a type prefix and a ULID (26 Crockford base32 characters), so ids
//! minted offline on a device sort by creation time and never collide in practice.

use ulid::Ulid;

pub const USER_PREFIX: &str = "usr_";
pub const SESSION_PREFIX: &str = "ses_";
pub const NOTE_PREFIX: &str = "note_";

pub fn new_user_id() -> String {
    format!("{USER_PREFIX}{}", Ulid::new())
}

pub fn new_session_id() -> String {
    format!("{SESSION_PREFIX}{}", Ulid::new())
}

pub fn new_note_id() -> String {
    format!("{NOTE_PREFIX}{}", Ulid::new())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid user id: expected \"usr_\" followed by 26 Crockford base32 characters")]
pub struct IdError;

/// Checks a user id proposed by a client and returns it in canonical (upper-case) form.
pub fn parse_user_id(raw: &str) -> Result<String, IdError> {
    let body = raw.strip_prefix(USER_PREFIX).ok_or(IdError)?;
    if body.len() != 26 {
        return Err(IdError);
    }
    let ulid = Ulid::from_string(body).map_err(|_| IdError)?;
    Ok(format!("{USER_PREFIX}{ulid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_parse_back() {
        let id = new_user_id();
        assert_eq!(parse_user_id(&id), Ok(id.clone()));
        assert_eq!(id.len(), 4 + 26);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "usr_",
            "ses_01HXYZ",
            "usr_01HXYZ",
            "usr_' OR 1=1 --",
            "usr_UUUUUUUUUUUUUUUUUUUUUUUUUU",
        ] {
            assert_eq!(parse_user_id(bad), Err(IdError), "{bad}");
        }
    }
}
