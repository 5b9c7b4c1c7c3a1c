//! Account care calls (issue 13) in both dialects: password reset, verification
//! resend, change password, delete the user. The reference server and Better Auth
//! share the route names and bodies; the answers' error shapes differ, and a wrong
//! password is a 401 `INVALID_PASSWORD` on one and a 400 `INVALID_PASSWORD` on the
//! other, so both become `Refused(INVALID_PASSWORD)` here, never `Unauthorized`.

use guestpass_proto::{
    routes, ApiError, ChangePasswordRequest, DeleteUserRequest, ErrorCode,
    RequestPasswordResetRequest, SendVerificationEmailRequest,
};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    better_auth, guestpass, header_token, retry_after, transport, Backend, BackendError, Dialect,
};

impl Backend {
    /// Asks for a reset link mailed to `email`. Both servers answer the same whether
    /// or not the address has an account.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), BackendError> {
        let body = RequestPasswordResetRequest {
            email: email.to_owned(),
            redirect_to: None,
        };
        let resp = self
            .http()
            .post(self.url(routes::REQUEST_PASSWORD_RESET))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        self.ok(resp).await
    }

    /// Mails the verification link of the account behind `token` again.
    pub async fn send_verification_email(
        &self,
        token: &SecretString,
        email: Option<&str>,
    ) -> Result<(), BackendError> {
        let body = SendVerificationEmailRequest {
            email: email.map(str::to_owned),
            callback_url: None,
        };
        let resp = self
            .post_with(routes::SEND_VERIFICATION_EMAIL, token, &body)
            .await?;
        self.ok(resp).await
    }

    /// Changes the password of the account behind `token`, ending its other sessions.
    /// Returns the new token when the server replaced the caller's session (Better
    /// Auth does when it revokes the others); `None` means `token` goes on working.
    pub async fn change_password(
        &self,
        token: &SecretString,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<Option<SecretString>, BackendError> {
        let body = ChangePasswordRequest {
            current_password: current.expose_secret().to_owned(),
            new_password: new.expose_secret().to_owned(),
            revoke_other_sessions: Some(true),
        };
        let resp = self
            .post_with(routes::CHANGE_PASSWORD, token, &body)
            .await?;
        if !resp.status().is_success() {
            return Err(self.care_failure(resp).await);
        }
        let header = header_token(&resp);
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let body_token = v
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()));
        Ok(header.or(body_token))
    }

    /// Deletes the user behind `token` and everything it owns on the server. A guest
    /// whose session is already gone counts as deleted. On Better Auth a guest goes
    /// through its anonymous plugin's own route.
    pub async fn delete_user(
        &self,
        token: &SecretString,
        password: Option<&SecretString>,
        is_guest: bool,
    ) -> Result<(), BackendError> {
        if is_guest && self.dialect() == Dialect::BetterAuth {
            return self.delete_guest(token).await;
        }
        let body = DeleteUserRequest {
            password: password.map(|p| p.expose_secret().to_owned()),
            callback_url: None,
        };
        let resp = self.post_with(routes::DELETE_USER, token, &body).await?;
        if is_guest && resp.status() == StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        self.ok(resp).await
    }

    async fn ok(&self, resp: Response) -> Result<(), BackendError> {
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.care_failure(resp).await)
        }
    }

    /// A refusal of a care route: a wrong password, a stale session and a guest refused
    /// are reported as such; anything else as the dialect maps it.
    async fn care_failure(&self, resp: Response) -> BackendError {
        let status = resp.status();
        let wait = retry_after(&resp);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return transport(e),
        };
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let ours = match code.as_str() {
            "INVALID_PASSWORD" => Some(ErrorCode::InvalidPassword),
            "SESSION_NOT_FRESH" => Some(ErrorCode::SessionNotFresh),
            // Better Auth's delete-user says a session too old to delete with this way.
            "SESSION_EXPIRED" if status == StatusCode::BAD_REQUEST => {
                Some(ErrorCode::SessionNotFresh)
            }
            "ANONYMOUS_NOT_ALLOWED" => Some(ErrorCode::AnonymousNotAllowed),
            _ => None,
        };
        if let Some(code) = ours {
            return BackendError::Refused(ApiError::from(code));
        }
        match self.dialect() {
            Dialect::BetterAuth => better_auth::classify(status, wait, &bytes),
            Dialect::Guestpass => guestpass::classify(status, wait, &bytes),
        }
    }
}
