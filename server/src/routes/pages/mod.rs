//! The reviewer app's pages (staff listener only): login at `/`, then by role the
//! reviewer's queue and player, the jury's outcomes, the admin's accounts and audit, and
//! everyone's account pages. Rendering and text are the `reviewer` crate's; these files
//! fill its views from the use cases. A page without a valid session sends the browser
//! to the login page; an account with something pending, to the page that settles it.

mod account;
mod admin;
mod jury;
mod retention;
mod review;

use super::session::{csrf_matches, removal_cookie, session_cookie, StaffCookieSession};
use super::AppState;
use crate::accounts::AccountsError;
use crate::identity::StaffIdentity;
use crate::routes::error::AppError;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::CookieJar;
use reviewer::text::{Text, FR};
use reviewer::Template;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/assets/{name}", get(asset))
        .merge(review::router())
        .merge(jury::router())
        .merge(retention::router())
        .merge(account::router())
        .merge(admin::router())
}

const T: &Text = &FR;

/// Where an account lands after login, by role.
fn home_of(who: &StaffIdentity) -> &'static str {
    match who.role {
        crate::domain::Role::Reviewer => "/queue",
        crate::domain::Role::Jury => "/jury",
        crate::domain::Role::Admin => "/admin",
    }
}

/// A page's error: the login page for a missing session, a short page otherwise.
struct PageError(AppError);

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

/// Every use case's error reaches a page through its HTTP mapping (`errors.rs`).
macro_rules! page_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PageError {
            fn from(e: $t) -> Self {
                Self(e.into())
            }
        }
    )*};
}

page_error_from!(
    crate::failure::Failure,
    crate::review::ReviewError,
    crate::retention::RetentionError,
    crate::accounts::AccountsError
);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self.0 {
            AppError::Unauthorized => return Redirect::to("/").into_response(),
            AppError::ActionRequired(pending) => {
                return Redirect::to(pending.page()).into_response()
            }
            _ => {}
        }
        let status = self.0.status_and_code().0;
        if let AppError::Internal(e) = &self.0 {
            tracing::error!(error = format!("{e:#}"), "internal error on a page");
        }
        let message = match &self.0 {
            _ if status.is_server_error() => "erreur interne".to_owned(),
            AppError::Gone => T.error_gone.to_owned(),
            AppError::PvAlreadyDecided => T.pv_already.to_owned(),
            e => e.to_string(),
        };
        let page = reviewer::ErrorPage {
            t: T,
            status: status.as_u16(),
            message: &message,
        }
        .render()
        .unwrap_or_default();
        (status, Html(page)).into_response()
    }
}

/// A page's session: without one, the browser goes to the login page; with something
/// pending, to the account page that settles it.
struct PageSession(super::session::StaffSession);

impl axum::extract::FromRequestParts<AppState> for PageSession {
    type Rejection = PageError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, PageError> {
        let session = StaffCookieSession::from_request_parts(parts, state)
            .await?
            .0;
        if let Some(p) = session.who.pending {
            return Err(AppError::ActionRequired(p).into());
        }
        Ok(Self(session))
    }
}

/// A page's session whatever is pending (the account pages, logout).
struct AnyPageSession(super::session::StaffSession);

impl axum::extract::FromRequestParts<AppState> for AnyPageSession {
    type Rejection = PageError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, PageError> {
        Ok(Self(
            StaffCookieSession::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// The check every page form makes: the session's CSRF token in the `csrf` field.
fn check_csrf(session: &super::session::StaffSession, presented: &str) -> Result<(), PageError> {
    if csrf_matches(&session.token, presented) {
        Ok(())
    } else {
        Err(AppError::Forbidden("missing or wrong CSRF token".into()).into())
    }
}

fn render(t: impl Template) -> Result<Html<String>, PageError> {
    t.render()
        .map(Html)
        .map_err(|e| PageError(AppError::Internal(anyhow::anyhow!("rendering a page: {e}"))))
}

async fn home(
    State(app): State<AppState>,
    parts: axum::http::request::Parts,
) -> Result<Response, PageError> {
    if let Some((t, _)) = super::session::presented_token(&parts) {
        if let Ok(who) = app.accounts.authenticate_staff(&t).await {
            return Ok(Redirect::to(home_of(&who)).into_response());
        }
    }
    Ok(render(reviewer::LoginPage { t: T, error: None })?.into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    #[serde(default)]
    totp: String,
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let totp = Some(form.totp.as_str()).filter(|t| !t.is_empty());
    let client = crate::routes::client_addr(&app, peer, &headers);
    match app
        .accounts
        .staff_login(&form.login, &form.password, totp, &client)
        .await
    {
        Ok(login) => {
            let who = app.accounts.authenticate_staff(&login.token).await?;
            let to = who.pending.map_or(home_of(&who), |p| p.page());
            let jar = jar.add(session_cookie(login.token));
            if login.notices.is_empty() {
                return Ok((jar, Redirect::to(to)).into_response());
            }
            // What admins did to the account since the last login, before anything else.
            let notices: Vec<String> = login
                .notices
                .iter()
                .map(|n| {
                    format!(
                        "{} — {} ({})",
                        time_fr(n.at_ms),
                        Text::label(T.account_actions, &n.action),
                        n.by.join(", ")
                    )
                })
                .collect();
            let page = render(reviewer::AccountNoticesPage {
                t: T,
                notices: &notices,
                next: to,
            })?;
            Ok((jar, page).into_response())
        }
        Err(e) => {
            let (status, error) = match &e {
                AccountsError::BadCredentials | AccountsError::CredentialsTooLong => {
                    (StatusCode::UNAUTHORIZED, T.login_failed)
                }
                AccountsError::TotpRequired => (StatusCode::UNAUTHORIZED, T.totp_missing),
                AccountsError::LoginLocked { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, T.login_locked)
                }
                AccountsError::Busy => (StatusCode::SERVICE_UNAVAILABLE, T.login_busy),
                _ => return Err(e.into()),
            };
            Ok((
                status,
                render(reviewer::LoginPage {
                    t: T,
                    error: Some(error),
                })?,
            )
                .into_response())
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(app): State<AppState>,
    AnyPageSession(session): AnyPageSession,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&session, &form.csrf)?;
    app.accounts
        .staff_logout(&session.who, &session.token)
        .await?;
    Ok((jar.add(removal_cookie()), Redirect::to("/")).into_response())
}

pub(super) fn time_fr(ms: i64) -> String {
    let t = crate::clock::from_unix_ms(ms);
    format!(
        "{:02}/{:02}/{} {:02}:{:02} UTC",
        t.day(),
        u8::from(t.month()),
        t.year(),
        t.hour(),
        t.minute()
    )
}

async fn asset(Path(name): Path<String>) -> Response {
    match reviewer::assets::get(&name) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
        None => AppError::NotFound("asset").into_response(),
    }
}
