//! The jury's decision on a sitting's minutes (PV). Irreversible and audited: validated
//! without reservation destroys every attempt of the sitting in the same request, before
//! it answers; validated with reservations keeps the contested attempts 2 months and
//! destroys the others; refused keeps them all 2 months. A PV is not decided while a
//! review is unsubmitted, unless the jury says so explicitly (audited with the count).

use super::policy::Fate;
use super::Retention;
use super::RetentionError;
use crate::clock::{from_unix_ms, rfc3339, unix_ms};
use crate::db::{AttemptId, SittingId};
use crate::db::{AuditEvent, PvDecision, PvOutcome, PvRecorded, PvUpdate, RetentionFacts};
use crate::failure::Failure;
use crate::lifecycle::{AttemptState, Transition};
use protocol::SignedReceipt;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PvRequest {
    /// `validated`, `reservations` or `refused`.
    #[schema(value_type = String)]
    pub outcome: PvOutcome,
    /// The attempts a PV validated with reservations contests (at least one; none otherwise).
    #[serde(default)]
    pub contested: Vec<AttemptId>,
    /// Decide although reviews of the sitting are unsubmitted (recorded in the audit).
    #[serde(default)]
    pub override_unsubmitted: bool,
    /// Integration API only: the jury member who decided, for the audit and the receipts
    /// (staff routes use the session's account).
    #[serde(default)]
    pub decided_by: Option<String>,
}

/// The fate of an attempt the decision made due whose destruction has not happened yet.
const DUE: &str = "due";

/// What a decision does to one attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlannedAttempt {
    pub attempt_id: AttemptId,
    pub reference: String,
    pub contested: bool,
    /// `destroyed_now`, `kept` or `held` (a legal hold: nothing is deleted while it stands);
    /// in a decision's answer, read back from what is stored, also `destroyed` (since the
    /// decision, for another reason: an erasure, the dispute period's end) and `due` (not
    /// destroyed yet: the worker retries).
    pub fate: &'static str,
    /// RFC 3339: when a kept attempt is destroyed.
    pub kept_until: Option<String>,
    #[serde(skip)]
    pub kept_until_ms: Option<i64>,
    /// Its review is not submitted (or not started).
    pub review_unsubmitted: bool,
}

/// What a decision would do, before it is confirmed (the jury page shows it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PvPlan {
    pub sitting_id: SittingId,
    #[schema(value_type = String)]
    pub outcome: PvOutcome,
    pub attempts: Vec<PlannedAttempt>,
    pub unsubmitted: usize,
    /// Attempts still consented or recording: the PV waits for the end of the exam.
    pub in_progress: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PvResult {
    pub sitting_id: SittingId,
    #[schema(value_type = String)]
    pub outcome: PvOutcome,
    pub decided_at: String,
    pub decided_by: String,
    pub override_unsubmitted: bool,
    pub attempts: Vec<PlannedAttempt>,
    /// The signed destruction receipts of the attempts destroyed since this decision.
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<SignedReceipt>,
    /// The same decision asked again (a retry after a lost answer): what was recorded.
    #[serde(skip)]
    pub replayed: bool,
}

impl Retention {
    /// Only the sitting's jury decides its PV; another sitting answers as an unknown one.
    pub async fn require_jury_of(
        &self,
        staff: &crate::identity::StaffIdentity,
        sitting: SittingId,
    ) -> Result<(), RetentionError> {
        if staff.role != crate::domain::Role::Jury {
            return Err(RetentionError::NotTheJury);
        }
        if !self.db.is_assigned(staff.id, sitting).await? {
            return Err(Failure::NotFound("sitting").into());
        }
        Ok(())
    }

    /// The decision's effect on every attempt of the sitting, checked but not recorded.
    pub async fn pv_plan(
        &self,
        sitting: SittingId,
        req: &PvRequest,
    ) -> Result<(PvPlan, Vec<(RetentionFacts, Fate)>), RetentionError> {
        self.plan_at(sitting, req, self.clock.now()).await
    }

    /// The plan of a decision taken at `now`: the due times it stores are those of the
    /// decision's own time, so the sweep finds them due exactly when the policy does.
    async fn plan_at(
        &self,
        sitting: SittingId,
        req: &PvRequest,
        now: time::OffsetDateTime,
    ) -> Result<(PvPlan, Vec<(RetentionFacts, Fate)>), RetentionError> {
        if !self.db.sitting_exists(sitting).await? {
            return Err(Failure::NotFound("sitting").into());
        }
        if self.db.pv_decision(sitting).await?.is_some() {
            return Err(RetentionError::PvAlreadyDecided);
        }
        let attempts = self.db.attempts_of_sitting(sitting).await?;
        let ids: Vec<AttemptId> = attempts.iter().map(|a| a.id).collect();
        let contested: HashSet<AttemptId> = req.contested.iter().copied().collect();
        match req.outcome {
            PvOutcome::Reservations if contested.is_empty() => {
                return Err(RetentionError::ReservationsNameNoOne)
            }
            PvOutcome::Validated | PvOutcome::Refused if !contested.is_empty() => {
                return Err(RetentionError::ContestedWithoutReservations)
            }
            _ => {}
        }
        if let Some(stranger) = contested.iter().find(|c| !ids.contains(c)) {
            return Err(RetentionError::NotOfThisSitting(*stranger));
        }
        let in_progress = attempts
            .iter()
            .filter(|a| matches!(a.state, AttemptState::Consented | AttemptState::Recording))
            .count();
        let mut facts: HashMap<AttemptId, RetentionFacts> = self
            .db
            .retention_facts(&ids)
            .await?
            .into_iter()
            .map(|f| (f.attempt_id, f))
            .collect();
        let mut planned = Vec::with_capacity(attempts.len());
        let mut effects = Vec::with_capacity(attempts.len());
        for a in &attempts {
            let Some(mut f) = facts.remove(&a.id) else {
                continue;
            };
            if f.destroyed_at_ms.is_some() {
                continue;
            }
            f.pv = Some((req.outcome, unix_ms(now)));
            f.contested = contested.contains(&a.id);
            let r = self.policy.retention_of(&f);
            let (fate, kept_until) = match r {
                Fate::Held => ("held", None),
                Fate::DestroyAt(t) if t <= now => ("destroyed_now", None),
                Fate::DestroyAt(t) => ("kept", Some(t)),
            };
            // Something was recorded and its review is not submitted.
            let review_unsubmitted =
                matches!(a.state, AttemptState::Ended | AttemptState::InReview);
            planned.push(PlannedAttempt {
                attempt_id: a.id,
                reference: self.keys.reference_of(&a),
                contested: f.contested,
                fate,
                kept_until: kept_until.map(rfc3339),
                kept_until_ms: kept_until.map(unix_ms),
                review_unsubmitted,
            });
            effects.push((f, r));
        }
        // By reference as it reads (the database orders by pseudonym).
        planned.sort_by(|a, b| a.reference.cmp(&b.reference));
        let unsubmitted = planned.iter().filter(|p| p.review_unsubmitted).count();
        Ok((
            PvPlan {
                sitting_id: sitting,
                outcome: req.outcome,
                attempts: planned,
                unsubmitted,
                in_progress,
            },
            effects,
        ))
    }

    /// Records the decision and destroys, before answering, what it makes due at once.
    pub async fn decide_pv(
        &self,
        actor: &str,
        sitting: SittingId,
        req: PvRequest,
    ) -> Result<PvResult, RetentionError> {
        if let Some(d) = self.db.pv_decision(sitting).await? {
            return self.replay_pv(&d, &req).await;
        }
        for _ in 0..5 {
            let now = self.clock.now();
            let (plan, effects) = self.plan_at(sitting, &req, now).await?;
            if plan.in_progress > 0 {
                return Err(RetentionError::AttemptsInProgress(plan.in_progress));
            }
            if plan.unsubmitted > 0 && !req.override_unsubmitted {
                return Err(RetentionError::ReviewsUnsubmitted(plan.unsubmitted));
            }
            let at_ms = unix_ms(now);
            let decision = PvDecision {
                sitting_id: sitting,
                outcome: req.outcome,
                decided_at_ms: at_ms,
                decided_by: actor.into(),
                override_unsubmitted: req.override_unsubmitted,
            };
            let updates: Vec<PvUpdate> = effects
                .iter()
                .map(|(f, r)| {
                    let to = f.state.apply(Transition::Decide).unwrap_or(f.state);
                    let due_at_ms = match r {
                        Fate::DestroyAt(t) => Some(unix_ms(*t)),
                        Fate::Held => None,
                    };
                    let event = AuditEvent {
                        at_ms,
                        actor: actor.into(),
                        action: Transition::Decide.audit_action().into(),
                        attempt_id: Some(f.attempt_id),
                        detail: serde_json::json!({ "from": f.state, "to": to, "outcome": req.outcome, "contested": f.contested, "due_at": due_at_ms.map(|t| rfc3339(from_unix_ms(t))) }),
                    };
                    PvUpdate { attempt: f.attempt_id, from: f.state, to, contested: f.contested, due_at_ms, event }
                })
                .collect();
            let event = AuditEvent {
                at_ms,
                actor: actor.into(),
                action: "pv_decided".into(),
                attempt_id: None,
                detail: serde_json::json!({ "sitting_id": sitting, "outcome": req.outcome, "contested": req.contested,
                    "override_unsubmitted": req.override_unsubmitted, "unsubmitted": plan.unsubmitted }),
            };
            let entries = match self.db.record_pv(&decision, &updates, event).await? {
                PvRecorded::Recorded(entries) => entries,
                PvRecorded::AlreadyDecided => return Err(RetentionError::PvAlreadyDecided),
                PvRecorded::Raced => continue,
            };
            if let Some(last) = entries.last() {
                self.audit.checkpoint(last).await?;
            }
            // A crash here leaves decided attempts due now: the worker destroys them at start-up.
            crate::faults::crash_point("after-pv-recorded");
            let due: Vec<RetentionFacts> = effects
                .into_iter()
                .filter(|(_, r)| r.is_due(now))
                .map(|(f, _)| f)
                .collect();
            let destroyed = self.destroy_keys(&due, actor).await;
            // The blobs go in the background (the worker is woken; the CLI purges itself).
            // Should the keys' transaction have failed, the decision stands and its attempts
            // are due now: the worker destroys them within seconds.
            self.wake.notify_one();
            destroyed?;
            // The answer says what was destroyed, read back with its receipts, not what the
            // plan expected: an attempt held or destroyed by another meanwhile says so.
            let (attempts, facts) = self.sitting_facts(sitting).await?;
            let mut result = self.pv_answer(&decision, &attempts, &facts, false);
            let unsubmitted: HashSet<AttemptId> = plan
                .attempts
                .iter()
                .filter(|p| p.review_unsubmitted)
                .map(|p| p.attempt_id)
                .collect();
            for p in &mut result.attempts {
                p.review_unsubmitted = unsubmitted.contains(&p.attempt_id);
            }
            let pending = result.attempts.iter().filter(|p| p.fate == DUE).count();
            if pending > 0 {
                return Err(RetentionError::DestructionPending(pending));
            }
            return Ok(result);
        }
        Err(RetentionError::SittingKeptChanging)
    }

    /// A decision asked again: the same one (outcome and contested candidates) answers what
    /// was recorded, so that a retry after a lost answer is harmless; another is refused.
    async fn replay_pv(&self, d: &PvDecision, req: &PvRequest) -> Result<PvResult, RetentionError> {
        let (attempts, facts) = self.sitting_facts(d.sitting_id).await?;
        let contested: HashSet<AttemptId> = facts
            .values()
            .filter(|f| f.contested)
            .map(|f| f.attempt_id)
            .collect();
        if d.outcome != req.outcome || contested != req.contested.iter().copied().collect() {
            return Err(RetentionError::PvAlreadyDecided);
        }
        Ok(self.pv_answer(d, &attempts, &facts, true))
    }

    /// The attempts of a sitting and what retention knows of each.
    async fn sitting_facts(
        &self,
        sitting: SittingId,
    ) -> Result<(Vec<crate::db::Attempt>, HashMap<AttemptId, RetentionFacts>), RetentionError> {
        let attempts = self.db.attempts_of_sitting(sitting).await?;
        let ids: Vec<AttemptId> = attempts.iter().map(|a| a.id).collect();
        let facts = self
            .db
            .retention_facts(&ids)
            .await?
            .into_iter()
            .map(|f| (f.attempt_id, f))
            .collect();
        Ok((attempts, facts))
    }

    /// What a recorded decision did to each attempt of its sitting, from what is stored:
    /// destroyed (with the receipt) by it, destroyed since for another reason, kept until
    /// a time, held, or due and not destroyed yet (a failed destruction the worker
    /// retries). Attempts destroyed before the decision are not its business.
    fn pv_answer(
        &self,
        d: &PvDecision,
        attempts: &[crate::db::Attempt],
        facts: &HashMap<AttemptId, RetentionFacts>,
        replayed: bool,
    ) -> PvResult {
        let now = self.clock.now();
        let (mut planned, mut receipts) = (Vec::new(), Vec::new());
        for a in attempts {
            let Some(f) = facts.get(&a.id) else { continue };
            let (fate, until) = match (f.destroyed_at_ms, self.policy.retention_of(f)) {
                (Some(t), _) if t < d.decided_at_ms => continue,
                (Some(_), _) if super::reason(f) == "pv_validated" => ("destroyed_now", None),
                (Some(_), _) => ("destroyed", None),
                (None, Fate::Held) => ("held", None),
                (None, Fate::DestroyAt(t)) if t <= now => (DUE, None),
                (None, Fate::DestroyAt(t)) => ("kept", Some(t)),
            };
            if f.destroyed_at_ms.is_some() {
                receipts.extend(
                    f.receipt
                        .as_deref()
                        .and_then(|r| serde_json::from_str::<SignedReceipt>(r).ok()),
                );
            }
            planned.push(PlannedAttempt {
                attempt_id: a.id,
                reference: self.keys.reference_of(&a),
                contested: f.contested,
                fate,
                kept_until: until.map(rfc3339),
                kept_until_ms: until.map(unix_ms),
                review_unsubmitted: false,
            });
        }
        planned.sort_by(|a, b| a.reference.cmp(&b.reference));
        PvResult {
            sitting_id: d.sitting_id,
            outcome: d.outcome,
            decided_at: rfc3339(from_unix_ms(d.decided_at_ms)),
            decided_by: d.decided_by.clone(),
            override_unsubmitted: d.override_unsubmitted,
            attempts: planned,
            receipts,
            replayed,
        }
    }
}
