//! Flags and review decisions. A reviewer writes to one review at a time: the first
//! review of an attempt (taken by the first assigned reviewer who starts it) or a second
//! review given to them. Flags are editable until their review is submitted; the outcome
//! must agree with them (irregularities ⇔ at least one flag). Every change is audited.

use super::Review;
use super::ReviewError;
use crate::attempts::{AssignedAttempt, Purpose};
use crate::db::{
    Attempt, DbError, Flag, FlagCategory, Review as ReviewRow, ReviewOutcome, Severity, StaffId,
    Submit,
};
use crate::db::{AttemptId, FlagId, ReviewId};
use crate::domain::Role;
use crate::failure::Failure;
use crate::identity::StaffIdentity;
use crate::lifecycle::{AttemptState, Transition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Longest note a flag may carry (characters): a short factual remark, not a report.
pub const NOTE_MAX: usize = 500;
/// Longest stretch one flag may cover.
const FLAG_MAX_MS: i64 = 8 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagInput {
    pub start_ms: i64,
    pub end_ms: i64,
    pub category: FlagCategory,
    pub severity: Severity,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct FlagView {
    pub id: Uuid,
    pub round: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub category: FlagCategory,
    pub severity: Severity,
    pub note: String,
    /// The caller may still edit or delete it.
    pub editable: bool,
}

#[derive(Debug, Serialize)]
pub struct RoundView {
    pub round: u32,
    pub submitted_at_ms: Option<i64>,
    pub outcome: Option<ReviewOutcome>,
    /// Flags per category: what the jury and the platform see, without the notes.
    pub categories: BTreeMap<&'static str, u32>,
}

#[derive(Debug, Serialize)]
pub struct ReviewView {
    pub rounds: Vec<RoundView>,
    pub flags: Vec<FlagView>,
    /// The round the caller can write to, if any.
    pub my_round: Option<u32>,
}

/// Where an attempt's review stands, as the exam platform and the jury read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    NotStarted,
    InProgress,
    Submitted,
    SecondReviewPending,
}

impl ReviewStatus {
    /// The wire name (the pages' labels are keyed by it).
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::NotStarted => "not_started",
            ReviewStatus::InProgress => "in_progress",
            ReviewStatus::Submitted => "submitted",
            ReviewStatus::SecondReviewPending => "second_review_pending",
        }
    }
}

/// The outcome as the exam platform and the jury read it.
#[derive(Debug, Serialize)]
pub struct ReviewOutcomeView {
    pub attempt_id: AttemptId,
    pub status: ReviewStatus,
    pub rounds: Vec<RoundView>,
}

fn rounds(reviews: &[ReviewRow], flags: &[Flag]) -> Vec<RoundView> {
    reviews
        .iter()
        .map(|r| {
            let mut categories = BTreeMap::new();
            for f in flags.iter().filter(|f| f.review_id == r.id) {
                *categories.entry(f.category.as_str()).or_insert(0) += 1;
            }
            RoundView {
                round: r.round,
                submitted_at_ms: r.submitted_at_ms,
                outcome: r.outcome,
                categories,
            }
        })
        .collect()
}

/// The review this reviewer may write to: a second review given to them, or the first
/// one if it is theirs; never a submitted one.
fn writable(reviews: &[ReviewRow], staff: StaffId) -> Option<&ReviewRow> {
    reviews
        .iter()
        .rev()
        .find(|r| r.reviewer_id == staff && r.submitted_at_ms.is_none())
}

impl Review {
    fn reviewable(a: &AssignedAttempt) -> Result<&crate::db::Attempt, ReviewError> {
        Purpose::Review.check(a.staff().role)?;
        if a.state == AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        Ok(a.attempt())
    }

    /// `reviewable`, and not on legal hold: a held attempt's review stays as it is.
    async fn modifiable<'a>(
        &self,
        a: &'a AssignedAttempt,
    ) -> Result<&'a crate::db::Attempt, ReviewError> {
        let attempt = Self::reviewable(a)?;
        if self.policy.facts(a.id).await?.hold_reason.is_some() {
            return Err(ReviewError::OnHold);
        }
        Ok(attempt)
    }

    pub async fn review_view(&self, a: &AssignedAttempt) -> Result<ReviewView, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = Self::reviewable(a)?;
        let (reviews, flags) = (
            self.db.reviews_of(attempt_id).await?,
            self.db.flags_of(attempt_id).await?,
        );
        let mine = writable(&reviews, staff.id).map(|r| r.id);
        let round_of = |id: Uuid| {
            reviews
                .iter()
                .find(|r| r.id == id.into())
                .map(|r| r.round)
                .unwrap_or(0)
        };
        let dek = self.keys.attempt_key(&attempt)?;
        Ok(ReviewView {
            rounds: rounds(&reviews, &flags),
            my_round: writable(&reviews, staff.id).map(|r| r.round),
            flags: flags
                .iter()
                .map(|f| {
                    Ok(FlagView {
                        id: f.id.into(),
                        round: round_of(f.review_id.into()),
                        start_ms: f.start_ms,
                        end_ms: f.end_ms,
                        category: f.category,
                        severity: f.severity,
                        note: crate::keys::open_note(&dek, &attempt_id, &f.id, &f.note)?,
                        editable: Some(f.review_id) == mine,
                    })
                })
                .collect::<Result<_, ReviewError>>()?,
        })
    }

    /// The review the caller writes to, starting the first review when nobody has.
    async fn my_review(
        &self,
        staff: &StaffIdentity,
        attempt: &crate::db::Attempt,
    ) -> Result<ReviewRow, ReviewError> {
        let reviews = self.db.reviews_of(attempt.id).await?;
        if let Some(r) = writable(&reviews, staff.id) {
            return Ok(r.clone());
        }
        if !reviews.is_empty() {
            return Err(ReviewError::NotYourReview);
        }
        if !matches!(attempt.state, AttemptState::Ended | AttemptState::InReview) {
            return Err(ReviewError::NotReviewableYet(attempt.state));
        }
        let review = ReviewRow {
            id: ReviewId::random(),
            attempt_id: attempt.id,
            round: 1,
            reviewer_id: staff.id,
            started_at_ms: self.clock.now_ms(),
            submitted_at_ms: None,
            outcome: None,
        };
        match self.db.create_review(review.clone()).await {
            Err(DbError::Conflict) => return Err(ReviewError::ReviewTaken),
            other => other?,
        }
        if attempt.state == AttemptState::Ended {
            self.attempts
                .transition(attempt.id, Transition::StartReview, &staff.login)
                .await?;
        }
        Ok(review)
    }

    pub async fn save_flag(
        &self,
        a: &AssignedAttempt,
        flag_id: Option<FlagId>,
        input: FlagInput,
    ) -> Result<Uuid, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = self.modifiable(a).await?;
        if input.end_ms < input.start_ms
            || input.start_ms < 0
            || input.end_ms - input.start_ms > FLAG_MAX_MS
        {
            return Err(ReviewError::FlagSpan);
        }
        if input.note.chars().count() > NOTE_MAX
            || input.note.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(ReviewError::FlagNote);
        }
        let review = self.my_review(staff, &attempt).await?;
        if let Some(id) = flag_id {
            // An edit, not a creation under an id the client chose.
            if !self
                .db
                .flags_of(attempt_id)
                .await?
                .iter()
                .any(|f| f.id == id && f.review_id == review.id)
            {
                return Err(Failure::NotFound("flag").into());
            }
        }
        let id = flag_id.unwrap_or_else(FlagId::random);
        let flag = Flag {
            id,
            review_id: review.id,
            attempt_id,
            start_ms: input.start_ms,
            end_ms: input.end_ms,
            category: input.category,
            severity: input.severity,
            // Sealed at rest: the note dies with the attempt's key, backups included.
            note: crate::keys::seal_note(
                &self.keys.attempt_key(&attempt)?,
                &attempt_id,
                &id,
                &input.note,
            )?,
            updated_at_ms: self.clock.now_ms(),
        };
        // What was found stays in the flag, which dies with the recording; the trail keeps
        // who touched which flag.
        let detail = serde_json::json!({ "flag_id": id, "round": review.round });
        if !self.db.save_flag(flag).await? {
            return Err(Failure::NotFound("flag").into());
        }
        self.audit
            .access(
                staff,
                if flag_id.is_some() {
                    "flag_updated"
                } else {
                    "flag_created"
                },
                Some(attempt_id),
                detail,
            )
            .await?;
        Ok(id.into())
    }

    pub async fn delete_flag(
        &self,
        a: &AssignedAttempt,
        flag_id: FlagId,
    ) -> Result<(), ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        self.modifiable(a).await?;
        let reviews = self.db.reviews_of(attempt_id).await?;
        let review = writable(&reviews, staff.id).ok_or(Failure::NotFound("flag"))?;
        if !self.db.delete_flag(review.id, flag_id).await? {
            return Err(Failure::NotFound("flag").into());
        }
        self.audit
            .access(
                staff,
                "flag_deleted",
                Some(attempt_id),
                serde_json::json!({ "flag_id": flag_id, "round": review.round }),
            )
            .await
            .map_err(Into::into)
    }

    pub async fn submit_review(
        &self,
        a: &AssignedAttempt,
        outcome: ReviewOutcome,
    ) -> Result<ReviewView, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = self.modifiable(a).await?;
        let review = self.my_review(staff, &attempt).await?;
        match self
            .db
            .submit_review(review.id, outcome, self.clock.now_ms())
            .await?
        {
            Submit::Submitted(_) => {}
            Submit::AlreadySubmitted => return Err(ReviewError::AlreadySubmitted),
            Submit::Disagrees(0) => return Err(ReviewError::IrregularitiesWithoutFlag),
            Submit::Disagrees(n) => return Err(ReviewError::FlagsDisagree(n)),
        };
        self.audit
            .access(
                staff,
                "review_submitted",
                Some(attempt_id),
                serde_json::json!({ "round": review.round }),
            )
            .await?;
        if self.attempts.get(attempt_id).await?.state == AttemptState::InReview {
            self.attempts
                .transition(attempt_id, Transition::SubmitReview, &staff.login)
                .await?;
        }
        self.review_view(a).await
    }

    /// Gives a submitted attempt a second review by another reviewer of the sitting (the
    /// jury's or an admin's request).
    pub async fn request_second_review(
        &self,
        a: &AssignedAttempt,
        reviewer_login: &str,
    ) -> Result<(), ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        Purpose::SecondReview.check(staff.role)?;
        let attempt = a.attempt();
        let reviews = self.db.reviews_of(attempt_id).await?;
        let first = match reviews.as_slice() {
            [first] if first.submitted_at_ms.is_some() => first,
            [] | [_] => return Err(ReviewError::FirstReviewPending),
            _ => return Err(ReviewError::SecondReviewExists),
        };
        let reviewer = match self.db.staff_by_login(reviewer_login).await {
            Ok(r)
                if r.role == Role::Reviewer
                    && self.db.is_assigned(r.id, attempt.sitting_id).await? =>
            {
                r
            }
            Ok(_) | Err(DbError::NotFound) => return Err(ReviewError::NoSuchReviewer),
            Err(e) => return Err(e.into()),
        };
        if reviewer.id == first.reviewer_id {
            return Err(ReviewError::SameReviewer);
        }
        let review = ReviewRow {
            id: ReviewId::random(),
            attempt_id,
            round: 2,
            reviewer_id: reviewer.id,
            started_at_ms: self.clock.now_ms(),
            submitted_at_ms: None,
            outcome: None,
        };
        match self.db.create_review(review).await {
            Err(DbError::Conflict) => return Err(ReviewError::SecondReviewExists),
            other => other?,
        }
        self.audit
            .access(
                staff,
                "second_review_requested",
                Some(attempt_id),
                serde_json::json!({ "reviewer": reviewer.login }),
            )
            .await?;
        if attempt.state == AttemptState::Reviewed {
            self.attempts
                .transition(attempt_id, Transition::RequestSecondReview, &staff.login)
                .await?;
        }
        Ok(())
    }

    /// The review outcome without notes, for the jury and the reviewers of the sitting.
    pub async fn review_outcome(
        &self,
        a: &AssignedAttempt,
    ) -> Result<ReviewOutcomeView, ReviewError> {
        self.outcome_of(a.attempt()).await
    }

    /// The same, for the exam platform (the integration API, which holds its own token and
    /// sees every attempt): the one caller that names an attempt without a staff member.
    pub async fn outcome_for_platform(
        &self,
        attempt_id: AttemptId,
    ) -> Result<ReviewOutcomeView, ReviewError> {
        self.outcome_of(&self.attempts.get(attempt_id).await?).await
    }

    async fn outcome_of(&self, attempt: &Attempt) -> Result<ReviewOutcomeView, ReviewError> {
        let attempt_id = attempt.id;
        let (reviews, flags) = (
            self.db.reviews_of(attempt.id).await?,
            self.db.flags_of(attempt.id).await?,
        );
        let status = match reviews.last() {
            None => ReviewStatus::NotStarted,
            Some(r) if r.submitted_at_ms.is_some() => ReviewStatus::Submitted,
            Some(r) if r.round > 1 => ReviewStatus::SecondReviewPending,
            Some(_) => ReviewStatus::InProgress,
        };
        Ok(ReviewOutcomeView {
            attempt_id,
            status,
            rounds: rounds(&reviews, &flags),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ReviewStatus;

    #[test]
    fn a_review_status_says_its_wire_name() {
        for s in [
            ReviewStatus::NotStarted,
            ReviewStatus::InProgress,
            ReviewStatus::Submitted,
            ReviewStatus::SecondReviewPending,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
