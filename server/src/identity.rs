//! Who is asking: a candidate by their launch token, or an authenticated staff member.
//! Built only by the use cases that authenticate (`ingest`, `accounts`).

use crate::db::{Attempt, LaunchToken};
use crate::domain::{Pending, Role};
use crate::error::AppError;
use uuid::Uuid;

/// A candidate identified by their launch token: can only write to this attempt. The
/// token may have expired or been revoked since; `require_live` says whether it may still
/// start something new.
pub struct AgentIdentity {
    pub attempt: Attempt,
    pub token: LaunchToken,
}

/// An authenticated staff member.
#[derive(Debug, Clone)]
pub struct StaffIdentity {
    pub id: Uuid,
    pub login: String,
    pub role: Role,
    /// What the account must do before anything else (only the account pages answer).
    pub pending: Option<Pending>,
    /// The terminal certificate's fingerprint, when the staff listener requires one.
    pub terminal: Option<String>,
}

impl StaffIdentity {
    /// Accounts, assignments and the audit are the admin's.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("only an admin manages accounts".into()))
        }
    }
}

impl AgentIdentity {
    /// The token may start something new (consent, a stream): neither revoked nor expired.
    pub fn require_live(&self, now_ms: i64) -> Result<(), AppError> {
        if self.token.revoked_at_ms.is_some() {
            return Err(AppError::TokenRevoked);
        }
        if self.token.expires_at_ms <= now_ms {
            return Err(AppError::TokenExpired);
        }
        Ok(())
    }
}
