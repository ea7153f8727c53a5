//! The reviewer's queue: the attempts of their sittings that have something to review,
//! with what a reviewer sorts by (state, duration, gaps, integrity, flags, deadline).

use super::Review;
use super::ReviewError;
use crate::db::{AttemptId, SittingId};
use crate::identity::StaffIdentity;
use crate::lifecycle::AttemptState;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct QueueRow {
    pub attempt_id: AttemptId,
    pub sitting_id: SittingId,
    pub sitting: String,
    pub candidate: String,
    pub state: AttemptState,
    pub recorded_seconds: f64,
    pub gaps: usize,
    pub integrity: super::recording::Integrity,
    /// Streams whose media reached the server after the exam's end.
    pub late_streams: usize,
    pub flags: usize,
    pub ended_at_ms: Option<i64>,
    /// When the review is due (the attempt's end + the configured deadline).
    pub due_at_ms: Option<i64>,
    pub overdue: bool,
}

impl Review {
    pub async fn queue(&self, staff: &StaffIdentity) -> Result<Vec<QueueRow>, ReviewError> {
        if !staff.role.may_view_recordings() {
            return Err(ReviewError::NotAReviewer);
        }
        let deadline = self.settings.deadline.as_millis() as i64;
        let now = self.clock.now_ms();
        let mut rows = Vec::new();
        for (sitting_id, sitting, attempts) in self.attempts.assigned_to(staff).await? {
            for a in attempts {
                // Nothing to watch yet (no consent, or recording) or any more (destroyed).
                if !matches!(
                    a.state,
                    AttemptState::Ended
                        | AttemptState::InReview
                        | AttemptState::Reviewed
                        | AttemptState::Decided
                ) {
                    continue;
                }
                let report = self.report_of(a.attempt()).await?;
                let flags = self.db.flags_of(a.id).await?.len();
                let due_at_ms = a.ended_at_ms.map(|t| t + deadline);
                let pending = matches!(a.state, AttemptState::Ended | AttemptState::InReview);
                rows.push(QueueRow {
                    attempt_id: a.id,
                    sitting_id,
                    sitting: sitting.clone(),
                    candidate: self.keys.reference_of(&a),
                    state: a.state,
                    recorded_seconds: report.recorded_seconds,
                    gaps: report.gaps.len() + report.missing.len(),
                    integrity: report.integrity,
                    late_streams: report.late_streams,
                    flags,
                    ended_at_ms: a.ended_at_ms,
                    overdue: pending && due_at_ms.is_some_and(|d| d < now),
                    due_at_ms,
                });
            }
        }
        // By sitting, then reference as it reads (the database orders by pseudonym).
        rows.sort_by(|a, b| (&a.sitting, &a.candidate).cmp(&(&b.sitting, &b.candidate)));
        Ok(rows)
    }
}
