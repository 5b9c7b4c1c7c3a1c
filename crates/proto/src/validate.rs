//! Input rules both sides apply: the device catches obvious mistakes before any
//! request, the server enforces them.

use crate::ErrorCode;

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// Whether `email` is well-formed; [`crate::normalize_email`] gives the form
/// that is stored and looked up.
pub fn validate_email(email: &str) -> Result<(), ErrorCode> {
    crate::normalize_email(email).map(drop)
}

/// Length is counted in characters, so a passphrase in any script is measured fairly.
pub fn validate_password(password: &str) -> Result<(), ErrorCode> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        Err(ErrorCode::PasswordTooShort)
    } else if n > PASSWORD_MAX {
        Err(ErrorCode::PasswordTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "user@example.com",
            "a.b+c@sub.example.co",
            "jane@xn--bcher-kva.example",
        ] {
            assert_eq!(validate_email(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "user",
            "user@",
            "@example.com",
            "user@example",
            "a b@example.com",
            "user@ex_ample.com",
            "user@@example.com",
        ] {
            assert_eq!(validate_email(bad), Err(ErrorCode::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert_eq!(validate_password("short"), Err(ErrorCode::PasswordTooShort));
        assert_eq!(validate_password("12345678"), Ok(()));
        assert_eq!(
            validate_password(&"x".repeat(129)),
            Err(ErrorCode::PasswordTooLong)
        );
    }
}
