//! The HTTP vocabulary of failures: every status, stable code and, where waiting helps,
//! `Retry-After` the service answers with (the data channel's results carry the same).
//! The use cases never see it: each has its own error enum, which `errors.rs` maps here.
//! Messages never carry a key, a token or an address.

use crate::lifecycle::InvalidTransition;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("malformed chunk: {0}")]
    MalformedChunk(protocol::Error),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("launch token expired")]
    TokenExpired,
    #[error("launch token revoked")]
    TokenRevoked,
    #[error("{0}")]
    Forbidden(String),
    #[error("consent to the information notice has not been recorded")]
    ConsentRequired,
    #[error("this terminal's certificate has been revoked")]
    TerminalRevoked,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("another chunk is already stored at index {0}")]
    ConflictingChunk(u32),
    #[error("stream ended at index {0}")]
    StreamEnded(u32),
    #[error("this stream is not open: its first chunk (index 0, carrying the stream's opening) has not been stored")]
    StreamNotOpened,
    #[error("{0}")]
    InvalidTransition(#[from] InvalidTransition),
    #[error("the attempt has ended: no new stream can be opened")]
    AttemptEnded,
    #[error("body larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("a Content-Length header is required")]
    LengthRequired,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("too many requests in progress from this network; retry later")]
    TooManyRequests,
    #[error("the request body was cut off")]
    BodyIncomplete,
    #[error("the attempt is under review or decided: its recording is closed")]
    RecordingClosed,
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
    #[error("too many uploads at once for this attempt")]
    TooManyUploads,
    #[error("too many failed logins; try again later")]
    LoginLocked { retry_after_s: u64 },
    #[error("too many wrong launch codes from this address; try again later")]
    CodeLocked { retry_after_s: u64 },
    #[error("the server is busy; retry later")]
    Overloaded,
    #[error("storage is unavailable; retry later")]
    StorageUnavailable,
    #[error("the decision is recorded, but {0} recording(s) it makes due are not destroyed yet: the server retries; ask again for the result")]
    DestructionPending(usize),
    #[error("the server's storage is full: nothing was stored; keep the chunk and retry later")]
    StorageFull,
    #[error("chunk failed authentication: {0}")]
    Unauthentic(protocol::Error),
    #[error("the recording has been destroyed")]
    Gone,
    #[error("the exam is in progress: recordings are reviewed after it ends, nobody watches live")]
    ExamInProgress,
    #[error("the attempt is on legal hold: nothing of it may be modified or deleted")]
    OnHold,
    #[error("the PV of this sitting is already decided: a decision is irreversible")]
    PvAlreadyDecided,
    #[error("{0} review(s) of the sitting are not submitted: decide anyway only by saying so (override_unsubmitted)")]
    ReviewsUnsubmitted(usize),
    #[error("{0}")]
    PasswordRejected(crate::domain::PasswordRejected),
    #[error("a one-time code (TOTP) is required for this account")]
    TotpRequired,
    #[error("{}", match .0 { crate::domain::Pending::PasswordChange => "the password must be changed first", crate::domain::Pending::TotpEnrolment => "a second factor (TOTP) must be set up first" })]
    ActionRequired(crate::domain::Pending),
    /// A stored fragment failed its checks when read back: shown as altered, never played.
    #[error("fragment {index} {why}: altered, not played")]
    FragmentAltered { index: u32, why: &'static str },
    /// A range asked for whole has holes; the player fetches fragment by fragment.
    #[error("fragments missing in the range asked: {0}")]
    FragmentsMissing(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use AppError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            MalformedChunk(_) => (StatusCode::BAD_REQUEST, "malformed_chunk"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            TokenRevoked => (StatusCode::UNAUTHORIZED, "token_revoked"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ConsentRequired => (StatusCode::FORBIDDEN, "consent_required"),
            TerminalRevoked => (StatusCode::FORBIDDEN, "terminal_revoked"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ConflictingChunk(_) => (StatusCode::CONFLICT, "conflicting_chunk"),
            StreamEnded(_) => (StatusCode::CONFLICT, "stream_ended"),
            StreamNotOpened => (StatusCode::CONFLICT, "stream_not_opened"),
            InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            AttemptEnded => (StatusCode::CONFLICT, "attempt_ended"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            LengthRequired => (StatusCode::LENGTH_REQUIRED, "length_required"),
            BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            BodyIncomplete => (StatusCode::REQUEST_TIMEOUT, "body_incomplete"),
            RecordingClosed => (StatusCode::CONFLICT, "recording_closed"),
            IndexOutOfWindow { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "index_out_of_window"),
            MediaTimeOutOfWindow => (StatusCode::UNPROCESSABLE_ENTITY, "media_time_out_of_window"),
            StreamQuota(_) => (StatusCode::TOO_MANY_REQUESTS, "stream_quota_exceeded"),
            ChunkQuota(_) => (StatusCode::TOO_MANY_REQUESTS, "chunk_quota_exceeded"),
            ByteQuota => (StatusCode::TOO_MANY_REQUESTS, "byte_quota_exceeded"),
            TooManyUploads => (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads"),
            LoginLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "login_locked"),
            CodeLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            StorageUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            DestructionPending(_) => (StatusCode::SERVICE_UNAVAILABLE, "destruction_pending"),
            StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            Unauthentic(_) => (StatusCode::UNPROCESSABLE_ENTITY, "authentication_failed"),
            Gone => (StatusCode::GONE, "gone"),
            PvAlreadyDecided => (StatusCode::CONFLICT, "pv_already_decided"),
            ExamInProgress => (StatusCode::CONFLICT, "exam_in_progress"),
            OnHold => (StatusCode::CONFLICT, "on_hold"),
            ReviewsUnsubmitted(_) => (StatusCode::CONFLICT, "reviews_unsubmitted"),
            PasswordRejected(_) => (StatusCode::BAD_REQUEST, "password_rejected"),
            TotpRequired => (StatusCode::UNAUTHORIZED, "totp_required"),
            ActionRequired(crate::domain::Pending::PasswordChange) => {
                (StatusCode::FORBIDDEN, "password_change_required")
            }
            ActionRequired(crate::domain::Pending::TotpEnrolment) => {
                (StatusCode::FORBIDDEN, "totp_enrolment_required")
            }
            FragmentAltered { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "fragment_altered"),
            FragmentsMissing(_) => (StatusCode::CONFLICT, "fragments_missing"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Seconds after which the same request may succeed, when waiting is the remedy.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            AppError::Overloaded => Some(2),
            AppError::StorageUnavailable | AppError::DestructionPending(_) => Some(5),
            AppError::StorageFull => Some(30),
            AppError::TooManyUploads | AppError::TooManyRequests => Some(1),
            AppError::ByteQuota => Some(600),
            AppError::IndexOutOfWindow { .. } | AppError::MediaTimeOutOfWindow => Some(30),
            AppError::LoginLocked { retry_after_s } | AppError::CodeLocked { retry_after_s } => {
                Some(*retry_after_s)
            }
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let retry_after = self.retry_after_s();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: code.to_owned(),
                message: self.to_string(),
            }),
        )
            .into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
