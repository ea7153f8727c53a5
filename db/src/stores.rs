//! The storage interface by area: one trait each, implemented by each backend in a file
//! of the same name; `Database` is all of them.

use crate::*;
use async_trait::async_trait;

/// Sittings and their attempts, consent, and the audited state change.
#[async_trait]
pub trait AttemptStore: Send + Sync {
    async fn create_sitting(&self, id: SittingId, reference: &str, at_ms: i64) -> DbResult<()>;
    async fn sitting_exists(&self, id: SittingId) -> DbResult<bool>;
    async fn create_attempt(&self, a: NewAttempt) -> DbResult<()>;
    async fn attempt(&self, id: AttemptId) -> DbResult<Attempt>;
    async fn sitting_by_ref(&self, reference: &str) -> DbResult<SittingId>;
    /// By the stored reference: a pseudonym among pseudonymous rows, or an earlier
    /// version's clear reference among rows still in clear.
    async fn attempt_by_ref(
        &self,
        sitting: SittingId,
        stored: &str,
        pseudonymous: bool,
    ) -> DbResult<Attempt>;
    /// Compare-and-set of the attempt's state (`false` when it was no longer `from`) and the
    /// audit entry that records it, in one transaction: a state never changes unaudited, and
    /// a refused change leaves no entry (`None`). The only way a state changes.
    async fn set_state_audited(
        &self,
        attempt: AttemptId,
        from: AttemptState,
        to: AttemptState,
        at_ms: i64,
        event: AuditEvent,
    ) -> DbResult<Option<AuditEntry>>;
    async fn record_consent(
        &self,
        attempt: AttemptId,
        notice_version: &str,
        at_ms: i64,
    ) -> DbResult<()>;
    async fn attempts_of_sitting(&self, sitting: SittingId) -> DbResult<Vec<Attempt>>;
}

/// Launch tokens (every issue, revocation) and short launch codes.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The attempt a token was issued for, and that issue, whether expired or revoked.
    async fn attempt_by_token(&self, token_hash: [u8; 32]) -> DbResult<(Attempt, LaunchToken)>;
    async fn token_of(&self, attempt: AttemptId, generation: u32) -> DbResult<LaunchToken>;
    /// Revokes every earlier issue and records this one as the current token.
    async fn issue_token(
        &self,
        attempt: AttemptId,
        generation: u32,
        token_hash: [u8; 32],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()>;
    /// Returns how many issues were still unrevoked.
    async fn revoke_tokens(&self, attempt: AttemptId, at_ms: i64) -> DbResult<u64>;
    /// Keeps a short launch code (its hash) for the attempt until `expires_at_ms`.
    async fn create_launch_code(
        &self,
        code_hash: [u8; 32],
        attempt: AttemptId,
        expires_at_ms: i64,
    ) -> DbResult<()>;
    /// Uses a launch code, once: its attempt if it is known, unused and unexpired at
    /// `now_ms` (and marks it used in the same statement), `None` otherwise.
    async fn redeem_launch_code(
        &self,
        code_hash: [u8; 32],
        now_ms: i64,
    ) -> DbResult<Option<AttemptId>>;
    /// When `key`'s lock-out ends, if it is locked at `now_ms`.
    async fn code_guess_lock(&self, key: &str, now_ms: i64) -> DbResult<Option<i64>>;
    /// Counts a wrong code against `key` within a window of `window_ms` (a new window once
    /// it is over); at `max` failures the key is locked until `now_ms + lockout_ms`.
    /// Entries whose window and lock-out are both over are evicted. Returns whether the key
    /// is locked now.
    async fn code_guess_failed(
        &self,
        key: &str,
        now_ms: i64,
        window_ms: i64,
        max: u32,
        lockout_ms: i64,
    ) -> DbResult<bool>;
}

/// Agents' signs of life and their silences.
#[async_trait]
pub trait LivenessStore: Send + Sync {
    /// The attempt's agent was heard from at `at_ms` (a heartbeat, a chunk). If it had been
    /// marked silent, the silence is closed at `at_ms` and its start is returned.
    async fn agent_heard(&self, attempt: AttemptId, at_ms: i64) -> DbResult<Option<i64>>;
    /// Marks silent, from their last sign of life, the agents of exams in progress
    /// (consented or recording) not heard from since `before_ms` and not marked yet; each
    /// opens a silence on record. Returns (attempt, silent since).
    async fn mark_silent_agents(&self, before_ms: i64) -> DbResult<Vec<(AttemptId, i64)>>;
    /// The attempt's silences, oldest first: (from, to; `None` while it lasts).
    async fn agent_silences(&self, attempt: AttemptId) -> DbResult<Vec<(i64, Option<i64>)>>;
}

/// Streams and their chunks (group commit).
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records a new stream unless its attempt already has `max_streams`; `false` then.
    /// Counting and inserting are one step, whatever the concurrency.
    /// `connection`: the stream's `ConnectionInfo`, sealed by the server.
    /// Records a new stream unless the attempt has `max_streams` already or a stream with
    /// this id exists (an agent draws its stream ids: two transports may bring the same
    /// first chunk at once). `false` when nothing was written; `stream` tells which.
    async fn open_stream(&self, s: Stream, connection: Vec<u8>, max_streams: u64)
        -> DbResult<bool>;
    /// How many of the attempt's stored chunks each transport carried.
    async fn chunks_by_transport(&self, attempt: AttemptId) -> DbResult<Vec<(Transport, u64)>>;
    async fn stream(&self, id: StreamId) -> DbResult<Stream>;
    /// The stream and, when stored, its chunk at `index`: what ingest reads before each
    /// chunk, in one statement (one round trip, one hand-off to the database's thread).
    async fn stream_at(&self, id: StreamId, index: u32) -> DbResult<(Stream, Option<ChunkRow>)>;
    async fn streams_of(&self, attempt: AttemptId) -> DbResult<Vec<Stream>>;
    async fn end_stream(&self, id: StreamId, final_index: u32, at_ms: i64) -> DbResult<()>;
    /// Records chunks and adds their sizes to their attempts' `bytes_stored`, all in one
    /// transaction (group commit: one durable commit covers many uploaders). Outcomes come
    /// back in the order of `batch`; a later chunk of the batch sees the earlier ones.
    async fn insert_chunks(&self, batch: &[NewChunk], at_ms: i64) -> DbResult<Vec<ChunkInsert>>;
    async fn insert_chunk(
        &self,
        attempt: AttemptId,
        row: ChunkRow,
        at_ms: i64,
    ) -> DbResult<ChunkInsert> {
        let mut out = self
            .insert_chunks(
                &[NewChunk {
                    attempt,
                    row,
                    transport: Transport::Https,
                    activity: None,
                }],
                at_ms,
            )
            .await?;
        out.pop()
            .ok_or_else(|| DbError::Backend("no outcome for a one-chunk batch".into()))
    }
    /// Charges `bytes` to the attempt's quota without storing them: a conflicting chunk
    /// refused after its tag was checked cost what a stored one costs.
    async fn charge_bytes(&self, attempt: AttemptId, bytes: u64) -> DbResult<()>;
    async fn chunk(&self, stream: StreamId, index: u32) -> DbResult<ChunkRow>;
    async fn chunks_of(&self, stream: StreamId) -> DbResult<Vec<ChunkRow>>;
    /// The stream's media fragments (index above 0) as `(index, media start µs, media end
    /// µs, when the server stored it ms)`, in order, at most `limit`: what the timeline
    /// draws, without digests.
    async fn fragment_spans(
        &self,
        stream: StreamId,
        limit: u32,
    ) -> DbResult<Vec<(u32, u64, u64, i64)>>;
    /// The stream's chunks summed up in the database; `limit` bounds each list.
    async fn chunk_summary(&self, stream: StreamId, limit: u32) -> DbResult<ChunkSummary>;
    /// The activity of the stream's media fragments (neither the initialisation segment
    /// nor the final marker) with an index above `after`, in order, at most `limit`: the
    /// strip reads a recording page by page, never every row at once.
    async fn activity_of(
        &self,
        stream: StreamId,
        after: Option<u32>,
        limit: u32,
    ) -> DbResult<Vec<StoredActivity>>;
}

/// Staff accounts, their sessions, TOTP, sitting assignments and settings.
#[async_trait]
pub trait StaffStore: Send + Sync {
    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()>;
    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount>;
    async fn staff_by_id(&self, id: StaffId) -> DbResult<StaffAccount>;
    async fn record_account_event(&self, e: &AccountEvent) -> DbResult<()>;
    /// The newest request of `action` on the account not done yet, made since `since_ms`.
    async fn pending_account_event(
        &self,
        staff: StaffId,
        action: &str,
        since_ms: i64,
    ) -> DbResult<Option<AccountEvent>>;
    /// Marks a pending request done; `false` if it was done already (another instance).
    async fn complete_account_event(
        &self,
        id: uuid::Uuid,
        approved_by: &str,
        at_ms: i64,
    ) -> DbResult<bool>;
    /// The events done on the account that its owner has not seen, oldest first, marked
    /// seen at `at_ms`.
    async fn take_account_notices(&self, staff: StaffId, at_ms: i64)
        -> DbResult<Vec<AccountEvent>>;
    async fn list_staff(&self) -> DbResult<Vec<StaffAccount>>;
    /// A new password hash; `must_change` forces a change at the next login (a reset).
    async fn set_password(
        &self,
        staff: StaffId,
        password_hash: &str,
        must_change: bool,
        at_ms: i64,
    ) -> DbResult<()>;
    /// Disables (`Some(time)`) or re-enables (`None`) an account.
    async fn set_disabled(&self, staff: StaffId, disabled_at_ms: Option<i64>) -> DbResult<()>;
    /// Enrols (or, with `None`, removes) the sealed TOTP secret; resets the last step.
    async fn set_totp(&self, staff: StaffId, sealed_secret: Option<Vec<u8>>) -> DbResult<()>;
    /// Records that the TOTP code of `step` was used; `false` when this step or a later
    /// one was already used (a replayed code).
    async fn use_totp_step(&self, staff: StaffId, step: i64) -> DbResult<bool>;
    /// Ends every session of an account (password reset, disabling) but `keep`, if given
    /// (the session that changed the password).
    async fn end_sessions_of(&self, staff: StaffId, keep: Option<[u8; 32]>) -> DbResult<()>;
    async fn setting(&self, key: &str) -> DbResult<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> DbResult<()>;
    /// Lets a staff member see a sitting; assigning twice changes nothing.
    async fn assign_sitting(&self, staff: StaffId, sitting: SittingId, at_ms: i64) -> DbResult<()>;
    /// Removes an assignment; `false` when there was none.
    async fn unassign_sitting(&self, staff: StaffId, sitting: SittingId) -> DbResult<bool>;
    async fn is_assigned(&self, staff: StaffId, sitting: SittingId) -> DbResult<bool>;
    async fn create_staff_session(
        &self,
        token_hash: [u8; 32],
        staff: StaffId,
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
    async fn sittings_of_staff(&self, staff: StaffId) -> DbResult<Vec<(SittingId, String)>>;
}

/// Reviews, their outcomes and flags.
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// The attempt's reviews, by round.
    async fn reviews_of(&self, attempt: AttemptId) -> DbResult<Vec<Review>>;
    /// `Conflict` when the attempt already has a review of that round.
    async fn create_review(&self, r: Review) -> DbResult<()>;
    /// Records the outcome if it agrees with the review's flags (irregularities ⇔ at least
    /// one), counted under the review's lock so that no flag change slips in between.
    async fn submit_review(
        &self,
        review: ReviewId,
        outcome: ReviewOutcome,
        at_ms: i64,
    ) -> DbResult<Submit>;
    async fn flags_of(&self, attempt: AttemptId) -> DbResult<Vec<Flag>>;
    /// Creates or replaces the flag, only while its review is unsubmitted (checked in the
    /// same statement, so a submit racing an edit leaves no edit after it); `false` then.
    async fn save_flag(&self, f: Flag) -> DbResult<bool>;
    /// Same rule as `save_flag`; `false` when nothing was deleted.
    async fn delete_flag(&self, review: ReviewId, flag: FlagId) -> DbResult<bool>;
}

/// The audit trail, append-only and hash-chained.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, e: AuditEvent) -> DbResult<AuditEntry>;
    async fn audit_trail(&self) -> DbResult<Vec<AuditEntry>>;
    /// The kept entries after `after`, oldest first, at most `limit`.
    async fn audit_page(&self, after: i64, limit: u32) -> DbResult<Vec<AuditEntry>>;
    /// The newest `limit` entries, newest first.
    async fn audit_newest(&self, limit: u32) -> DbResult<Vec<AuditEntry>>;
    async fn audit_count(&self) -> DbResult<u64>;
    /// One attempt's entries, in order (the access report).
    async fn audit_of(&self, attempt: AttemptId) -> DbResult<Vec<AuditEntry>>;
    /// The segments retired so far, oldest first.
    async fn audit_segments(&self) -> DbResult<Vec<RetiredSegment>>;
    /// The newest entry dated before `at_ms` (what retention may retire up to).
    async fn last_audit_before(&self, at_ms: i64) -> DbResult<Option<AuditEntry>>;
    /// Records the segment and deletes the entries it covers, in one transaction with the
    /// event that says so (appended first: the newest entry always stays, and the chain
    /// goes on from it). Returns that event's entry.
    async fn retire_audit(
        &self,
        segment: RetiredSegment,
        event: AuditEvent,
    ) -> DbResult<AuditEntry>;
}
