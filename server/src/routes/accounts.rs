//! Account and admin API (staff listener): one's own password and second factor, and the
//! admin's account management, assignments and audit reading.

use super::session::AccountSession;
use super::{parse_id, read_json, AppState};
use crate::accounts::StaffSummary;
use crate::db::SittingId;
use crate::identity::StaffIdentity;
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/staff/v1/account/password", post(change_password))
        .route(
            "/api/staff/v1/account/totp",
            get(begin_totp).post(confirm_totp),
        )
        .route(
            "/api/staff/v1/admin/staff",
            get(list_staff).post(create_staff),
        )
        .route(
            "/api/staff/v1/admin/staff/{login}/{action}",
            post(staff_action),
        )
        .route("/api/staff/v1/admin/assignments", post(assign))
        .route(
            "/api/staff/v1/admin/assignments/{sitting}/{login}",
            delete(unassign),
        )
        .route("/api/staff/v1/admin/totp-required", post(totp_required))
        .route("/api/staff/v1/admin/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

#[utoipa::path(post, path = "/api/staff/v1/account/password", tag = "admin", responses((status = 204), (status = 400, description = "password_rejected"), (status = 401), (status = 403, description = "wrong current password")))]
pub async fn change_password(
    State(app): State<AppState>,
    AccountSession(s): AccountSession,
    body: Body,
) -> Result<StatusCode, AppError> {
    let req: PasswordChange = read_json(body).await?;
    app.accounts
        .change_password(&s.who, &s.token, &req.current, &req.new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/staff/v1/account/totp", tag = "admin", responses((status = 200, description = "a fresh secret and its otpauth URL"), (status = 401)))]
pub async fn begin_totp(
    State(app): State<AppState>,
    AccountSession(s): AccountSession,
) -> Result<Json<serde_json::Value>, AppError> {
    let e = app.accounts.begin_totp(&s.who)?;
    Ok(Json(
        serde_json::json!({ "secret": e.secret_base32, "otpauth_url": e.otpauth_url }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpConfirm {
    secret: String,
    code: String,
    /// Replacing a second factor in place: the password and a code of the current one.
    password: Option<String>,
    current_code: Option<String>,
}

#[utoipa::path(post, path = "/api/staff/v1/account/totp", tag = "admin", responses((status = 204), (status = 400), (status = 401), (status = 403, description = "replacing a second factor without the password and a current code")))]
pub async fn confirm_totp(
    State(app): State<AppState>,
    AccountSession(s): AccountSession,
    body: Body,
) -> Result<StatusCode, AppError> {
    let req: TotpConfirm = read_json(body).await?;
    app.accounts
        .confirm_totp(
            &s.who,
            &req.secret,
            &req.code,
            req.password.as_deref().zip(req.current_code.as_deref()),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/staff/v1/admin/staff", tag = "admin", responses((status = 200), (status = 401), (status = 403)))]
pub async fn list_staff(
    State(app): State<AppState>,
    who: StaffIdentity,
) -> Result<Json<Vec<StaffSummary>>, AppError> {
    Ok(Json(app.accounts.list_staff(&who).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStaff {
    login: String,
    role: String,
}

/// Creates an account with a one-time password, shown in this answer only.
#[utoipa::path(post, path = "/api/staff/v1/admin/staff", tag = "admin", responses((status = 201, description = "with a one-time password"), (status = 400), (status = 401), (status = 403), (status = 409)))]
pub async fn create_staff(
    State(app): State<AppState>,
    who: StaffIdentity,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    who.require_admin()?;
    let req: NewStaff = read_json(body).await?;
    let (_, shown) = crate::domain::Password::generate();
    app.accounts
        .add_staff_as(&who.login, &req.login, &req.role, &shown)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "login": req.login, "role": req.role, "temporary_password": shown }),
        ),
    ))
}

#[utoipa::path(post, path = "/api/staff/v1/admin/staff/{login}/{action}", tag = "admin", responses((status = 200, description = "action: disable, enable, reset-password, remove-totp"), (status = 401), (status = 403), (status = 404)))]
pub async fn staff_action(
    State(app): State<AppState>,
    who: StaffIdentity,
    Path((login, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    who.require_admin()?;
    let done = match action.as_str() {
        "disable" => app
            .accounts
            .set_staff_disabled(&who.login, &login, true)
            .await
            .map(|_| serde_json::json!({ "login": login, "disabled": true })),
        "enable" => app
            .accounts
            .set_staff_disabled(&who.login, &login, false)
            .await
            .map(|_| serde_json::json!({ "login": login, "disabled": false })),
        "reset-password" => app.accounts.reset_password(&who, &login).await.map(|r| match r {
            crate::accounts::Reset::Done(p) => {
                serde_json::json!({ "login": login, "temporary_password": p })
            }
            crate::accounts::Reset::Pending => {
                serde_json::json!({ "login": login, "pending": "a second admin must confirm the reset" })
            }
        }),
        "remove-totp" => app
            .accounts
            .remove_totp(&who.login, &login)
            .await
            .map(|_| serde_json::json!({ "login": login, "totp": false })),
        _ => return Err(AppError::NotFound("route")),
    };
    Ok(Json(done?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    login: String,
    sitting: SittingId,
}

#[utoipa::path(post, path = "/api/staff/v1/admin/assignments", tag = "admin", responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn assign(
    State(app): State<AppState>,
    who: StaffIdentity,
    body: Body,
) -> Result<StatusCode, AppError> {
    who.require_admin()?;
    let req: Assignment = read_json(body).await?;
    app.accounts
        .assign_sitting(&req.login, req.sitting, &who.login)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes the sitting away from the staff member at once (their next request).
#[utoipa::path(delete, path = "/api/staff/v1/admin/assignments/{sitting}/{login}", tag = "admin", responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn unassign(
    State(app): State<AppState>,
    who: StaffIdentity,
    Path((sitting, login)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    who.require_admin()?;
    let sitting = parse_id::<SittingId>(&sitting, "sitting id")?;
    app.accounts
        .unassign_sitting(&login, sitting, &who.login)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpRequired {
    required: bool,
}

#[utoipa::path(post, path = "/api/staff/v1/admin/totp-required", tag = "admin", responses((status = 204), (status = 401), (status = 403)))]
pub async fn totp_required(
    State(app): State<AppState>,
    who: StaffIdentity,
    body: Body,
) -> Result<StatusCode, AppError> {
    who.require_admin()?;
    let req: TotpRequired = read_json(body).await?;
    app.accounts
        .set_totp_required(&who.login, req.required)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
}

/// The newest entries and the verification of the whole trail (chain and checkpoints).
#[utoipa::path(get, path = "/api/staff/v1/admin/audit", tag = "admin", responses((status = 200, description = "newest entries and the verdict on the whole trail"), (status = 401), (status = 403)))]
pub async fn audit(
    State(app): State<AppState>,
    who: StaffIdentity,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::audit::AuditReport>, AppError> {
    who.require_admin()?;
    let Query(q) =
        q.map_err(|_| AppError::BadRequest("limit must be a non-negative integer".into()))?;
    let report = app
        .audit
        .report(
            &who.login,
            q.limit.unwrap_or(200).min(5_000),
            &app.retention.receipt_public_key()?,
        )
        .await?;
    Ok(Json(report))
}
