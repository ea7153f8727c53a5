//! The candidate's side: consent, streams and the one ingest path. A chunk is checked
//! (token, attempt state, header, binding, index and media-time window, quotas, GCM tag
//! without decrypting), written once under its digest, recorded by a row that is the
//! only arbiter of what an index holds, and acknowledged only when both are durable.

pub mod commit;
mod error;
pub mod gate;
mod opening;
pub mod window;

pub use error::{BodyRefused, IngestError};
pub use opening::Via;

use crate::attempts::Attempts;
use crate::audit::Audit;
use crate::blobs::BlobStore;
use crate::clock::SharedClock;
use crate::configuration::{CaptureSettings, LimitSettings, NoticeSettings};
use crate::db::*;
use crate::db::{AttemptId, SittingId, StreamId};
use crate::domain::hash_token;
use crate::failure::Failure;
use crate::identity::{AgentIdentity, TokenRefused};
use crate::keys::KeyStore;
use crate::lifecycle::{AttemptState, Transition};
use crate::liveness::Liveness;
use bytes::Bytes;
use gate::IngestGate;
use protocol::api::*;
use protocol::{ChunkHeader, StreamSalt};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// The candidate's use case: everything an agent's token may do.
pub struct Ingest {
    db: Arc<dyn Database>,
    blobs: BlobStore,
    keys: KeyStore,
    clock: SharedClock,
    audit: Audit,
    attempts: Attempts,
    liveness: Arc<Liveness>,
    capture: CaptureSettings,
    limits: LimitSettings,
    notice: NoticeSettings,
    /// The retention ceiling, which the notice states.
    ceiling: crate::retention::policy::Ceiling,
    /// Chunks in flight: memory, concurrency, each attempt's share.
    gate: Arc<IngestGate>,
    /// Upload tests served at once (`gate::UPLOAD_TEST_SLOTS`).
    upload_test_slots: tokio::sync::Semaphore,
    group_commit: commit::GroupCommit,
    /// When each (attempt, incident kind) was last written to the audit trail: a hostile
    /// agent repeating the same refused request must not flood the trail.
    incidents: Mutex<HashMap<(AttemptId, &'static str), i64>>,
}

/// What `Ingest` is built from besides the database and the blobs.
pub struct Parts {
    pub keys: KeyStore,
    pub clock: SharedClock,
    pub audit: Audit,
    pub attempts: Attempts,
    pub liveness: Arc<Liveness>,
}

const INCIDENT_EVERY_MS: i64 = 10 * 60 * 1000;

impl Ingest {
    pub fn new(
        db: Arc<dyn Database>,
        blobs: BlobStore,
        parts: Parts,
        settings: &crate::configuration::Settings,
    ) -> Self {
        let l = &settings.limits;
        Self {
            group_commit: commit::GroupCommit::start(
                db.clone(),
                blobs.clone(),
                parts.clock.clone(),
            ),
            gate: Arc::new(IngestGate::new(
                l.max_concurrent_ingests,
                l.ingest_buffer_bytes,
                l.max_ingests_per_attempt,
            )),
            upload_test_slots: tokio::sync::Semaphore::new(gate::UPLOAD_TEST_SLOTS),
            incidents: Mutex::default(),
            db,
            blobs,
            keys: parts.keys,
            clock: parts.clock,
            audit: parts.audit,
            attempts: parts.attempts,
            liveness: parts.liveness,
            capture: settings.capture.clone(),
            limits: settings.limits.clone(),
            notice: settings.notice.clone(),
            ceiling: settings.retention.ceiling,
        }
    }

    /// A chunk of `length` bytes, arriving by any transport: refused at once when larger
    /// than a chunk may be or when the gate has no room for it (memory, concurrency, the
    /// attempt's share), then read (`read` is given the body's deadline), stored, and
    /// counted in the metrics either way.
    pub async fn receive_chunk<F, R>(
        &self,
        who: &AgentIdentity,
        stream: StreamId,
        index: u32,
        length: u64,
        read: R,
        via: &Via,
        started: Instant,
    ) -> Result<ChunkAck, IngestError>
    where
        R: FnOnce(std::time::Duration) -> F,
        F: std::future::Future<Output = Result<Bytes, BodyRefused>>,
    {
        let outcome = async {
            let limit = self.limits.max_chunk_bytes;
            if length > limit {
                return Err(IngestError::TooLarge(limit));
            }
            let _permit = self.gate.admit(who.attempt.id, length)?;
            let chunk = read(self.limits.body_read_timeout).await?;
            let size = chunk.len();
            Ok((
                self.ingest_chunk(who, stream, index, chunk, via).await?,
                size,
            ))
        }
        .await;
        match &outcome {
            Ok((ack, size)) => crate::metrics::chunk_stored(*size, started.elapsed(), ack.created),
            Err(e) => Self::refused(e),
        }
        outcome.map(|(ack, _)| ack)
    }

    /// A chunk refused before it reached `receive_chunk` (its address, its credential):
    /// counted like the others.
    pub fn refused(e: &IngestError) {
        crate::metrics::chunk_refused(e.reason())
    }

    /// A slot for one upload test (open to anyone: few slots, none queued).
    pub fn upload_test_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, IngestError> {
        self.upload_test_slots
            .try_acquire()
            .map_err(|_| IngestError::Busy)
    }

    /// Any token ever issued for the attempt identifies it; what it may do depends on the
    /// call (see `require_live`).
    pub async fn authenticate_agent(&self, token: &str) -> Result<AgentIdentity, IngestError> {
        // The whole launch token or its credential alone: only the credential is hashed.
        let token = protocol::LaunchToken::parse(token)
            .map(|t| t.credential().to_owned())
            .unwrap_or_else(|_| token.to_owned());
        match self.db.attempt_by_token(hash_token(&token)).await {
            Ok((attempt, token)) => Ok(AgentIdentity { attempt, token }),
            Err(DbError::NotFound) => Err(IngestError::UnknownToken),
            Err(e) => Err(e.into()),
        }
    }

    /// `AgentIdentity::may_carry_on`, as an ingest error.
    pub async fn require_carry_on(&self, who: &AgentIdentity) -> Result<(), IngestError> {
        Ok(who
            .may_carry_on(self.db.as_ref(), self.clock.now_ms())
            .await??)
    }

    /// Once the jury has decided the sitting's PV, no exam of it starts or goes on.
    pub(crate) async fn require_undecided(&self, sitting: SittingId) -> Result<(), IngestError> {
        match self.db.pv_decision(sitting).await? {
            Some(_) => Err(IngestError::AttemptEnded),
            None => Ok(()),
        }
    }

    /// What an agent needs to record without the server (a token issued before
    /// store-and-forward does not carry it).
    pub async fn attempt_info(&self, who: &AgentIdentity) -> Result<AttemptInfo, IngestError> {
        if who.attempt.state == AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        self.require_carry_on(who).await?;
        use base64::Engine;
        let public = self
            .keys
            .attempt_key(&who.attempt)?
            .recipient(&who.attempt.id.as_uuid())
            .1;
        Ok(AttemptInfo {
            attempt_id: who.attempt.id.into(),
            public_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.0),
            notice_version: NOTICE_VERSION.into(),
            fragment_ms: self.capture.fragment_ms,
            max_chunk_bytes: self.limits.max_chunk_bytes,
            state: Some(who.attempt.state.as_str().into()),
        })
    }

    /// The information notice the candidate reads before consenting, as this deployment
    /// words it.
    pub fn notice(&self) -> protocol::notice::Notice {
        protocol::notice::current(&self.notice.dpo_contact, self.ceiling.into())
    }

    /// The candidate refused the notice: recorded (state withdrawn, audited as a refusal)
    /// so that the platform offers another way to sit the exam. Only before any consent.
    pub async fn refuse_consent(
        &self,
        who: &AgentIdentity,
        req: RefusalRequest,
    ) -> Result<AttemptState, IngestError> {
        who.require_live(self.clock.now_ms())?;
        if req.notice_version != NOTICE_VERSION {
            return Err(IngestError::UnknownNotice);
        }
        match who.attempt.state {
            // Asked again (the agent retried after a lost answer): already recorded.
            AttemptState::Withdrawn if who.attempt.consent_at_ms.is_none() => {
                Ok(AttemptState::Withdrawn)
            }
            AttemptState::Destroyed => Err(Failure::Gone.into()),
            _ => self
                .attempts
                .transition(who.attempt.id, Transition::Refuse, "candidate")
                .await
                .map_err(Into::into),
        }
    }

    /// Records consent: given now, or given earlier while the server was unreachable (the
    /// sealed form the agent kept in its spool, with its original time).
    pub async fn record_consent(
        &self,
        who: &AgentIdentity,
        req: ConsentRequest,
    ) -> Result<(), IngestError> {
        // Its key is gone: a kept consent cannot be opened, and nothing may start.
        if who.attempt.state == AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        let (notice_version, given_at) = match &req.sealed {
            None => {
                who.require_live(self.clock.now_ms())?;
                (req.notice_version.clone(), self.clock.now_ms())
            }
            Some(sealed) => {
                let c = self.offline_consent(who, sealed)?;
                if c.notice_version != req.notice_version {
                    return Err(IngestError::ConsentNoticeMismatch);
                }
                // Given while the token was valid: it counts, however late it arrives.
                if who.token.revoked_at_ms.is_some() {
                    return Err(TokenRefused::Revoked.into());
                }
                if who.token.expires_at_ms <= c.given_at_ms {
                    return Err(TokenRefused::Expired.into());
                }
                (c.notice_version, c.given_at_ms)
            }
        };
        // Consent given again (agent restarted, its spool naming the notice it was given
        // under): already recorded, nothing changes, whatever the version is now.
        if matches!(
            who.attempt.state,
            AttemptState::Consented | AttemptState::Recording
        ) {
            return Ok(());
        }
        if notice_version != NOTICE_VERSION {
            return Err(IngestError::UnknownNotice);
        }
        match who.attempt.state {
            AttemptState::Enrolled => {}
            // The whole exam offline: the platform ended it before the consent arrived.
            // Consent given before the end is recorded (the state stays ended), so that the
            // recording made under it can land.
            AttemptState::Ended if who.attempt.consent_at_ms.is_some() => return Ok(()),
            AttemptState::Ended
                if req.sealed.is_some()
                    && who.attempt.ended_at_ms.is_some_and(|end| given_at < end) =>
            {
                self.require_undecided(who.attempt.sitting_id).await?;
                self.db
                    .record_consent(who.attempt.id, &notice_version, given_at)
                    .await?;
                let detail = serde_json::json!({ "notice_version": notice_version, "given_at_ms": given_at, "kept_offline": true, "after_the_end": true });
                self.audit
                    .record(
                        "candidate",
                        "consent_recorded",
                        Some(who.attempt.id),
                        detail,
                    )
                    .await?;
                return Ok(());
            }
            AttemptState::Destroyed => return Err(Failure::Gone.into()),
            from => {
                return Err(crate::lifecycle::InvalidTransition {
                    from,
                    transition: Transition::Consent,
                }
                .into())
            }
        }
        self.require_undecided(who.attempt.sitting_id).await?;
        self.db
            .record_consent(who.attempt.id, &notice_version, given_at)
            .await?;
        let detail = serde_json::json!({ "notice_version": notice_version, "given_at_ms": given_at, "kept_offline": req.sealed.is_some() });
        self.audit
            .record(
                "candidate",
                "consent_recorded",
                Some(who.attempt.id),
                detail,
            )
            .await?;
        match self
            .attempts
            .transition(who.attempt.id, Transition::Consent, "candidate")
            .await
        {
            // A concurrent consent moved it first.
            Ok(_) | Err(Failure::InvalidTransition(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The candidate withdraws consent: no stream opens any more (the caller then has the
    /// recording erased). Sent again after a lost answer, the same answer: the erasure
    /// that may not have followed the first one is then asked again.
    pub async fn withdraw_consent(&self, who: &AgentIdentity) -> Result<AttemptState, IngestError> {
        who.require_live(self.clock.now_ms())?;
        match who.attempt.state {
            AttemptState::Withdrawn => return Ok(AttemptState::Withdrawn),
            AttemptState::Destroyed => return Err(Failure::Gone.into()),
            _ => {}
        }
        self.attempts
            .transition(who.attempt.id, Transition::Withdraw, "candidate")
            .await
            .map_err(Into::into)
    }

    pub async fn open_stream(
        &self,
        who: &AgentIdentity,
        req: OpenStreamRequest,
        client_ip: String,
    ) -> Result<OpenStreamResponse, IngestError> {
        let now = self.clock.now_ms();
        who.require_live(now)?;
        let a = &who.attempt;
        match a.state {
            AttemptState::Enrolled => return Err(IngestError::ConsentRequired),
            AttemptState::Consented | AttemptState::Recording => {}
            AttemptState::Ended
                if a.ended_at_ms
                    .is_some_and(|t| now < t + self.limits.upload_grace.as_millis() as i64) => {}
            AttemptState::Destroyed => return Err(Failure::Gone.into()),
            AttemptState::Withdrawn => {
                return Err(crate::lifecycle::InvalidTransition {
                    from: a.state,
                    transition: Transition::StartRecording,
                }
                .into())
            }
            _ => return Err(IngestError::AttemptEnded),
        }
        self.require_undecided(a.sitting_id).await?;
        let max_streams = self.limits.max_streams_per_attempt;
        let field = |s: &str, name: &str| -> Result<String, IngestError> {
            let t = s.trim();
            if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
                return Err(IngestError::InvalidField(name.to_owned()));
            }
            Ok(t.to_owned())
        };
        let conn = ConnectionInfo {
            client_ip,
            agent_version: field(&req.agent_version, "agent_version")?,
            os: field(&req.os, "os")?,
        };
        let salt = StreamSalt::generate();
        let stream = Stream {
            id: StreamId::random(),
            attempt_id: a.id,
            keying: StreamKeying::Derived { salt: salt.0 },
            opened_at_ms: now,
            ended_at_ms: None,
            final_index: None,
        };
        let dek = self.keys.attempt_key(a)?;
        let key = dek.derive_stream_key(&salt, &a.id.as_uuid(), &stream.id.as_uuid());
        let sealed = crate::keys::seal_connection(&dek, &a.id, &stream.id, &conn)?;
        drop(dek);
        if !self
            .db
            .open_stream(stream.clone(), sealed, max_streams)
            .await?
        {
            self.incident(a.id, "stream_quota_exceeded").await;
            return Err(IngestError::StreamQuota(max_streams));
        }
        if a.state == AttemptState::Consented {
            // Another stream may have moved it first; only a real refusal matters.
            match self
                .attempts
                .transition(a.id, Transition::StartRecording, "candidate")
                .await
            {
                Ok(_) | Err(Failure::InvalidTransition(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(attempt = %a.id, stream = %stream.id, "stream opened");
        crate::metrics::stream_opened();
        use base64::Engine;
        Ok(OpenStreamResponse {
            attempt_id: a.id.into(),
            stream_id: stream.id.into(),
            stream_key: base64::engine::general_purpose::STANDARD.encode(key.to_bytes().as_slice()),
            fragment_ms: self.capture.fragment_ms,
            max_chunk_bytes: self.limits.max_chunk_bytes,
        })
    }

    async fn own_stream(
        &self,
        who: &AgentIdentity,
        stream_id: StreamId,
    ) -> Result<Stream, IngestError> {
        match self.db.stream(stream_id).await {
            Ok(s) if s.attempt_id == who.attempt.id => Ok(s),
            // Another attempt's stream looks exactly like an unknown one: no probing.
            Ok(_) | Err(DbError::NotFound) => Err(Failure::NotFound("stream").into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes an incident to the attempt's audit trail, at most once per kind per 10 min.
    pub(crate) async fn incident(&self, attempt: AttemptId, kind: &'static str) {
        let now = self.clock.now_ms();
        {
            let mut seen = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&(attempt, kind))
                .is_some_and(|t| now - t < INCIDENT_EVERY_MS)
            {
                return;
            }
            if seen.len() > 100_000 {
                seen.retain(|_, t| now - *t < INCIDENT_EVERY_MS);
            }
            seen.insert((attempt, kind), now);
        }
        tracing::warn!(attempt = %attempt, kind, "agent incident");
        if let Err(e) = self
            .audit
            .record(
                "candidate",
                "agent_incident",
                Some(attempt),
                serde_json::json!({ "kind": kind }),
            )
            .await
        {
            tracing::error!(error = %e, "could not audit an incident");
        }
    }

    /// Checks that cost no key and no I/O beyond the rows already read.
    pub(super) async fn check_window(
        &self,
        who: &AgentIdentity,
        stream: &Stream,
        header: &ChunkHeader,
        size: u64,
    ) -> Result<(), IngestError> {
        let l = &self.limits;
        let now = self.clock.now_ms();
        let margin = l.index_window_margin.as_millis() as u64;
        let a = who.attempt.id;
        let max = window::max_index(stream.opened_at_ms, now, self.capture.fragment_ms, margin);
        if u64::from(header.index) > max {
            self.incident(a, "index_out_of_window").await;
            return Err(IngestError::IndexOutOfWindow {
                index: header.index,
                max,
            });
        }
        if header.media_end_us > window::max_media_us(stream.opened_at_ms, now, margin) {
            self.incident(a, "media_time_out_of_window").await;
            return Err(IngestError::MediaTimeOutOfWindow);
        }
        if header.index >= l.max_chunks_per_stream {
            self.incident(a, "chunk_quota_exceeded").await;
            return Err(IngestError::ChunkQuota(l.max_chunks_per_stream));
        }
        let budget = |since: i64| {
            window::byte_budget(
                since,
                now,
                self.capture.bitrate_kbps,
                l.quota_bitrate_multiple,
            )
        };
        let total = who.attempt.bytes_stored + size;
        // Only past one hour's budget is it worth looking up when recording began.
        if total > budget(now) {
            let first = self
                .db
                .streams_of(a)
                .await?
                .first()
                .map_or(now, |s| s.opened_at_ms);
            if total > budget(first) {
                self.incident(a, "byte_quota_exceeded").await;
                return Err(IngestError::ByteQuota);
            }
        }
        Ok(())
    }

    /// The one ingest path, whatever the transport: verify, store durably, then acknowledge.
    /// A chunk of a stream opened while the token was valid lands even if the token has
    /// expired or was revoked since: it is the recording. The first chunk of a stream the
    /// agent keyed itself opens that stream.
    pub async fn ingest_chunk(
        &self,
        who: &AgentIdentity,
        stream_id: StreamId,
        index: u32,
        chunk: Bytes,
        via: &Via,
    ) -> Result<ChunkAck, IngestError> {
        match who.attempt.state {
            AttemptState::Destroyed => return Err(Failure::Gone.into()),
            // Once a reviewer has opened it, the recording under review no longer changes.
            AttemptState::InReview | AttemptState::Reviewed | AttemptState::Decided => {
                return Err(IngestError::RecordingClosed)
            }
            _ => {}
        }
        let started = Instant::now();
        let (header, _) = ChunkHeader::parse(&chunk).map_err(IngestError::MalformedChunk)?;
        if header.attempt != who.attempt.id.as_uuid() {
            return Err(IngestError::SealedForAnotherAttempt);
        }
        if header.stream != stream_id.as_uuid() || header.index != index {
            return Err(IngestError::HeaderMismatch);
        }
        // The stream and any chunk already at this index, in one read.
        let (stream, existing) = match self.db.stream_at(stream_id, index).await {
            Ok((s, existing)) if s.attempt_id == who.attempt.id => (s, existing),
            // Another attempt's stream looks exactly like an unknown one: no probing.
            Ok(_) | Err(DbError::NotFound) => (
                self.open_agent_stream(who, stream_id, &header, &chunk, via)
                    .await?,
                None,
            ),
            Err(e) => return Err(e.into()),
        };
        if let Some(f) = stream.final_index.filter(|f| index > *f) {
            return Err(IngestError::StreamEnded(f));
        }
        self.check_window(who, &stream, &header, chunk.len() as u64)
            .await?;
        crate::metrics::ingest_stage("lookup", started.elapsed());
        let started = Instant::now();
        let key = self.keys.stream_key(&who.attempt, &stream)?;
        let (attempt_id, verify_input) = (who.attempt.id, chunk.clone());
        let (verified, content_sha256, activity) = tokio::task::spawn_blocking(move || {
            use sha2::Digest as _;
            let v =
                protocol::verify_chunk(&key, attempt_id.into(), stream_id.into(), &verify_input)?;
            let sha = <[u8; 32]>::from(sha2::Sha256::digest(&verify_input));
            let activity = side_activity(&key, &v, &verify_input);
            Ok((v, sha, activity))
        })
        .await
        .map_err(|e| Failure::Internal(e.into()))?
        .map_err(IngestError::Unauthentic)?;
        crate::metrics::ingest_stage("verify", started.elapsed());
        let row = ChunkRow {
            stream_id,
            index,
            digest: verified.digest,
            content_sha256,
            prev_digest: header.prev_digest,
            size: chunk.len() as u64,
            media_start_us: header.media_start_us,
            media_end_us: header.media_end_us,
            last: header.last,
            pack: None,
        };
        // A replay or a conflict needs no blob write.
        if let Some(existing) = existing {
            return self.replay_or_conflict(who, existing, row).await;
        }
        let started = Instant::now();
        let stored = self.blobs.put_chunk(who.attempt.id, &row, chunk).await?;
        crate::metrics::ingest_stage("blob_put", started.elapsed());
        let row = ChunkRow {
            pack: stored.place,
            ..row
        };
        // What to delete if the row is refused: an object of its own this upload created.
        let own_object = stored.created_alone.then(|| stored.path.clone());
        self.liveness.agent_heard(who.attempt.id).await?;
        let started = Instant::now();
        let inserted = self
            .group_commit
            .commit(
                NewChunk {
                    attempt: who.attempt.id,
                    row: row.clone(),
                    transport: via.transport,
                    activity,
                },
                stored,
            )
            .await?;
        crate::metrics::ingest_stage("durable", started.elapsed());
        match inserted {
            ChunkInsert::Created => Ok(ChunkAck {
                stream_id: stream_id.into(),
                index,
                digest: hex::encode(row.digest),
                created: true,
            }),
            ChunkInsert::Duplicate => {
                // Same chain digest, other bytes (forged to collide): the row keeps the
                // first. An object of its own is deleted; bytes appended to the stream's
                // file stay there unreferenced until the attempt's purge.
                if let Some(path) = &own_object {
                    if self.db.chunk(stream_id, index).await?.content_sha256 != row.content_sha256 {
                        self.blobs.delete(path).await?;
                    }
                }
                Ok(ChunkAck {
                    stream_id: stream_id.into(),
                    index,
                    digest: hex::encode(row.digest),
                    created: false,
                })
            }
            ChunkInsert::Conflict => {
                // The row of a concurrent upload won; these bytes are referenced by nothing.
                if let Some(path) = &own_object {
                    self.blobs.delete(path).await?;
                }
                let existing = self.db.chunk(stream_id, index).await?;
                self.replay_or_conflict(who, existing, row).await
            }
        }
    }

    async fn replay_or_conflict(
        &self,
        who: &AgentIdentity,
        existing: ChunkRow,
        new: ChunkRow,
    ) -> Result<ChunkAck, IngestError> {
        if existing.digest == new.digest {
            return Ok(ChunkAck {
                stream_id: new.stream_id.into(),
                index: new.index,
                digest: hex::encode(new.digest),
                created: false,
            });
        }
        // Charged like a stored chunk (its tag was checked, its bytes read), and audited
        // like any other incident: at most once per attempt per ten minutes, not once per
        // chunk with a checkpoint written each time.
        self.db.charge_bytes(who.attempt.id, new.size).await?;
        self.incident(who.attempt.id, "chunk_conflict").await;
        Err(IngestError::ConflictingChunk(new.index))
    }

    pub async fn end_stream(
        &self,
        who: &AgentIdentity,
        stream_id: StreamId,
        req: EndStreamRequest,
    ) -> Result<(), IngestError> {
        if who.attempt.state == AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        let stream = self.own_stream(who, stream_id).await?;
        if let Some(f) = stream.final_index {
            if f != req.final_index {
                return Err(IngestError::StreamEnded(f));
            }
        }
        let last = match self.db.chunk(stream_id, req.final_index).await {
            Ok(c) => c,
            Err(DbError::NotFound) => return Err(IngestError::FinalNotStored),
            Err(e) => return Err(e.into()),
        };
        if !last.last {
            return Err(IngestError::NotSealedAsFinal);
        }
        self.db
            .end_stream(stream_id, req.final_index, self.clock.now_ms())
            .await?;
        crate::metrics::stream_ended();
        tracing::info!(attempt = %who.attempt.id, stream = %stream_id, "stream ended");
        Ok(())
    }
}

/// A media fragment's activity, sealed on its own for the strip; empty when it carried
/// none, or one longer than itself (dropped and counted: the media is the recording and
/// stays). `None` only for what the strip never shows (the initialisation segment, the
/// final chunk); a media fragment's `None` means stored before ingest took activity out.
fn side_activity(
    key: &protocol::StreamKey,
    verified: &protocol::VerifiedChunk,
    chunk: &[u8],
) -> Option<Vec<u8>> {
    let h = &verified.header;
    if h.index == 0 || h.last {
        return None;
    }
    Some(match protocol::read_activity(key, verified, chunk) {
        Ok(Some(a)) => protocol::seal_activity(key, h.index, &a),
        Ok(None) => Vec::new(),
        Err(_) => {
            crate::metrics::activity_dropped();
            Vec::new()
        }
    })
}
