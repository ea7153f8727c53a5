//! How long recordings are kept, and their destruction. `policy` is the one place where
//! the rules live; the rest applies them:
//! - `pv`: the jury's decision on a sitting's minutes, and what it destroys at once;
//! - `destroy`: crypto-shredding (the data keys, in one transaction, with signed receipts)
//!   and then the blobs, resumable after a crash at any step;
//! - `worker`: the sweep that destroys what is due (start-up, every few minutes, row
//!   claims so that instances share it) and the key epochs nothing needs any more;
//! - `rights`: the candidate's rights as the data protection officer exercises them
//!   (erasure, legal holds, the access report, the export).

mod destroy;
pub mod error;
mod export;
pub mod policy;
mod pv;
mod restore;
mod rights;
mod worker;

pub use error::RetentionError;
pub use pv::{PvPlan, PvRequest, PvResult};
pub use rights::AccessEntry;
pub use worker::{spawn_worker, SweepReport};

use crate::clock::from_unix_ms;
use crate::db::{AttemptId, SittingId};
use crate::db::{PvOutcome, RetentionFacts};
use crate::failure::Failure;
use policy::{Facts, Fate, PvDecision};

/// The jury's and the data protection officer's use case: PV decisions, destruction
/// (keys, then blobs), the sweep, holds, erasure, the access report and the export.
pub struct Retention {
    db: std::sync::Arc<dyn crate::db::Database>,
    blobs: crate::blobs::BlobStore,
    keys: crate::keys::KeyStore,
    /// Each destruction's receipt beside the keys, re-applied after a restore.
    tombstones: crate::tombstones::Tombstones,
    clock: crate::clock::SharedClock,
    audit: crate::audit::Audit,
    attempts: crate::attempts::Attempts,
    policy: Policy,
    settings: crate::configuration::RetentionSettings,
    /// A recording may still arrive this long after its exam ends.
    upload_grace: std::time::Duration,
    /// Wakes the worker (a PV validated: its blobs go now, not at the next sweep).
    wake: tokio::sync::Notify,
    /// A destruction whose overwritten pages are still in the database's log: flushed
    /// again at every sweep until it succeeds (`proctor_destroyed_pages_unflushed`).
    unflushed: std::sync::atomic::AtomicBool,
}

/// What `Retention` is built from besides the settings.
pub struct Parts {
    pub db: std::sync::Arc<dyn crate::db::Database>,
    pub blobs: crate::blobs::BlobStore,
    pub keys: crate::keys::KeyStore,
    pub clock: crate::clock::SharedClock,
    pub audit: crate::audit::Audit,
    pub attempts: crate::attempts::Attempts,
    pub policy: Policy,
}

impl Retention {
    pub fn new(p: Parts, settings: &crate::configuration::Settings) -> std::io::Result<Self> {
        Ok(Self {
            db: p.db,
            blobs: p.blobs,
            tombstones: p.keys.tombstones()?,
            keys: p.keys,
            clock: p.clock,
            audit: p.audit,
            attempts: p.attempts,
            policy: p.policy,
            settings: settings.retention.clone(),
            upload_grace: settings.limits.upload_grace,
            wake: tokio::sync::Notify::new(),
            unflushed: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Retention {
    /// The receipts' signing key, public half, as text.
    pub fn receipt_public_key(&self) -> Result<String, RetentionError> {
        Ok(protocol::public_key_text(&self.keys.receipt_signing_key()?))
    }

    /// The sitting's PV decision, if any, and where each of its attempts stands.
    pub async fn pv_status(
        &self,
        sitting: SittingId,
    ) -> Result<(Option<crate::db::PvDecision>, Vec<RetentionStatus>), RetentionError> {
        if !self.db.sitting_exists(sitting).await? {
            return Err(Failure::NotFound("sitting").into());
        }
        let decision = self.db.pv_decision(sitting).await?;
        let mut attempts = Vec::new();
        for a in self.db.attempts_of_sitting(sitting).await? {
            attempts.push(self.policy.attempt_retention(a.id).await?);
        }
        Ok((decision, attempts))
    }
}

/// The policy's view of stored facts.
pub(crate) fn policy_facts(f: &RetentionFacts) -> Facts {
    Facts {
        last_active_at: from_unix_ms(f.last_active_at_ms),
        ended_at: f.ended_at_ms.map(from_unix_ms),
        decision: f.pv.map(|(outcome, at)| {
            let d = match outcome {
                PvOutcome::Validated => PvDecision::ValidatedWithoutReservation,
                PvOutcome::Reservations => PvDecision::ValidatedWithReservations {
                    contested: f.contested,
                },
                PvOutcome::Refused => PvDecision::Refused,
            };
            (d, from_unix_ms(at))
        }),
        erasure_requested_at: f.erasure_requested_at_ms.map(from_unix_ms),
        on_hold: f.hold_reason.is_some(),
        hold_lifted_at: f.hold_lifted_at_ms.map(from_unix_ms),
    }
}

/// Why an attempt is destroyed, as its receipt says.
pub(crate) fn reason(f: &RetentionFacts) -> &'static str {
    if f.erasure_requested_at_ms.is_some() {
        if f.state == crate::lifecycle::AttemptState::Withdrawn {
            return rights::WITHDRAWAL;
        }
        return "erasure_requested";
    }
    match f.pv {
        Some((PvOutcome::Validated, _)) => "pv_validated",
        Some((PvOutcome::Reservations, _)) if !f.contested => "pv_validated",
        Some(_) => "dispute_period_ended",
        None => "ceiling_reached",
    }
}

/// Where an attempt stands: what `attempt show`, `retention status` and the pages say.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetentionStatus {
    pub attempt_id: AttemptId,
    pub sitting_id: SittingId,
    pub reference: String,
    pub state: crate::lifecycle::AttemptState,
    /// The rule that decides (`pv_validated`, `dispute_period_ended`, `ceiling_reached`,
    /// `erasure_requested`, `consent_withdrawn`).
    pub rule: &'static str,
    pub pv_outcome: Option<PvOutcome>,
    pub pv_decided_at: Option<String>,
    pub contested: bool,
    /// On legal hold (its reason is in the audit trail, for the DPO).
    pub legal_hold: bool,
    pub erasure_requested_at: Option<String>,
    /// When it is (or was due to be) destroyed; `None` while held, or once destroyed.
    pub destroy_at: Option<String>,
    #[serde(skip)]
    pub destroy_at_ms: Option<i64>,
    pub destroyed_at: Option<String>,
    pub blobs_purged: bool,
    /// The key epoch its data key is wrapped under (none once destroyed): one older than
    /// the previous month names a survivor whose re-wrap failed, keeping that KEK alive.
    pub kek_epoch: Option<String>,
    /// How many times the recording was exported (each one named in the access report).
    pub exports: u32,
    /// The signed destruction receipt, once destroyed.
    pub receipt: Option<protocol::SignedReceipt>,
}

/// The retention rules read over stored facts: where an attempt stands, what is due.
/// Read only; shared by the use cases that must respect it (review, retention).
#[derive(Clone)]
pub struct Policy {
    db: std::sync::Arc<dyn crate::db::Database>,
    ceiling: policy::Ceiling,
    /// Opens the sealed references the statuses show.
    keys: crate::keys::KeyStore,
}

impl Policy {
    pub fn new(
        db: std::sync::Arc<dyn crate::db::Database>,
        ceiling: policy::Ceiling,
        keys: crate::keys::KeyStore,
    ) -> Self {
        Self { db, ceiling, keys }
    }

    pub(crate) fn retention_status(&self, f: &RetentionFacts) -> RetentionStatus {
        let when = |t: i64| crate::clock::rfc3339(from_unix_ms(t));
        let destroy_at = match (f.destroyed_at_ms, self.retention_of(f)) {
            (None, Fate::DestroyAt(t)) => Some(t),
            _ => None,
        };
        RetentionStatus {
            attempt_id: f.attempt_id,
            sitting_id: f.sitting_id,
            reference: self.keys.reference_in(f),
            state: f.state,
            rule: reason(f),
            pv_outcome: f.pv.map(|p| p.0),
            pv_decided_at: f.pv.map(|p| when(p.1)),
            contested: f.contested,
            legal_hold: f.hold_reason.is_some(),
            erasure_requested_at: f.erasure_requested_at_ms.map(when),
            destroy_at: destroy_at.map(crate::clock::rfc3339),
            destroy_at_ms: destroy_at.map(crate::clock::unix_ms),
            destroyed_at: f.destroyed_at_ms.map(when),
            blobs_purged: f.blobs_purged,
            kek_epoch: f.destroyed_at_ms.is_none().then(|| f.kek_epoch.clone()),
            exports: f.exports,
            receipt: f
                .receipt
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
        }
    }

    /// Every attempt not destroyed yet, with when it will be: soonest first, held last.
    pub async fn retention_overview(&self) -> Result<Vec<RetentionStatus>, Failure> {
        let mut all: Vec<RetentionStatus> = self
            .db
            .pending_retention()
            .await?
            .iter()
            .map(|f| self.retention_status(f))
            .collect();
        all.sort_by_key(|s| (s.destroy_at_ms.is_none(), s.destroy_at_ms));
        Ok(all)
    }

    pub async fn attempt_retention(&self, attempt: AttemptId) -> Result<RetentionStatus, Failure> {
        Ok(self.retention_status(&self.facts(attempt).await?))
    }

    pub(crate) fn retention_of(&self, f: &RetentionFacts) -> Fate {
        policy::retention(&policy_facts(f), self.ceiling)
    }

    pub(crate) async fn facts(&self, attempt: AttemptId) -> Result<RetentionFacts, Failure> {
        self.db
            .retention_facts(&[attempt])
            .await?
            .pop()
            .ok_or(Failure::NotFound("attempt"))
    }
}
