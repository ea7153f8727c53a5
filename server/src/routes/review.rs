//! The reviewer app's JSON API (staff listener): queue, timeline, one fragment at a time,
//! flags and review decisions. Authenticated by bearer token or by the session cookie
//! plus CSRF header (`session`). Media answers are never cached.

use super::assigned::{Assigned, Reviewing, SecondReview, Watch};
use super::path::Path;
use super::session::AccountSession;
use super::{read_json, AppState};
use crate::db::ReviewOutcome;
use crate::db::{FlagId, StreamId};
use crate::identity::StaffIdentity;
use crate::review::decision::{FlagInput, ReviewOutcomeView, ReviewView};
use crate::review::queue::QueueRow;
use crate::review::timeline::Timeline;
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/staff/v1/queue", get(queue))
        .route("/api/staff/v1/logout", post(logout))
        .route(
            "/api/staff/v1/attempts/{attempt_id}/timeline",
            get(timeline),
        )
        .route(
            "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/fragments/{index}",
            get(fragment),
        )
        .route(
            "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/fragments/{index}/thumbnail",
            get(thumbnail),
        )
        .route(
            "/api/staff/v1/attempts/{attempt_id}/activity",
            get(activity),
        )
        .route("/api/staff/v1/attempts/{attempt_id}/review", get(review))
        .route(
            "/api/staff/v1/attempts/{attempt_id}/review/submit",
            post(submit),
        )
        .route(
            "/api/staff/v1/attempts/{attempt_id}/second-review",
            post(second_review),
        )
        .route("/api/staff/v1/attempts/{attempt_id}/outcome", get(outcome))
        .route(
            "/api/staff/v1/attempts/{attempt_id}/flags",
            post(create_flag),
        )
        .route(
            "/api/staff/v1/attempts/{attempt_id}/flags/{flag_id}",
            put(update_flag).delete(delete_flag),
        )
}

#[utoipa::path(get, path = "/api/staff/v1/queue", tag = "review", responses((status = 200, description = "the attempts of my sittings"), (status = 401), (status = 403)))]
pub async fn queue(
    State(app): State<AppState>,
    staff: StaffIdentity,
) -> Result<Json<Vec<QueueRow>>, AppError> {
    Ok(Json(app.review.queue(&staff).await?))
}

#[utoipa::path(post, path = "/api/staff/v1/logout", tag = "review", responses((status = 204), (status = 401)))]
pub async fn logout(
    State(app): State<AppState>,
    AccountSession(session): AccountSession,
) -> Result<StatusCode, AppError> {
    app.accounts
        .staff_logout(&session.who, &session.token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/timeline", tag = "review", responses((status = 200, description = "streams on wall-clock time, gaps, missing and broken fragments"), (status = 401), (status = 403), (status = 404), (status = 410)))]
pub async fn timeline(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Watch>,
) -> Result<Json<Timeline>, AppError> {
    Ok(Json(app.review.timeline(&a).await?))
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/fragments/{index}", tag = "review", responses((status = 200, description = "one decrypted fragment (0: init segment)", content_type = "video/mp4"), (status = 401), (status = 403), (status = 404), (status = 410), (status = 422, description = "fragment_altered: fails its checks, never served")))]
pub async fn fragment(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Watch>,
    Path((_attempt_id, stream, index)): Path<(String, StreamId, u32)>,
) -> Result<Response, AppError> {
    let bytes = app.review.fragment(&a, stream, index).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/fragments/{index}/thumbnail", tag = "review",
    responses((status = 200, description = "the fragment's 160x120 picture, made by the agent", content_type = "image/jpeg"), (status = 401), (status = 403), (status = 404), (status = 410), (status = 422)))]
pub async fn thumbnail(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Watch>,
    Path((_attempt_id, stream, index)): Path<(String, StreamId, u32)>,
) -> Result<Response, AppError> {
    let bytes = app.review.thumbnail(&a, stream, index).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/activity", tag = "review",
    responses((status = 200, description = "per recorded second: wall-clock ms, motion, audio level (0-100)"), (status = 401), (status = 403), (status = 404), (status = 410)))]
pub async fn activity(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Watch>,
) -> Result<Json<crate::review::activity::ActivityStrip>, AppError> {
    Ok(Json(app.review.activity(&a).await?))
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/review", tag = "review", responses((status = 200, description = "rounds, flags, my writable round"), (status = 401), (status = 403), (status = 404)))]
pub async fn review(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Reviewing>,
) -> Result<Json<ReviewView>, AppError> {
    Ok(Json(app.review.review_view(&a).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    outcome: ReviewOutcome,
}

#[utoipa::path(post, path = "/api/staff/v1/attempts/{attempt_id}/review/submit", tag = "review", responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409, description = "outcome disagrees with the flags, or already submitted")))]
pub async fn submit(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Reviewing>,
    body: Body,
) -> Result<Json<ReviewView>, AppError> {
    let req: SubmitRequest = read_json(body).await?;
    Ok(Json(app.review.submit_review(&a, req.outcome).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondReviewRequest {
    reviewer: String,
}

#[utoipa::path(post, path = "/api/staff/v1/attempts/{attempt_id}/second-review", tag = "review", responses((status = 201), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn second_review(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<SecondReview>,
    body: Body,
) -> Result<StatusCode, AppError> {
    let req: SecondReviewRequest = read_json(body).await?;
    app.review.request_second_review(&a, &req.reviewer).await?;
    Ok(StatusCode::CREATED)
}

/// The outcome without notes, for the jury of the sitting and its reviewers.
#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/outcome", tag = "review", responses((status = 200, description = "status, rounds, categories and counts"), (status = 401), (status = 403), (status = 404)))]
pub async fn outcome(
    State(app): State<AppState>,
    Assigned(a, _): Assigned,
) -> Result<Json<ReviewOutcomeView>, AppError> {
    Ok(Json(app.review.review_outcome(&a).await?))
}

#[utoipa::path(post, path = "/api/staff/v1/attempts/{attempt_id}/flags", tag = "review", responses((status = 201), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn create_flag(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Reviewing>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let input: FlagInput = read_json(body).await?;
    let id = app.review.save_flag(&a, None, input).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

#[utoipa::path(put, path = "/api/staff/v1/attempts/{attempt_id}/flags/{flag_id}", tag = "review", responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn update_flag(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Reviewing>,
    Path((_attempt_id, flag)): Path<(String, FlagId)>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let input: FlagInput = read_json(body).await?;
    let id = app.review.save_flag(&a, Some(flag), input).await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

#[utoipa::path(delete, path = "/api/staff/v1/attempts/{attempt_id}/flags/{flag_id}", tag = "review", responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_flag(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Reviewing>,
    Path((_attempt_id, flag)): Path<(String, FlagId)>,
) -> Result<StatusCode, AppError> {
    app.review.delete_flag(&a, flag).await?;
    Ok(StatusCode::NO_CONTENT)
}
