//! The jury's pages: the outcomes of their sittings' reviews (categories and counts, never
//! notes or media), second reviews, and the PV decision in three steps: the form, a page
//! that says plainly what will be deleted now and what kept until when, and the
//! confirmed, irreversible decision.

use super::{check_csrf, render, time_fr, PageError, PageSession, T};
use crate::attempts::Purpose;
use crate::db::{PvOutcome, SittingId};
use crate::identity::StaffIdentity;
use crate::retention::{PvPlan, PvRequest, RetentionError};
use crate::routes::error::AppError;
use crate::routes::{parse_id, AppState};
use axum::extract::{Form, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use reviewer::text::Text;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jury", get(jury))
        .route("/jury/second-review", post(second_review))
        .route("/jury/sittings/{sitting_id}/pv", get(pv_form))
        .route("/jury/sittings/{sitting_id}/pv/confirm", post(pv_confirm))
        .route("/jury/sittings/{sitting_id}/pv/decide", post(pv_decide))
}

fn require_jury(who: &StaffIdentity) -> Result<(), PageError> {
    if who.role == crate::domain::Role::Jury {
        Ok(())
    } else {
        Err(AppError::Forbidden("this page is the jury's".into()).into())
    }
}

fn outcome_label(o: PvOutcome) -> &'static str {
    Text::label(T.pv_outcomes, o.as_str())
}

fn effects(o: PvOutcome) -> &'static str {
    match o {
        PvOutcome::Validated => T.pv_effects_validated,
        PvOutcome::Reservations => T.pv_effects_reservations,
        PvOutcome::Refused => T.pv_effects_refused,
    }
}

/// The jury's view: their sittings with the PV's status; per candidate, the review's
/// status and outcome, categories and counts.
async fn jury(
    State(app): State<AppState>,
    PageSession(session): PageSession,
) -> Result<Html<String>, PageError> {
    let who = &session.who;
    require_jury(who)?;
    let (mut sittings, mut rows) = (Vec::new(), Vec::new());
    for sitting in app.review.jury_overview(who).await? {
        sittings.push(reviewer::JurySitting {
            id: sitting.id.to_string(),
            reference: sitting.reference.clone(),
            pv: sitting
                .pv
                .map(|d| {
                    format!(
                        "{}, {} {}",
                        outcome_label(d.outcome),
                        T.pv_decided_on,
                        time_fr(d.decided_at_ms)
                    )
                })
                .unwrap_or_default(),
        });
        for row in sitting.attempts {
            let (a, outcome) = (row.attempt, row.outcome);
            let last = outcome.rounds.last();
            rows.push(reviewer::JuryRow {
                attempt_id: a.id.to_string(),
                second_review_possible: row.second_review_possible,
                sitting: sitting.reference.clone(),
                candidate: row.reference.clone(),
                state: Text::label(T.states, a.state.as_str()).into(),
                review: Text::label(T.review_statuses, outcome.status.as_str()).into(),
                outcome: last
                    .and_then(|r| r.outcome)
                    .map(|o| Text::label(T.outcomes, o.as_str()).to_owned())
                    .unwrap_or_default(),
                categories: last
                    .map(|r| {
                        r.categories
                            .iter()
                            .map(|(c, n)| format!("{} ×{n}", Text::label(T.categories, c)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            });
        }
    }
    let csrf = session.csrf();
    render(reviewer::JuryPage {
        t: T,
        login: &who.login,
        csrf: &csrf,
        sittings,
        rows,
    })
}

#[derive(serde::Deserialize)]
struct SecondReviewForm {
    csrf: String,
    attempt: String,
    reviewer: String,
}

async fn second_review(
    State(app): State<AppState>,
    PageSession(s): PageSession,
    Form(f): Form<SecondReviewForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let a = app
        .attempts
        .for_staff(
            &s.who,
            parse_id(&f.attempt, "attempt id")?,
            Purpose::SecondReview,
        )
        .await?;
    app.review
        .request_second_review(&a, f.reviewer.trim())
        .await?;
    Ok(Redirect::to("/jury").into_response())
}

/// The sitting, if it is one of this jury member's: another answers as an unknown one.
async fn jury_sitting(
    app: &AppState,
    who: &StaffIdentity,
    sitting: &str,
) -> Result<(SittingId, String), PageError> {
    require_jury(who)?;
    let id = parse_id(sitting, "sitting id")?;
    app.review
        .sittings_of(who)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .find(|(s, _)| *s == id)
        .ok_or_else(|| AppError::NotFound("sitting").into())
}

async fn pv_form(
    State(app): State<AppState>,
    PageSession(session): PageSession,
    Path(sitting): Path<String>,
) -> Result<Html<String>, PageError> {
    let (id, reference) = jury_sitting(&app, &session.who, &sitting).await?;
    form_page(&app, &session, id, reference, None).await
}

async fn form_page(
    app: &AppState,
    session: &crate::routes::session::StaffSession,
    id: SittingId,
    reference: String,
    error: Option<String>,
) -> Result<Html<String>, PageError> {
    // The plan of a decision that contests no one tells which reviews are unsubmitted.
    let (plan, _) = app
        .retention
        .pv_plan(
            id,
            &PvRequest {
                outcome: PvOutcome::Refused,
                contested: vec![],
                override_unsubmitted: false,
                decided_by: None,
            },
        )
        .await?;
    let mut candidates = Vec::with_capacity(plan.attempts.len());
    for p in &plan.attempts {
        let a = app
            .attempts
            .for_staff(&session.who, p.attempt_id, Purpose::Read)
            .await?;
        let outcome = app.review.review_outcome(&a).await?;
        candidates.push(reviewer::PvCandidate {
            attempt_id: p.attempt_id.to_string(),
            candidate: p.reference.clone(),
            review: Text::label(T.review_statuses, outcome.status.as_str()).into(),
            unsubmitted: p.review_unsubmitted,
        });
    }
    let csrf = session.csrf();
    let error = error.or_else(|| (plan.in_progress > 0).then(|| T.pv_in_progress.to_owned()));
    render(reviewer::PvFormPage {
        t: T,
        login: &session.who.login,
        csrf: &csrf,
        sitting_id: id.to_string(),
        sitting: reference,
        candidates,
        unsubmitted: plan.unsubmitted,
        error,
    })
}

/// The form as posted: `outcome`, `contested_<attempt>` boxes (or, from the confirmation
/// page, `contested` as a comma-separated list), `override`, `csrf`.
fn request_of(form: &HashMap<String, String>) -> Result<PvRequest, AppError> {
    let outcome = form
        .get("outcome")
        .ok_or_else(|| AppError::BadRequest("choose a decision".into()))?;
    let outcome = PvOutcome::parse(outcome).map_err(AppError::BadRequest)?;
    let mut contested = Vec::new();
    for (k, _) in form.iter().filter(|(_, v)| v.as_str() == "on") {
        if let Some(id) = k.strip_prefix("contested_") {
            contested.push(parse_id(id, "attempt id")?);
        }
    }
    for id in form
        .get("contested")
        .map(|l| l.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        contested.push(parse_id(id, "attempt id")?);
    }
    Ok(PvRequest {
        outcome,
        contested,
        override_unsubmitted: form.get("override").is_some_and(|v| v == "on"),
        decided_by: None,
    })
}

fn plan_page(
    session: &crate::routes::session::StaffSession,
    reference: String,
    req: &PvRequest,
    plan: &PvPlan,
    done: bool,
    receipts: usize,
) -> Result<Html<String>, PageError> {
    let rows = plan
        .attempts
        .iter()
        .map(|p| reviewer::PvFate {
            candidate: p.reference.clone(),
            contested: p.contested,
            fate: match (p.fate, p.kept_until_ms) {
                ("destroyed_now", _) => T.fate_destroyed_now.into(),
                ("kept", Some(until)) => format!("{} {}", T.fate_kept, time_fr(until)),
                ("destroyed", _) => T.fate_destroyed.into(),
                ("due", _) => T.fate_due.into(),
                _ => T.fate_held.into(),
            },
        })
        .collect();
    let csrf = session.csrf();
    render(reviewer::PvConfirmPage {
        t: T,
        login: &session.who.login,
        csrf: &csrf,
        sitting_id: plan.sitting_id.to_string(),
        sitting: reference,
        outcome: req.outcome.as_str().into(),
        outcome_label: outcome_label(req.outcome).into(),
        effects: effects(req.outcome).into(),
        contested: req
            .contested
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        override_unsubmitted: req.override_unsubmitted,
        unsubmitted: plan.unsubmitted,
        rows,
        done,
        receipts,
    })
}

/// Why the decision is refused, in the jury's words; `None` when it is not the form's
/// fault (an error page then).
fn refusal(e: &RetentionError) -> Option<String> {
    use RetentionError::*;
    Some(match e {
        ReviewsUnsubmitted(n) => format!("{n} {} {}", T.pv_unsubmitted, T.pv_override_needed),
        PvAlreadyDecided => T.pv_already.into(),
        AttemptsInProgress(_) | SittingKeptChanging => T.pv_in_progress.into(),
        ReservationsNameNoOne => T.pv_need_contested.into(),
        ContestedWithoutReservations => T.pv_no_contested.into(),
        NotOfThisSitting(_) => e.to_string(),
        _ => return None,
    })
}

/// Step 2: what the decision will do, to confirm.
async fn pv_confirm(
    State(app): State<AppState>,
    PageSession(session): PageSession,
    Path(sitting): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    check_csrf(&session, form.get("csrf").map_or("", |c| c.as_str()))?;
    let (id, reference) = jury_sitting(&app, &session.who, &sitting).await?;
    let req = match request_of(&form) {
        Ok(r) => r,
        Err(_) => return form_page(&app, &session, id, reference, Some(T.pv_choose.into())).await,
    };
    match app.retention.pv_plan(id.into(), &req).await {
        Ok((plan, _)) if plan.in_progress > 0 => {
            form_page(&app, &session, id, reference, Some(T.pv_in_progress.into())).await
        }
        Ok((plan, _)) if plan.unsubmitted > 0 && !req.override_unsubmitted => {
            form_page(
                &app,
                &session,
                id,
                reference,
                refusal(&RetentionError::ReviewsUnsubmitted(plan.unsubmitted)),
            )
            .await
        }
        Ok((plan, _)) => plan_page(&session, reference, &req, &plan, false, 0),
        Err(e) => match refusal(&e) {
            Some(words) => form_page(&app, &session, id, reference, Some(words)).await,
            None => Err(e.into()),
        },
    }
}

/// Step 3: the decision, recorded; what it destroyed is gone when this page answers.
async fn pv_decide(
    State(app): State<AppState>,
    PageSession(session): PageSession,
    Path(sitting): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    check_csrf(&session, form.get("csrf").map_or("", |c| c.as_str()))?;
    let (id, reference) = jury_sitting(&app, &session.who, &sitting).await?;
    if form.get("confirm").is_none_or(|v| v != "on") {
        return Err(AppError::BadRequest("the decision must be confirmed".into()).into());
    }
    let req = request_of(&form)?;
    let result = app
        .retention
        .decide_pv(&session.who.login, id.into(), req.clone())
        .await?;
    let plan = PvPlan {
        sitting_id: id.into(),
        outcome: result.outcome,
        attempts: result.attempts.clone(),
        unsubmitted: 0,
        in_progress: 0,
    };
    plan_page(
        &session,
        reference,
        &req,
        &plan,
        true,
        result.receipts.len(),
    )
}
