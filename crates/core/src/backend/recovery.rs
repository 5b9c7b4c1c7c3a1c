//! Guest recovery calls (issue 16), reference server only: Better Auth keeps no
//! recovery key, and the caller says so before asking.

use guestpass_proto::{
    routes, ApiError, ErrorCode, RecoveryKeyRequest, RecoverySignInRequest, SignInResponse,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::guestpass::{body, failure, remote};
use super::{header_token, transport, Backend, BackendError, Dialect, Remote};

impl Backend {
    fn recovery_here(&self) -> Result<(), BackendError> {
        match self.dialect() {
            Dialect::Guestpass => Ok(()),
            Dialect::BetterAuth => Err(BackendError::Refused(ApiError::new(
                ErrorCode::NotFound,
                "This server (Better Auth) keeps no recovery phrases",
            ))),
        }
    }

    /// Sets the recovery key of the guest behind `token`, replacing its old one.
    pub async fn set_recovery_key(
        &self,
        token: &SecretString,
        key: &SecretString,
    ) -> Result<(), BackendError> {
        self.recovery_here()?;
        let req = RecoveryKeyRequest {
            recovery_key: key.expose_secret().to_owned(),
        };
        let resp = self.post_with(routes::RECOVERY_KEY, token, &req).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(failure(resp).await)
        }
    }

    /// A new session for the guest whose recovery key this is.
    pub async fn sign_in_recovery(
        &self,
        key: &SecretString,
        device_key: &SecretString,
    ) -> Result<Remote, BackendError> {
        self.recovery_here()?;
        let req = RecoverySignInRequest {
            recovery_key: key.expose_secret().to_owned(),
            device_key: Some(device_key.expose_secret().to_owned()),
        };
        let resp = self
            .http()
            .post(self.url(routes::SIGN_IN_RECOVERY))
            .json(&req)
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The server's "no guest has this phrase", not a lost session.
            return Err(BackendError::Refused(ApiError::from(
                ErrorCode::InvalidRecoveryPhrase,
            )));
        }
        if !resp.status().is_success() {
            return Err(failure(resp).await);
        }
        let header = header_token(&resp);
        let signed: SignInResponse = body(resp).await?;
        let token = header.unwrap_or_else(|| SecretString::from(signed.token.clone()));
        Ok(Remote {
            user: remote(&signed.user),
            token: Some(token),
        })
    }
}
