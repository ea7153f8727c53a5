//! Each use case's errors in HTTP: status, stable code and message through `AppError`
//! (`error.rs`), in one place; `webrtc.rs` answers a data channel's chunk with the
//! same mapping.

use crate::routes::error::AppError;

/// The shared failures' HTTP answers (each use case's own enum maps through this).
impl From<crate::failure::Failure> for AppError {
    fn from(e: crate::failure::Failure) -> Self {
        use crate::failure::Failure;
        match e {
            Failure::NotFound(what) => AppError::NotFound(what),
            Failure::Gone => AppError::Gone,
            Failure::RoleRefused(why) => AppError::Forbidden(why.into()),
            Failure::InvalidTransition(t) => AppError::InvalidTransition(t),
            Failure::StorageUnavailable => AppError::StorageUnavailable,
            Failure::StorageFull => AppError::StorageFull,
            Failure::Internal(e) => AppError::Internal(e),
        }
    }
}

impl From<crate::review::ReviewError> for AppError {
    fn from(e: crate::review::ReviewError) -> Self {
        use crate::review::ReviewError::*;
        let message = e.to_string();
        match e {
            Failure(f) => f.into(),
            ExamInProgress => AppError::ExamInProgress,
            OnHold => AppError::OnHold,
            FragmentAltered { index, why } => AppError::FragmentAltered { index, why },
            FragmentsMissing(ranges) => AppError::FragmentsMissing(ranges),
            NotAReviewer => AppError::Forbidden(message),
            FlagSpan | FlagNote | NoSuchReviewer | SameReviewer => AppError::BadRequest(message),
            NotYourReview
            | NotReviewableYet(_)
            | ReviewTaken
            | AlreadySubmitted
            | IrregularitiesWithoutFlag
            | FlagsDisagree(_)
            | FirstReviewPending
            | SecondReviewExists => AppError::Conflict(message),
        }
    }
}

impl From<crate::retention::RetentionError> for AppError {
    fn from(e: crate::retention::RetentionError) -> Self {
        use crate::retention::RetentionError::*;
        let message = e.to_string();
        match e {
            Failure(f) => f.into(),
            NotTheJury => AppError::Forbidden(message),
            PvAlreadyDecided => AppError::PvAlreadyDecided,
            ReviewsUnsubmitted(n) => AppError::ReviewsUnsubmitted(n),
            ReservationsNameNoOne
            | ContestedWithoutReservations
            | NotOfThisSitting(_)
            | ReasonMissing(_)
            | NotAnAgeRecipient(_)
            | ExportTarget(_) => AppError::BadRequest(message),
            DestructionPending(n) => AppError::DestructionPending(n),
            AttemptsInProgress(_) | SittingKeptChanging | AlreadyOnHold | NotOnHold => {
                AppError::Conflict(message)
            }
        }
    }
}

impl From<crate::accounts::AccountsError> for AppError {
    fn from(e: crate::accounts::AccountsError) -> Self {
        use crate::accounts::AccountsError::*;
        let message = e.to_string();
        match e {
            Failure(f) => f.into(),
            BadCredentials => AppError::Unauthorized,
            LoginLocked { retry_after_s } => AppError::LoginLocked { retry_after_s },
            TotpRequired => AppError::TotpRequired,
            PasswordRejected(why) => AppError::PasswordRejected(why),
            WrongCurrentPassword | ReplacementNotProven => AppError::Forbidden(message),
            LoginTaken => AppError::Conflict(message),
            Busy => AppError::Overloaded,
            InvalidField(_) | CredentialsTooLong | SamePassword | InvalidTotpSecret(_)
            | TotpSecretNotBase32 | TotpCodeMismatch => AppError::BadRequest(message),
        }
    }
}

impl From<crate::enrolment::EnrolmentError> for AppError {
    fn from(e: crate::enrolment::EnrolmentError) -> Self {
        use crate::enrolment::EnrolmentError::*;
        let message = e.to_string();
        match e {
            Failure(f) => f.into(),
            InvalidReference(_) => AppError::BadRequest(message),
            CodeLocked { retry_after_s } => AppError::CodeLocked { retry_after_s },
            PvDecided | TokenRevoked | NoTokenInState(_) | TokensExhausted | NoCodeInState(_) => {
                AppError::Conflict(message)
            }
        }
    }
}

impl From<crate::liveness::LivenessError> for AppError {
    fn from(e: crate::liveness::LivenessError) -> Self {
        use crate::liveness::LivenessError::*;
        match e {
            Failure(f) => f.into(),
            BacklogOutOfRange => AppError::BadRequest(e.to_string()),
            Token(t) => t.into(),
        }
    }
}

impl From<crate::ingest::IngestError> for AppError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError::*;
        let message = e.to_string();
        match e {
            Failure(f) => f.into(),
            Token(t) => t.into(),
            Body(b) => b.into(),
            UnknownToken => AppError::Unauthorized,
            TooLarge(limit) => AppError::TooLarge(limit),
            TooManyUploads => AppError::TooManyUploads,
            Busy => AppError::Overloaded,
            ConsentRequired => AppError::ConsentRequired,
            AttemptEnded => AppError::AttemptEnded,
            RecordingClosed => AppError::RecordingClosed,
            UnknownNotice
            | ConsentNoticeMismatch
            | ConsentNotBase64
            | ConsentDoesNotOpen
            | ConsentMalformed
            | InvalidField(_)
            | HeaderMismatch => AppError::BadRequest(message),
            MalformedChunk(p) => AppError::MalformedChunk(p),
            Unauthentic(p) => AppError::Unauthentic(p),
            SealedForAnotherAttempt => AppError::Forbidden(message),
            StreamNotOpened => AppError::StreamNotOpened,
            StreamEnded(i) => AppError::StreamEnded(i),
            ConflictingChunk(i) => AppError::ConflictingChunk(i),
            FinalNotStored | NotSealedAsFinal => AppError::Conflict(message),
            IndexOutOfWindow { index, max } => AppError::IndexOutOfWindow { index, max },
            MediaTimeOutOfWindow => AppError::MediaTimeOutOfWindow,
            StreamQuota(n) => AppError::StreamQuota(n),
            ChunkQuota(n) => AppError::ChunkQuota(n),
            ByteQuota => AppError::ByteQuota,
        }
    }
}

impl From<crate::ingest::BodyRefused> for AppError {
    fn from(e: crate::ingest::BodyRefused) -> Self {
        use crate::ingest::BodyRefused::*;
        match e {
            Timeout => AppError::BodyTimeout,
            Incomplete => AppError::BodyIncomplete,
            LongerThanDeclared => AppError::BadRequest(e.to_string()),
        }
    }
}

impl From<crate::identity::TokenRefused> for AppError {
    fn from(e: crate::identity::TokenRefused) -> Self {
        match e {
            crate::identity::TokenRefused::Expired => AppError::TokenExpired,
            crate::identity::TokenRefused::Revoked => AppError::TokenRevoked,
        }
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        crate::failure::Failure::from(e).into()
    }
}

impl From<crate::blobs::BlobError> for AppError {
    fn from(e: crate::blobs::BlobError) -> Self {
        crate::failure::Failure::from(&e).into()
    }
}

impl From<&crate::blobs::BlobError> for AppError {
    fn from(e: &crate::blobs::BlobError) -> Self {
        crate::failure::Failure::from(e).into()
    }
}

impl From<crate::keys::KeyError> for AppError {
    fn from(e: crate::keys::KeyError) -> Self {
        crate::failure::Failure::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Failure;
    use crate::ingest::{BodyRefused, IngestError};

    /// A refused chunk is counted under the same word its answer carries.
    #[test]
    fn a_refused_chunk_is_counted_under_its_wire_code() {
        let p = || protocol::Error::InvalidHeader("x");
        let all = vec![
            IngestError::Failure(Failure::NotFound("stream")),
            IngestError::Failure(Failure::Gone),
            IngestError::Failure(Failure::StorageUnavailable),
            IngestError::Failure(Failure::StorageFull),
            IngestError::Failure(Failure::Internal(anyhow::anyhow!("x"))),
            IngestError::Token(crate::identity::TokenRefused::Expired),
            IngestError::Token(crate::identity::TokenRefused::Revoked),
            IngestError::Body(BodyRefused::Timeout),
            IngestError::Body(BodyRefused::Incomplete),
            IngestError::Body(BodyRefused::LongerThanDeclared),
            IngestError::UnknownToken,
            IngestError::TooLarge(1),
            IngestError::TooManyUploads,
            IngestError::Busy,
            IngestError::ConsentRequired,
            IngestError::AttemptEnded,
            IngestError::RecordingClosed,
            IngestError::UnknownNotice,
            IngestError::ConsentNoticeMismatch,
            IngestError::ConsentNotBase64,
            IngestError::ConsentDoesNotOpen,
            IngestError::ConsentMalformed,
            IngestError::InvalidField("os".into()),
            IngestError::MalformedChunk(p()),
            IngestError::Unauthentic(p()),
            IngestError::SealedForAnotherAttempt,
            IngestError::HeaderMismatch,
            IngestError::StreamNotOpened,
            IngestError::StreamEnded(3),
            IngestError::ConflictingChunk(3),
            IngestError::FinalNotStored,
            IngestError::NotSealedAsFinal,
            IngestError::IndexOutOfWindow { index: 9, max: 3 },
            IngestError::MediaTimeOutOfWindow,
            IngestError::StreamQuota(2),
            IngestError::ChunkQuota(2),
            IngestError::ByteQuota,
        ];
        for e in all {
            let (reason, shown) = (e.reason(), format!("{e:?}"));
            assert_eq!(AppError::from(e).status_and_code().1, reason, "{shown}");
        }
    }
}
