//! What ingest refuses, in its own words; `routes/errors.rs` gives each its HTTP answer,
//! which the data channel sends too. `reason` names the refusal in the metrics (the same
//! word as the wire code, checked by a test there).

use crate::failure::Failure;
use crate::identity::TokenRefused;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Failure(#[from] Failure),
    #[error(transparent)]
    Token(#[from] TokenRefused),
    #[error(transparent)]
    Body(#[from] BodyRefused),
    /// No attempt has this token.
    #[error("missing or invalid credentials")]
    UnknownToken,
    #[error("body larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("too many uploads at once for this attempt")]
    TooManyUploads,
    /// No memory budget or slot is free in time.
    #[error("the server is busy; retry later")]
    Busy,
    #[error("consent to the information notice has not been recorded")]
    ConsentRequired,
    #[error("the attempt has ended: no new stream can be opened")]
    AttemptEnded,
    #[error("the attempt is under review or decided: its recording is closed")]
    RecordingClosed,
    #[error(
        "unknown notice version; the current one is {}",
        protocol::notice::NOTICE_VERSION
    )]
    UnknownNotice,
    #[error("the sealed consent names another notice version")]
    ConsentNoticeMismatch,
    #[error("sealed consent must be base64")]
    ConsentNotBase64,
    #[error("sealed consent does not open for this attempt")]
    ConsentDoesNotOpen,
    #[error("sealed consent is malformed")]
    ConsentMalformed,
    /// A connection detail the agent reports (`name`) is empty, too long or not printable.
    #[error("{0} must be 1 to 200 printable characters")]
    InvalidField(String),
    #[error("malformed chunk: {0}")]
    MalformedChunk(protocol::Error),
    #[error("chunk failed authentication: {0}")]
    Unauthentic(protocol::Error),
    #[error("chunk is sealed for another attempt")]
    SealedForAnotherAttempt,
    #[error("chunk header does not match the stream and index of the URL")]
    HeaderMismatch,
    #[error("this stream is not open: its first chunk (index 0, carrying the stream's opening) has not been stored")]
    StreamNotOpened,
    #[error("stream ended at index {0}")]
    StreamEnded(u32),
    #[error("another chunk is already stored at index {0}")]
    ConflictingChunk(u32),
    #[error("the final chunk has not been stored yet")]
    FinalNotStored,
    #[error("the chunk at final_index is not sealed as final")]
    NotSealedAsFinal,
    #[error(
        "chunk index {index} is ahead of what the stream can have recorded (at most {max} now)"
    )]
    IndexOutOfWindow { index: u32, max: u64 },
    #[error("media time runs ahead of what the stream can have recorded")]
    MediaTimeOutOfWindow,
    #[error("this attempt may open no more streams ({0})")]
    StreamQuota(u64),
    #[error("this stream may hold no more chunks ({0})")]
    ChunkQuota(u32),
    #[error("this attempt has stored more bytes than its recording time allows; retry later")]
    ByteQuota,
}

/// Why a chunk's body did not arrive whole (its transport reads it, within ingest's time).
#[derive(Debug, thiserror::Error)]
pub enum BodyRefused {
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("the request body was cut off")]
    Incomplete,
    #[error("body longer than its Content-Length")]
    LongerThanDeclared,
}

crate::meets_failures!(IngestError);

impl IngestError {
    /// The refusal's name in `proctor_chunks_refused_total{reason}`.
    pub fn reason(&self) -> &'static str {
        use IngestError::*;
        match self {
            Failure(f) => match f {
                crate::failure::Failure::NotFound(_) => "not_found",
                crate::failure::Failure::Gone => "gone",
                crate::failure::Failure::RoleRefused(_) => "forbidden",
                crate::failure::Failure::InvalidTransition(_) => "invalid_transition",
                crate::failure::Failure::StorageUnavailable => "storage_unavailable",
                crate::failure::Failure::StorageFull => "storage_full",
                crate::failure::Failure::Internal(_) => "internal",
            },
            Token(TokenRefused::Expired) => "token_expired",
            Token(TokenRefused::Revoked) => "token_revoked",
            Body(BodyRefused::Timeout) => "body_timeout",
            Body(BodyRefused::Incomplete) => "body_incomplete",
            Body(BodyRefused::LongerThanDeclared) => "bad_request",
            UnknownToken => "unauthorized",
            TooLarge(_) => "too_large",
            TooManyUploads => "too_many_uploads",
            Busy => "overloaded",
            ConsentRequired => "consent_required",
            AttemptEnded => "attempt_ended",
            RecordingClosed => "recording_closed",
            UnknownNotice
            | ConsentNoticeMismatch
            | ConsentNotBase64
            | ConsentDoesNotOpen
            | ConsentMalformed
            | InvalidField(_)
            | HeaderMismatch => "bad_request",
            MalformedChunk(_) => "malformed_chunk",
            Unauthentic(_) => "authentication_failed",
            SealedForAnotherAttempt => "forbidden",
            StreamNotOpened => "stream_not_opened",
            StreamEnded(_) => "stream_ended",
            ConflictingChunk(_) => "conflicting_chunk",
            FinalNotStored | NotSealedAsFinal => "conflict",
            IndexOutOfWindow { .. } => "index_out_of_window",
            MediaTimeOutOfWindow => "media_time_out_of_window",
            StreamQuota(_) => "stream_quota_exceeded",
            ChunkQuota(_) => "chunk_quota_exceeded",
            ByteQuota => "byte_quota_exceeded",
        }
    }
}
