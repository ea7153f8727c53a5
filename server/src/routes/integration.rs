//! Integration API for the exam platform, behind its service token.

use super::{bearer, parse_id, read_json, AppState};
use crate::error::AppError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{request::Parts, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use protocol::api::*;
use sha2::{Digest, Sha256};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/integration/v1/sittings", post(create_sitting))
        .route("/api/integration/v1/sittings/{sitting_id}/candidates", post(add_candidate))
}

pub struct Platform;

impl FromRequestParts<AppState> for Platform {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let given = bearer(parts)?;
        let expected = state.settings.integration.token.as_deref().ok_or(AppError::Unauthorized)?;
        // Comparing digests keeps the comparison's timing independent of the secret.
        if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes()) {
            Ok(Platform)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

#[utoipa::path(post, path = "/api/integration/v1/sittings", tag = "integration",
    responses((status = 201, description = "sitting created"), (status = 400), (status = 401), (status = 409)))]
pub async fn create_sitting(State(app): State<AppState>, _: Platform, body: Body) -> Result<(StatusCode, Json<CreateSittingResponse>), AppError> {
    let req: CreateSittingRequest = read_json(body).await?;
    Ok((StatusCode::CREATED, Json(app.create_sitting(&req.reference, "platform").await?)))
}

#[utoipa::path(post, path = "/api/integration/v1/sittings/{sitting_id}/candidates", tag = "integration",
    responses((status = 201, description = "attempt created; body carries the launch token"), (status = 400), (status = 401), (status = 404), (status = 409)))]
pub async fn add_candidate(
    State(app): State<AppState>,
    _: Platform,
    Path(sitting): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<AddCandidateResponse>), AppError> {
    let sitting = parse_id(&sitting, "sitting id")?;
    let req: AddCandidateRequest = read_json(body).await?;
    Ok((StatusCode::CREATED, Json(app.add_candidate(sitting, &req.reference, "platform").await?)))
}
