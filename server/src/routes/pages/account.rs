//! One's own account: change the password (forced at first login, after a reset, past
//! the maximum age) and set up the TOTP second factor.

use super::{check_csrf, home_of, render, AnyPageSession, PageError, T};
use crate::accounts::AccountsError;
use crate::domain::PasswordRejected;
use crate::routes::AppState;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .route("/account/totp", get(totp_page).post(confirm_totp))
}

async fn password_page(AnyPageSession(s): AnyPageSession) -> Result<Response, PageError> {
    let csrf = s.csrf();
    Ok(render(reviewer::PasswordPage {
        t: T,
        login: &s.who.login,
        csrf: &csrf,
        error: None,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

async fn change_password(
    State(app): State<AppState>,
    AnyPageSession(s): AnyPageSession,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let result = if f.new != f.confirm {
        Err(T.password_mismatch)
    } else {
        match app
            .accounts
            .change_password(&s.who, &s.token, &f.current, &f.new)
            .await
        {
            Ok(()) => Ok(()),
            Err(AccountsError::WrongCurrentPassword) => Err(T.password_wrong_current),
            Err(AccountsError::PasswordRejected(PasswordRejected::Common)) => {
                Err(T.password_common)
            }
            Err(AccountsError::PasswordRejected(PasswordRejected::ContainsLogin)) => {
                Err(T.password_contains_login)
            }
            Err(AccountsError::PasswordRejected(_)) => Err(T.password_too_weak),
            Err(AccountsError::SamePassword) => Err(T.password_same),
            Err(e) => return Err(e.into()),
        }
    };
    match result {
        // The next page re-reads the account: a pending TOTP enrolment comes next.
        Ok(()) => Ok(Redirect::to(home_of(&s.who)).into_response()),
        Err(error) => {
            let csrf = s.csrf();
            Ok((
                StatusCode::BAD_REQUEST,
                render(reviewer::PasswordPage {
                    t: T,
                    login: &s.who.login,
                    csrf: &csrf,
                    error: Some(error),
                })?,
            )
                .into_response())
        }
    }
}

async fn totp_page(
    State(app): State<AppState>,
    AnyPageSession(s): AnyPageSession,
) -> Result<Response, PageError> {
    let e = app.accounts.begin_totp(&s.who)?;
    let csrf = s.csrf();
    Ok(render(reviewer::TotpPage {
        t: T,
        login: &s.who.login,
        csrf: &csrf,
        secret: &e.secret_base32,
        otpauth_url: &e.otpauth_url,
        error: None,
        replacing: app.accounts.has_totp(&s.who).await?,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct TotpForm {
    csrf: String,
    secret: String,
    code: String,
    password: Option<String>,
    current_code: Option<String>,
}

async fn confirm_totp(
    State(app): State<AppState>,
    AnyPageSession(s): AnyPageSession,
    Form(f): Form<TotpForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let replacing = f.password.as_deref().zip(f.current_code.as_deref());
    match app
        .accounts
        .confirm_totp(&s.who, &f.secret, &f.code, replacing)
        .await
    {
        Ok(()) => Ok(Redirect::to(home_of(&s.who)).into_response()),
        Err(
            e @ (AccountsError::TotpSecretNotBase32
            | AccountsError::TotpCodeMismatch
            | AccountsError::InvalidTotpSecret(_)
            | AccountsError::ReplacementNotProven),
        ) => {
            let csrf = s.csrf();
            let refused = matches!(e, AccountsError::ReplacementNotProven);
            // The same secret again, so the entry already made in the person's app stays valid.
            Ok((
                if refused {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                },
                render(reviewer::TotpPage {
                    t: T,
                    login: &s.who.login,
                    csrf: &csrf,
                    secret: &f.secret,
                    otpauth_url: "",
                    error: Some(if refused {
                        T.totp_replacement_refused
                    } else {
                        T.totp_wrong
                    }),
                    replacing: app.accounts.has_totp(&s.who).await?,
                })?,
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}
