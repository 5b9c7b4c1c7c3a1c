//! The shape of a token digest a client hands the server (`nextTokenHash` of the
//! upgrades): the server stores session tokens only as their SHA-256, lowercase hex,
//! so a device that made its next token itself sends exactly that.

use crate::ErrorCode;

/// Length of a lowercase hex SHA-256.
pub const TOKEN_HASH_LEN: usize = 64;

/// `Ok` for 64 lowercase hex digits; `INVALID_REQUEST` otherwise.
pub fn validate_token_hash(hash: &str) -> Result<(), ErrorCode> {
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    if hash.len() == TOKEN_HASH_LEN && hash.bytes().all(hex) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_hex_sha256() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(validate_token_hash(&good), Ok(()));
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("{}g", &good[..63]),
            format!("{} ", &good[..63]),
            "é".repeat(32),
        ] {
            assert_eq!(
                validate_token_hash(&bad),
                Err(ErrorCode::InvalidRequest),
                "{bad:?}"
            );
        }
    }
}
