//! What reviewing refuses, in its own words; `routes/errors.rs` gives each its HTTP answer.

use crate::failure::Failure;
use crate::lifecycle::AttemptState;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Failure(#[from] Failure),
    #[error("the exam is in progress: recordings are reviewed after it ends, nobody watches live")]
    ExamInProgress,
    #[error("the attempt is on legal hold: nothing of it may be modified or deleted")]
    OnHold,
    #[error("the queue is the reviewers'")]
    NotAReviewer,
    #[error("this attempt's review is another reviewer's, or already submitted")]
    NotYourReview,
    #[error("an attempt that is {} cannot be reviewed yet", .0.as_str())]
    NotReviewableYet(AttemptState),
    #[error("another reviewer started this review")]
    ReviewTaken,
    #[error("a flag ends after it starts and covers at most 8 hours")]
    FlagSpan,
    #[error(
        "the note is at most {} characters, without control characters",
        super::decision::NOTE_MAX
    )]
    FlagNote,
    #[error("this review is already submitted")]
    AlreadySubmitted,
    #[error("irregularities need at least one flag")]
    IrregularitiesWithoutFlag,
    #[error("{0} flag(s) recorded: delete them or submit irregularities")]
    FlagsDisagree(u32),
    #[error("the first review is not submitted yet")]
    FirstReviewPending,
    #[error("a second review was already requested")]
    SecondReviewExists,
    #[error("no reviewer of this sitting has that login")]
    NoSuchReviewer,
    #[error("a second review goes to another reviewer")]
    SameReviewer,
    /// A stored fragment failed its checks when read back: shown as altered, never played.
    #[error("fragment {index} {why}: altered, not played")]
    FragmentAltered { index: u32, why: &'static str },
    /// A range asked for whole has holes; the player fetches fragment by fragment.
    #[error("fragments missing in the range asked: {0}")]
    FragmentsMissing(String),
}

crate::meets_failures!(ReviewError);
