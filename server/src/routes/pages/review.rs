//! The reviewer's queue and player.

use super::{render, time_fr, PageError, PageSession, T};
use crate::identity::StaffIdentity;
use crate::routes::error::AppError;
use crate::routes::{parse_id, AppState};
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use reviewer::text::Text;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/queue", get(queue))
        .route("/attempts/{attempt_id}", get(player))
}

async fn queue(
    State(app): State<AppState>,
    PageSession(session): PageSession,
) -> Result<Html<String>, PageError> {
    let rows = app.review.queue(&session.who).await?;
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
                integrity: r.integrity.as_str().into(),
                integrity_label: Text::label(T.integrity, r.integrity.as_str()).into(),
                late_streams: r.late_streams,
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
    render(reviewer::QueuePage {
        t: T,
        login: &session.who.login,
        csrf: &csrf,
        sittings,
        items,
    })
}

async fn player(
    State(app): State<AppState>,
    PageSession(session): PageSession,
    Path(attempt): Path<String>,
) -> Result<Html<String>, PageError> {
    let attempt: crate::db::AttemptId = parse_id(&attempt, "attempt id")?;
    let who: &StaffIdentity = &session.who;
    if !who.role.may_view_recordings() {
        return Err(AppError::Forbidden("this role may not view recordings".into()).into());
    }
    let assigned = app
        .attempts
        .for_staff(who, attempt, crate::attempts::Purpose::Watch)
        .await?;
    let a = crate::review::Review::viewable(&assigned)?;
    let sitting = app
        .review
        .sittings_of(who)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .find(|(id, _)| *id == a.sitting_id)
        .map(|(_, r)| r)
        .unwrap_or_default();
    let csrf = session.csrf();
    render(reviewer::PlayerPage {
        t: T,
        login: &who.login,
        csrf: &csrf,
        attempt_id: a.id.to_string(),
        candidate: app.review.reference_of(a),
        sitting,
        speeds: reviewer::SPEEDS,
        text_json: reviewer::script_json(T),
    })
}
