//! Account care on the device (issue 13): a password reset asked for, the
//! verification mail sent again, the password changed, the user deleted with
//! everything this device holds for it, and the export that only a full account
//! may make ([`Guestpass::require_full_account`], the one gate for sensitive
//! operations). Each call that needs the server fails at once, typed, when the
//! server does not answer: nothing is queued, no secret is written to SQLite.

use chrono::Utc;
use guestpass_proto::{normalize_email, validate_password, ErrorCode, SessionResponse, User};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::backend::{Backend, BackendError};
use crate::error::{Error, Result};
use crate::vault::Slot;
use crate::Guestpass;

use super::{api, local, GuestSummary};

/// Every keyring item a user can have on this device.
const SLOTS: [Slot; 7] = Slot::ALL;

/// A care call's failure in words; `what` completes "… needs the server".
fn care_error(e: BackendError, what: &str) -> Error {
    match e {
        BackendError::Refused(e) if e.code == ErrorCode::InvalidPassword => api(
            ErrorCode::InvalidPassword,
            "That is not your current password. Check it and try again.",
        ),
        BackendError::Refused(e) if e.code == ErrorCode::SessionNotFresh => api(
            ErrorCode::SessionNotFresh,
            "Sign in again to confirm it is you (within 10 minutes), then try again.",
        ),
        BackendError::Refused(e) => Error::Api(e),
        BackendError::Unreachable(_) => api(
            ErrorCode::BackendUnreachable,
            format!("{what} needs the server, which does not answer. Nothing was changed; check your connection and try again."),
        ),
        BackendError::RateLimited { retry_after } => api(
            ErrorCode::RateLimited,
            match retry_after {
                Some(d) => format!(
                    "Too many attempts. Try again in {} minutes.",
                    d.as_secs().div_ceil(60).max(1)
                ),
                None => "Too many attempts. Try again later.".to_owned(),
            },
        ),
        BackendError::Unauthorized => api(
            ErrorCode::Unauthorized,
            "The server no longer accepts this device's session. Sign in again, then try again.",
        ),
        BackendError::Protocol(why) => api(
            ErrorCode::BackendError,
            format!("The server could not do this ({why}). Nothing was changed; try again later."),
        ),
    }
}

impl Guestpass {
    fn care_backend(&self, what: &str) -> Result<Backend> {
        self.sync.backend.clone().ok_or_else(|| {
            api(
                ErrorCode::BackendUnreachable,
                format!("{what} needs a server, and none is configured."),
            )
        })
    }

    /// The signed-in user, or `NO_SESSION`.
    async fn signed_in_user(&self) -> Result<User> {
        self.current_device_user()
            .await?
            .ok_or_else(|| Error::from(ErrorCode::NoSession))
    }

    /// The gate for sensitive operations (the spec's advice on `isAnonymous`): the
    /// signed-in full account, or `ANONYMOUS_NOT_ALLOWED` for a guest.
    pub async fn require_full_account(&self) -> Result<User> {
        let user = self.signed_in_user().await?;
        if user.is_anonymous {
            return Err(api(
                ErrorCode::AnonymousNotAllowed,
                "Create an account to do this: guests cannot.",
            ));
        }
        Ok(user)
    }

    /// Mails a reset link to `email` if an account has it (the answer is the same
    /// either way). Needs the server; nothing is kept when it does not answer.
    pub async fn request_password_reset(&self, email: &str) -> Result<()> {
        let email = normalize_email(email).map_err(Error::from)?;
        let backend = self.care_backend("Resetting a password")?;
        backend
            .request_password_reset(&email)
            .await
            .map_err(|e| care_error(e, "Resetting a password"))
    }

    /// Mails the signed-in account's verification link again (3 per hour).
    pub async fn resend_verification(&self) -> Result<()> {
        let user = self.require_full_account().await?;
        if user.email_verified {
            return Err(api(
                ErrorCode::EmailAlreadyVerified,
                "Your email is already verified.",
            ));
        }
        let backend = self.care_backend("Sending the verification email")?;
        let token = self.remote_token(&user.id).await?;
        backend
            .send_verification_email(&token, user.email.as_deref())
            .await
            .map_err(|e| care_error(e, "Sending the verification email"))
    }

    /// Changes the signed-in account's password. The server ends the account's other
    /// sessions; this device stays signed in (with the new token if it got one).
    pub async fn change_password(&self, current: SecretString, new: SecretString) -> Result<()> {
        let user = self.require_full_account().await?;
        if current.expose_secret().is_empty() {
            return Err(api(
                ErrorCode::InvalidPassword,
                "Enter your current password.",
            ));
        }
        validate_password(new.expose_secret()).map_err(Error::from)?;
        let backend = self.care_backend("Changing your password")?;
        let _one = self.sync.pass.lock().await;
        let token = self.remote_token(&user.id).await?;
        let replaced = backend
            .change_password(&token, &current, &new)
            .await
            .map_err(|e| care_error(e, "Changing your password"))?;
        if let Some(t) = replaced {
            self.vault.set(&user.id, Slot::Remote, &t).await?;
        }
        Ok(())
    }

    /// What deleting the signed-in user would erase: its notes and preferences.
    pub async fn deletion_summary(&self) -> Result<GuestSummary> {
        let user = self.signed_in_user().await?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(|e| self.store.err(e))?;
        local::summary(&mut conn, &user.id)
            .await
            .map_err(|e| self.store.err(e))
    }

    /// Deletes the signed-in user on the server (a full account gives its password,
    /// or has signed in with its provider within 10 minutes), then its keyring items
    /// and rows here, audited, and starts a fresh guest. A guest that never reached
    /// the server is deleted here only. When the server refuses or does not answer,
    /// nothing is deleted.
    pub async fn delete_account(&self, password: Option<SecretString>) -> Result<SessionResponse> {
        let user = self.signed_in_user().await?;
        let what = if user.is_anonymous {
            "Deleting the guest"
        } else {
            "Deleting your account"
        };
        let _one = self.sync.pass.lock().await;
        let token = self.vault.get(&user.id, Slot::Remote).await?;
        match (&self.sync.backend, token) {
            (Some(backend), Some(token)) => backend
                .delete_user(&token, password.as_ref(), user.is_anonymous)
                .await
                .map_err(|e| care_error(e, what))?,
            (_, None) if !user.is_anonymous => {
                return Err(api(
                    ErrorCode::Unauthorized,
                    "This account has no session with the server. Sign in again, then delete it.",
                ))
            }
            (None, Some(_)) => {
                return Err(api(
                    ErrorCode::BackendUnreachable,
                    format!("{what} needs the server, and none is configured."),
                ))
            }
            // A guest the server never heard of: there is nothing to delete there.
            (_, None) => {}
        }
        for slot in SLOTS {
            self.vault.delete(&user.id, slot).await?;
        }
        let mut tx = self.store.begin_write().await?;
        local::delete_user(
            &mut tx,
            &user.id,
            &user.id,
            Utc::now(),
            json!({ "reason": "self", "guest": user.is_anonymous }),
        )
        .await
        .map_err(|e| self.store.err(e))?;
        sqlx::query("DELETE FROM pending_revocations WHERE user_id = ?")
            .bind(&user.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.store.err(e))?;
        sqlx::query("DELETE FROM device_account")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.store.err(e))?;
        tx.commit().await.map_err(|e| self.store.err(e))?;
        self.truncate_wal().await?;
        drop(_one);
        *self.current.write().await = None;
        self.sign_in_anonymous().await
    }

    /// Everything this device holds for the signed-in account, as JSON: the user,
    /// every note, every preference and its local audit trail. No secret is in it.
    /// A guest gets `ANONYMOUS_NOT_ALLOWED` ([`Self::require_full_account`]).
    pub async fn export_data(&self) -> Result<Value> {
        let user = self.require_full_account().await?;
        let notes = self.list_notes().await?;
        let preferences = user
            .metadata
            .get("preferences")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let audit: Vec<_> = self
            .audit_log()
            .await?
            .into_iter()
            .filter(|e| e.user_id == user.id)
            .collect();
        Ok(json!({
            "format": "guestpass-export/1",
            "exportedAt": guestpass_proto::format_time(&Utc::now()),
            "user": user,
            "notes": notes,
            "preferences": preferences,
            "audit": audit,
        }))
    }

    /// [`Self::export_data`] written to `path` (the file the person chose), pretty
    /// printed. Written to a temporary file beside it first, so a failure leaves no
    /// half file.
    pub async fn export_to_file(&self, path: &std::path::Path) -> Result<()> {
        let data = self.export_data().await?;
        let text = serde_json::to_vec_pretty(&data)
            .map_err(|e| Error::Database(format!("the export could not be encoded: {e}")))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = std::path::PathBuf::from(tmp);
        let written = async {
            tokio::fs::write(&tmp, &text).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            api(
                ErrorCode::InvalidRequest,
                format!(
                    "The export could not be saved to {} ({}). Choose another place and try again.",
                    path.display(),
                    e.kind()
                ),
            )
        })
    }

    async fn remote_token(&self, user_id: &str) -> Result<SecretString> {
        self.vault.get(user_id, Slot::Remote).await?.ok_or_else(|| {
            api(
                ErrorCode::Unauthorized,
                "This account has no session with the server. Sign in again, then try again.",
            )
        })
    }
}
