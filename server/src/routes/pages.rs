//! The reviewer app's pages (staff listener only): login at `/`, the queue, the player.
//! Rendering and text are the `reviewer` crate's; this file fills its views from the use
//! cases. A page without a valid session sends the browser to the login page.

use super::session::{csrf_matches, removal_cookie, session_cookie, StaffCookieSession};
use super::{parse_id, AppState};
use crate::error::AppError;
use crate::service::StaffIdentity;
use reviewer::Template;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::CookieJar;
use reviewer::text::{Text, FR};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/queue", get(queue))
        .route("/attempts/{attempt_id}", get(player))
        .route("/assets/{name}", get(asset))
}

const T: &Text = &FR;

/// A page's error: the login page for a missing session, a short page otherwise.
struct PageError(AppError);

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if matches!(self.0, AppError::Unauthorized) {
            return Redirect::to("/").into_response();
        }
        let status = self.0.status_and_code().0;
        if let AppError::Internal(e) = &self.0 {
            tracing::error!(error = format!("{e:#}"), "internal error on a page");
        }
        let message = if status.is_server_error() { "erreur interne".to_owned() } else { self.0.to_string() };
        let page = reviewer::ErrorPage { t: T, status: status.as_u16(), message: &message }.render().unwrap_or_default();
        (status, Html(page)).into_response()
    }
}

/// A page's session: without one, the browser goes to the login page.
struct PageSession(super::session::StaffSession);

impl axum::extract::FromRequestParts<AppState> for PageSession {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, PageError> {
        Ok(Self(StaffCookieSession::from_request_parts(parts, state).await?.0))
    }
}

fn render(t: impl Template) -> Result<Html<String>, PageError> {
    t.render().map(Html).map_err(|e| PageError(AppError::Internal(anyhow::anyhow!("rendering a page: {e}"))))
}

async fn home(State(app): State<AppState>, parts: axum::http::request::Parts) -> Result<Response, PageError> {
    let token = super::session::presented_token(&parts);
    let signed_in = match token {
        Some((t, _)) => app.authenticate_staff(&t).await.is_ok(),
        None => false,
    };
    if signed_in {
        return Ok(Redirect::to("/queue").into_response());
    }
    Ok(render(reviewer::LoginPage { t: T, error: None })?.into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

async fn login(State(app): State<AppState>, ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, jar: CookieJar, Form(form): Form<LoginForm>) -> Result<Response, PageError> {
    match app.staff_login(&form.login, &form.password, &peer.ip().to_string()).await {
        Ok(token) => Ok((jar.add(session_cookie(token)), Redirect::to("/queue")).into_response()),
        Err(e) => {
            let (status, error) = match &e {
                AppError::Unauthorized | AppError::BadRequest(_) => (StatusCode::UNAUTHORIZED, T.login_failed),
                AppError::LoginLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, T.login_locked),
                AppError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, T.login_busy),
                _ => return Err(e.into()),
            };
            Ok((status, render(reviewer::LoginPage { t: T, error: Some(error) })?).into_response())
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): State<AppState>, PageSession(session): PageSession, jar: CookieJar, Form(form): Form<CsrfForm>) -> Result<Response, PageError> {
    if !csrf_matches(&session.token, &form.csrf) {
        return Err(AppError::Forbidden("missing or wrong CSRF token".into()).into());
    }
    app.staff_logout(&session.who, &session.token).await?;
    Ok((jar.add(removal_cookie()), Redirect::to("/")).into_response())
}

fn time_fr(ms: i64) -> String {
    let t = crate::clock::from_unix_ms(ms);
    format!("{:02}/{:02}/{} {:02}:{:02} UTC", t.day(), u8::from(t.month()), t.year(), t.hour(), t.minute())
}

async fn queue(State(app): State<AppState>, PageSession(session): PageSession) -> Result<Html<String>, PageError> {
    let rows = app.queue(&session.who).await?;
    let mut sittings: Vec<String> = rows.iter().map(|r| r.sitting.clone()).collect();
    sittings.dedup();
    let items = rows
        .into_iter()
        .map(|r| {
            let state = r.state.as_str();
            reviewer::QueueItem {
                attempt_id: r.attempt_id.to_string(),
                candidate: r.candidate,
                sitting: r.sitting,
                state: state.into(),
                state_label: Text::label(T.states, state).into(),
                seconds: r.recorded_seconds as u64,
                duration: reviewer::duration(r.recorded_seconds as u64),
                gaps: r.gaps,
                integrity: r.integrity.into(),
                integrity_label: Text::label(T.integrity, r.integrity).into(),
                flags: r.flags,
                ended_ms: r.ended_at_ms.unwrap_or(0),
                ended: r.ended_at_ms.map(time_fr).unwrap_or_default(),
                due_ms: r.due_at_ms.unwrap_or(0),
                due: r.due_at_ms.map(time_fr).unwrap_or_default(),
                overdue: r.overdue,
            }
        })
        .collect();
    let csrf = session.csrf();
    render(reviewer::QueuePage { t: T, login: &session.who.login, csrf: &csrf, sittings, items })
}

async fn player(State(app): State<AppState>, PageSession(session): PageSession, Path(attempt): Path<String>) -> Result<Html<String>, PageError> {
    let attempt = parse_id(&attempt, "attempt id")?;
    let who: &StaffIdentity = &session.who;
    if !who.role.may_view_recordings() {
        return Err(AppError::Forbidden("this role may not view recordings".into()).into());
    }
    let a = app.attempt_for_staff(who, attempt).await?;
    let sitting = app.db.sittings_of_staff(who.id).await.map_err(AppError::from)?.into_iter().find(|(id, _)| *id == a.sitting_id).map(|(_, r)| r).unwrap_or_default();
    let csrf = session.csrf();
    render(reviewer::PlayerPage {
        t: T,
        login: &who.login,
        csrf: &csrf,
        attempt_id: a.id.to_string(),
        candidate: a.reference,
        sitting,
        speeds: reviewer::SPEEDS,
        text_json: reviewer::script_json(T),
    })
}

async fn asset(Path(name): Path<String>) -> Response {
    match reviewer::assets::get(&name) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
        None => AppError::NotFound("asset").into_response(),
    }
}
