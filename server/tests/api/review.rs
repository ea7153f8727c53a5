//! Reviewing: fragments one at a time with their checks, flags and their rules, the
//! submitted outcome (what the platform reads), a second review by another reviewer.

use crate::helpers::*;

async fn ended_recording(app: &TestApp, fragments: u32) -> (Candidate, OpenStream) {
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, fragments).into_iter().enumerate() {
        assert!(app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.end_stream(&c.token, s.stream_id, fragments).await;
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    (c, s)
}

fn flag(start: i64, category: &str) -> serde_json::Value {
    serde_json::json!({ "start_ms": start, "end_ms": start + 5_000, "category": category, "severity": "medium", "note": "vu de côté" })
}

#[tokio::test]
async fn fragments_are_served_one_by_one_checked_and_audited() {
    let app = spawn_app().await;
    let (c, s) = ended_recording(&app, 4).await;
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let url = |i: u32| {
        format!(
            "{}/api/staff/v1/attempts/{}/streams/{}/fragments/{i}",
            app.staff, c.attempt_id, s.stream_id
        )
    };
    let r = app
        .http
        .get(url(2))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        format!("fragment 2 of stream {}", s.stream_id).as_bytes()
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    let viewed = trail
        .iter()
        .rev()
        .find(|e| e.action == "recording_viewed")
        .unwrap();
    assert!(
        viewed.detail.contains("\"index\":2") && viewed.detail.contains("media_from_ms"),
        "{}",
        viewed.detail
    );

    // A stored fragment whose bytes changed is refused as altered, and audited.
    app.alter_blob(c.attempt_id, s.stream_id, 3).await;
    assert_eq!(
        error_code(
            app.http
                .get(url(3))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
        )
        .await,
        (422, "fragment_altered".into())
    );
    assert!(app
        .db()
        .await
        .audit_trail()
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == "fragment_altered"));
    assert_eq!(
        error_code(
            app.http
                .get(url(7))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
        )
        .await,
        (404, "not_found".into())
    );
}

#[tokio::test]
async fn the_media_endpoint_no_longer_plays_across_a_hole() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 5);
    for (i, chunk) in chunks.into_iter().enumerate().filter(|(i, _)| *i != 3) {
        assert!(app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let media = |q: &str| {
        format!(
            "{}/api/staff/v1/attempts/{}/streams/{}/media{q}",
            app.staff, c.attempt_id, s.stream_id
        )
    };
    assert_eq!(
        error_code(
            app.http
                .get(media(""))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
        )
        .await,
        (409, "fragments_missing".into())
    );
    assert_eq!(
        app.http
            .get(media("?from=1&to=2"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The timeline says where the hole is.
    let tl: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}/timeline",
            app.staff, c.attempt_id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tl["streams"][0]["missing"],
        serde_json::json!([{ "from": 3, "to": 3 }]),
        "{tl}"
    );
    assert_eq!(
        tl["streams"][0]["fragments"].as_array().unwrap().len(),
        4,
        "{tl}"
    );
}

#[tokio::test]
async fn flags_follow_the_review_and_the_outcome_must_agree() {
    let app = spawn_app().await;
    let (c, _) = app.recording_candidate().await;
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let api = |p: &str| format!("{}/api/staff/v1/attempts/{}{p}", app.staff, c.attempt_id);
    // Not before the exam is over.
    assert_eq!(
        app.http
            .post(api("/flags"))
            .bearer_auth(&token)
            .json(&flag(1_000, "talking"))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();

    let created: serde_json::Value = app
        .http
        .post(api("/flags"))
        .bearer_auth(&token)
        .json(&flag(1_000, "talking"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "in_review",
        "the first flag starts the review"
    );
    for bad in [
        serde_json::json!({ "start_ms": 5_000, "end_ms": 1_000, "category": "talking", "severity": "low" }),
        serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "mood", "severity": "low" }),
        serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "talking", "severity": "low", "note": "x".repeat(501) }),
        serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "talking", "severity": "low", "score": 3 }),
    ] {
        let r = app
            .http
            .post(api("/flags"))
            .bearer_auth(&token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        app.http
            .put(api(&format!("/flags/{id}")))
            .bearer_auth(&token)
            .json(&flag(2_000, "other_person"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.db()
            .await
            .flags_of(c.attempt_id.into())
            .await
            .unwrap()
            .len(),
        1,
        "refused input stored nothing"
    );

    // Another reviewer of the sitting cannot write into this review.
    let other = add_staff(&app, "autre", "reviewer").await;
    let sitting = app.sitting_of(c.attempt_id).await;
    app.state()
        .await
        .accounts
        .assign_sitting("autre", sitting, "test")
        .await
        .unwrap();
    assert_eq!(
        app.http
            .post(api("/flags"))
            .bearer_auth(&other)
            .json(&flag(1_000, "talking"))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        app.http
            .delete(api(&format!("/flags/{id}")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let submit = |outcome: &'static str| {
        app.http
            .post(api("/review/submit"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "outcome": outcome }))
            .send()
    };
    assert_eq!(
        error_code(submit("no_irregularity").await.unwrap()).await,
        (409, "conflict".into()),
        "a flag is an irregularity"
    );
    assert_eq!(submit("irregularities").await.unwrap().status(), 200);
    assert_eq!(
        submit("irregularities").await.unwrap().status(),
        409,
        "submitted once"
    );
    assert_eq!(
        app.http
            .put(api(&format!("/flags/{id}")))
            .bearer_auth(&token)
            .json(&flag(3_000, "talking"))
            .send()
            .await
            .unwrap()
            .status(),
        409,
        "frozen"
    );
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "reviewed"
    );

    // What the exam platform reads: categories and counts, never the notes.
    let outcome: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/integration/v1/attempts/{}/review",
            app.public, c.attempt_id
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(outcome["status"], "submitted");
    assert_eq!(outcome["rounds"][0]["outcome"], "irregularities");
    assert_eq!(
        outcome["rounds"][0]["categories"],
        serde_json::json!({ "other_person": 1 })
    );
    assert!(!outcome.to_string().contains("vu de côté"));

    // A second review, asked by the jury, goes to another reviewer.
    let jury = add_staff(&app, "jure", "jury").await;
    app.state()
        .await
        .accounts
        .assign_sitting("jure", sitting, "test")
        .await
        .unwrap();
    let second = |who: &'static str| {
        app.http
            .post(api("/second-review"))
            .bearer_auth(&jury)
            .json(&serde_json::json!({ "reviewer": who }))
            .send()
    };
    assert_eq!(
        second("relectrice").await.unwrap().status(),
        400,
        "not the same reviewer"
    );
    assert_eq!(second("personne").await.unwrap().status(), 400);
    assert_eq!(second("autre").await.unwrap().status(), 201);
    assert_eq!(second("autre").await.unwrap().status(), 409);
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "in_review"
    );
    let view: serde_json::Value = app
        .http
        .get(api("/review"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["my_round"], 2);
    assert_eq!(
        app.http
            .post(api("/flags"))
            .bearer_auth(&token)
            .json(&flag(1_000, "talking"))
            .send()
            .await
            .unwrap()
            .status(),
        409,
        "the first reviewer is done"
    );
    let r = app
        .http
        .post(api("/review/submit"))
        .bearer_auth(&other)
        .json(&serde_json::json!({ "outcome": "no_irregularity" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let outcome: serde_json::Value = app
        .http
        .get(api("/outcome"))
        .bearer_auth(&jury)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(outcome["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(outcome["rounds"][1]["outcome"], "no_irregularity");
    let actions: Vec<String> = app
        .db()
        .await
        .audit_trail()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "flag_created",
        "flag_updated",
        "review_submitted",
        "second_review_requested",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited");
    }
}

/// References are stored as pseudonyms (issue 19): the queue still lists a sitting's
/// candidates by their reference as it reads, not in the database's pseudonym order.
#[tokio::test]
async fn the_queue_lists_candidates_by_reference() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(4, 1).await;
    let reviewer = reviewer_of(&app, "ordre", candidates[0].0.attempt_id).await;
    let queue: serde_json::Value = app
        .http
        .get(format!("{}/api/staff/v1/queue", app.staff))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = queue
        .as_array()
        .unwrap_or_else(|| queue["attempts"].as_array().unwrap())
        .iter()
        .map(|r| r["candidate"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["C-0", "C-1", "C-2", "C-3"], "{queue}");
}
