//! What the retention rules read and what destruction writes, as stored. The rules
//! themselves are the server's (`server/src/retention/policy.rs`); this is only their
//! facts, the jury's decision, and the one-transaction steps of destruction.

use crate::lifecycle::AttemptState;
use crate::{AttemptId, FlagId, SittingId, StreamId};
use crate::{AuditEntry, AuditEvent, DbResult};
use async_trait::async_trait;

crate::review::named_enum! {
    /// The jury's decision on a sitting's minutes (PV).
    PvOutcome { Validated = "validated", Reservations = "reservations", Refused = "refused" }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvDecision {
    pub sitting_id: SittingId,
    pub outcome: PvOutcome,
    pub decided_at_ms: i64,
    pub decided_by: String,
    /// The jury decided while reviews were unsubmitted, and said so.
    pub override_unsubmitted: bool,
}

/// An attempt's retention facts, destruction state and receipt.
#[derive(Debug, Clone)]
pub struct RetentionFacts {
    pub attempt_id: AttemptId,
    pub sitting_id: SittingId,
    /// The platform's reference of the candidate, as stored.
    pub reference: crate::StoredReference,
    /// The data key, wrapped (empty once destroyed): what opens the sealed reference.
    pub wrapped_dek: Vec<u8>,
    pub state: AttemptState,
    pub created_at_ms: i64,
    /// The latest of creation, a launch token issued, a state change.
    pub last_active_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// The sitting's PV decision and its time.
    pub pv: Option<(PvOutcome, i64)>,
    pub contested: bool,
    pub erasure_requested_at_ms: Option<i64>,
    pub hold_reason: Option<String>,
    pub hold_lifted_at_ms: Option<i64>,
    /// Fixed by a decision, an erasure or a lifted hold; `None`: the ceiling from the end.
    pub due_at_ms: Option<i64>,
    pub destroyed_at_ms: Option<i64>,
    /// The signed receipt, JSON.
    pub receipt: Option<String>,
    pub blobs_purged: bool,
    pub kek_epoch: String,
    pub dek_fingerprint: String,
    /// Exports of the recording (to the DPO, for the candidate's right of access) so far.
    pub exports: u32,
}

/// One attempt's part of a PV decision: its state change (compare-and-set) and its facts.
#[derive(Debug, Clone)]
pub struct PvUpdate {
    pub attempt: AttemptId,
    pub from: AttemptState,
    pub to: AttemptState,
    pub contested: bool,
    /// `None` while a legal hold stands (its lift fixes the due time).
    pub due_at_ms: Option<i64>,
    pub event: AuditEvent,
}

#[derive(Debug, Clone)]
pub enum PvRecorded {
    /// The decision's audit entry last.
    Recorded(Vec<AuditEntry>),
    AlreadyDecided,
    /// An attempt changed state meanwhile: nothing was written; read again and retry.
    Raced,
}

/// A change of an attempt's retention facts, audited in the same transaction.
#[derive(Debug, Clone)]
pub enum RetentionChange {
    /// The candidate asked for erasure (or withdrew consent): due at once.
    Erasure {
        at_ms: i64,
    },
    Hold {
        reason: String,
    },
    /// Lifting a hold: the due time the policy gives from the lift.
    Lift {
        at_ms: i64,
        due_at_ms: i64,
    },
}

/// One attempt to destroy: its signed receipt and the audit entry that says so.
#[derive(Debug, Clone)]
pub struct Destruction {
    pub attempt: AttemptId,
    /// What the reference becomes: its keyed pseudonym, with nothing sealed beside it.
    pub pseudonym: String,
    pub receipt_json: String,
    pub at_ms: i64,
    pub event: AuditEvent,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Records the sitting's decision and every attempt's part in one transaction.
    async fn record_pv(
        &self,
        d: &PvDecision,
        updates: &[PvUpdate],
        event: AuditEvent,
    ) -> DbResult<PvRecorded>;
    async fn pv_decision(&self, sitting: SittingId) -> DbResult<Option<PvDecision>>;
    /// The facts of these attempts (unknown ids are left out), in no particular order.
    async fn retention_facts(&self, ids: &[AttemptId]) -> DbResult<Vec<RetentionFacts>>;
    /// Every attempt not destroyed yet (`retention status`), in no particular order.
    async fn pending_retention(&self) -> DbResult<Vec<RetentionFacts>>;
    /// `None` when nothing changed: the attempt is destroyed, or already (not) held.
    async fn change_retention(
        &self,
        attempt: AttemptId,
        change: RetentionChange,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>>;
    /// Claims up to `limit` attempts that may be due: not destroyed, not held, not
    /// claimed by another worker now, and either due by `due_at` or, with none, ended (or
    /// created) at or before `undecided_cutoff_ms`. Each stays claimed until
    /// `now_ms + lease_ms`; concurrent claimers, on any instance, get disjoint sets.
    async fn claim_due(
        &self,
        now_ms: i64,
        undecided_cutoff_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<RetentionFacts>>;
    /// Destroys the data keys of these attempts, in one transaction: the wrapped key is
    /// overwritten, the state set to destroyed with the receipt, connection data and flag
    /// notes purged, the audit entries appended. Attempts already destroyed, on hold, or
    /// whose fixed due time is still ahead (a hold lifted meanwhile) are skipped. Returns
    /// the audit entries written.
    async fn destroy_attempts(&self, batch: &[Destruction]) -> DbResult<Vec<AuditEntry>>;
    /// Destroyed attempts whose blobs are not all deleted yet, and those destroyed since
    /// `recent_since_ms` that have chunk rows again (an upload in flight at the moment of
    /// destruction that landed after the purge).
    async fn unpurged(&self, recent_since_ms: i64, limit: u32) -> DbResult<Vec<AttemptId>>;
    /// Every blob of these attempts is deleted: their chunk rows go, they are purged.
    async fn finish_purge(&self, attempts: &[AttemptId], at_ms: i64) -> DbResult<()>;
    /// The attempts of an epoch not destroyed yet, with their wrapped data keys.
    async fn live_keys_of_epoch(&self, epoch: &str) -> DbResult<Vec<(AttemptId, Vec<u8>)>>;
    /// Moves an attempt's data key under another epoch's KEK, if it is still wrapped as
    /// read (`false` otherwise: destroyed or moved meanwhile).
    async fn rewrap(
        &self,
        attempt: AttemptId,
        old: (&str, &[u8]),
        new: (&str, &[u8]),
    ) -> DbResult<bool>;
    /// Each key epoch with its number of attempts not destroyed.
    async fn epochs(&self) -> DbResult<Vec<(String, u64)>>;
    /// Streams whose connection data a version before sealing stored in clear:
    /// (stream, attempt, the clear data).
    async fn clear_connections(
        &self,
        limit: u32,
    ) -> DbResult<Vec<(StreamId, AttemptId, crate::ConnectionInfo)>>;
    /// Replaces a stream's clear connection data by its sealed form (`None`: drops it).
    async fn seal_connection(&self, stream: StreamId, sealed: Option<Vec<u8>>) -> DbResult<()>;
    /// Attempts whose reference an earlier version stored in clear.
    async fn clear_references(&self, limit: u32) -> DbResult<Vec<AttemptId>>;
    /// Replaces an attempt's stored reference (its clear form by the pseudonymous one).
    async fn set_reference(&self, attempt: AttemptId, r: &crate::StoredReference) -> DbResult<()>;
    /// Flags whose note an earlier version stored in clear: (flag, attempt, note).
    async fn clear_notes(
        &self,
        sealed_prefix: &str,
        limit: u32,
    ) -> DbResult<Vec<(FlagId, AttemptId, String)>>;
    /// Replaces a flag's note (its sealed form).
    async fn set_note(&self, flag: FlagId, note: &str) -> DbResult<()>;
    /// Moves what destruction overwrote out of the write-ahead log into the database file,
    /// where it is overwritten (SQLite: a truncating checkpoint, `secure_delete` zeroing
    /// freed pages). `false` when a reader held the log and it must be tried again.
    /// PostgreSQL keeps old row versions until vacuum and its WAL as archived: only the
    /// KEK's destruction covers those (docs/dpia.md), so there it has nothing to do.
    async fn flush_destroyed(&self) -> DbResult<bool>;
    /// The sealed connection data of an attempt's streams (stream, sealed bytes).
    async fn connections_of(&self, attempt: AttemptId) -> DbResult<Vec<(StreamId, Vec<u8>)>>;
}
