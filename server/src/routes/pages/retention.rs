//! The admin's retention page (the data protection officer's actions, as the command line
//! has them): what is not destroyed yet and when it will be, legal holds placed and lifted,
//! erasure at once. Each action is audited under the admin's login.

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
        .route("/admin/retention", get(retention_page))
        .route("/admin/retention/{attempt_id}/{action}", post(action))
}

async fn page(
    app: &AppState,
    s: &StaffSession,
    message: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let rows = app
        .policy
        .retention_overview()
        .await?
        .into_iter()
        .map(|r| reviewer::RetentionRow {
            attempt_id: r.attempt_id.to_string(),
            candidate: r.reference,
            state: Text::label(T.states, r.state.as_str()).into(),
            rule: Text::label(T.rules, r.rule).into(),
            destroy_at: r.destroy_at_ms.map(time_fr).unwrap_or_default(),
            held: r.legal_hold,
        })
        .collect();
    let csrf = s.csrf();
    let html = render(reviewer::RetentionPage {
        t: T,
        login: &s.who.login,
        csrf: &csrf,
        rows,
        message,
        error,
    })?;
    Ok((status, html).into_response())
}

async fn retention_page(
    State(app): State<AppState>,
    PageSession(s): PageSession,
) -> Result<Response, PageError> {
    s.who.require_admin()?;
    page(&app, &s, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
}

async fn action(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Path((attempt, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, PageError> {
    s.who.require_admin()?;
    check_csrf(&s, &f.csrf)?;
    let attempt: crate::db::AttemptId = parse_id(&attempt, "attempt id")?;
    let actor = s.who.login.clone();
    let result: Result<(), AppError> = match action.as_str() {
        "hold" => app
            .retention
            .hold_attempt(&actor, attempt, &f.reason)
            .await
            .map_err(AppError::from),
        "lift" => app
            .retention
            .lift_hold(&actor, attempt)
            .await
            .map(|_| ())
            .map_err(AppError::from),
        "erase" if f.confirm.as_deref() == Some("on") => app
            .retention
            .erase_attempt(&actor, attempt, &f.reason)
            .await
            .map(|_| ())
            .map_err(AppError::from),
        "erase" => Err(AppError::BadRequest("an erasure must be confirmed".into())),
        _ => return Err(AppError::NotFound("route").into()),
    };
    match result {
        Ok(()) => page(&app, &s, Some(T.retention_done), None, StatusCode::OK).await,
        Err(e) if e.status_and_code().0.is_client_error() => {
            let status = e.status_and_code().0;
            page(&app, &s, None, Some(e.to_string()), status).await
        }
        Err(e) => Err(e.into()),
    }
}
