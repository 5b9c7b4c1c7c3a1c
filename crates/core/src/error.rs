//! The client library's error: a typed cause plus the closed [`ErrorCode`] the UI
//! branches on. Messages say what happened and what to do; they never carry a secret.

use guestpass_proto::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No OS keyring to keep the session token in. We never fall back to a file.
    #[error("The system keyring is not available ({0}). Start a Secret Service provider (GNOME Keyring or KWallet) in your desktop session.")]
    KeyringUnavailable(String),
    /// The keyring answered but is locked or refused access; again no fallback.
    #[error("The system keyring is locked ({0}). Unlock it (for example by signing in to your desktop session again), then try again.")]
    KeyringLocked(String),
    #[error("The local database at {path} is damaged or is not a Guestpass database. It was left as it is; move it aside to start fresh, or restore it from a backup.")]
    DatabaseCorrupt { path: String },
    #[error("The local database at {path} cannot be written (read-only file, folder or disk, or the disk is full). Nothing was changed; free space or fix the permissions, then try again.")]
    DatabaseReadOnly { path: String },
    /// SQLite rolled the write back whole; everything committed before is intact.
    #[error("The disk holding {path} is full, so this change was not saved. Everything saved before is intact; free some space and try again.")]
    DiskFull { path: String },
    /// Its newest migration is one this build does not have: refused before any write.
    #[error("The local database at {path} was last opened by a newer version of Guestpass, which changed its format. Nothing was changed; install that version or a newer one to open it.")]
    DatabaseTooNew { path: String },
    #[error("The local database failed: {0}")]
    Database(String),
    /// A rule of the product, with its spec wording (e.g. "Invalid email").
    #[error("{}", .0.message)]
    Api(ApiError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::KeyringUnavailable(_) => ErrorCode::KeyringUnavailable,
            Self::KeyringLocked(_) => ErrorCode::KeyringLocked,
            Self::DatabaseCorrupt { .. } => ErrorCode::DatabaseCorrupt,
            Self::DatabaseReadOnly { .. } => ErrorCode::DatabaseReadOnly,
            Self::DiskFull { .. } => ErrorCode::DiskFull,
            Self::DatabaseTooNew { .. } => ErrorCode::DatabaseTooNew,
            Self::Database(_) => ErrorCode::DatabaseError,
            Self::Api(e) => e.code,
        }
    }

    /// The `{code, message}` shape that crosses to the UI.
    pub fn to_api(&self) -> ApiError {
        ApiError::new(self.code(), self.to_string())
    }

    pub(crate) fn api(code: ErrorCode) -> Self {
        Self::Api(code.into())
    }

    /// Classifies an SQLite failure for the database at `path`.
    pub(crate) fn from_sqlx(path: &str, e: sqlx::Error) -> Self {
        // SQLite primary result codes: https://www.sqlite.org/rescode.html
        const SQLITE_READONLY: i32 = 8;
        const SQLITE_IOERR: i32 = 10;
        const SQLITE_CORRUPT: i32 = 11;
        const SQLITE_CANTOPEN: i32 = 14;
        const SQLITE_FULL: i32 = 13;
        const SQLITE_NOTADB: i32 = 26;
        let primary = match &e {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff),
            _ => None,
        };
        let path = path.to_owned();
        match primary {
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Self::DatabaseCorrupt { path },
            Some(SQLITE_FULL) => Self::DiskFull { path },
            Some(SQLITE_READONLY | SQLITE_CANTOPEN | SQLITE_IOERR) => {
                Self::DatabaseReadOnly { path }
            }
            _ => match e {
                sqlx::Error::Migrate(m) => Self::Database(format!("migration failed: {m}")),
                other => Self::Database(other.to_string()),
            },
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Self::api(code)
    }
}
