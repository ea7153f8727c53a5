//! The product's promises again on production storage (PostgreSQL + S3), through the API:
//! the lifecycle walk, retried enrolment, the grace after the end, the PV's deletion.

use crate::helpers::*;
use protocol::api::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_lives_its_lifecycle_on_postgres_and_s3() {
    let app = spawn_app_on_postgres_and_s3(|_| {}).await;
    let sitting: CreateSittingResponse = app.create_sitting("PG-S3").await.json().await.unwrap();
    let first: AddCandidateResponse = app
        .add_candidate(sitting.sitting_id, "c1")
        .await
        .json()
        .await
        .unwrap();
    let retried = app.add_candidate(sitting.sitting_id, "c1").await;
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retried
            .json::<AddCandidateResponse>()
            .await
            .unwrap()
            .launch_token,
        first.launch_token
    );

    assert_eq!(app.consent(&first.launch_token).await.status(), 204);
    let s = app.open_stream(&first.launch_token).await;
    let chunks = seal_stream(&s, 3);
    for (i, c) in chunks.iter().enumerate().take(3) {
        assert_eq!(
            app.put_chunk(&first.launch_token, s.stream_id, i as u32, c.clone())
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        app.put_chunk(&first.launch_token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        200,
        "replay"
    );
    assert_eq!(
        app.platform_post(&format!("attempts/{}/end", first.attempt_id))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(
        error_code(app.open_stream_raw(&first.launch_token).await).await,
        (409, "attempt_ended".into())
    );
    assert_eq!(
        app.put_chunk(&first.launch_token, s.stream_id, 3, chunks[3].clone())
            .await
            .status(),
        201,
        "the backlog still lands"
    );
    assert_eq!(
        app.end_stream(&first.launch_token, s.stream_id, 3)
            .await
            .status(),
        204
    );

    // A reviewer reads it back, decrypted from the bucket, and the read is audited.
    let token = reviewer_of(&app, "relectrice", first.attempt_id).await;
    let r = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}/streams/{}/media?from=1&to=3",
            app.staff, first.attempt_id, s.stream_id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let expected = [0, 1, 2, 3].map(|i| fragment_data(i, s.stream_id)).concat();
    assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
    let report: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}",
            app.staff, first.attempt_id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            report["state"].as_str(),
            report["integrity"].as_str(),
            report["fragments_stored"].as_u64()
        ),
        // Whole, but its last fragment arrived 25 h after the end: said, not hidden.
        (Some("ended"), Some("late_upload"), Some(4)),
        "{report:#}"
    );
    assert_eq!(report["streams"][0]["received_after_end_s"], 90_000.0);
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail.iter().any(|e| e.action == "recording_viewed"));
    server::db::verify_audit_chain(&trail).unwrap();

    // The jury validates: the key goes before the answer, then every object in the bucket.
    let blobs = app.blobs();
    assert_eq!(
        blobs
            .count_attempt_objects(first.attempt_id.into())
            .await
            .unwrap(),
        4
    );
    let pv = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{}/pv", sitting.sitting_id),
            Some(serde_json::json!({ "outcome": "validated", "override_unsubmitted": true })),
        )
        .await;
    assert_eq!(pv.status(), 201);
    assert_eq!(
        app.db()
            .await
            .attempt(first.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "destroyed"
    );
    for _ in 0..100 {
        if blobs
            .count_attempt_objects(first.attempt_id.into())
            .await
            .unwrap()
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        blobs
            .count_attempt_objects(first.attempt_id.into())
            .await
            .unwrap(),
        0,
        "every object deleted from the bucket"
    );
    let r = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}/streams/{}/fragments/1",
            app.staff, first.attempt_id, s.stream_id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
}
