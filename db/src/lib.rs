//! The one storage interface of the server. Only this module knows SQL; each backend
//! (`sqlite`, `postgres`, both on `sqlx`) has its own migrations under
//! `migrations/<backend>/`, run at connection, and passes the same conformance suite
//! (`server/tests/conformance`).

pub mod lifecycle;
pub mod records;
pub mod retention;
pub mod review;
mod role;
pub use retention::{
    Destruction, PvDecision, PvOutcome, PvRecorded, PvUpdate, RetentionChange, RetentionFacts,
    RetentionStore,
};
pub use review::{Flag, FlagCategory, Review, ReviewOutcome, Severity};
pub use role::Role;

use crate::lifecycle::AttemptState;
use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

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

pub fn backend(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::RowNotFound => DbError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
        // PostgreSQL's statement timeout (57014, query_canceled), deadlock (40P01) and
        // serialization failure (40001), SQLite's busy and locked (5, 6): the database is
        // there but not now.
        sqlx::Error::Database(d)
            if matches!(
                d.code().as_deref(),
                Some("57014" | "40P01" | "40001" | "5" | "6")
            ) =>
        {
            DbError::Unavailable(d.to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => DbError::Unavailable(e.to_string()),
        other => DbError::Backend(other.to_string()),
    }
}

pub type DbResult<T> = Result<T, DbError>;

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub id: Uuid,
    pub sitting_id: Uuid,
    pub reference: String,
    pub token_hash: [u8; 32],
    pub token_expires_at_ms: i64,
    pub kek_epoch: String,
    pub wrapped_dek: Vec<u8>,
    pub dek_fingerprint: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: Uuid,
    pub sitting_id: Uuid,
    pub reference: String,
    pub kek_epoch: String,
    pub wrapped_dek: Vec<u8>,
    pub consent_notice: Option<String>,
    pub consent_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub state: AttemptState,
    pub ended_at_ms: Option<i64>,
    pub token_generation: u32,
    pub bytes_stored: u64,
}

/// One issue of an attempt's launch token (only its hash is stored).
#[derive(Debug, Clone)]
pub struct LaunchToken {
    pub attempt_id: Uuid,
    pub generation: u32,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub id: Uuid,
    pub attempt_id: Uuid,
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
    pub stream_id: Uuid,
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
}

#[derive(Clone)]
pub struct StaffAccount {
    pub id: Uuid,
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
    pub fn new(id: Uuid, login: String, role: Role, password_hash: String, now_ms: i64) -> Self {
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
    pub attempt_id: Option<Uuid>,
    pub detail: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// What an append to the audit trail says; the database chains it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub attempt_id: Option<Uuid>,
    pub detail: serde_json::Value,
}

/// A chunk row to record, with the attempt whose byte count it adds to.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub attempt: Uuid,
    pub row: ChunkRow,
    pub transport: Transport,
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

#[async_trait]
pub trait Database: RetentionStore + Send + Sync + 'static {
    async fn create_sitting(&self, id: Uuid, reference: &str, at_ms: i64) -> DbResult<()>;
    async fn sitting_exists(&self, id: Uuid) -> DbResult<bool>;
    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()>;
    async fn attempt(&self, id: Uuid) -> DbResult<Attempt>;
    async fn sitting_by_ref(&self, reference: &str) -> DbResult<Uuid>;
    async fn attempt_by_ref(&self, sitting: Uuid, reference: &str) -> DbResult<Attempt>;
    /// The attempt a token was issued for, and that issue, whether expired or revoked.
    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)>;
    async fn token_of(&self, attempt: Uuid, generation: u32) -> DbResult<LaunchToken>;
    /// Revokes every earlier issue and records this one as the current token.
    async fn issue_token(
        &self,
        attempt: Uuid,
        generation: u32,
        token_hash: [u8; 32],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()>;
    /// Returns how many issues were still unrevoked.
    async fn revoke_tokens(&self, attempt: Uuid, at_ms: i64) -> DbResult<u64>;
    /// Keeps a short launch code (its hash) for the attempt until `expires_at_ms`.
    async fn create_launch_code(
        &self,
        code_hash: [u8; 32],
        attempt: Uuid,
        expires_at_ms: i64,
    ) -> DbResult<()>;
    /// Uses a launch code, once: its attempt if it is known, unused and unexpired at
    /// `now_ms` (and marks it used in the same statement), `None` otherwise.
    async fn redeem_launch_code(&self, code_hash: [u8; 32], now_ms: i64) -> DbResult<Option<Uuid>>;
    /// Compare-and-set of the attempt's state (`false` when it was no longer `from`) and the
    /// audit entry that records it, in one transaction: a state never changes unaudited, and
    /// a refused change leaves no entry (`None`). The only way a state changes.
    async fn set_state_audited(
        &self,
        attempt: Uuid,
        from: AttemptState,
        to: AttemptState,
        at_ms: i64,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>>;
    async fn record_consent(&self, attempt: Uuid, notice_version: &str, at_ms: i64)
        -> DbResult<()>;
    /// Records a new stream unless its attempt already has `max_streams`; `false` then.
    /// Counting and inserting are one step, whatever the concurrency.
    /// `connection`: the stream's `ConnectionInfo`, sealed by the server.
    /// Records a new stream unless the attempt has `max_streams` already or a stream with
    /// this id exists (an agent draws its stream ids: two transports may bring the same
    /// first chunk at once). `false` when nothing was written; `stream` tells which.
    async fn open_stream(&self, s: Stream, connection: Vec<u8>, max_streams: u64)
        -> DbResult<bool>;
    /// The attempt's agent was heard from at `at_ms` (a heartbeat, a chunk). If it had been
    /// marked silent, the silence is closed at `at_ms` and its start is returned.
    async fn agent_heard(&self, attempt: Uuid, at_ms: i64) -> DbResult<Option<i64>>;
    /// Marks silent, from their last sign of life, the agents of exams in progress
    /// (consented or recording) not heard from since `before_ms` and not marked yet; each
    /// opens a silence on record. Returns (attempt, silent since).
    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(Uuid, i64)>>;
    /// The attempt's silences, oldest first: (from, to; `None` while it lasts).
    async fn agent_silences(&self, attempt: Uuid) -> DbResult<Vec<(i64, Option<i64>)>>;
    /// How many of the attempt's stored chunks each transport carried.
    async fn chunks_by_transport(&self, attempt: Uuid) -> DbResult<Vec<(Transport, u64)>>;
    async fn stream(&self, id: Uuid) -> DbResult<Stream>;
    async fn streams_of(&self, attempt: Uuid) -> DbResult<Vec<Stream>>;
    async fn end_stream(&self, id: Uuid, final_index: u32, at_ms: i64) -> DbResult<()>;
    /// Records chunks and adds their sizes to their attempts' `bytes_stored`, all in one
    /// transaction (group commit: one durable commit covers many uploaders). Outcomes come
    /// back in the order of `batch`; a later chunk of the batch sees the earlier ones.
    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>>;
    async fn insert_chunk(
        &self,
        attempt: Uuid,
        row: ChunkRow,
        at_ms: i64,
    ) -> DbResult<ChunkInsert> {
        let mut out = self
            .insert_chunks(
                &[NewChunk {
                    attempt,
                    row,
                    transport: Transport::Https,
                }],
                at_ms,
            )
            .await?;
        out.pop()
            .ok_or_else(|| DbError::Backend("no outcome for a one-chunk batch".into()))
    }
    async fn chunk(&self, stream: Uuid, index: u32) -> DbResult<ChunkRow>;
    async fn chunks_of(&self, stream: Uuid) -> DbResult<Vec<ChunkRow>>;
    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()>;
    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount>;
    async fn staff_by_id(&self, id: Uuid) -> DbResult<StaffAccount>;
    async fn list_staff(&self) -> DbResult<Vec<StaffAccount>>;
    /// A new password hash; `must_change` forces a change at the next login (a reset).
    async fn set_password(
        &self,
        staff: Uuid,
        password_hash: &str,
        must_change: bool,
        at_ms: i64,
    ) -> DbResult<()>;
    /// Disables (`Some(time)`) or re-enables (`None`) an account.
    async fn set_disabled(&self, staff: Uuid, disabled_at_ms: Option<i64>) -> DbResult<()>;
    /// Enrols (or, with `None`, removes) the sealed TOTP secret; resets the last step.
    async fn set_totp(&self, staff: Uuid, sealed_secret: Option<Vec<u8>>) -> DbResult<()>;
    /// Records that the TOTP code of `step` was used; `false` when this step or a later
    /// one was already used (a replayed code).
    async fn use_totp_step(&self, staff: Uuid, step: i64) -> DbResult<bool>;
    /// Ends every session of an account (password reset, disabling) but `keep`, if given
    /// (the session that changed the password).
    async fn end_sessions_of(&self, staff: Uuid, keep: Option<[u8; 32]>) -> DbResult<()>;
    async fn setting(&self, key: &str) -> DbResult<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> DbResult<()>;
    /// Lets a staff member see a sitting; assigning twice changes nothing.
    async fn assign_sitting(&self, staff: Uuid, sitting: Uuid, at_ms: i64) -> DbResult<()>;
    async fn is_assigned(&self, staff: Uuid, sitting: Uuid) -> DbResult<bool>;
    async fn create_staff_session(
        &self,
        token_hash: [u8; 32],
        staff: Uuid,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()>;
    /// The account of a session that has neither expired nor been idle `idle_ms` or
    /// longer; marks it seen now (written at most once a minute).
    async fn staff_by_session(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
        idle_ms: i64,
    ) -> DbResult<StaffAccount>;
    async fn end_staff_session(&self, token_hash: [u8; 32]) -> DbResult<()>;
    /// The sittings assigned to a staff member: (id, reference), by reference.
    async fn sittings_of_staff(&self, staff: Uuid) -> DbResult<Vec<(Uuid, String)>>;
    async fn attempts_of_sitting(&self, sitting: Uuid) -> DbResult<Vec<Attempt>>;
    /// The attempt's reviews, by round.
    async fn reviews_of(&self, attempt: Uuid) -> DbResult<Vec<Review>>;
    /// `Conflict` when the attempt already has a review of that round.
    async fn create_review(&self, r: Review) -> DbResult<()>;
    /// Records the outcome if it agrees with the review's flags (irregularities ⇔ at least
    /// one), counted under the review's lock so that no flag change slips in between.
    async fn submit_review(
        &self,
        review: Uuid,
        outcome: ReviewOutcome,
        at_ms: i64,
    ) -> DbResult<Submit>;
    async fn flags_of(&self, attempt: Uuid) -> DbResult<Vec<Flag>>;
    /// Creates or replaces the flag, only while its review is unsubmitted (checked in the
    /// same statement, so a submit racing an edit leaves no edit after it); `false` then.
    async fn save_flag(&self, f: Flag) -> DbResult<bool>;
    /// Same rule as `save_flag`; `false` when nothing was deleted.
    async fn delete_flag(&self, review: Uuid, flag: Uuid) -> DbResult<bool>;
    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry>;
    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>>;
    /// One attempt's entries, in order (the access report).
    async fn audit_of(&self, attempt: Uuid) -> DbResult<Vec<AuditEntry>>;
}

/// Hash of an audit entry: SHA-256 over the previous hash and the entry's fields, so that
/// removing or editing any entry breaks every later hash.
pub fn audit_hash(
    prev: &[u8; 32],
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    attempt: Option<Uuid>,
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
    let mut prev = [0u8; 32];
    let mut expected_seq = 1;
    for e in entries {
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
        expected_seq += 1;
    }
    Ok(())
}
