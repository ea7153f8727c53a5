//! How a staff request is authenticated: a bearer token (scripts, the CLI's peers) or the
//! session cookie the reviewer app sets at login. A cookie rides along on any request
//! the browser makes, so every state change authenticated by it must also carry the
//! session's CSRF token (header `X-CSRF-Token`, or the form field `csrf` for the pages'
//! forms), which a page of another origin cannot read. SameSite=Strict is the second lock.

use super::AppState;
use crate::identity::StaffIdentity;
use crate::routes::error::AppError;
use axum::extract::FromRequestParts;
use axum::http::{request::Parts, HeaderValue, Method};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "proctor_staff";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: derived from the session secret, so nothing more is
/// stored, and unguessable without the cookie (which is HttpOnly).
pub fn csrf_token(session: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(b"proctor csrf v1\0")
            .chain_update(session.as_bytes())
            .finalize(),
    )
}

pub fn csrf_matches(session: &str, presented: &str) -> bool {
    csrf_token(session)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// The cookie set at login: HttpOnly (no script reads it), Secure, SameSite=Strict, for
/// the whole staff listener, ending with the browser session.
pub fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build((COOKIE, token))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

pub fn removal_cookie() -> Cookie<'static> {
    let mut c = session_cookie(String::new());
    c.make_removal();
    c
}

/// An authenticated staff request, and how it was authenticated.
pub struct StaffSession {
    pub who: StaffIdentity,
    pub token: String,
    pub by_cookie: bool,
}

impl StaffSession {
    pub fn csrf(&self) -> String {
        csrf_token(&self.token)
    }
}

/// The session secret a request carries: bearer first, then the cookie.
pub fn presented_token(parts: &Parts) -> Option<(String, bool)> {
    if let Ok(t) = super::bearer(parts) {
        return Some((t.to_owned(), false));
    }
    let jar = CookieJar::from_headers(&parts.headers);
    jar.get(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(|t| (t, true))
}

/// Authenticates without the CSRF check: for the pages' own form handlers, which check
/// the form field, and for safe methods.
pub struct StaffCookieSession(pub StaffSession);

impl FromRequestParts<AppState> for StaffCookieSession {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let (token, by_cookie) = presented_token(parts).ok_or(AppError::Unauthorized)?;
        let mut who = state.accounts.authenticate_staff(&token).await?;
        who.terminal = parts
            .extensions
            .get::<Option<crate::terminals::Terminal>>()
            .cloned()
            .flatten()
            .map(|t| t.fingerprint);
        Ok(Self(StaffSession {
            who,
            token,
            by_cookie,
        }))
    }
}

/// Authenticated, with the CSRF check, whatever the account still has to do: for the
/// account routes (change the password, set up TOTP) and logout.
pub struct AccountSession(pub StaffSession);

impl FromRequestParts<AppState> for AccountSession {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let StaffCookieSession(session) =
            StaffCookieSession::from_request_parts(parts, state).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if session.by_cookie && !safe {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .unwrap_or("");
            if !csrf_matches(&session.token, presented) {
                return Err(AppError::Forbidden("missing or wrong CSRF token".into()));
            }
        }
        Ok(Self(session))
    }
}

/// Every other staff route: authenticated, CSRF-checked, and nothing pending.
impl FromRequestParts<AppState> for StaffSession {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let AccountSession(session) = AccountSession::from_request_parts(parts, state).await?;
        if let Some(p) = session.who.pending {
            return Err(AppError::ActionRequired(p));
        }
        Ok(session)
    }
}

impl FromRequestParts<AppState> for StaffIdentity {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(StaffSession::from_request_parts(parts, state).await?.who)
    }
}
