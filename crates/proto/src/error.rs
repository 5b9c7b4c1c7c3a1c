//! The `{code, message}` error shape shared by the server's HTTP answers and the app's
//! IPC answers. Callers branch on `code`, a closed set; `message` is for people.

use serde::{Deserialize, Serialize};

/// Every error code Guestpass speaks. Server codes map to the HTTP status of
/// DESIGN.md §4; device codes never travel over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // Server, from the spec and DESIGN.md §4.
    UserIdTaken,
    /// No guest has this recovery phrase (unknown, rotated, or revoked by an
    /// upgrade); on the device also a phrase that is not 12 words of the list.
    InvalidRecoveryPhrase,
    /// The guest's id was deleted on the server for good (by its owner or an
    /// admin): it never comes back as a new guest.
    GuestRemoved,
    AnonymousUsersCannotSignInAgainAnonymously,
    RateLimited,
    EmailAlreadyInUse,
    InvalidEmail,
    PasswordTooShort,
    PasswordTooLong,
    /// A display name with a control, zero-width or bidi character.
    InvalidName,
    /// A display name over [`crate::NAME_MAX`] characters.
    NameTooLong,
    UserNotAnonymous,
    Unauthorized,
    ProviderAccountInUse,
    InvalidIdToken,
    UnknownProvider,
    InvalidEmailOrPassword,
    InvalidToken,
    UserNotFound,
    // Server, records (DESIGN.md §3a) and accounts (§2a).
    /// One change is over [`crate::RECORD_CHANGE_MAX_BYTES`].
    RecordTooLarge,
    /// The push would take the user over its record or byte quota; nothing applied.
    QuotaExceeded,
    /// The cursor is older than the tombstone horizon: pull from the start.
    CursorExpired,
    /// The app's sync protocol is older than the server accepts.
    ClientTooOld,
    /// A sensitive operation a guest may not do (spec: gate with isAnonymous).
    AnonymousNotAllowed,
    // Server, account care (issue 13).
    /// The account's current password was wrong (change-password, delete-user).
    InvalidPassword,
    /// A social-only account deleting itself must have signed in within 10 minutes.
    SessionNotFresh,
    /// A verification email was asked for an address that is already verified.
    EmailAlreadyVerified,
    // Server, for malformed requests and outages.
    InvalidRequest,
    InvalidUserId,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    ServiceUnavailable,
    /// The server is doing as much password hashing as it will queue: try again shortly.
    Busy,
    InternalError,
    // Device.
    KeyringUnavailable,
    /// The keyring is there but locked (or refused access): unlock it and try again.
    KeyringLocked,
    /// The keyring lost this device's keys for a user the server knows (it was
    /// reset under the app): notes stay, sync waits for the recovery phrase.
    DeviceKeysLost,
    DatabaseCorrupt,
    DatabaseReadOnly,
    /// The disk under the data dir is full: the write was refused whole.
    DiskFull,
    /// The local database was migrated by a newer app than this one: not opened.
    DatabaseTooNew,
    DatabaseError,
    NoSession,
    NoteNotFound,
    BackendUnreachable,
    BackendError,
    /// The person cancelled a social sign-in (in the app or at the provider).
    SocialCancelled,
    /// The provider's page was open too long without an answer.
    SocialTimeout,
    /// The social sign-in could not be completed (provider or callback trouble).
    SocialFailed,
    /// Signing out and removing data would lose changes the server does not hold yet.
    UnsyncedChanges,
    /// A sign-in is waiting for the person's answer (merge, leave behind, cancel).
    SignInPending,
    /// A code this build does not know (a newer server); the message still helps.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire spelling, e.g. `EMAIL_ALREADY_IN_USE`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            UserIdTaken => "USER_ID_TAKEN",
            InvalidRecoveryPhrase => "INVALID_RECOVERY_PHRASE",
            GuestRemoved => "GUEST_REMOVED",
            AnonymousUsersCannotSignInAgainAnonymously => {
                "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY"
            }
            RateLimited => "RATE_LIMITED",
            EmailAlreadyInUse => "EMAIL_ALREADY_IN_USE",
            InvalidEmail => "INVALID_EMAIL",
            PasswordTooShort => "PASSWORD_TOO_SHORT",
            PasswordTooLong => "PASSWORD_TOO_LONG",
            InvalidName => "INVALID_NAME",
            NameTooLong => "NAME_TOO_LONG",
            UserNotAnonymous => "USER_NOT_ANONYMOUS",
            Unauthorized => "UNAUTHORIZED",
            ProviderAccountInUse => "PROVIDER_ACCOUNT_IN_USE",
            InvalidIdToken => "INVALID_ID_TOKEN",
            UnknownProvider => "UNKNOWN_PROVIDER",
            InvalidEmailOrPassword => "INVALID_EMAIL_OR_PASSWORD",
            InvalidToken => "INVALID_TOKEN",
            UserNotFound => "USER_NOT_FOUND",
            RecordTooLarge => "RECORD_TOO_LARGE",
            QuotaExceeded => "QUOTA_EXCEEDED",
            CursorExpired => "CURSOR_EXPIRED",
            ClientTooOld => "CLIENT_TOO_OLD",
            AnonymousNotAllowed => "ANONYMOUS_NOT_ALLOWED",
            InvalidPassword => "INVALID_PASSWORD",
            SessionNotFresh => "SESSION_NOT_FRESH",
            EmailAlreadyVerified => "EMAIL_ALREADY_VERIFIED",
            InvalidRequest => "INVALID_REQUEST",
            InvalidUserId => "INVALID_USER_ID",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Busy => "BUSY",
            InternalError => "INTERNAL_ERROR",
            KeyringUnavailable => "KEYRING_UNAVAILABLE",
            KeyringLocked => "KEYRING_LOCKED",
            DeviceKeysLost => "DEVICE_KEYS_LOST",
            DatabaseCorrupt => "DATABASE_CORRUPT",
            DatabaseReadOnly => "DATABASE_READ_ONLY",
            DiskFull => "DISK_FULL",
            DatabaseTooNew => "DATABASE_TOO_NEW",
            DatabaseError => "DATABASE_ERROR",
            NoSession => "NO_SESSION",
            NoteNotFound => "NOTE_NOT_FOUND",
            BackendUnreachable => "BACKEND_UNREACHABLE",
            BackendError => "BACKEND_ERROR",
            SocialCancelled => "SOCIAL_CANCELLED",
            SocialTimeout => "SOCIAL_TIMEOUT",
            SocialFailed => "SOCIAL_FAILED",
            UnsyncedChanges => "UNSYNCED_CHANGES",
            SignInPending => "SIGN_IN_PENDING",
            Unknown => "UNKNOWN",
        }
    }

    /// The spec's human wording where it gives one.
    pub fn default_message(self) -> &'static str {
        use ErrorCode::*;
        match self {
            UserIdTaken => "User id already taken",
            InvalidRecoveryPhrase => {
                "No guest has this recovery phrase. Check each word and try again."
            }
            GuestRemoved => "This guest was deleted from the server",
            AnonymousUsersCannotSignInAgainAnonymously => {
                "Anonymous users cannot sign in again anonymously"
            }
            RateLimited => "Too many requests. Please try again later.",
            EmailAlreadyInUse => "Email already in use",
            InvalidEmail => "Invalid email",
            PasswordTooShort => "Password too short",
            PasswordTooLong => "Password too long",
            InvalidName => "Invalid name",
            NameTooLong => "Name too long",
            UserNotAnonymous => "User is not anonymous",
            Unauthorized => "Unauthorized",
            ProviderAccountInUse => "This account is already linked to another user",
            InvalidIdToken => "Invalid ID token",
            UnknownProvider => "Unknown provider",
            InvalidEmailOrPassword => "Invalid email or password",
            InvalidToken => "Invalid or expired token",
            UserNotFound => "User not found",
            RecordTooLarge => "This record is too large to sync (at most 256 KiB per change)",
            QuotaExceeded => "Storage quota exceeded",
            CursorExpired => "Sync position expired; a full resync is needed",
            ClientTooOld => "This app is too old to sync with the server; please update it",
            AnonymousNotAllowed => "Create an account first: guests cannot do this",
            InvalidPassword => "Invalid password",
            SessionNotFresh => "Sign in again to confirm it is you, then try again",
            EmailAlreadyVerified => "Email is already verified",
            InvalidRequest => "Invalid request",
            InvalidUserId => "Invalid user id",
            PayloadTooLarge => "Request body too large",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            ServiceUnavailable => "Service temporarily unavailable",
            Busy => "The server is busy. Please try again in a moment.",
            InternalError => "Internal error",
            KeyringUnavailable => "The system keyring is not available",
            KeyringLocked => "The system keyring is locked",
            DeviceKeysLost => "The system keyring lost this device's keys",
            DatabaseCorrupt => "The local database is damaged",
            DatabaseReadOnly => "The local database cannot be written",
            DiskFull => "The disk is full",
            DatabaseTooNew => "The local data was saved by a newer Guestpass",
            DatabaseError => "The local database failed",
            NoSession => "No session",
            NoteNotFound => "Note not found",
            BackendUnreachable => "The server cannot be reached",
            BackendError => "The server gave an unexpected answer",
            SocialCancelled => "Sign-in was cancelled",
            SocialTimeout => "Sign-in timed out",
            SocialFailed => "Sign-in with the provider failed",
            UnsyncedChanges => "Some changes are not on the server yet",
            SignInPending => "A sign-in is waiting for your answer",
            Unknown => "Unknown error",
        }
    }

    /// HTTP status for server codes (device codes answer 500 if ever sent).
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            AnonymousUsersCannotSignInAgainAnonymously
            | UserNotAnonymous
            | InvalidToken
            | EmailAlreadyVerified
            | InvalidRequest
            | InvalidUserId
            | SocialCancelled
            | SocialTimeout
            | SocialFailed => 400,
            Unauthorized
            | InvalidIdToken
            | InvalidEmailOrPassword
            | InvalidPassword
            | InvalidRecoveryPhrase => 401,
            AnonymousNotAllowed | SessionNotFresh => 403,
            UnknownProvider | UserNotFound | NotFound | NoteNotFound => 404,
            MethodNotAllowed => 405,
            UserIdTaken | EmailAlreadyInUse | ProviderAccountInUse => 409,
            CursorExpired | GuestRemoved => 410,
            PayloadTooLarge | RecordTooLarge | QuotaExceeded => 413,
            ClientTooOld => 426,
            InvalidEmail | PasswordTooShort | PasswordTooLong | InvalidName | NameTooLong => 422,
            RateLimited => 429,
            ServiceUnavailable | Busy | BackendUnreachable => 503,
            _ => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code": "UPPER_SNAKE", "message": "Human text"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_upper_snake_and_match_as_str() {
        for code in [
            ErrorCode::EmailAlreadyInUse,
            ErrorCode::AnonymousUsersCannotSignInAgainAnonymously,
            ErrorCode::KeyringUnavailable,
            ErrorCode::DiskFull,
            ErrorCode::KeyringLocked,
        ] {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        let unknown: ErrorCode =
            serde_json::from_str("\"SOMETHING_NEW\"").unwrap_or(ErrorCode::InternalError);
        assert_eq!(unknown, ErrorCode::Unknown);
    }

    #[test]
    fn spec_messages_and_statuses() {
        let cases = [
            (ErrorCode::EmailAlreadyInUse, "Email already in use", 409),
            (ErrorCode::InvalidEmail, "Invalid email", 422),
            (ErrorCode::PasswordTooShort, "Password too short", 422),
            (ErrorCode::InvalidName, "Invalid name", 422),
            (ErrorCode::NameTooLong, "Name too long", 422),
            (ErrorCode::UserNotAnonymous, "User is not anonymous", 400),
            (ErrorCode::InvalidPassword, "Invalid password", 401),
            (
                ErrorCode::AnonymousNotAllowed,
                ErrorCode::AnonymousNotAllowed.default_message(),
                403,
            ),
            (
                ErrorCode::SessionNotFresh,
                ErrorCode::SessionNotFresh.default_message(),
                403,
            ),
            (
                ErrorCode::EmailAlreadyVerified,
                "Email is already verified",
                400,
            ),
            (
                ErrorCode::Busy,
                "The server is busy. Please try again in a moment.",
                503,
            ),
        ];
        for (code, msg, status) in cases {
            assert_eq!(code.default_message(), msg);
            assert_eq!(code.http_status(), status);
        }
    }
}
