//! What retention refuses, in its own words; `routes/errors.rs` gives each its HTTP answer.

use crate::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Failure(#[from] Failure),
    #[error("the PV is decided by the sitting's jury")]
    NotTheJury,
    #[error("the PV of this sitting is already decided: a decision is irreversible")]
    PvAlreadyDecided,
    #[error("a PV validated with reservations names the contested candidates")]
    ReservationsNameNoOne,
    #[error("only a PV validated with reservations names contested candidates")]
    ContestedWithoutReservations,
    #[error("attempt {0} is not a candidate of this sitting")]
    NotOfThisSitting(crate::db::AttemptId),
    #[error("{0} attempt(s) of the sitting are still in progress: end them first")]
    AttemptsInProgress(usize),
    #[error("{0} review(s) of the sitting are not submitted: decide anyway only by saying so (override_unsubmitted)")]
    ReviewsUnsubmitted(usize),
    #[error("the decision is recorded, but {0} recording(s) it makes due are not destroyed yet: the server retries; ask again for the result")]
    DestructionPending(usize),
    #[error("the sitting's attempts kept changing; try again")]
    SittingKeptChanging,
    /// A legal hold, a lift or an erasure says why (`what` names the act).
    #[error("{0} states its reason (at most 500 characters)")]
    ReasonMissing(String),
    #[error("this attempt is already on hold")]
    AlreadyOnHold,
    #[error("this attempt is not on hold")]
    NotOnHold,
    #[error("not an age recipient (age1…): {0}")]
    NotAnAgeRecipient(String),
    #[error("cannot create {0}")]
    ExportTarget(String),
}

crate::meets_failures!(RetentionError);
