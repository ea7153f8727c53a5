//! Who is asking: a candidate by their launch token, or an authenticated staff member.
//! Built only by the use cases that authenticate (`ingest`, `accounts`).

use crate::db::{Attempt, LaunchToken, StaffId, Stream};
use crate::domain::{Pending, Role};
use crate::failure::Failure;

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
    pub id: StaffId,
    pub login: String,
    pub role: Role,
    /// What the account must do before anything else (only the account pages answer).
    pub pending: Option<Pending>,
    /// The terminal certificate's fingerprint, when the staff listener requires one.
    pub terminal: Option<String>,
}

impl StaffIdentity {
    /// Accounts, assignments and the audit are the admin's.
    pub fn require_admin(&self) -> Result<(), Failure> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Failure::RoleRefused("only an admin manages accounts"))
        }
    }
}

impl AgentIdentity {
    /// The token may start something new (consent, a stream): neither revoked nor expired.
    pub fn require_live(&self, now_ms: i64) -> Result<(), TokenRefused> {
        if self.token.revoked_at_ms.is_some() {
            return Err(TokenRefused::Revoked);
        }
        if self.token.expires_at_ms <= now_ms {
            return Err(TokenRefused::Expired);
        }
        Ok(())
    }

    /// The token may keep a recording going (heartbeats, signalling, what the agent reads
    /// of its attempt): live, or no longer live but with a stream still open that was
    /// opened while it was. The rule chunks follow: a token revoked or expired cannot
    /// start anything, nor pass for an agent that never recorded under it. The streams are
    /// read only for a token no longer live.
    pub async fn may_carry_on(
        &self,
        db: &dyn crate::db::Database,
        now_ms: i64,
    ) -> Result<Result<(), TokenRefused>, crate::db::DbError> {
        let refused = match self.require_live(now_ms) {
            Ok(()) => return Ok(Ok(())),
            Err(e) => e,
        };
        let until = self
            .token
            .revoked_at_ms
            .map_or(self.token.expires_at_ms, |r| {
                r.min(self.token.expires_at_ms)
            });
        let recording = db
            .streams_of(self.attempt.id)
            .await?
            .iter()
            .any(|s: &Stream| {
                s.ended_at_ms.is_none() && s.final_index.is_none() && s.opened_at_ms <= until
            });
        Ok(if recording { Ok(()) } else { Err(refused) })
    }
}

/// Why a launch token may not start anything new.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefused {
    #[error("launch token expired")]
    Expired,
    #[error("launch token revoked")]
    Revoked,
}
