//! Guest recovery (issue 16): the bodies of `POST /anonymous/recovery-key` and
//! `POST /sign-in/recovery`. The phrase never travels: the device derives the
//! recovery sign-in key from it (HKDF, `guestpass-core`'s `recovery.rs`) and
//! sends that; the server keeps its SHA-256, as it does a device key's.

use serde::{Deserialize, Serialize};

/// Length bounds of a recovery key on the wire: 256 bits in URL-safe base64 is
/// 43 characters. Shorter is too weak to stand for a guest, longer is not a key.
pub const RECOVERY_KEY_LEN: std::ops::RangeInclusive<usize> = 43..=128;

/// `POST /anonymous/recovery-key` (bearer: the guest).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoveryKeyRequest {
    pub recovery_key: String,
}

/// `POST /sign-in/recovery`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverySignInRequest {
    pub recovery_key: String,
    /// The restoring device's own device key (it replaces the one the server
    /// kept): that device can then bring the guest back after a cleanup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

impl std::fmt::Debug for RecoveryKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryKeyRequest")
            .field("recovery_key", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for RecoverySignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoverySignInRequest")
            .field("recovery_key", &"<redacted>")
            .field(
                "device_key",
                &self.device_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
