//! The jury's PV decision as JSON (staff listener), the same use case as the jury pages:
//! the plan (what would be deleted now, what kept until when) and the decision.

use super::path::Path;
use super::{read_json, AppState};
use crate::db::SittingId;
use crate::identity::StaffIdentity;
use crate::retention::{PvPlan, PvRequest, PvResult};
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/staff/v1/sittings/{sitting_id}/pv/plan", post(plan))
        .route("/api/staff/v1/sittings/{sitting_id}/pv", post(decide))
}

async fn request(
    app: &AppState,
    staff: &StaffIdentity,
    sitting: SittingId,
    body: Body,
) -> Result<(SittingId, PvRequest), AppError> {
    app.retention.require_jury_of(staff, sitting).await?;
    let req: PvRequest = read_json(body).await?;
    if req.decided_by.is_some() {
        return Err(AppError::BadRequest(
            "decided_by is the integration API's; here the session's account decides".into(),
        ));
    }
    Ok((sitting, req))
}

/// What the decision would do to each attempt, without recording it.
#[utoipa::path(post, path = "/api/staff/v1/sittings/{sitting_id}/pv/plan", tag = "jury", request_body = PvRequest,
    responses((status = 200, body = PvPlan), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn plan(
    State(app): State<AppState>,
    staff: StaffIdentity,
    Path(sitting): Path<SittingId>,
    body: Body,
) -> Result<Json<PvPlan>, AppError> {
    let (sitting, req) = request(&app, &staff, sitting, body).await?;
    Ok(Json(app.retention.pv_plan(sitting, &req).await?.0))
}

/// The decision: irreversible, audited; what it destroys is destroyed when it answers.
#[utoipa::path(post, path = "/api/staff/v1/sittings/{sitting_id}/pv", tag = "jury", request_body = PvRequest,
    responses((status = 201, body = PvResult), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "already decided, reviews unsubmitted without override, attempts in progress")))]
pub async fn decide(
    State(app): State<AppState>,
    staff: StaffIdentity,
    Path(sitting): Path<SittingId>,
    body: Body,
) -> Result<(StatusCode, Json<PvResult>), AppError> {
    let (sitting, req) = request(&app, &staff, sitting, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(app.retention.decide_pv(&staff.login, sitting, req).await?),
    ))
}
