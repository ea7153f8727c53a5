//! The jury's PV and what it deletes: validation destroys before it answers, disputes are
//! kept two months to the second (the worker on the injected clock), holds stop
//! everything, erasure is at once; receipts verify offline; every read answers 410.

use crate::helpers::*;
use server::failure::Failure;
use server::retention::RetentionError;
use std::time::Duration;
use uuid::Uuid;

async fn jury_of(app: &TestApp, login: &str, sitting: Uuid) -> String {
    let token = add_staff(app, login, "jury").await;
    app.state()
        .await
        .accounts
        .assign_sitting(login, sitting.into(), "test")
        .await
        .unwrap();
    token
}

fn pv(outcome: &str, contested: &[Uuid], override_unsubmitted: bool) -> serde_json::Value {
    serde_json::json!({ "outcome": outcome, "contested": contested, "override_unsubmitted": override_unsubmitted })
}

/// The files of an export's tar archive, once decrypted.
fn unpacked(plain: &[u8]) -> std::collections::HashMap<String, Vec<u8>> {
    let mut files = std::collections::HashMap::new();
    for entry in tar::Archive::new(plain).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.insert(entry.path().unwrap().display().to_string(), data);
    }
    files
}

/// The server's SQLite file, opened beside it (to write what an earlier version or a bad
/// disk left).
async fn sqlite(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.data.path().join("proctor.sqlite").display()
    ))
    .await
    .unwrap()
}

/// Polls until `done` holds (the worker runs in the background), at most 20 s.
async fn eventually(mut done: impl AsyncFnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_validated_pv_destroys_every_recording_before_it_answers() {
    let app = spawn_app().await;
    let (sitting, candidates) = app.ended_sitting(2, 3).await;
    let (c, s) = &candidates[0];
    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let jury = jury_of(&app, "jury", sitting).await;
    let decide = |token: &str, body: serde_json::Value| {
        app.http
            .post(format!("{}/api/staff/v1/sittings/{sitting}/pv", app.staff))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // Only the sitting's jury decides; unsubmitted reviews need the jury to say so.
    assert_eq!(
        error_code(decide(&reviewer, pv("validated", &[], true)).await.unwrap()).await,
        (403, "forbidden".into())
    );
    let other_jury = add_staff(&app, "autre-jury", "jury").await;
    assert_eq!(
        error_code(
            decide(&other_jury, pv("validated", &[], true))
                .await
                .unwrap()
        )
        .await,
        (404, "not_found".into())
    );
    assert_eq!(
        error_code(decide(&jury, pv("validated", &[], false)).await.unwrap()).await,
        (409, "reviews_unsubmitted".into())
    );
    assert!(
        app.db()
            .await
            .pv_decision(sitting.into())
            .await
            .unwrap()
            .is_none(),
        "a refused decision records nothing"
    );
    // Each candidate's stream in a file of its own.
    let before = app.blob_count();
    assert_eq!(before, candidates.len());

    let r = decide(&jury, pv("validated", &[], true)).await.unwrap();
    assert_eq!(r.status(), 201);
    let result: serde_json::Value = r.json().await.unwrap();
    // When the answer arrives, every key is destroyed.
    for (c, _) in &candidates {
        let a = app.db().await.attempt(c.attempt_id.into()).await.unwrap();
        assert_eq!((a.state.as_str(), a.wrapped_dek.len()), ("destroyed", 0));
    }
    let receipts = result["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 2, "{result}");
    let public_key = app
        .platform_json(reqwest::Method::GET, "receipts/public-key", None)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for r in receipts {
        let r: protocol::SignedReceipt = serde_json::from_value(r.clone()).unwrap();
        protocol::verify_receipt(&r, Some(&public_key)).unwrap();
        assert_eq!(
            (
                r.receipt.reason.as_str(),
                r.receipt.by.as_str(),
                r.receipt.sitting_id
            ),
            ("pv_validated", "jury", sitting)
        );
    }
    // The platform reads the same receipt back, for the candidate.
    let back: protocol::SignedReceipt = app
        .platform_json(
            reqwest::Method::GET,
            &format!("attempts/{}/receipt", c.attempt_id),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(receipts
        .iter()
        .any(|r| serde_json::from_value::<protocol::SignedReceipt>(r.clone()).unwrap() == back));
    // The blobs follow in the background.
    eventually(async || app.blob_count() == 0, "every blob deleted").await;
    assert_eq!(app.chunk_rows(s.stream_id).await, 0);

    // Every later read answers 410: the player's routes, the page, the agent's upload.
    for path in [
        format!("/api/staff/v1/attempts/{}/timeline", c.attempt_id),
        format!(
            "/api/staff/v1/attempts/{}/streams/{}/fragments/1",
            c.attempt_id, s.stream_id
        ),
        format!("/api/staff/v1/attempts/{}/activity", c.attempt_id),
    ] {
        assert_eq!(
            error_code(
                app.http
                    .get(format!("{}{path}", app.staff))
                    .bearer_auth(&reviewer)
                    .send()
                    .await
                    .unwrap()
            )
            .await,
            (410, "gone".into()),
            "{path}"
        );
    }
    let page = app
        .http
        .get(format!("{}/attempts/{}", app.staff, c.attempt_id))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);
    assert!(page.text().await.unwrap().contains("a été supprimé"));
    let chunk = seal_stream(s, 5).pop().unwrap();
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 5, chunk).await)
            .await
            .0,
        410
    );
    // Irreversible: the same decision again (a retry after a lost answer) answers what was
    // recorded; another is refused. The override and the decision are in the audit.
    let again = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{sitting}/pv"),
            Some(pv("validated", &[], true)),
        )
        .await;
    assert_eq!(
        (
            again.status().as_u16(),
            again.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (201, "true")
    );
    let again: serde_json::Value = again.json().await.unwrap();
    let sorted = |v: &serde_json::Value| {
        let mut r: Vec<String> = v["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        r.sort();
        r
    };
    assert_eq!(sorted(&again), sorted(&result), "the same receipts");
    assert_eq!(
        (again["decided_at"].clone(), again["decided_by"].clone()),
        (result["decided_at"].clone(), result["decided_by"].clone())
    );
    assert_eq!(
        error_code(decide(&jury, pv("refused", &[], true)).await.unwrap()).await,
        (409, "pv_already_decided".into())
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    let decided = trail.iter().find(|e| e.action == "pv_decided").unwrap();
    assert!(
        decided.detail.contains("\"override_unsubmitted\":true")
            && decided.detail.contains("\"unsubmitted\":2"),
        "{}",
        decided.detail
    );
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "attempt_destroyed")
            .count(),
        2
    );
    assert_eq!(server::db::verify_audit_chain(&trail), Ok(()));
}

#[tokio::test]
async fn disputed_recordings_are_kept_two_calendar_months_to_the_second() {
    let app = spawn_app_with(|s| s.retention.sweep_interval = Duration::from_millis(100)).await;
    let (sitting, candidates) = app.ended_sitting(2, 2).await;
    let (kept, gone) = (candidates[0].0.attempt_id, candidates[1].0.attempt_id);
    let r = app.platform_json(reqwest::Method::POST, &format!("sittings/{sitting}/pv"), Some(serde_json::json!({
        "outcome": "reservations", "contested": [kept], "override_unsubmitted": true, "decided_by": "Mme Présidente" }))).await;
    assert_eq!(r.status(), 201);
    let result: serde_json::Value = r.json().await.unwrap();
    let decided_at = time::OffsetDateTime::parse(
        result["decided_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let fate = |id: Uuid| {
        result["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["attempt_id"] == id.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(fate(gone)["fate"], "destroyed_now");
    assert_eq!(fate(kept)["fate"], "kept");
    let due = server::retention::policy::add_months(decided_at, 2);
    assert_eq!(fate(kept)["kept_until"], server::clock::rfc3339(due));
    let state = async |id: Uuid| {
        app.db()
            .await
            .attempt(id.into())
            .await
            .unwrap()
            .state
            .as_str()
            .to_owned()
    };
    assert_eq!(state(gone).await, "destroyed");

    // One second before the deadline the worker (every 100 ms) leaves it alone…
    app.clock
        .advance((due - decided_at - time::Duration::SECOND).unsigned_abs());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state(kept).await, "decided");
    // …one second after, it is destroyed, by rule, with its receipt.
    app.clock.advance(Duration::from_secs(2));
    eventually(
        async || state(kept).await == "destroyed",
        "the contested attempt destroyed at its deadline",
    )
    .await;
    let status: serde_json::Value = app
        .platform_json(
            reqwest::Method::GET,
            &format!("attempts/{kept}/retention"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["receipt"]["receipt"]["reason"], "dispute_period_ended",
        "{status}"
    );
    assert_eq!(
        status["receipt"]["receipt"]["by"], "retention-worker",
        "{status}"
    );
    let pv: serde_json::Value = app
        .platform_json(
            reqwest::Method::GET,
            &format!("sittings/{sitting}/pv"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pv["decision"]["decided_by"], "platform:Mme Présidente",
        "{pv}"
    );
}

#[tokio::test]
async fn bad_pv_requests_get_precise_errors_and_change_nothing() {
    let app = spawn_app().await;
    let (sitting, candidates) = app.ended_sitting(1, 1).await;
    let path = format!("sittings/{sitting}/pv");
    let post = async |body: serde_json::Value| {
        error_code(
            app.platform_json(reqwest::Method::POST, &path, Some(body))
                .await,
        )
        .await
    };
    assert_eq!(
        post(serde_json::json!({ "outcome": "maybe" })).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        post(serde_json::json!({ "outcome": "validated", "surprise": 1 })).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        post(pv("reservations", &[], true)).await,
        (400, "bad_request".into()),
        "reservations name someone"
    );
    assert_eq!(
        post(pv("validated", &[candidates[0].0.attempt_id], true)).await,
        (400, "bad_request".into()),
        "no one contests a validation"
    );
    assert_eq!(
        post(pv("reservations", &[Uuid::new_v4()], true)).await,
        (400, "bad_request".into()),
        "a stranger to the sitting"
    );
    assert_eq!(post(serde_json::json!({ "outcome": "validated", "override_unsubmitted": true, "decided_by": "" })).await, (400, "bad_request".into()));
    let unknown = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{}/pv", Uuid::new_v4()),
            Some(pv("validated", &[], true)),
        )
        .await;
    assert_eq!(error_code(unknown).await, (404, "not_found".into()));
    let r = app
        .http
        .post(format!("{}/api/integration/v1/{path}", app.public))
        .json(&pv("validated", &[], true))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    assert_eq!(
        error_code(
            app.platform_json(
                reqwest::Method::GET,
                &format!("attempts/{}/receipt", candidates[0].0.attempt_id),
                None
            )
            .await
        )
        .await,
        (409, "conflict".into())
    );
    // A candidate still recording: the PV waits for the end of the exam.
    let late: protocol::api::AddCandidateResponse = app
        .add_candidate(sitting, "en-retard")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.consent(&late.launch_token).await.status(), 204);
    app.open_stream(&late.launch_token).await;
    assert_eq!(
        post(pv("validated", &[], true)).await,
        (409, "conflict".into())
    );
    assert!(app
        .db()
        .await
        .pv_decision(sitting.into())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        app.db()
            .await
            .attempt(candidates[0].0.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "ended"
    );
}

#[tokio::test]
async fn a_legal_hold_stops_everything_and_after_a_validation_its_lift_destroys_at_once() {
    let app = spawn_app().await;
    let (sitting, candidates) = app.ended_sitting(1, 1).await;
    let a = candidates[0].0.attempt_id;
    let proctor = app.state_on_clock().await;
    let reviewer = reviewer_of(&app, "relectrice", a).await;
    proctor
        .retention
        .hold_attempt("dpo", a.into(), "recours devant le tribunal administratif")
        .await
        .unwrap();
    assert!(matches!(
        proctor
            .retention
            .hold_attempt("dpo", a.into(), "encore")
            .await,
        Err(RetentionError::AlreadyOnHold)
    ));
    // Nothing of it is modified while held: no flag, no review submitted.
    let flag = serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "talking", "severity": "low", "note": "" });
    let r = app
        .http
        .post(format!("{}/api/staff/v1/attempts/{a}/flags", app.staff))
        .bearer_auth(&reviewer)
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (409, "on_hold".into()));
    // Even a validation leaves it alone; and so does any later sweep.
    let r = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{sitting}/pv"),
            Some(pv("validated", &[], true)),
        )
        .await;
    let result: serde_json::Value = r.json().await.unwrap();
    assert_eq!(result["attempts"][0]["fate"], "held", "{result}");
    app.clock.advance(Duration::from_secs(200 * 86_400));
    assert!(proctor
        .retention
        .sweep(false)
        .await
        .unwrap()
        .destroyed
        .is_empty());
    assert_eq!(
        app.db()
            .await
            .attempt(a.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "decided"
    );
    // Lifted: the PV validated it without contesting it, so nothing else keeps it: due at
    // the lift (not two more months), destroyed by the next sweep.
    let due = proctor.retention.lift_hold("dpo", a.into()).await.unwrap();
    assert_eq!(
        due,
        server::clock::rfc3339(server::clock::Clock::now(&*app.clock))
    );
    let swept = proctor.retention.sweep(false).await.unwrap();
    assert_eq!(swept.destroyed.len(), 1);
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(
        trail.iter().any(|e| e.action == "legal_hold_placed")
            && trail.iter().any(|e| e.action == "legal_hold_lifted")
    );
}

#[tokio::test]
async fn erasure_is_at_once_and_the_export_before_it_is_for_the_dpo_only() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(1, 3).await;
    let (c, s) = &candidates[0];
    let proctor = app.state_on_clock().await;
    // The export: an age file only the DPO's identity opens, with the media and manifest.
    let dpo = age::x25519::Identity::generate();
    let out = app.data.path().join("export.age");
    let summary = proctor
        .retention
        .export_attempt(
            "dpo",
            c.attempt_id.into(),
            &dpo.to_public().to_string(),
            &out,
        )
        .await
        .unwrap();
    assert_eq!(summary.fragments, 4);
    let sealed = std::fs::read(&out).unwrap();
    assert!(
        !sealed.windows(8).any(|w| w == b"fragment"),
        "the export is encrypted on disk"
    );
    let plain = age::decrypt(&dpo, &sealed).unwrap();
    let files = unpacked(&plain);
    assert_eq!(
        files["stream-1/000002.mp4"],
        format!("fragment 2 of stream {}", s.stream_id).into_bytes()
    );
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        manifest["streams"][0]["connection"]["client_ip"], "127.0.0.1",
        "{manifest}"
    );
    assert!(matches!(
        proctor
            .retention
            .export_attempt(
                "dpo",
                c.attempt_id.into(),
                "age1notakey",
                &app.data.path().join("x.age")
            )
            .await,
        Err(RetentionError::NotAnAgeRecipient(_))
    ));

    // Erasure, whatever the PV: destroyed at once with its receipt.
    let receipt = proctor
        .retention
        .erase_attempt(
            "dpo",
            c.attempt_id.into(),
            "demande d'effacement du candidat",
        )
        .await
        .unwrap()
        .expect("destroyed now");
    assert_eq!(receipt.receipt.reason, "erasure_requested");
    protocol::verify_receipt(&receipt, None).unwrap();
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "destroyed"
    );
    assert!(matches!(
        proctor
            .retention
            .erase_attempt("dpo", c.attempt_id.into(), "encore")
            .await,
        Err(RetentionError::Failure(Failure::Gone))
    ));
    assert!(matches!(
        proctor
            .retention
            .export_attempt(
                "dpo",
                c.attempt_id.into(),
                &dpo.to_public().to_string(),
                &app.data.path().join("y.age")
            )
            .await,
        Err(RetentionError::Failure(Failure::Gone))
    ));
    // The access report names the export.
    let report = proctor
        .retention
        .access_report("dpo", c.attempt_id.into())
        .await
        .unwrap();
    assert!(
        report
            .iter()
            .any(|e| e.action == "attempt_exported" && e.account == "dpo"),
        "{report:?}"
    );
}

#[tokio::test]
async fn connection_data_stored_in_clear_by_an_earlier_version_is_sealed() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    // What a version before sealing left: the address in clear, nothing sealed.
    let pool = sqlite(&app).await;
    sqlx::query("UPDATE streams SET connection = NULL, client_ip = '198.51.100.4', agent_version = '0.9', os = 'linux' WHERE id = ?1")
        .bind(s.stream_id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let proctor = app.state_on_clock().await;
    assert_eq!(app.db().await.clear_connections(10).await.unwrap().len(), 1);
    proctor.retention.sweep(false).await.unwrap();
    assert!(app
        .db()
        .await
        .clear_connections(10)
        .await
        .unwrap()
        .is_empty());
    let ip: String = sqlx::query_scalar("SELECT client_ip FROM streams WHERE id = ?1")
        .bind(s.stream_id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ip, "");
    // Sealed under the attempt's key: the export (which opens it) still names it.
    let dpo = age::x25519::Identity::generate();
    let out = app.data.path().join("export.age");
    proctor
        .retention
        .export_attempt(
            "dpo",
            c.attempt_id.into(),
            &dpo.to_public().to_string(),
            &out,
        )
        .await
        .unwrap();
    let plain = age::decrypt(&dpo, &std::fs::read(&out).unwrap()).unwrap();
    assert!(plain.windows(12).any(|w| w == b"198.51.100.4"));
}

#[tokio::test]
async fn a_decided_sitting_takes_no_new_candidate_and_starts_no_exam() {
    let app = spawn_app().await;
    let (sitting, _) = app.ended_sitting(1, 1).await;
    let absent: protocol::api::AddCandidateResponse = app
        .add_candidate(sitting, "absent")
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{sitting}/pv"),
            Some(pv("refused", &[], true)),
        )
        .await;
    assert_eq!(r.status(), 201);
    // The candidate who never came cannot start now; nobody new joins.
    assert_eq!(
        error_code(app.consent(&absent.launch_token).await).await,
        (409, "attempt_ended".into())
    );
    assert_eq!(
        error_code(app.add_candidate(sitting, "retardataire").await).await,
        (409, "conflict".into())
    );
    assert_eq!(
        app.add_candidate(sitting, "absent").await.status(),
        201,
        "a retried enrolment still answers the same"
    );
}

#[tokio::test]
async fn the_ceiling_counts_from_the_last_sign_of_life_of_an_attempt_never_ended() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let proctor = app.state_on_clock().await;
    let day = Duration::from_secs(86_400);
    // Enrolled long before the exam; a new launch token 50 days later.
    app.clock.advance(50 * day);
    assert_eq!(
        app.platform_post(&format!("attempts/{}/token", c.attempt_id))
            .await
            .status(),
        201
    );
    app.clock.advance(20 * day);
    assert!(
        proctor
            .retention
            .sweep(false)
            .await
            .unwrap()
            .destroyed
            .is_empty(),
        "70 days after creation, 20 after the new token"
    );
    app.clock.advance(45 * day);
    let swept = proctor.retention.sweep(false).await.unwrap();
    assert_eq!(
        swept.destroyed.len(),
        1,
        "65 days after the last sign of life"
    );
    assert_eq!(swept.destroyed[0].reason, "ceiling_reached");
}

#[tokio::test]
async fn a_survivor_moves_to_a_newer_kek_so_that_its_month_can_be_shredded() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(2, 1).await;
    let (held, erased) = (candidates[0].0.attempt_id, candidates[1].0.attempt_id);
    let proctor = app.state_on_clock().await;
    let month = app.db().await.attempt(held.into()).await.unwrap().kek_epoch;
    proctor
        .retention
        .hold_attempt("dpo", held.into(), "procédure disciplinaire")
        .await
        .unwrap();
    proctor
        .retention
        .erase_attempt("dpo", erased.into(), "demande du candidat")
        .await
        .unwrap();
    // Two months on, the month of both is over: the held one moves, the month's KEK goes.
    app.clock.advance(Duration::from_secs(62 * 86_400));
    let swept = proctor.retention.sweep(false).await.unwrap();
    assert_eq!(swept.epochs_destroyed, vec![month.clone()]);
    assert!(!app
        .data
        .path()
        .join("keys")
        .join(format!("kek-{month}.key"))
        .exists());
    let moved = app.db().await.attempt(held.into()).await.unwrap();
    assert_ne!(moved.kek_epoch, month);
    // Still readable: the export opens it.
    let dpo = age::x25519::Identity::generate();
    let summary = proctor
        .retention
        .export_attempt(
            "dpo",
            held.into(),
            &dpo.to_public().to_string(),
            &app.data.path().join("held.age"),
        )
        .await
        .unwrap();
    assert_eq!(summary.fragments, 2);
    let trail = app.db().await.audit_trail().await.unwrap();
    let rewrapped = trail.iter().find(|e| e.action == "keys_rewrapped").unwrap();
    assert!(
        rewrapped.detail.contains(&format!("\"from\":\"{month}\""))
            && rewrapped.detail.contains("\"attempts\":1"),
        "{}",
        rewrapped.detail
    );
    assert!(trail.iter().any(|e| e.action == "kek_destroyed"));
}

/// Issue 19 (#3): a survivor that cannot be re-wrapped kept its whole month's KEK with
/// only a log line. Now the sweep's report, the metric and `retention status` show it,
/// and every sweep retries it.
#[tokio::test]
async fn a_failed_rewrap_is_seen_and_retried_not_just_logged() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(1, 1).await;
    let held = candidates[0].0.attempt_id;
    let proctor = app.state_on_clock().await;
    proctor
        .retention
        .hold_attempt("dpo", held.into(), "procédure disciplinaire")
        .await
        .unwrap();
    let month = app.db().await.attempt(held.into()).await.unwrap().kek_epoch;
    // Its wrapped key damaged (a bad disk, a bad restore): it cannot move.
    let pool = sqlite(&app).await;
    let original: Vec<u8> = sqlx::query_scalar("SELECT wrapped_dek FROM attempts WHERE id = ?1")
        .bind(held.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut damaged = original.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let set = |blob: Vec<u8>| {
        sqlx::query("UPDATE attempts SET wrapped_dek = ?1 WHERE id = ?2")
            .bind(blob)
            .bind(held.to_string())
            .execute(&pool)
    };
    set(damaged).await.unwrap();
    app.clock.advance(Duration::from_secs(62 * 86_400));
    let swept = proctor.retention.sweep(false).await.unwrap();
    assert_eq!((swept.rewrap_failed, swept.epochs_destroyed.len()), (1, 0));
    let status = proctor.policy.retention_overview().await.unwrap();
    let shown = status.iter().find(|s| s.attempt_id == held.into()).unwrap();
    assert_eq!(shown.kek_epoch.as_deref(), Some(month.as_str()));
    let trail = app.db().await.audit_trail().await.unwrap();
    let rewrapped = trail
        .iter()
        .rfind(|e| e.action == "keys_rewrapped")
        .unwrap();
    assert!(
        rewrapped.detail.contains(&held.to_string()),
        "{}",
        rewrapped.detail
    );
    // Repaired: the next sweep moves it and the month's KEK goes.
    set(original).await.unwrap();
    let swept = proctor.retention.sweep(false).await.unwrap();
    assert_eq!(
        (swept.rewrap_failed, swept.epochs_destroyed),
        (0, vec![month.clone()])
    );
    assert_ne!(
        app.db().await.attempt(held.into()).await.unwrap().kek_epoch,
        month
    );
}

#[tokio::test]
async fn flag_notes_are_sealed_at_rest_and_earlier_clear_ones_get_sealed() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(1, 1).await;
    let a = candidates[0].0.attempt_id;
    let reviewer = reviewer_of(&app, "relectrice", a).await;
    let note = "le candidat lit une feuille hors champ";
    let flag = serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "notes_or_documents", "severity": "high", "note": note });
    let r = app
        .http
        .post(format!("{}/api/staff/v1/attempts/{a}/flags", app.staff))
        .bearer_auth(&reviewer)
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The reviewer reads it back; the database (file and WAL) holds it only sealed.
    let view: serde_json::Value = app
        .http
        .get(format!("{}/api/staff/v1/attempts/{a}/review", app.staff))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["flags"][0]["note"], note, "{view}");
    let in_clear = |needle: &str| {
        std::fs::read_dir(app.data.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("proctor.sqlite")
            })
            .any(|e| {
                let bytes = std::fs::read(e.path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
    };
    assert!(!in_clear(note), "the note is in the database in clear");
    // A note an earlier version stored in clear is sealed by the worker.
    let pool = sqlite(&app).await;
    let legacy = "ancienne note en clair";
    sqlx::query("UPDATE flags SET note = ?1 WHERE attempt_id = ?2")
        .bind(legacy)
        .bind(a.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let proctor = app.state_on_clock().await;
    assert_eq!(
        app.db()
            .await
            .clear_notes(server::keys::SEALED_NOTE, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    proctor.retention.sweep(false).await.unwrap();
    assert!(app
        .db()
        .await
        .clear_notes(server::keys::SEALED_NOTE, 10)
        .await
        .unwrap()
        .is_empty());
    let view: serde_json::Value = app
        .http
        .get(format!("{}/api/staff/v1/attempts/{a}/review", app.staff))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["flags"][0]["note"], legacy, "{view}");
}

#[tokio::test]
async fn the_admin_holds_lifts_and_erases_from_the_retention_page() {
    let app = spawn_app().await;
    let (_, candidates) = app.ended_sitting(1, 1).await;
    let a = candidates[0].0.attempt_id;
    let admin = add_staff(&app, "dpo", "admin").await;
    let reviewer = reviewer_of(&app, "relectrice", a).await;
    let csrf = server::routes::session::csrf_token(&admin);
    let page = app
        .http
        .get(format!("{}/admin/retention", app.staff))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("C-0") && html.contains("sans décision : durée maximale"),
        "{html}"
    );
    assert_eq!(
        app.http
            .get(format!("{}/admin/retention", app.staff))
            .bearer_auth(&reviewer)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let act = |action: &str, form: Vec<(&'static str, String)>| {
        app.http
            .post(format!("{}/admin/retention/{a}/{action}", app.staff))
            .bearer_auth(&admin)
            .form(&form)
            .send()
    };
    // Without the CSRF token nothing happens.
    assert_eq!(
        act(
            "hold",
            vec![("csrf", "0".repeat(64)), ("reason", "recours".into())]
        )
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(
        act(
            "hold",
            vec![("csrf", csrf.clone()), ("reason", "recours".into())]
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert!(
        app.db().await.retention_facts(&[a.into()]).await.unwrap()[0]
            .hold_reason
            .is_some()
    );
    assert_eq!(
        act("lift", vec![("csrf", csrf.clone())])
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        app.db().await.retention_facts(&[a.into()]).await.unwrap()[0]
            .hold_reason
            .is_none()
    );
    // Erasure asks for its confirmation, then destroys at once under the admin's name.
    assert_eq!(
        act(
            "erase",
            vec![
                ("csrf", csrf.clone()),
                ("reason", "demande du candidat".into())
            ]
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        app.db()
            .await
            .attempt(a.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "ended"
    );
    assert_eq!(
        act(
            "erase",
            vec![
                ("csrf", csrf.clone()),
                ("reason", "demande du candidat".into()),
                ("confirm", "on".into())
            ]
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let f = app
        .db()
        .await
        .retention_facts(&[a.into()])
        .await
        .unwrap()
        .pop()
        .unwrap();
    let receipt: protocol::SignedReceipt =
        serde_json::from_str(f.receipt.as_deref().unwrap()).unwrap();
    assert_eq!(
        (receipt.receipt.reason.as_str(), receipt.receipt.by.as_str()),
        ("erasure_requested", "dpo")
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!([
        "legal_hold_placed",
        "legal_hold_lifted",
        "erasure_requested"
    ]
    .iter()
    .all(|a| trail.iter().any(|e| e.action == *a && e.actor == "dpo")));
}

/// Defect: withdrawing consent erased nothing, though the policy and the notice say "at
/// once". A legal hold still wins.
#[tokio::test]
async fn withdrawing_consent_destroys_the_recording_at_once_with_a_receipt() {
    let app = spawn_app().await;
    let withdraw = |token: String| {
        app.http
            .post(format!("{}/api/agent/v1/withdraw", app.public))
            .bearer_auth(token)
            .send()
    };
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, 3).into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i as u32, chunk)
                .await
                .status(),
            201
        );
    }
    let r = withdraw(c.token.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["state"], "destroyed", "{answer}");
    let receipt: protocol::SignedReceipt =
        serde_json::from_value(answer["receipt"].clone()).unwrap();
    let state = app.state_on_clock().await;
    let public_key = state.retention.receipt_public_key().unwrap();
    protocol::verify_receipt(&receipt, Some(&public_key)).unwrap();
    assert_eq!(
        (receipt.receipt.reason.as_str(), receipt.receipt.by.as_str()),
        ("consent_withdrawn", "candidate")
    );
    let a = app.db().await.attempt(c.attempt_id.into()).await.unwrap();
    assert_eq!((a.state.as_str(), a.wrapped_dek.len()), ("destroyed", 0));
    // The status keeps the same receipt; the agent's next request is told it is gone.
    let status = state
        .policy
        .attempt_retention(c.attempt_id.into())
        .await
        .unwrap();
    assert_eq!(status.receipt.unwrap().signature, receipt.signature);
    assert_eq!(
        error_code(withdraw(c.token.clone()).await.unwrap()).await.0,
        410
    );
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 3, seal_stream(&s, 4)[3].clone())
                .await
        )
        .await
        .0,
        410
    );
    eventually(
        async || app.chunk_rows(s.stream_id).await == 0,
        "the withdrawn attempt's blobs purged",
    )
    .await;

    // Under a legal hold: the withdrawal is recorded, the recording kept until the lift,
    // which destroys it at once.
    let (h, _) = app.recording_candidate().await;
    state
        .retention
        .hold_attempt("dpo", h.attempt_id.into(), "procédure en cours")
        .await
        .unwrap();
    let answer: serde_json::Value = withdraw(h.token.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&answer["state"], &answer["receipt"]),
        (&"withdrawn".into(), &serde_json::Value::Null),
        "{answer}"
    );
    state
        .retention
        .lift_hold("dpo", h.attempt_id.into())
        .await
        .unwrap();
    // The lift wakes the worker, which may hold the claim while this sweep finds nothing
    // to do: the destruction is awaited, whoever carries it out.
    state.retention.sweep(false).await.unwrap();
    eventually(
        async || {
            app.db()
                .await
                .attempt(h.attempt_id.into())
                .await
                .unwrap()
                .state
                .as_str()
                == "destroyed"
        },
        "the held withdrawal destroyed at the lift",
    )
    .await;
    let status = state
        .policy
        .attempt_retention(h.attempt_id.into())
        .await
        .unwrap();
    assert_eq!(status.receipt.unwrap().receipt.reason, "consent_withdrawn");
}

/// Issue 19 (#12): the PV's answer said what the plan expected, not what was destroyed.
/// Now it is read back from what is stored: a replay tells an erasure since the decision,
/// and a destruction that failed is an error the caller sees, then `due` until done.
#[tokio::test]
async fn the_pv_answer_reports_what_was_destroyed_not_what_was_planned() {
    use server::db::PvOutcome;
    use server::retention::PvRequest;
    let app = spawn_app().await;
    let state = app.state_on_clock().await;
    let fate = |r: &server::retention::PvResult, who: Uuid| {
        r.attempts
            .iter()
            .find(|p| p.attempt_id == who.into())
            .map(|p| p.fate)
            .unwrap()
    };
    let (sitting, candidates) = app.ended_sitting(2, 2).await;
    let (kept, gone) = (candidates[0].0.attempt_id, candidates[1].0.attempt_id);
    let req = || PvRequest {
        outcome: PvOutcome::Reservations,
        contested: vec![kept.into()],
        override_unsubmitted: true,
        decided_by: None,
    };
    let first = state
        .retention
        .decide_pv("jury", sitting.into(), req())
        .await
        .unwrap();
    assert_eq!(
        (fate(&first, kept), fate(&first, gone)),
        ("kept", "destroyed_now")
    );
    assert_eq!(first.receipts.len(), 1);
    // The contested one is erased since: the replay says so, with its receipt.
    state
        .retention
        .erase_attempt("dpo", kept.into(), "demande du candidat")
        .await
        .unwrap()
        .unwrap();
    let again = state
        .retention
        .decide_pv("jury", sitting.into(), req())
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (fate(&again, kept), fate(&again, gone)),
        ("destroyed", "destroyed_now")
    );
    let mut reasons: Vec<_> = again
        .receipts
        .iter()
        .map(|r| r.receipt.reason.clone())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["erasure_requested", "pv_validated"]);

    // The receipts cannot be signed (the signing key unreadable): the decision is
    // recorded, the caller is told the destruction failed, the replay says `due`.
    let (sitting, candidates) = app.ended_sitting(1, 2).await;
    let attempt = candidates[0].0.attempt_id;
    let key = app.data.path().join("keys").join("kek-receipt-signing.key");
    let aside = app.data.path().join("receipt-signing.aside");
    std::fs::rename(&key, &aside).unwrap();
    std::fs::create_dir(&key).unwrap();
    let validated = || PvRequest {
        outcome: PvOutcome::Validated,
        contested: vec![],
        override_unsubmitted: true,
        decided_by: None,
    };
    assert!(state
        .retention
        .decide_pv("jury", sitting.into(), validated())
        .await
        .is_err());
    let replay = state
        .retention
        .decide_pv("jury", sitting.into(), validated())
        .await
        .unwrap();
    assert_eq!((fate(&replay, attempt), replay.receipts.len()), ("due", 0));
    std::fs::remove_dir(&key).unwrap();
    std::fs::rename(&aside, &key).unwrap();
    state.retention.sweep(false).await.unwrap();
    let replay = state
        .retention
        .decide_pv("jury", sitting.into(), validated())
        .await
        .unwrap();
    assert_eq!(
        (fate(&replay, attempt), replay.receipts.len()),
        ("destroyed_now", 1)
    );
}

/// Issue 19 (#11): an export is audited before its file is written (a failure too, its
/// partial file removed), counted in the retention status, and carries everything the
/// agent derived from the candidate: the thumbnails and the activity strip too.
#[tokio::test]
async fn every_export_is_audited_first_counted_and_complete() {
    use protocol::{Activity, Fragment, StreamSealer};
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let jpeg = b"\xff\xd8\xff\xe0 thumbnail of fragment 1".to_vec();
    let activity = Activity {
        first_s: 0,
        motion: vec![3, 200],
        audio: vec![17, 99],
    };
    let mut sealer = StreamSealer::new(s.key.clone(), s.attempt_id, s.stream_id);
    for i in 0..=2u32 {
        let plain = if i == 0 {
            b"init segment".to_vec()
        } else {
            protocol::encode_payload(format!("media {i}").as_bytes(), &activity, &jpeg)
        };
        let chunk = sealer
            .seal(Fragment {
                data: &plain,
                media_start_us: u64::from(i.saturating_sub(1)) * 2_000_000,
                media_end_us: u64::from(i) * 2_000_000,
                last: i == 2,
            })
            .unwrap()
            .1;
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i, chunk)
                .await
                .status(),
            201
        );
    }
    let state = app.state_on_clock().await;
    let dpo = age::x25519::Identity::generate();
    let out = app.data.path().join("complete.age");
    state
        .retention
        .export_attempt(
            "dpo",
            c.attempt_id.into(),
            &dpo.to_public().to_string(),
            &out,
        )
        .await
        .unwrap();
    let plain = age::decrypt(&dpo, &std::fs::read(&out).unwrap()).unwrap();
    let files = unpacked(&plain);
    assert_eq!(files["stream-1/000001.mp4"], b"media 1");
    assert_eq!(files["stream-1/000002.jpg"], jpeg);
    let strip: serde_json::Value =
        serde_json::from_slice(&files["stream-1/activity.json"]).unwrap();
    assert_eq!(strip[1]["fragment"], 2, "{strip}");
    assert_eq!(
        strip[1]["activity"]["motion"],
        serde_json::json!([3, 200]),
        "{strip}"
    );

    // A blob gone missing: the export fails, but the trail already names it, and the
    // partial file is gone.
    let (file, _) = app.blob_file(c.attempt_id, s.stream_id, 1).await;
    std::fs::remove_file(file).unwrap();
    let failed = app.data.path().join("failed.age");
    assert!(state
        .retention
        .export_attempt(
            "dpo",
            c.attempt_id.into(),
            &dpo.to_public().to_string(),
            &failed
        )
        .await
        .is_err());
    assert!(!failed.exists(), "the partial export is removed");
    let actions: Vec<String> = app
        .db()
        .await
        .audit_of(c.attempt_id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("attempt_export"))
            .collect::<Vec<_>>(),
        [
            "attempt_exported",
            "attempt_exported",
            "attempt_export_failed"
        ]
    );
    let status = state
        .policy
        .attempt_retention(c.attempt_id.into())
        .await
        .unwrap();
    assert_eq!(status.exports, 2);
}

/// Issue 19 (#4): receipts are chained, each naming the one signed before it; the log kept
/// beside the keys shows a receipt gone missing.
#[tokio::test]
async fn receipts_chain_and_the_log_shows_a_missing_one() {
    use server::db::PvOutcome;
    use server::retention::PvRequest;
    let app = spawn_app().await;
    let state = app.state_on_clock().await;
    let (sitting, candidates) = app.ended_sitting(3, 1).await;
    let decided = state
        .retention
        .decide_pv(
            "jury",
            sitting.into(),
            PvRequest {
                outcome: PvOutcome::Validated,
                contested: vec![],
                override_unsubmitted: true,
                decided_by: None,
            },
        )
        .await
        .unwrap();
    let (c, _) = app.recording_candidate().await;
    let erased = state
        .retention
        .erase_attempt("dpo", c.attempt_id.into(), "demande du candidat")
        .await
        .unwrap()
        .unwrap();
    let mut receipts = decided.receipts.clone();
    receipts.push(erased);
    assert_eq!(receipts.len(), 4);
    assert_eq!(
        receipts[0].receipt.previous, None,
        "the first of this server"
    );
    for pair in receipts.windows(2) {
        assert_eq!(
            pair[1].receipt.previous.as_deref(),
            Some(protocol::receipt_hash(&pair[0]).as_str())
        );
    }
    let log = state.retention.receipt_log().unwrap();
    assert!(log.whole, "{log:?}");
    assert_eq!((log.receipts, log.chain.chained, log.void), (4, 4, 0));
    assert_eq!(
        log.head.as_deref(),
        Some(protocol::receipt_hash(&receipts[3]).as_str())
    );
    // The PV's tombstones removed (a deleted file, a key volume restored from a backup):
    // the log is no longer whole, and says where.
    let lost = candidates[1].0.attempt_id.to_string();
    let dir = app.data.path().join("keys/tombstones");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&lost)))
        .unwrap();
    std::fs::remove_file(file).unwrap();
    let log = state.retention.receipt_log().unwrap();
    assert!(!log.whole);
    let removed = &receipts[2];
    assert_eq!(log.chain.gaps, vec![protocol::receipt_hash(&removed)]);
}

/// A crash between a batch's intent and its transaction: the next start settles the
/// intent against the database (here nothing was destroyed, so nothing is re-applied).
#[tokio::test]
async fn an_intent_a_crash_left_is_settled_at_the_next_start() {
    let app = spawn_app().await;
    let (c, _) = app.recording_candidate().await;
    let tombstones = server::keys::KeyStore::open(&app.data.path().join("keys"))
        .unwrap()
        .tombstones()
        .unwrap();
    tombstones
        .intend([(
            server::db::AttemptId::from(c.attempt_id),
            "{\"receipt\":\"never stored\"}",
        )])
        .unwrap();
    assert_eq!(tombstones.pending().unwrap().len(), 1);
    app.state_on_clock().await;
    assert!(tombstones.pending().unwrap().is_empty());
    assert!(
        tombstones.destroyed().unwrap().is_empty(),
        "void, not a tombstone"
    );
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "recording"
    );
}
