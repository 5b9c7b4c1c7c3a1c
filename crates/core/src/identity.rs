//! The guest lifecycle on the device: create a guest with no network, resume it on
//! every later launch, renew its session when it expired. The session token goes to
//! the keyring before the transaction that records its hash commits.

use chrono::{DateTime, Duration, Utc};
use guestpass_proto::{
    format_time, new_session_id, new_user_id, AuditEventKind, ErrorCode, Session, SessionResponse,
    User, SESSION_SLIDE_AFTER_HOURS, SESSION_TTL_DAYS,
};
use serde_json::json;
use sqlx::SqliteConnection;

use crate::audit;
use crate::error::{Error, Result};
use crate::rows::{self, USER_COLUMNS};
use crate::store::Store;
use crate::token;
use crate::vault::{Slot, Vault};

/// Why a session was (re)created, kept in the audit detail.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reason {
    FirstLaunch,
    /// A full account signed in on this device.
    SignIn,
    Expired,
    TokenMissing,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::FirstLaunch => "first-launch",
            Reason::SignIn => "sign-in",
            Reason::Expired => "expired",
            Reason::TokenMissing => "token-missing",
        }
    }
}

/// The device's account, if it has one.
pub(crate) async fn device_user(conn: &mut SqliteConnection) -> Result<Option<User>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM device_account d JOIN users u ON u.id = d.user_id WHERE d.slot = 1"
    );
    sqlx::query(&sql)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(rows::user)
        .transpose()
}

/// `getSession()`: resumes the device's session, renewing it for the same user when it
/// expired or its token is gone from the keyring. `None` when the device has no account.
pub(crate) async fn resume(store: &Store, vault: &Vault) -> Result<Option<SessionResponse>> {
    let mut tx = store.begin_write().await?;
    let Some(user) = device_user(&mut tx).await.map_err(|e| store.err(e))? else {
        return Ok(None);
    };
    let now = Utc::now();
    let latest =
        sqlx::query("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC LIMIT 1")
            .bind(&user.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store.err(e))?
            .as_ref()
            .map(rows::session)
            .transpose()
            .map_err(|e| store.err(e))?;
    let held = vault.get(&user.id, Slot::Session).await?;

    let reason = match (&latest, &held) {
        (Some(s), Some(t)) if token::matches(t, &s.token_hash) => {
            if s.session.expires_at > now {
                let session = slide(&mut tx, &s.session, now)
                    .await
                    .map_err(|e| store.err(e))?;
                tx.commit().await.map_err(|e| store.err(e))?;
                return Ok(Some(SessionResponse { user, session }));
            }
            Reason::Expired
        }
        (Some(s), _) if s.session.expires_at <= now => Reason::Expired,
        _ => Reason::TokenMissing,
    };
    // The spec's "Anonymous session expired" must not cost a guest its data on its own
    // device: the same user gets a fresh session.
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.err(e))?;
    let session = start_session(store, &mut tx, vault, &user.id, now, reason).await?;
    commit_or_forget(store, vault, tx, &user.id).await?;
    Ok(Some(SessionResponse { user, session }))
}

/// `signIn.anonymous()`: creates the guest and its session, offline. Refused when the
/// device already has an account (spec: check for an existing session first).
pub(crate) async fn create_guest(store: &Store, vault: &Vault) -> Result<SessionResponse> {
    let mut tx = store.begin_write().await?;
    if let Some(existing) = device_user(&mut tx).await.map_err(|e| store.err(e))? {
        return Err(if existing.is_anonymous {
            ErrorCode::AnonymousUsersCannotSignInAgainAnonymously.into()
        } else {
            Error::Api(guestpass_proto::ApiError::new(
                ErrorCode::InvalidRequest,
                "This device is already signed in to a full account",
            ))
        });
    }
    let now = Utc::now();
    let user = User {
        id: new_user_id(),
        email: None,
        name: None,
        image: None,
        email_verified: false,
        is_anonymous: true,
        created_at: now,
        updated_at: now,
        metadata: json!({}),
    };
    insert_user(&mut tx, &user)
        .await
        .map_err(|e| store.err(e))?;
    let session = start_session(store, &mut tx, vault, &user.id, now, Reason::FirstLaunch).await?;
    commit_or_forget(store, vault, tx, &user.id).await?;
    Ok(SessionResponse { user, session })
}

async fn insert_user(conn: &mut SqliteConnection, user: &User) -> Result<(), sqlx::Error> {
    let at = format_time(&user.created_at);
    sqlx::query(
        "INSERT INTO users (id, email, name, image, email_verified, is_anonymous, created_at, updated_at, metadata)
         VALUES (?, NULL, NULL, NULL, 0, 1, ?, ?, ?)",
    )
    .bind(&user.id)
    .bind(&at)
    .bind(&at)
    .bind(user.metadata.to_string())
    .execute(&mut *conn)
    .await?;
    // The single-row table is the guarantee of one account per device.
    sqlx::query("INSERT INTO device_account (slot, user_id) VALUES (1, ?)")
        .bind(&user.id)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        AuditEventKind::UserCreated,
        &user.id,
        &user.id,
        user.created_at,
        json!({}),
    )
    .await
}

/// Inserts a session row and puts its token in the keyring. Called inside a write
/// transaction; the caller commits.
pub(crate) async fn start_session(
    store: &Store,
    conn: &mut SqliteConnection,
    vault: &Vault,
    user_id: &str,
    now: DateTime<Utc>,
    reason: Reason,
) -> Result<Session> {
    let session = Session {
        id: new_session_id(),
        user_id: user_id.to_owned(),
        expires_at: now + Duration::days(SESSION_TTL_DAYS),
        created_at: now,
        updated_at: now,
    };
    let secret = token::new_token();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&session.id)
    .bind(user_id)
    .bind(token::hash(&secret))
    .bind(format_time(&session.expires_at))
    .bind(format_time(&now))
    .bind(format_time(&now))
    .execute(&mut *conn)
    .await
    .map_err(|e| store.err(e))?;
    audit::record(
        conn,
        AuditEventKind::SessionCreated,
        user_id,
        user_id,
        now,
        json!({ "sessionId": session.id, "reason": reason.as_str() }),
    )
    .await
    .map_err(|e| store.err(e))?;
    // Last step before commit: a keyring failure rolls the whole creation back.
    vault.set(user_id, Slot::Session, &secret).await?;
    Ok(session)
}

/// Commits; if the commit fails the token just written to the keyring is withdrawn so
/// keyring and database keep agreeing.
pub(crate) async fn commit_or_forget(
    store: &Store,
    vault: &Vault,
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    user_id: &str,
) -> Result<()> {
    if let Err(e) = tx.commit().await {
        let _ = vault.delete(user_id, Slot::Session).await;
        return Err(store.err(e));
    }
    Ok(())
}

/// Sliding expiry, at most once per day of use.
async fn slide(
    conn: &mut SqliteConnection,
    s: &Session,
    now: DateTime<Utc>,
) -> Result<Session, sqlx::Error> {
    if now - s.updated_at < Duration::hours(SESSION_SLIDE_AFTER_HOURS) {
        return Ok(s.clone());
    }
    let expires_at = now + Duration::days(SESSION_TTL_DAYS);
    sqlx::query("UPDATE sessions SET expires_at = ?, updated_at = ? WHERE id = ?")
        .bind(format_time(&expires_at))
        .bind(format_time(&now))
        .bind(&s.id)
        .execute(conn)
        .await?;
    Ok(Session {
        expires_at,
        updated_at: now,
        ..s.clone()
    })
}
