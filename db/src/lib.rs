//! The one storage interface of the server, by area (`stores.rs`), with no SQL and no
//! driver: each backend crate (`db-sqlite`, `db-postgres`, both on `sqlx`) owns its
//! queries (one file per area), its migrations (under its own `migrations/`, numbered
//! alike), the mapping of its driver's errors to `DbError`, and passes the same
//! conformance suite (`server/tests/conformance`).

pub mod batch;
mod ids;
pub mod lifecycle;
pub mod packs;
pub mod records;
pub mod retention;
pub mod review;
mod role;
mod stores;
pub use ids::{AttemptId, FlagId, ReviewId, SittingId, StaffId, StreamId};
pub use packs::{PackPlace, PackStore, Packed};
pub use retention::{
    Destruction, PvDecision, PvOutcome, PvRecorded, PvUpdate, RetentionChange, RetentionFacts,
    RetentionStore,
};
pub use review::{Flag, FlagCategory, Review, ReviewOutcome, Severity};
pub use role::Role;
pub use stores::{
    AttemptStore, AuditStore, LivenessStore, MediaStore, ReviewStore, StaffStore, TokenStore,
};

use crate::lifecycle::AttemptState;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Conflict,
    /// The database cannot be reached or has no connection free: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Backend(String),
}

/// Pool sizes, timeouts and start-up retries (`[database]` in the configuration).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub connect_retries: u32,
}

pub type DbResult<T> = Result<T, DbError>;

/// The platform's reference of a candidate as the database keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredReference {
    /// A keyed pseudonym (unique in its sitting, what look-ups match) and the reference
    /// itself sealed under the attempt's data key (`None` once destroyed).
    Pseudonymous {
        pseudonym: String,
        sealed: Option<Vec<u8>>,
    },
    /// An earlier version's row, until the server seals it.
    Clear(String),
}

impl StoredReference {
    /// `(ref, ref_sealed, ref_is_pseudonym)`, the columns.
    pub fn columns(&self) -> (&str, Option<&[u8]>, bool) {
        match self {
            Self::Pseudonymous { pseudonym, sealed } => (pseudonym, sealed.as_deref(), true),
            Self::Clear(r) => (r, None, false),
        }
    }

    pub fn from_columns(stored: String, sealed: Option<Vec<u8>>, pseudonymous: bool) -> Self {
        if pseudonymous {
            Self::Pseudonymous {
                pseudonym: stored,
                sealed,
            }
        } else {
            Self::Clear(stored)
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub id: AttemptId,
    pub sitting_id: SittingId,
    pub reference: StoredReference,
    pub token_hash: [u8; 32],
    pub token_expires_at_ms: i64,
    pub kek_epoch: String,
    pub wrapped_dek: Vec<u8>,
    pub dek_fingerprint: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub sitting_id: SittingId,
    pub reference: StoredReference,
    pub kek_epoch: String,
    pub wrapped_dek: Vec<u8>,
    pub consent_notice: Option<String>,
    pub consent_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub state: AttemptState,
    pub ended_at_ms: Option<i64>,
    pub token_generation: u32,
    /// Bytes charged to the attempt's quota: its stored chunks, and the conflicting chunks
    /// refused after their tag was checked.
    pub bytes_stored: u64,
}

/// One issue of an attempt's launch token (only its hash is stored).
#[derive(Debug, Clone)]
pub struct LaunchToken {
    pub attempt_id: AttemptId,
    pub generation: u32,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub id: StreamId,
    pub attempt_id: AttemptId,
    pub keying: StreamKeying,
    pub opened_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub final_index: Option<u32>,
}

/// Where a stream's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKeying {
    /// Drawn by the server when the agent asked it to open the stream: HKDF of the data
    /// key with this salt (agents before store-and-forward).
    Derived { salt: [u8; 32] },
    /// Drawn by the agent and sealed to the attempt's public key: the stream's opening
    /// (`protocol::StreamOpening`), as its first chunk carried it.
    Opening(Vec<u8>),
}

/// Which transport carried a chunk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Https,
    Webrtc,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Https => "https",
            Transport::Webrtc => "webrtc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "https" => Some(Transport::Https),
            "webrtc" => Some(Transport::Webrtc),
            _ => None,
        }
    }
}

/// Connection data kept with the attempt (personal data under the recording's retention):
/// stored only sealed under the attempt's data key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectionInfo {
    pub client_ip: String,
    pub agent_version: String,
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub stream_id: StreamId,
    pub index: u32,
    /// The chain digest, SHA-256(header ‖ tag).
    pub digest: [u8; 32],
    /// SHA-256 of the chunk's whole bytes: names its object in the blob store.
    pub content_sha256: [u8; 32],
    pub prev_digest: [u8; 32],
    pub size: u64,
    pub media_start_us: u64,
    pub media_end_us: u64,
    pub last: bool,
    /// Set once its stream is packed: the chunk's bytes are in a pack, not on their own.
    pub pack: Option<PackPlace>,
}

#[derive(Clone)]
pub struct StaffAccount {
    pub id: StaffId,
    pub login: String,
    pub role: Role,
    pub password_hash: String,
    pub disabled_at_ms: Option<i64>,
    /// Set at creation and by a reset: the next login must choose a password first.
    pub must_change_password: bool,
    pub password_changed_at_ms: i64,
    /// The TOTP secret, sealed by the server's key store; `None` until enrolled.
    pub totp_secret: Option<Vec<u8>>,
}

impl StaffAccount {
    /// A new, enabled account whose first login must change the password.
    pub fn new(id: StaffId, login: String, role: Role, password_hash: String, now_ms: i64) -> Self {
        Self {
            id,
            login,
            role,
            password_hash,
            disabled_at_ms: None,
            must_change_password: true,
            password_changed_at_ms: now_ms,
            totp_secret: None,
        }
    }
}

/// Secrets stay out of logs: the hash and the sealed TOTP secret are not printed.
impl std::fmt::Debug for StaffAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffAccount")
            .field("id", &self.id)
            .field("login", &self.login)
            .field("role", &self.role)
            .field("disabled_at_ms", &self.disabled_at_ms)
            .field("must_change_password", &self.must_change_password)
            .field("totp", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub attempt_id: Option<AttemptId>,
    pub detail: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Entries that left the trail at the end of their retention: the first and the last, the
/// last one's chained hash (what the first kept entry chains onto), and the server's
/// signed statement of it (`protocol::SignedSegment`, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredSegment {
    pub from_seq: i64,
    pub up_to_seq: i64,
    pub last_hash: [u8; 32],
    pub signed: String,
}

/// What an append to the audit trail says; the database chains it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub attempt_id: Option<AttemptId>,
    pub detail: serde_json::Value,
}

/// A chunk row to record, with the attempt whose byte count it adds to.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub attempt: AttemptId,
    pub row: ChunkRow,
    pub transport: Transport,
    /// The fragment's activity, taken out at ingest and sealed on its own (empty: it
    /// carried none, or one longer than itself; `None`: not a media fragment).
    pub activity: Option<Vec<u8>>,
}

/// What the database computes of a stream's chunks for the report and the queue, without
/// handing over its rows (up to hundreds of thousands): counts, bounds, and the first
/// holes and broken chain links, at most as many as asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkSummary {
    pub stored: u64,
    pub has_init: bool,
    /// The highest stored index.
    pub max_index: Option<u32>,
    /// The highest stored index is the stream's final chunk.
    pub final_stored: bool,
    /// Media span of the media fragments: earliest start, latest end.
    pub media_start_us: Option<u64>,
    pub media_end_us: Option<u64>,
    /// Missing index ranges `(from, to)` below the highest stored index, in order.
    pub missing: Vec<(u32, u32)>,
    /// Indices whose recorded link does not match their predecessor's digest, in order.
    pub broken: Vec<u32>,
    /// When the server stored the stream's first and last chunk (server clock): what
    /// arrived when, whatever times the agent claims.
    pub first_stored_ms: Option<i64>,
    pub last_stored_ms: Option<i64>,
}

/// Something an admin did (or asked to do) to a staff account: its owner reads it at their
/// next login; a password reset waits here for a second admin (`done_at_ms` unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    pub id: uuid::Uuid,
    pub staff_id: StaffId,
    /// `password_reset` or `totp_removed`.
    pub action: String,
    pub requested_by: String,
    pub requested_at_ms: i64,
    pub approved_by: Option<String>,
    pub done_at_ms: Option<i64>,
}

/// A media fragment's sealed activity, as the strip reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredActivity {
    pub index: u32,
    pub media_start_us: u64,
    /// Sealed; empty when the fragment had none; `None` when it was stored before ingest
    /// took activity out (migration 0014).
    pub sealed: Option<Vec<u8>>,
}

/// Outcome of submitting a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    /// With the number of the review's flags, counted under the lock.
    Submitted(u32),
    AlreadySubmitted,
    /// The outcome disagrees with this many flags.
    Disagrees(u32),
}

/// Outcome of recording a chunk row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkInsert {
    Created,
    /// The same bytes were already recorded: idempotent replay.
    Duplicate,
    /// Another chunk already holds this index.
    Conflict,
}

/// Everything the server stores: each area's trait, implemented by every backend.
pub trait Database:
    AttemptStore
    + TokenStore
    + LivenessStore
    + MediaStore
    + PackStore
    + StaffStore
    + ReviewStore
    + AuditStore
    + RetentionStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Database for T where
    T: AttemptStore
        + TokenStore
        + LivenessStore
        + MediaStore
        + PackStore
        + StaffStore
        + ReviewStore
        + AuditStore
        + RetentionStore
        + Send
        + Sync
        + 'static
{
}

/// Hash of an audit entry: SHA-256 over the previous hash and the entry's fields, so that
/// removing or editing any entry breaks every later hash.
pub fn audit_hash(
    prev: &[u8; 32],
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    attempt: Option<AttemptId>,
    detail: &str,
) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for field in [
        actor,
        action,
        &attempt.map(|a| a.to_string()).unwrap_or_default(),
        detail,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

/// New events chained after the last entry (its seq and hash; `None` for an empty
/// trail), as the backends then store them in one statement.
pub fn chain_events(last: Option<(i64, [u8; 32])>, events: Vec<AuditEvent>) -> Vec<AuditEntry> {
    let (mut seq, mut prev) = last.unwrap_or((0, [0u8; 32]));
    events
        .into_iter()
        .map(|e| {
            seq += 1;
            let detail = e.detail.to_string();
            let hash = audit_hash(
                &prev,
                seq,
                e.at_ms,
                &e.actor,
                &e.action,
                e.attempt_id,
                &detail,
            );
            let entry = AuditEntry {
                seq,
                at_ms: e.at_ms,
                actor: e.actor,
                action: e.action,
                attempt_id: e.attempt_id,
                detail,
                prev_hash: prev,
                hash,
            };
            prev = hash;
            entry
        })
        .collect()
}

/// Verifies the chain; returns the seq of the first entry that does not chain.
pub fn verify_audit_chain(entries: &[AuditEntry]) -> Result<(), i64> {
    verify_audit_chain_from(entries, 1, [0u8; 32])
}

/// The chain from a retired segment on: the first entry is `first_seq` and chains onto
/// `prev` (the segment's last hash).
pub fn verify_audit_chain_from(
    entries: &[AuditEntry],
    first_seq: i64,
    mut prev: [u8; 32],
) -> Result<(), i64> {
    for (expected_seq, e) in (first_seq..).zip(entries) {
        let h = audit_hash(
            &prev,
            e.seq,
            e.at_ms,
            &e.actor,
            &e.action,
            e.attempt_id,
            &e.detail,
        );
        if e.seq != expected_seq || e.prev_hash != prev || e.hash != h {
            return Err(e.seq);
        }
        prev = e.hash;
    }
    Ok(())
}
