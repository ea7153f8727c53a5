//! Ids in a path, parsed once where they enter: `Path<AttemptId>`, `Path<(StreamId, u32)>`.
//! axum's own `Path`, refused in our JSON shape (400 `bad_request`, and what did not parse)
//! instead of its plain text, so that a handler never holds an id as a string.

use crate::routes::error::AppError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Path(t))
            .map_err(|e| AppError::BadRequest(format!("the path is not valid: {}", e.body_text())))
    }
}
