//! The sittings a staff member sees, as the jury's and the player's pages list them.

use super::decision::{ReviewOutcomeView, ReviewStatus};
use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use crate::db::PvDecision;
use crate::db::SittingId;
use crate::identity::StaffIdentity;
use crate::lifecycle::AttemptState;

/// One of a jury member's sittings: the PV's decision, if taken, and each attempt's review.
pub struct JurySitting {
    pub id: SittingId,
    pub reference: String,
    pub pv: Option<PvDecision>,
    pub attempts: Vec<JuryAttempt>,
}

pub struct JuryAttempt {
    pub attempt: AssignedAttempt,
    /// The candidate's reference as it reads (its pseudonym once destroyed).
    pub reference: String,
    pub outcome: ReviewOutcomeView,
    /// One review, submitted, and the recording still there to review again.
    pub second_review_possible: bool,
}

impl Review {
    /// The candidate's reference as a page shows it (its pseudonym once destroyed).
    pub fn reference_of(&self, a: &crate::db::Attempt) -> String {
        self.keys.reference_of(a)
    }

    /// The sittings assigned to this staff member: (id, reference).
    pub async fn sittings_of(
        &self,
        who: &StaffIdentity,
    ) -> Result<Vec<(SittingId, String)>, ReviewError> {
        Ok(self.db.sittings_of_staff(who.id).await?)
    }

    /// What the jury's page shows: every sitting of theirs, its PV, each review's outcome.
    pub async fn jury_overview(
        &self,
        who: &StaffIdentity,
    ) -> Result<Vec<JurySitting>, ReviewError> {
        let mut out = Vec::new();
        for (id, reference, attempts) in self.attempts.assigned_to(who).await? {
            let pv = self.db.pv_decision(id).await?;
            let mut rows = Vec::with_capacity(attempts.len());
            for attempt in attempts {
                let outcome = self.review_outcome(&attempt).await?;
                let second_review_possible = outcome.rounds.len() == 1
                    && outcome.status == ReviewStatus::Submitted
                    && attempt.state != AttemptState::Destroyed;
                rows.push(JuryAttempt {
                    reference: self.keys.reference_of(&attempt),
                    attempt,
                    outcome,
                    second_review_possible,
                });
            }
            // By reference as it reads (the database orders by pseudonym).
            rows.sort_by(|a, b| a.reference.cmp(&b.reference));
            out.push(JurySitting {
                id,
                reference,
                pv,
                attempts: rows,
            });
        }
        Ok(out)
    }
}
