//! Every failure the service reports, with its HTTP status and stable code. Messages never
//! carry a key, a token or an address.

use axum::http::StatusCode;
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
    #[error("{0}")]
    Forbidden(String),
    #[error("consent to the information notice has not been recorded")]
    ConsentRequired,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("body larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("chunk failed authentication: {0}")]
    Unauthentic(protocol::Error),
    #[error("the recording has been destroyed")]
    Gone,
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
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ConsentRequired => (StatusCode::FORBIDDEN, "consent_required"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Unauthentic(_) => (StatusCode::UNPROCESSABLE_ENTITY, "authentication_failed"),
            Gone => (StatusCode::GONE, "gone"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(e) = &self {
            tracing::error!(error = %e, "internal error");
        }
        (status, Json(ErrorBody { error: code.to_owned(), message: self.to_string() })).into_response()
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        AppError::Internal(anyhow::anyhow!("database: {e}"))
    }
}

impl From<crate::blobs::BlobError> for AppError {
    fn from(e: crate::blobs::BlobError) -> Self {
        AppError::Internal(anyhow::anyhow!("blob store: {e}"))
    }
}

impl From<crate::keys::KeyError> for AppError {
    fn from(e: crate::keys::KeyError) -> Self {
        match e {
            crate::keys::KeyError::KekGone(_) => AppError::Gone,
            other => AppError::Internal(anyhow::anyhow!("{other}")),
        }
    }
}
