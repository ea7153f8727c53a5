//! The attempt's lifecycle through the APIs: consent, recording, end by the platform,
//! the upload grace, revoked and reissued tokens, withdrawal; every refusal precise.

use crate::helpers::*;
use protocol::api::*;
use std::time::Duration;

async fn state(app: &TestApp, attempt: uuid::Uuid) -> String {
    let r = app
        .http
        .get(format!(
            "{}/api/integration/v1/attempts/{attempt}",
            app.public
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<AttemptStatus>().await.unwrap().state
}

#[tokio::test]
async fn an_attempt_walks_enrolled_consented_recording_ended() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    assert_eq!(state(&app, c.attempt_id).await, "enrolled");
    app.consent(&c.token).await;
    assert_eq!(state(&app, c.attempt_id).await, "consented");
    // Consent again (agent restarted): harmless.
    assert_eq!(app.consent(&c.token).await.status(), 204);
    let s = app.open_stream(&c.token).await;
    assert_eq!(state(&app, c.attempt_id).await, "recording");
    let chunks = seal_stream(&s, 2);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );

    let r = app
        .platform_post(&format!("attempts/{}/end", c.attempt_id))
        .await;
    assert_eq!(r.status(), 200);
    let ended: AttemptStatus = r.json().await.unwrap();
    assert_eq!(ended.state, "ended");
    assert!(ended.new_streams_until.is_some());
    // Ending again answers the same (a retried call).
    let again: AttemptStatus = app
        .platform_post(&format!("attempts/{}/end", c.attempt_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.ended_at, ended.ended_at);

    // Within the grace: the backlog of the open stream lands, and a restarted agent may open one.
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.open_stream_raw(&c.token).await.status(), 201);
    // Past the grace: no new stream, but chunks of streams opened before still land.
    app.clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(
        error_code(app.open_stream_raw(&c.token).await).await,
        (409, "attempt_ended".into())
    );
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 2, chunks[2].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.end_stream(&c.token, s.stream_id, 2).await.status(), 204);

    // Every transition is in the audit trail, chained.
    let trail = app.db().await.audit_trail().await.unwrap();
    for action in ["attempt_consented", "attempt_recording", "attempt_ended"] {
        assert_eq!(
            trail
                .iter()
                .filter(|e| e.action == action && e.attempt_id == Some(c.attempt_id.into()))
                .count(),
            1,
            "{action}"
        );
    }
    server::db::verify_audit_chain(&trail).unwrap();
}

#[tokio::test]
async fn forbidden_transitions_get_a_precise_409() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    // Withdrawing before consenting.
    let w = |t: &str| {
        app.http
            .post(format!("{}/api/agent/v1/withdraw", app.public))
            .bearer_auth(t.to_owned())
            .send()
    };
    assert_eq!(
        error_code(w(&c.token).await.unwrap()).await,
        (409, "invalid_transition".into())
    );
    // Refused (the attempt is withdrawn with nothing recorded): no stream, no consent,
    // no end. (A withdrawal after consent destroys the attempt: `retention.rs`.)
    let refused = app
        .http
        .post(format!("{}/api/agent/v1/refuse", app.public))
        .bearer_auth(c.token.clone())
        .json(&RefusalRequest {
            notice_version: protocol::notice::NOTICE_VERSION.into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 200);
    assert_eq!(
        error_code(app.open_stream_raw(&c.token).await).await,
        (409, "invalid_transition".into())
    );
    assert_eq!(
        error_code(app.consent(&c.token).await).await,
        (409, "invalid_transition".into())
    );
    let (status, code) = error_code(
        app.platform_post(&format!("attempts/{}/end", c.attempt_id))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "invalid_transition"));
    assert_eq!(state(&app, c.attempt_id).await, "withdrawn");
    // Unknown attempt.
    assert_eq!(
        error_code(
            app.platform_post(&format!("attempts/{}/end", uuid::Uuid::new_v4()))
                .await
        )
        .await,
        (404, "not_found".into())
    );
}

/// Defect: a chunk recorded while the token was valid was refused once it expired.
#[tokio::test]
async fn a_chunk_recorded_while_the_token_was_valid_lands_after_it_expires() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 1);
    app.clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.end_stream(&c.token, s.stream_id, 1).await.status(), 204);
    // But the expired token starts nothing new.
    assert_eq!(
        error_code(app.open_stream_raw(&c.token).await).await,
        (401, "token_expired".into())
    );
}

#[tokio::test]
async fn a_revoked_token_opens_nothing_and_a_reissued_one_works() {
    let app = spawn_app().await;
    let sitting: CreateSittingResponse = app.create_sitting("S-revoke").await.json().await.unwrap();
    let c: AddCandidateResponse = app
        .add_candidate(sitting.sitting_id, "c1")
        .await
        .json()
        .await
        .unwrap();
    app.consent(&c.launch_token).await;
    let s = app.open_stream(&c.launch_token).await;
    let chunks = seal_stream(&s, 1);

    let r = app
        .platform_post(&format!("attempts/{}/token/revoke", c.attempt_id))
        .await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["revoked"], 1);
    assert_eq!(
        error_code(app.open_stream_raw(&c.launch_token).await).await,
        (401, "token_revoked".into())
    );
    assert_eq!(
        error_code(app.consent(&c.launch_token).await).await,
        (401, "token_revoked".into())
    );
    // The stream it opened before is the recording: its chunks land.
    assert_eq!(
        app.put_chunk(&c.launch_token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    // A retried enrolment does not hand the revoked token out again.
    assert_eq!(
        error_code(app.add_candidate(sitting.sitting_id, "c1").await).await,
        (409, "conflict".into())
    );

    let r = app
        .platform_post(&format!("attempts/{}/token", c.attempt_id))
        .await;
    assert_eq!(r.status(), 201);
    let fresh: AddCandidateResponse = r.json().await.unwrap();
    assert_ne!(fresh.launch_token, c.launch_token);
    assert_eq!(app.open_stream_raw(&fresh.launch_token).await.status(), 201);
    // Now the retried enrolment answers with the current token.
    let again: AddCandidateResponse = app
        .add_candidate(sitting.sitting_id, "c1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.launch_token, fresh.launch_token);
}

#[tokio::test]
async fn once_under_review_the_recording_takes_no_more_chunks() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 2);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.platform_post(&format!("attempts/{}/end", c.attempt_id))
            .await
            .status(),
        200
    );
    // Ended: the backlog still lands.
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
    app.state()
        .await
        .attempts
        .transition(
            c.attempt_id.into(),
            server::lifecycle::Transition::StartReview,
            "relectrice",
        )
        .await
        .unwrap();
    // In review: what the reviewer watches no longer changes.
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 2, chunks[2].clone())
                .await
        )
        .await,
        (409, "recording_closed".into())
    );
    assert_eq!(app.chunk_rows(s.stream_id).await, 2);
}
