//! Staff API (staff listener only): login, attempt report, decrypted media.

use super::assigned::{Assigned, Watch};
use super::path::Path;
use super::{read_json, AppState};
use crate::db::StreamId;
use crate::review::recording::AttemptReport;
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/staff/v1/login", post(login))
        .route("/metrics", get(metrics))
        .route("/api/staff/v1/attempts/{attempt_id}", get(attempt))
        .route(
            "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/media",
            get(media),
        )
}

#[derive(Deserialize)]
struct LoginRequest {
    login: String,
    password: String,
    /// The TOTP code, for accounts that have one.
    #[serde(default)]
    totp: Option<String>,
}

#[utoipa::path(post, path = "/api/staff/v1/login", tag = "staff",
    responses((status = 200, description = "session token"), (status = 401), (status = 429, description = "locked out after failed logins; see Retry-After"),
        (status = 503, description = "too many logins being checked; see Retry-After")))]
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let req: LoginRequest = read_json(body).await?;
    let login = app
        .accounts
        .staff_login(
            &req.login,
            &req.password,
            req.totp.as_deref(),
            &super::client_addr(&app, peer, &headers),
        )
        .await?;
    // What admins did to the account since its last login: the owner is told.
    Ok(Json(
        serde_json::json!({ "token": login.token, "account_notices": login.notices }),
    ))
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}", tag = "staff",
    responses((status = 200, description = "attempt report"), (status = 401), (status = 404)))]
pub async fn attempt(
    State(app): State<AppState>,
    Assigned(a, _): Assigned,
) -> Result<Json<AttemptReport>, AppError> {
    Ok(Json(app.review.attempt_report(&a).await?))
}

#[derive(Deserialize)]
pub struct Range {
    pub from: Option<u32>,
    pub to: Option<u32>,
}

#[utoipa::path(get, path = "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/media", tag = "staff",
    params(("from" = Option<u32>, Query, description = "first fragment index (≥ 1)"), ("to" = Option<u32>, Query, description = "last fragment index")),
    responses((status = 200, description = "fragmented MP4: init segment then the fragments", content_type = "video/mp4"),
        (status = 401), (status = 403), (status = 404), (status = 410, description = "recording destroyed")))]
pub async fn media(
    State(app): State<AppState>,
    Assigned(a, _): Assigned<Watch>,
    Path((_attempt_id, stream_id)): Path<(String, StreamId)>,
    range: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(range) = range
        .map_err(|_| AppError::BadRequest("from and to must be non-negative integers".into()))?;
    let body = app
        .review
        .clone()
        .read_media(&a, stream_id, range.from.unwrap_or(1), range.to)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Prometheus text format; counts and latencies only, no personal data.
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}
