//! The admin's pages: accounts (create, disable, reset a password, remove a second
//! factor), assignments, the TOTP requirement, and the audit trail with its verdict.
//! An admin watches nothing: no queue, no player.

use super::{check_csrf, render, time_fr, PageError, PageSession, T};
use crate::routes::error::AppError;
use crate::routes::session::StaffSession;
use crate::routes::{parse_id, AppState};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use reviewer::text::Text;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin_page))
        .route("/admin/staff", post(create))
        .route("/admin/staff/{login}/{action}", post(action))
        .route("/admin/assign", post(assign))
        .route("/admin/unassign", post(unassign))
        .route("/admin/totp-required", post(totp_required))
        .route("/admin/audit", get(audit_page))
}

fn admin_only(s: &StaffSession) -> Result<(), PageError> {
    Ok(s.who.require_admin()?)
}

/// The outcome of an admin's action, shown at the top of the page.
#[derive(Default)]
struct Outcome<'a> {
    message: Option<&'a str>,
    password: Option<String>,
    error: Option<String>,
}

async fn page(
    app: &AppState,
    s: &StaffSession,
    outcome: Outcome<'_>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let staff = app
        .accounts
        .list_staff(&s.who)
        .await?
        .into_iter()
        .map(|a| {
            let status = if a.disabled {
                T.status_disabled
            } else if a.must_change_password {
                T.status_must_change
            } else {
                T.status_active
            };
            let mut actions = vec![
                if a.disabled {
                    ("enable", T.admin_enable)
                } else {
                    ("disable", T.admin_disable)
                },
                ("reset-password", T.admin_reset),
            ];
            if a.totp {
                actions.push(("remove-totp", T.admin_remove_totp));
            }
            reviewer::StaffRow {
                role: Text::label(T.roles, a.role).into(),
                login: a.login,
                status: status.into(),
                totp: a.totp,
                actions,
            }
        })
        .collect();
    let csrf = s.csrf();
    let html = render(reviewer::AdminPage {
        t: T,
        login: &s.who.login,
        csrf: &csrf,
        staff,
        totp_required: app.accounts.totp_required().await?,
        message: outcome.message,
        shown_password: outcome.password.as_deref(),
        error: outcome.error.as_deref(),
    })?;
    Ok((status, html).into_response())
}

/// Runs an admin action and shows the page with its outcome; a refused action (4xx) is
/// shown on the page, anything else is an error page.
async fn outcome_page<T, E: Into<AppError>>(
    app: &AppState,
    s: &StaffSession,
    result: Result<T, E>,
    ok: impl FnOnce(T) -> Outcome<'static>,
) -> Result<Response, PageError> {
    match result.map_err(Into::into) {
        Ok(v) => page(app, s, ok(v), StatusCode::OK).await,
        Err(e) if e.status_and_code().0.is_client_error() => {
            let status = e.status_and_code().0;
            page(
                app,
                s,
                Outcome {
                    error: Some(e.to_string()),
                    ..Default::default()
                },
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn admin_page(
    State(app): State<AppState>,
    PageSession(s): PageSession,
) -> Result<Response, PageError> {
    admin_only(&s)?;
    page(&app, &s, Outcome::default(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    login: String,
    role: String,
}

async fn create(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Form(f): Form<CreateForm>,
) -> Result<Response, PageError> {
    admin_only(&s)?;
    check_csrf(&s, &f.csrf)?;
    let (_, shown) = crate::domain::Password::generate();
    let result = app
        .accounts
        .add_staff_as(&s.who.login, &f.login, &f.role, &shown)
        .await;
    outcome_page(&app, &s, result, |_| Outcome {
        message: Some(T.admin_created),
        password: Some(shown),
        error: None,
    })
    .await
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn action(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Path((login, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    admin_only(&s)?;
    check_csrf(&s, &f.csrf)?;
    let actor = s.who.login.clone();
    match action.as_str() {
        "disable" | "enable" => {
            let r = app
                .accounts
                .set_staff_disabled(&actor, &login, action == "disable")
                .await;
            outcome_page(&app, &s, r, |_| Outcome::default()).await
        }
        "reset-password" => {
            let r = app.accounts.reset_password(&s.who, &login).await;
            outcome_page(&app, &s, r, |r| match r {
                crate::accounts::Reset::Done(p) => Outcome {
                    message: Some(T.admin_reset_done),
                    password: Some(p),
                    error: None,
                },
                crate::accounts::Reset::Pending => Outcome {
                    message: Some(T.admin_reset_pending),
                    password: None,
                    error: None,
                },
            })
            .await
        }
        "remove-totp" => {
            let r = app.accounts.remove_totp(&actor, &login).await;
            outcome_page(&app, &s, r, |_| Outcome::default()).await
        }
        _ => Err(AppError::NotFound("route").into()),
    }
}

#[derive(Deserialize)]
struct AssignForm {
    csrf: String,
    login: String,
    sitting: String,
}

async fn assign(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Form(f): Form<AssignForm>,
) -> Result<Response, PageError> {
    change_assignment(&app, &s, f, true).await
}

async fn unassign(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Form(f): Form<AssignForm>,
) -> Result<Response, PageError> {
    change_assignment(&app, &s, f, false).await
}

async fn change_assignment(
    app: &AppState,
    s: &StaffSession,
    f: AssignForm,
    assign: bool,
) -> Result<Response, PageError> {
    admin_only(s)?;
    check_csrf(s, &f.csrf)?;
    let result = match parse_id::<crate::db::SittingId>(f.sitting.trim(), "sitting id") {
        Ok(sitting) if assign => app
            .accounts
            .assign_sitting(&f.login, sitting, &s.who.login)
            .await
            .map_err(AppError::from),
        Ok(sitting) => app
            .accounts
            .unassign_sitting(&f.login, sitting, &s.who.login)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    outcome_page(app, s, result, |_| Outcome::default()).await
}

#[derive(Deserialize)]
struct TotpForm {
    csrf: String,
    required: bool,
}

async fn totp_required(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Form(f): Form<TotpForm>,
) -> Result<Response, PageError> {
    admin_only(&s)?;
    check_csrf(&s, &f.csrf)?;
    let result = app
        .accounts
        .set_totp_required(&s.who.login, f.required)
        .await;
    outcome_page(&app, &s, result, |_| Outcome::default()).await
}

async fn audit_page(
    State(app): State<AppState>,
    PageSession(s): PageSession,
) -> Result<Response, PageError> {
    admin_only(&s)?;
    let trusted = app.retention.receipt_public_key().map_err(AppError::from)?;
    let report = app.audit.report(&s.who.login, 500, &trusted).await?;
    let entries = report
        .entries
        .into_iter()
        .map(|e| reviewer::AuditRow {
            seq: e.seq,
            when: time_fr(e.at_ms),
            actor: e.actor,
            action: e.action,
            detail: e.detail.to_string(),
        })
        .collect();
    let csrf = s.csrf();
    let html = render(reviewer::AuditPage {
        t: T,
        login: &s.who.login,
        csrf: &csrf,
        total: report.total,
        intact: report.verification.intact,
        first_bad: report.verification.first_bad_entry,
        reason: report.verification.reason.unwrap_or_default(),
        entries,
    })?;
    Ok(html.into_response())
}
