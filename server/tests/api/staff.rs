use crate::helpers::*;
use uuid::Uuid;

#[tokio::test]
async fn reviewer_reads_decrypted_media_and_the_read_is_audited() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, 3).into_iter().enumerate() {
        assert!(app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.end_stream(&c.token, s.stream_id, 3).await;
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;

    // Nobody watches live: not before the exam has ended.
    let url = format!(
        "{}/api/staff/v1/attempts/{}/streams/{}/media?from=2&to=3",
        app.staff, c.attempt_id, s.stream_id
    );
    let fragment = format!(
        "{}/api/staff/v1/attempts/{}/streams/{}/fragments/1",
        app.staff, c.attempt_id, s.stream_id
    );
    for during in [&url, &fragment] {
        assert_eq!(
            error_code(
                app.http
                    .get(during)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
            )
            .await,
            (409, "exam_in_progress".into()),
            "{during}"
        );
    }
    assert!(!app
        .db()
        .await
        .audit_trail()
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == "recording_viewed"));
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let r = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let body = r.bytes().await.unwrap();
    let expected = [0, 2, 3].map(|i| fragment_data(i, s.stream_id)).concat();
    assert_eq!(body.as_ref(), expected.as_slice());

    let trail = app.db().await.audit_trail().await.unwrap();
    let read = trail
        .iter()
        .find(|e| e.action == "recording_viewed")
        .expect("the read is audited");
    assert_eq!(read.actor, "relectrice");
    assert_eq!(read.attempt_id, Some(c.attempt_id.into()));
    assert!(read.detail.contains("\"from_index\":2") && read.detail.contains("\"to_index\":3"));
    server::db::verify_audit_chain(&trail).expect("audit chain intact");

    let report: serde_json::Value = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}",
            app.staff, c.attempt_id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["integrity"], "ok");
    assert_eq!(report["fragments_stored"], 4);
    assert_eq!(report["state"], "ended");
}

/// Defect: any reviewer could read any attempt. A reviewer or jury member sees the sittings
/// assigned to them; any other attempt answers exactly as an unknown one.
#[tokio::test]
async fn a_reviewer_sees_only_the_sittings_assigned_to_them() {
    let app = spawn_app().await;
    let (theirs, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, 1).into_iter().enumerate() {
        assert!(app
            .put_chunk(&theirs.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.state()
        .await
        .enrolment
        .end_attempt(theirs.attempt_id.into(), "test")
        .await
        .unwrap();
    let mine = app.candidate().await;
    let token = reviewer_of(&app, "relectrice", mine.attempt_id).await;
    let report = |id: Uuid| {
        app.http
            .get(format!("{}/api/staff/v1/attempts/{id}", app.staff))
            .bearer_auth(&token)
            .send()
    };
    let media = |id: Uuid| {
        app.http
            .get(format!(
                "{}/api/staff/v1/attempts/{id}/streams/{}/media",
                app.staff, s.stream_id
            ))
            .bearer_auth(&token)
            .send()
    };

    assert_eq!(report(mine.attempt_id).await.unwrap().status(), 200);
    let unknown = report(Uuid::new_v4()).await.unwrap();
    let (status, body) = (unknown.status(), unknown.text().await.unwrap());
    assert_eq!(status, 404);
    for r in [
        report(theirs.attempt_id).await.unwrap(),
        media(theirs.attempt_id).await.unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.text().await.unwrap(),
            body,
            "another sitting's attempt looks unknown"
        );
    }
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(!trail.iter().any(|e| e.action == "recording_viewed"
        || (e.action == "attempt_report_viewed"
            && e.attempt_id == Some(theirs.attempt_id.into()))));

    // Assigned to that sitting too, they see it.
    let sitting = app.sitting_of(theirs.attempt_id).await;
    app.state()
        .await
        .accounts
        .assign_sitting("relectrice", sitting, "admin")
        .await
        .unwrap();
    assert_eq!(report(theirs.attempt_id).await.unwrap().status(), 200);
    assert_eq!(media(theirs.attempt_id).await.unwrap().status(), 200);
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "sitting_assigned" && e.detail.contains(&sitting.to_string())));
}

#[tokio::test]
async fn staff_access_is_checked() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let url = format!(
        "{}/api/staff/v1/attempts/{}/streams/{}/media",
        app.staff,
        c.attempt_id,
        Uuid::new_v4()
    );
    assert_eq!(
        error_code(app.http.get(&url).send().await.unwrap()).await,
        (401, "unauthorized".into())
    );
    // The candidate's own token reads nothing.
    assert_eq!(
        error_code(
            app.http
                .get(&url)
                .bearer_auth(&c.token)
                .send()
                .await
                .unwrap()
        )
        .await,
        (401, "unauthorized".into())
    );
    let r = app
        .http
        .post(format!("{}/api/staff/v1/login", app.staff))
        .json(&serde_json::json!({"login":"x","password":"y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    // A jury member does not watch recordings.
    let jury = add_staff(&app, "jure", "jury").await;
    assert_eq!(
        error_code(app.http.get(&url).bearer_auth(&jury).send().await.unwrap()).await,
        (403, "forbidden".into())
    );
    // Staff routes are not on the public listener.
    let public = format!("{}/api/staff/v1/login", app.public);
    assert_eq!(
        app.http
            .post(public)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn metrics_count_ingest_on_the_staff_listener_only_and_name_no_one() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 1);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, b"garbage".to_vec())
            .await
            .status(),
        400
    );
    let text = app
        .http
        .get(format!("{}/metrics", app.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
    };
    assert!(value("proctor_chunks_ingested_total{outcome=\"created\"}") >= 1.0);
    assert!(value("proctor_chunks_refused_total{reason=\"malformed_chunk\"}") >= 1.0);
    assert!(value("proctor_ack_seconds_count") >= 1.0);
    assert!(value("proctor_streams_opened_total") >= 1.0);
    for id in [c.attempt_id, s.stream_id] {
        assert!(!text.contains(&id.to_string()), "no identifier in metrics");
    }
    assert!(!text.contains("127.0.0.1"), "no address in metrics");
    assert_eq!(
        app.http
            .get(format!("{}/metrics", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// The whole-range media goes through the player's checks: a stored chunk whose bytes
/// changed is never sent, the download stops there, and the alteration is audited.
#[tokio::test]
async fn the_whole_range_media_stops_at_an_altered_fragment_and_audits_it() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, 3).into_iter().enumerate() {
        assert!(app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.end_stream(&c.token, s.stream_id, 3).await;
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    app.alter_blob(c.attempt_id, s.stream_id, 2).await;

    let url = format!(
        "{}/api/staff/v1/attempts/{}/streams/{}/media",
        app.staff, c.attempt_id, s.stream_id
    );
    let r = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    let body = r.bytes().await;
    let sent = body.as_deref().unwrap_or_default();
    let fragment = |i: u32| fragment_data(i, s.stream_id);
    let contains = |needle: &[u8]| sent.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(&fragment(2)) && !contains(&fragment(3)),
        "nothing from the altered fragment on: {sent:?}"
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    let altered = trail
        .iter()
        .find(|e| e.action == "fragment_altered")
        .expect("the alteration is audited");
    assert!(
        altered.detail.contains("\"index\":2") && altered.detail.contains("fails authentication"),
        "{}",
        altered.detail
    );
}

/// Ids in a path are parsed by their type before any handler runs: a malformed stream id,
/// flag id or fragment index is a 400 with the JSON error body, after the assignment check
/// (someone not assigned learns nothing more from a malformed path than from a good one).
#[tokio::test]
async fn malformed_ids_in_staff_paths_are_refused_as_json() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let token = reviewer_of(&app, "relecteur-ids", c.attempt_id).await;
    let base = format!("{}/api/staff/v1/attempts/{}", app.staff, c.attempt_id);
    for path in [
        "/streams/not-a-uuid/media".to_string(),
        "/streams/not-a-uuid/fragments/1".to_string(),
        format!("/streams/{}/fragments/minus-one", s.stream_id),
        format!("/streams/{}/fragments/-1/thumbnail", s.stream_id),
    ] {
        let r = app
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (400, "bad_request".into()), "{path}");
    }
    let r = app
        .http
        .delete(format!("{base}/flags/not-a-uuid"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    // Another attempt's path answers as an unknown one, malformed tail or not.
    let stranger = format!(
        "{}/api/staff/v1/attempts/{}/streams/not-a-uuid/media",
        app.staff,
        Uuid::new_v4()
    );
    let r = app
        .http
        .get(stranger)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".into()));
}
