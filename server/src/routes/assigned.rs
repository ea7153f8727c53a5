//! The attempt a staff route names (`{attempt_id}` in its path), as the authenticated
//! staff member may see it: the only way a staff handler gets an attempt, so that no
//! handler can forget the assignment check.

use super::{parse_id, AppState};
use crate::attempts::{AssignedAttempt, Purpose};
use crate::identity::StaffIdentity;
use crate::routes::error::AppError;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use std::marker::PhantomData;

/// A malformed id answers 400; a role refused for the route's purpose 403 before anything
/// is looked up; an attempt that is not the member's 404, exactly as an unknown one
/// (`Attempts::for_staff`).
pub struct Assigned<P: Gate = Read>(pub AssignedAttempt, pub PhantomData<P>);

/// The purpose a route names in its extractor's type.
pub trait Gate: Send + Sync {
    const PURPOSE: Purpose;
}

pub struct Read;
pub struct Watch;
pub struct Reviewing;
pub struct SecondReview;

impl Gate for Read {
    const PURPOSE: Purpose = Purpose::Read;
}
impl Gate for Watch {
    const PURPOSE: Purpose = Purpose::Watch;
}
impl Gate for Reviewing {
    const PURPOSE: Purpose = Purpose::Review;
}
impl Gate for SecondReview {
    const PURPOSE: Purpose = Purpose::SecondReview;
}

impl<P: Gate> FromRequestParts<AppState> for Assigned<P> {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, AppError> {
        let staff = StaffIdentity::from_request_parts(parts, app).await?;
        let params = RawPathParams::from_request_parts(parts, app)
            .await
            .map_err(|_| AppError::BadRequest("the path is not valid".into()))?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "attempt_id")
            .map(|(_, v)| v)
            .ok_or_else(|| AppError::BadRequest("the path names no attempt".into()))?;
        let id = parse_id(raw, "attempt id")?;
        let a = app.attempts.for_staff(&staff, id, P::PURPOSE).await?;
        Ok(Assigned(a, PhantomData))
    }
}
