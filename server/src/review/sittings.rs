//! The sittings a staff member sees, as the jury's and the player's pages list them.

use super::Review;
use crate::db::{Attempt, PvDecision};
use crate::error::AppError;
use crate::identity::StaffIdentity;
use uuid::Uuid;

impl Review {
    /// The sittings assigned to this staff member: (id, reference).
    pub async fn sittings_of(&self, who: &StaffIdentity) -> Result<Vec<(Uuid, String)>, AppError> {
        Ok(self.db.sittings_of_staff(who.id).await?)
    }

    /// The jury's decision on a sitting's PV, if any.
    pub async fn pv_decision(&self, sitting: Uuid) -> Result<Option<PvDecision>, AppError> {
        Ok(self.db.pv_decision(sitting).await?)
    }

    pub async fn attempts_of_sitting(&self, sitting: Uuid) -> Result<Vec<Attempt>, AppError> {
        Ok(self.db.attempts_of_sitting(sitting).await?)
    }
}
