//! The attempts every use case reads and moves: one found or 404, one shown to a staff
//! member only where assigned, and the one audited way its state changes.

use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::db::{Attempt, AuditEvent, Database, DbError};
use crate::domain::Role;
use crate::error::AppError;
use crate::identity::StaffIdentity;
use crate::lifecycle::{AttemptState, Transition};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Clone)]
pub struct Attempts {
    db: Arc<dyn Database>,
    audit: Audit,
    clock: SharedClock,
}

impl Attempts {
    pub fn new(db: Arc<dyn Database>, audit: Audit, clock: SharedClock) -> Self {
        Self { db, audit, clock }
    }

    pub async fn get(&self, id: Uuid) -> Result<Attempt, AppError> {
        match self.db.attempt(id).await {
            Err(DbError::NotFound) => Err(AppError::NotFound("attempt")),
            other => Ok(other?),
        }
    }

    /// The attempt as this staff member may see it. Reviewers and jury members see the
    /// sittings assigned to them; any other attempt answers exactly as an unknown one
    /// does, so that its existence is not disclosed.
    pub async fn for_staff(
        &self,
        staff: &StaffIdentity,
        attempt_id: Uuid,
    ) -> Result<crate::db::Attempt, AppError> {
        let attempt = self.get(attempt_id).await?;
        match staff.role {
            Role::Admin => Ok(attempt),
            Role::Reviewer | Role::Jury
                if self.db.is_assigned(staff.id, attempt.sitting_id).await? =>
            {
                Ok(attempt)
            }
            Role::Reviewer | Role::Jury => Err(AppError::NotFound("attempt")),
        }
    }

    /// The one way an attempt changes state: checked against the lifecycle table,
    /// compare-and-set in the database (a concurrent change is re-read, never
    /// overwritten), and audited in the same transaction.
    pub async fn transition(
        &self,
        attempt_id: Uuid,
        t: Transition,
        actor: &str,
    ) -> Result<AttemptState, AppError> {
        loop {
            let a = self.get(attempt_id).await?;
            let next = a.state.apply(t)?;
            let now = self.clock.now_ms();
            let event = AuditEvent {
                at_ms: now,
                actor: actor.into(),
                action: t.audit_action().into(),
                attempt_id: Some(attempt_id),
                detail: serde_json::json!({ "from": a.state, "to": next }),
            };
            if let Some(entry) = self
                .db
                .set_state_audited(attempt_id, a.state, next, now, event)
                .await?
            {
                self.audit.checkpoint(&entry).await?;
                return Ok(next);
            }
        }
    }
}
