//! Integration API for the exam platform, behind its service token. Creation is
//! idempotent: the platform's reference is the key, so a retried call (after a lost
//! answer) gets the same status and body, marked `Idempotent-Replayed: true`.

use super::path::Path;
use super::{bearer, read_json, AppState};
use crate::db::{AttemptId, SittingId};
use crate::enrolment::Created;
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::{request::Parts, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::api::*;
use sha2::{Digest, Sha256};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/integration/v1/sittings", post(create_sitting))
        .route(
            "/api/integration/v1/sittings/{sitting_id}/candidates",
            post(add_candidate),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}",
            get(attempt_status),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/end",
            post(end_attempt),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/token",
            post(reissue_token),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/token/revoke",
            post(revoke_token),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/launch-code",
            post(launch_code),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/review",
            get(review_outcome),
        )
        .route(
            "/api/integration/v1/receipts/public-key",
            get(receipt_public_key),
        )
        .route(
            "/api/integration/v1/sittings/{sitting_id}/pv",
            get(pv_status).post(decide_pv),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/retention",
            get(retention),
        )
        .route(
            "/api/integration/v1/attempts/{attempt_id}/receipt",
            get(receipt),
        )
}

pub struct Platform;

impl FromRequestParts<AppState> for Platform {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let given = bearer(parts)?;
        let expected = state
            .http
            .integration_token
            .as_deref()
            .ok_or(AppError::Unauthorized)?;
        // Comparing digests keeps the comparison's timing independent of the secret.
        if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes()) {
            Ok(Platform)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

fn created<T: serde::Serialize>(c: Created<T>) -> Response {
    let mut resp = (StatusCode::CREATED, Json(c.value)).into_response();
    if c.replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    resp
}

#[utoipa::path(post, path = "/api/integration/v1/sittings", tag = "integration",
    responses((status = 201, description = "sitting created, or the same one for a reference already used (Idempotent-Replayed: true)"), (status = 400), (status = 401)))]
pub async fn create_sitting(
    State(app): State<AppState>,
    _: Platform,
    body: Body,
) -> Result<Response, AppError> {
    let req: CreateSittingRequest = read_json(body).await?;
    Ok(created(
        app.enrolment
            .create_sitting(&req.reference, "platform")
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/integration/v1/sittings/{sitting_id}/candidates", tag = "integration",
    responses((status = 201, description = "attempt created; body carries the launch token. The same answer again for a reference already used (Idempotent-Replayed: true)"),
        (status = 400), (status = 401), (status = 404), (status = 409, description = "the candidate's token was revoked"), (status = 410)))]
pub async fn add_candidate(
    State(app): State<AppState>,
    _: Platform,
    Path(sitting): Path<SittingId>,
    body: Body,
) -> Result<Response, AppError> {
    let req: AddCandidateRequest = read_json(body).await?;
    Ok(created(
        app.enrolment
            .add_candidate(sitting, &req.reference, "platform")
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/integration/v1/attempts/{attempt_id}", tag = "integration",
    responses((status = 200, description = "the attempt's lifecycle state"), (status = 401), (status = 404)))]
pub async fn attempt_status(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<AttemptStatus>, AppError> {
    Ok(Json(app.enrolment.attempt_status(id).await?))
}

#[utoipa::path(post, path = "/api/integration/v1/attempts/{attempt_id}/end", tag = "integration",
    responses((status = 200, description = "attempt ended (or already ended); its token opens streams until new_streams_until"),
        (status = 401), (status = 404), (status = 409, description = "the attempt is past ending (withdrawn, reviewed, destroyed…)")))]
pub async fn end_attempt(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<AttemptStatus>, AppError> {
    Ok(Json(app.enrolment.end_attempt(id, "platform").await?))
}

#[utoipa::path(post, path = "/api/integration/v1/attempts/{attempt_id}/token", tag = "integration",
    responses((status = 201, description = "a new launch token; the earlier ones are revoked"), (status = 401), (status = 404), (status = 409)))]
pub async fn reissue_token(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<(StatusCode, Json<AddCandidateResponse>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(app.enrolment.reissue_launch_token(id, "platform").await?),
    ))
}

#[utoipa::path(post, path = "/api/integration/v1/attempts/{attempt_id}/launch-code", tag = "integration",
    responses((status = 201, description = "a short code (K7F4-3QX9) the candidate types in `capture-agent launch`; once, within [limits] launch_code_ttl"),
        (status = 401), (status = 404), (status = 409, description = "the attempt is past recording, or its token is revoked")))]
pub async fn launch_code(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<(StatusCode, Json<LaunchCodeResponse>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(app.enrolment.issue_launch_code(id, "platform").await?),
    ))
}

#[utoipa::path(post, path = "/api/integration/v1/attempts/{attempt_id}/token/revoke", tag = "integration",
    responses((status = 200, description = "every launch token of the attempt revoked"), (status = 401), (status = 404)))]
pub async fn revoke_token(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<serde_json::Value>, AppError> {
    let n = app.enrolment.revoke_launch_tokens(id, "platform").await?;
    Ok(Json(serde_json::json!({ "revoked": n })))
}

/// The review outcome (status, rounds, categories and counts; never the reviewers' notes).
#[utoipa::path(get, path = "/api/integration/v1/attempts/{attempt_id}/review", tag = "integration", responses((status = 200, description = "review status, rounds, categories and counts; never notes"), (status = 401), (status = 404)))]
pub async fn review_outcome(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<crate::review::decision::ReviewOutcomeView>, AppError> {
    Ok(Json(app.review.outcome_for_platform(id).await?))
}

/// The key that signs destruction receipts: the platform publishes it to candidates, who
/// check a receipt offline with it (`proctor-server receipt verify`).
#[utoipa::path(get, path = "/api/integration/v1/receipts/public-key", tag = "integration", responses((status = 200, description = "the Ed25519 public key, base64"), (status = 401)))]
pub async fn receipt_public_key(
    State(app): State<AppState>,
    _: Platform,
) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(super::public::published_key(&app)?))
}

/// The jury's decision on the sitting's minutes, as the jury pages record it:
/// irreversible; `validated` destroys every recording of the sitting before it answers.
#[utoipa::path(post, path = "/api/integration/v1/sittings/{sitting_id}/pv", tag = "integration", request_body = crate::retention::PvRequest,
    responses((status = 201, description = "decision recorded; what each attempt became; the receipts of those destroyed. The same decision again answers what was recorded (Idempotent-Replayed: true)", body = crate::retention::PvResult),
        (status = 400, description = "malformed, or contested candidates that do not fit the outcome"), (status = 401), (status = 404),
        (status = 409, description = "another decision already recorded (pv_already_decided), reviews unsubmitted without override (reviews_unsubmitted), attempts in progress")))]
pub async fn decide_pv(
    State(app): State<AppState>,
    _: Platform,
    Path(sitting): Path<SittingId>,
    body: Body,
) -> Result<Response, AppError> {
    let req: crate::retention::PvRequest = read_json(body).await?;
    let by = match req.decided_by.as_deref().map(str::trim) {
        Some(b) if !b.is_empty() && b.len() <= 100 && !b.chars().any(char::is_control) => {
            format!("platform:{b}")
        }
        Some(_) => {
            return Err(AppError::BadRequest(
                "decided_by names the jury member (1 to 100 characters, no control characters)"
                    .into(),
            ))
        }
        None => "platform".into(),
    };
    let result = app.retention.decide_pv(&by, sitting, req).await?;
    let replayed = result.replayed;
    Ok(created(Created {
        value: result,
        replayed,
    }))
}

/// The sitting's decision, if any, and where each of its attempts stands.
#[utoipa::path(get, path = "/api/integration/v1/sittings/{sitting_id}/pv", tag = "integration", responses((status = 200), (status = 401), (status = 404)))]
pub async fn pv_status(
    State(app): State<AppState>,
    _: Platform,
    Path(sitting): Path<SittingId>,
) -> Result<Json<serde_json::Value>, AppError> {
    let (decision, attempts) = app.retention.pv_status(sitting).await?;
    Ok(Json(serde_json::json!({
        "sitting_id": sitting,
        "decision": decision.map(|d| serde_json::json!({ "outcome": d.outcome, "decided_at": crate::clock::rfc3339(crate::clock::from_unix_ms(d.decided_at_ms)),
            "decided_by": d.decided_by, "override_unsubmitted": d.override_unsubmitted })),
        "attempts": attempts,
    })))
}

/// When the attempt is destroyed (or was), by which rule; its receipt once destroyed.
#[utoipa::path(get, path = "/api/integration/v1/attempts/{attempt_id}/retention", tag = "integration", responses((status = 200), (status = 401), (status = 404)))]
pub async fn retention(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<crate::retention::RetentionStatus>, AppError> {
    Ok(Json(app.policy.attempt_retention(id).await?))
}

/// The signed destruction receipt, to hand to the candidate: checked offline with the
/// published key (`proctor-server receipt verify FILE --public-key KEY`).
#[utoipa::path(get, path = "/api/integration/v1/attempts/{attempt_id}/receipt", tag = "integration",
    responses((status = 200, description = "the signed receipt"), (status = 401), (status = 404), (status = 409, description = "not destroyed yet")))]
pub async fn receipt(
    State(app): State<AppState>,
    _: Platform,
    Path(id): Path<AttemptId>,
) -> Result<Json<protocol::SignedReceipt>, AppError> {
    match app.policy.attempt_retention(id).await?.receipt {
        Some(r) => Ok(Json(r)),
        None => Err(AppError::Conflict(
            "the attempt is not destroyed yet: its retention says when it will be".into(),
        )),
    }
}
