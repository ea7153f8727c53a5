//! The attempt's lifecycle (DESIGN "Attempt lifecycle"): one enum of states, one enum of
//! transitions, one table saying which transition is allowed from which state. Parsed
//! from the database at the boundary; nothing downstream compares state strings.
//! Applying a transition to an attempt (compare-and-set in the database, audited) is
//! `Attempts::transition` in the server's `attempts.rs`; retention reads the state and
//! nothing else.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Enrolled,
    Consented,
    Recording,
    Ended,
    InReview,
    Reviewed,
    Decided,
    Destroyed,
    Withdrawn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The candidate accepted the information notice.
    Consent,
    /// The agent opened the attempt's first stream.
    StartRecording,
    /// The exam platform (or an admin) ended the attempt.
    End,
    /// A reviewer opened the review.
    StartReview,
    /// The reviewer submitted the review.
    SubmitReview,
    /// A second review was requested after a submitted one.
    RequestSecondReview,
    /// The jury decided on the sitting's minutes (PV).
    Decide,
    /// The data key was destroyed (crypto-shredding); nothing can be read any more.
    Destroy,
    /// The candidate withdrew consent.
    Withdraw,
    /// The candidate refused the notice before anything was recorded: the attempt is
    /// withdrawn as well (nothing to keep), and the audit says it was a refusal.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an attempt that is {from} cannot be {}", transition.past_participle())]
pub struct InvalidTransition {
    pub from: AttemptState,
    pub transition: Transition,
}

impl AttemptState {
    pub const ALL: [AttemptState; 9] = [
        Self::Enrolled,
        Self::Consented,
        Self::Recording,
        Self::Ended,
        Self::InReview,
        Self::Reviewed,
        Self::Decided,
        Self::Destroyed,
        Self::Withdrawn,
    ];

    /// The whole table. Anything not listed is refused.
    pub fn apply(self, t: Transition) -> Result<AttemptState, InvalidTransition> {
        use AttemptState::*;
        use Transition::*;
        let next = match (self, t) {
            (Enrolled, Consent) => Consented,
            (Consented, StartRecording) => Recording,
            (Enrolled | Consented | Recording, End) => Ended,
            (Ended, StartReview) => InReview,
            (InReview, SubmitReview) => Reviewed,
            (Reviewed, RequestSecondReview) => InReview,
            // A jury may decide without a submitted review only by saying so (deletion issue).
            (Ended | InReview | Reviewed, Decide) => Decided,
            (Consented | Recording, Withdraw) => Withdrawn,
            (Enrolled, Refuse) => Withdrawn,
            (s, Destroy) if s != Destroyed => Destroyed,
            (from, transition) => return Err(InvalidTransition { from, transition }),
        };
        Ok(next)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Consented => "consented",
            Self::Recording => "recording",
            Self::Ended => "ended",
            Self::InReview => "in_review",
            Self::Reviewed => "reviewed",
            Self::Decided => "decided",
            Self::Destroyed => "destroyed",
            Self::Withdrawn => "withdrawn",
        }
    }

    /// The consent was given and not withdrawn, and nothing ended the recording yet.
    pub fn may_record(self) -> bool {
        matches!(self, Self::Consented | Self::Recording)
    }
}

impl std::str::FromStr for AttemptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown attempt state {s:?}"))
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Transition {
    pub const ALL: [Transition; 10] = [
        Self::Consent,
        Self::StartRecording,
        Self::End,
        Self::StartReview,
        Self::SubmitReview,
        Self::RequestSecondReview,
        Self::Decide,
        Self::Destroy,
        Self::Withdraw,
        Self::Refuse,
    ];

    fn past_participle(self) -> &'static str {
        match self {
            Self::Consent => "consented",
            Self::StartRecording => "recorded",
            Self::End => "ended",
            Self::StartReview => "put in review",
            Self::SubmitReview => "marked reviewed",
            Self::RequestSecondReview => "sent to a second review",
            Self::Decide => "decided",
            Self::Destroy => "destroyed",
            Self::Withdraw => "withdrawn",
            Self::Refuse => "refused",
        }
    }

    /// The audit action recorded for this transition.
    pub fn audit_action(self) -> &'static str {
        match self {
            Self::Consent => "attempt_consented",
            Self::StartRecording => "attempt_recording",
            Self::End => "attempt_ended",
            Self::StartReview => "attempt_review_started",
            Self::SubmitReview => "attempt_reviewed",
            Self::RequestSecondReview => "attempt_second_review",
            Self::Decide => "attempt_decided",
            Self::Destroy => "attempt_destroyed",
            Self::Withdraw => "attempt_withdrawn",
            Self::Refuse => "consent_refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AttemptState::*;
    use super::Transition::*;
    use super::*;
    use proptest::prelude::*;

    /// The table written out as the product promises it, edge by edge; `apply` must agree
    /// with it on every (state, transition) pair.
    const ALLOWED: &[(AttemptState, Transition, AttemptState)] = &[
        (Enrolled, Consent, Consented),
        (Consented, StartRecording, Recording),
        (Enrolled, End, Ended),
        (Consented, End, Ended),
        (Recording, End, Ended),
        (Ended, StartReview, InReview),
        (InReview, SubmitReview, Reviewed),
        (Reviewed, RequestSecondReview, InReview),
        (Ended, Decide, Decided),
        (InReview, Decide, Decided),
        (Reviewed, Decide, Decided),
        (Consented, Withdraw, Withdrawn),
        (Recording, Withdraw, Withdrawn),
        (Enrolled, Refuse, Withdrawn),
        (Enrolled, Destroy, Destroyed),
        (Consented, Destroy, Destroyed),
        (Recording, Destroy, Destroyed),
        (Ended, Destroy, Destroyed),
        (InReview, Destroy, Destroyed),
        (Reviewed, Destroy, Destroyed),
        (Decided, Destroy, Destroyed),
        (Withdrawn, Destroy, Destroyed),
    ];

    #[test]
    fn apply_is_exactly_the_table() {
        for s in AttemptState::ALL {
            for t in Transition::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, tr, _)| *f == s && *tr == t)
                    .map(|e| e.2);
                assert_eq!(s.apply(t).ok(), expected, "{s} --{t:?}-->");
            }
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in AttemptState::ALL {
            assert_eq!(s.as_str().parse::<AttemptState>().unwrap(), s);
        }
        assert!("recorded".parse::<AttemptState>().is_err());
    }

    fn any_transition() -> impl Strategy<Value = Transition> {
        prop::sample::select(Transition::ALL.to_vec())
    }

    proptest! {
        /// Random sequences never reach a state the table forbids: destroyed is terminal,
        /// nothing is recorded without consent, nothing is decided before the end, and
        /// a withdrawn attempt can only be destroyed.
        #[test]
        fn random_sequences_stay_inside_the_table(seq in prop::collection::vec(any_transition(), 0..64)) {
            let mut s = Enrolled;
            let mut consented = false;
            let mut ended = false;
            for t in seq {
                match s.apply(t) {
                    Ok(next) => {
                        prop_assert!(ALLOWED.contains(&(s, t, next)));
                        prop_assert_ne!(s, Destroyed, "nothing leaves destroyed");
                        if s == Withdrawn { prop_assert_eq!(next, Destroyed); }
                        if next == Recording { prop_assert!(consented); }
                        if matches!(next, InReview | Reviewed | Decided) { prop_assert!(ended); }
                        consented |= next == Consented;
                        ended |= next == Ended;
                        s = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, s);
                        prop_assert!(!ALLOWED.iter().any(|(f, tr, _)| *f == s && *tr == t));
                    }
                }
            }
        }
    }
}
