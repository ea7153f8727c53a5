//! The attempts every use case reads and moves: one found or 404, one shown to a staff
//! member only where assigned, and the one audited way its state changes.

use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::db::{Attempt, AttemptId, AuditEvent, Database, DbError, SittingId};
use crate::domain::Role;
use crate::failure::Failure;
use crate::identity::StaffIdentity;
use crate::lifecycle::{AttemptState, Transition};
use std::sync::Arc;

/// What a staff member means to do with an attempt. The role is checked for it before
/// the attempt is looked up, so that a role refused learns nothing of the attempt (403,
/// whether it exists or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Its report or its review's outcome: any role assigned to the sitting.
    Read,
    /// Its recording: reviewers only.
    Watch,
    /// Writing its review: reviewers only.
    Review,
    /// Giving it a second review: the jury or an admin.
    SecondReview,
}

impl Purpose {
    pub fn check(self, role: Role) -> Result<(), Failure> {
        let refused = match self {
            Purpose::Read => return Ok(()),
            Purpose::Watch if role.may_view_recordings() => return Ok(()),
            Purpose::Review if role == Role::Reviewer => return Ok(()),
            Purpose::SecondReview if matches!(role, Role::Jury | Role::Admin) => return Ok(()),
            Purpose::Watch => "this role may not view recordings",
            Purpose::Review => "only reviewers review",
            Purpose::SecondReview => "a second review is requested by the jury or an admin",
        };
        Err(Failure::RoleRefused(refused))
    }
}

/// An attempt as one staff member may see it. Only `Attempts::for_staff` builds one (the
/// fields are private), so a staff use case that takes it cannot be reached without the
/// assignment check, and always knows who is looking (for its audit entries).
#[derive(Debug, Clone)]
pub struct AssignedAttempt {
    attempt: Attempt,
    staff: StaffIdentity,
}

impl AssignedAttempt {
    pub fn staff(&self) -> &StaffIdentity {
        &self.staff
    }

    pub fn attempt(&self) -> &Attempt {
        &self.attempt
    }
}

impl std::ops::Deref for AssignedAttempt {
    type Target = Attempt;
    fn deref(&self) -> &Attempt {
        &self.attempt
    }
}

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

    pub async fn get(&self, id: AttemptId) -> Result<Attempt, Failure> {
        match self.db.attempt(id).await {
            Err(DbError::NotFound) => Err(Failure::NotFound("attempt")),
            other => Ok(other?),
        }
    }

    /// The attempt as this staff member may see it. Reviewers and jury members see the
    /// sittings assigned to them; any other attempt answers exactly as an unknown one
    /// does, so that its existence is not disclosed.
    pub async fn for_staff(
        &self,
        staff: &StaffIdentity,
        attempt_id: AttemptId,
        purpose: Purpose,
    ) -> Result<AssignedAttempt, Failure> {
        purpose.check(staff.role)?;
        let attempt = self.get(attempt_id).await?;
        let sees = match staff.role {
            Role::Admin => true,
            Role::Reviewer | Role::Jury => {
                self.db.is_assigned(staff.id, attempt.sitting_id).await?
            }
        };
        if !sees {
            return Err(Failure::NotFound("attempt"));
        }
        Ok(AssignedAttempt {
            attempt,
            staff: staff.clone(),
        })
    }

    /// The sittings assigned to this staff member, (id, reference) by reference, each with
    /// its attempts as that member sees them.
    pub async fn assigned_to(
        &self,
        staff: &StaffIdentity,
    ) -> Result<Vec<(SittingId, String, Vec<AssignedAttempt>)>, Failure> {
        let mut out = Vec::new();
        for (sitting_id, reference) in self.db.sittings_of_staff(staff.id).await? {
            let attempts = self
                .db
                .attempts_of_sitting(sitting_id)
                .await?
                .into_iter()
                .map(|attempt| AssignedAttempt {
                    attempt,
                    staff: staff.clone(),
                })
                .collect();
            out.push((sitting_id, reference, attempts));
        }
        Ok(out)
    }

    /// The one way an attempt changes state: checked against the lifecycle table,
    /// compare-and-set in the database (a concurrent change is re-read, never
    /// overwritten), and audited in the same transaction.
    pub async fn transition(
        &self,
        attempt_id: AttemptId,
        t: Transition,
        actor: &str,
    ) -> Result<AttemptState, Failure> {
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
