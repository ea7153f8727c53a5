//! What enrolment refuses, in its own words; `routes/errors.rs` gives each its HTTP answer.

use crate::failure::Failure;
use crate::lifecycle::AttemptState;

#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    #[error(transparent)]
    Failure(#[from] Failure),
    /// A sitting's or a candidate's reference that does not parse (the parser says why).
    #[error("{0}")]
    InvalidReference(String),
    #[error("the sitting's PV is decided: it takes no new candidate")]
    PvDecided,
    #[error("this candidate's launch token was revoked; issue a new one")]
    TokenRevoked,
    #[error("an attempt that is {0} gets no new launch token")]
    NoTokenInState(AttemptState),
    #[error("no more launch tokens")]
    TokensExhausted,
    #[error("an attempt that is {0} gets no launch code")]
    NoCodeInState(AttemptState),
    #[error("too many wrong launch codes from this address; try again later")]
    CodeLocked { retry_after_s: u64 },
}

crate::meets_failures!(EnrolmentError);
