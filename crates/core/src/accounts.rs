//! Accounts on a device beyond the upgrade (DESIGN.md §2a): sign in (email or a
//! provider), the question a guest with data is asked, the merge that rolls forward
//! across a crash, sign out (keeping or removing the account's data), and signing in
//! again after the server session expired.

use guestpass_proto::{ErrorCode, SessionResponse, User};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::Guestpass;

/// What the current guest holds, for the merge question ("3 notes and 2 preferences").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestSummary {
    pub notes: u64,
    pub preferences: u64,
}

impl GuestSummary {
    pub fn is_empty(&self) -> bool {
        self.notes == 0 && self.preferences == 0
    }
}

/// The answer to a sign-in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum SignInOutcome {
    /// Signed in; nothing needed asking (no guest data, or the same account again).
    SignedIn(Box<SessionResponse>),
    /// The credentials were right and the guest holds data: ask, then call
    /// [`Guestpass::complete_sign_in`]. The account's token is held in memory only.
    #[serde(rename_all = "camelCase")]
    ChoiceNeeded {
        account: Box<User>,
        guest: GuestSummary,
    },
}

/// The person's answer to the merge question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInChoice {
    /// Bring the guest's notes and preferences into the account (the default).
    Merge,
    /// Delete the guest's data (the UI confirmed twice) and sign in.
    LeaveBehind,
    /// Stay a guest; the account's new session is revoked.
    Cancel,
}

fn not_built() -> crate::Error {
    crate::Error::Api(guestpass_proto::ApiError::new(
        ErrorCode::InternalError,
        "not built yet",
    ))
}

impl Guestpass {
    /// What the current guest holds (zero for a full account).
    pub async fn guest_summary(&self) -> Result<GuestSummary> {
        Err(not_built())
    }

    /// Signs in to an existing account with email and password.
    pub async fn sign_in_email(&self, _email: &str, _password: &str) -> Result<SignInOutcome> {
        Err(not_built())
    }

    /// Signs in with a provider through the system browser (DESIGN.md §5).
    pub async fn sign_in_social(
        &self,
        _provider: &str,
        _opener: &dyn crate::Opener,
    ) -> Result<SignInOutcome> {
        Err(not_built())
    }

    /// Finishes a sign-in that returned [`SignInOutcome::ChoiceNeeded`]. `Cancel`
    /// answers the guest's own session.
    pub async fn complete_sign_in(&self, _choice: SignInChoice) -> Result<SessionResponse> {
        Err(not_built())
    }

    /// Signs a full account out and starts a fresh guest. With `remove_data` the
    /// account's rows are erased once the server confirmed it holds every change;
    /// otherwise (or when that is not confirmed and `force` is false) it fails with
    /// `UNSYNCED_CHANGES` naming how many would be lost.
    pub async fn sign_out(&self, _remove_data: bool, _force: bool) -> Result<SessionResponse> {
        Err(not_built())
    }
}
