//! What the candidate's page asks of the server before recording: the notice (text and
//! version), a refusal that records nothing else, the upload test that stores nothing.

use crate::helpers::*;
use protocol::api::*;

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
    r.json::<AttemptStatus>().await.unwrap().state
}

fn refuse(app: &TestApp, token: &str, version: &str) -> reqwest::RequestBuilder {
    app.http
        .post(format!("{}/api/agent/v1/refuse", app.public))
        .bearer_auth(token.to_owned())
        .json(&RefusalRequest {
            notice_version: version.into(),
        })
}

#[tokio::test]
async fn the_notice_comes_from_the_server_with_its_version_and_the_deployments_dpo() {
    let app = spawn_app_with(|s| {
        s.notice.dpo_contact = "dpo@cci-test.example, 8 rue de l'Essai, Paris".into()
    })
    .await;
    // No token needed: the practice check and the page before consent read it.
    let r = app
        .http
        .get(format!("{}/api/agent/v1/notice", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n: protocol::notice::Notice = r.json().await.unwrap();
    assert_eq!(n.version, NOTICE_VERSION);
    assert_eq!(n.language, "fr");
    assert!(n.is_plausible());
    assert!(n
        .to_text()
        .contains("dpo@cci-test.example, 8 rue de l'Essai, Paris"));
    // The attempt's info names the version and the state the agent watches.
    let c = app.candidate().await;
    let info: AttemptInfo = app
        .http
        .get(format!("{}/api/agent/v1/attempt", app.public))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info.notice_version.as_str(), info.state.as_deref()),
        (NOTICE_VERSION, Some("enrolled"))
    );
}

#[tokio::test]
async fn a_refusal_is_recorded_alone_and_closes_the_attempt() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    // An unknown version and a missing token are refused, and change nothing.
    assert_eq!(
        error_code(refuse(&app, &c.token, "1999-v0").send().await.unwrap()).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        app.http
            .post(format!("{}/api/agent/v1/refuse", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(state(&app, c.attempt_id).await, "enrolled");

    let r = refuse(&app, &c.token, NOTICE_VERSION).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["state"],
        "withdrawn"
    );
    // Sent again after a lost answer: the same answer.
    assert_eq!(
        refuse(&app, &c.token, NOTICE_VERSION)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(state(&app, c.attempt_id).await, "withdrawn");
    // Nothing opens after a refusal: no consent, no stream.
    assert_eq!(error_code(app.consent(&c.token).await).await.0, 409);
    assert_eq!(error_code(app.open_stream_raw(&c.token).await).await.0, 409);
    let trail = app.db().await.audit_trail().await.unwrap();
    let actions: Vec<_> = trail
        .iter()
        .filter(|e| e.attempt_id == Some(c.attempt_id.into()))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "consent_refused").count(),
        1
    );
    assert!(!actions.contains(&"consent_recorded"));

    // After consent, refusing is not the word: withdraw.
    let d = app.candidate().await;
    app.consent(&d.token).await;
    assert_eq!(
        error_code(refuse(&app, &d.token, NOTICE_VERSION).send().await.unwrap()).await,
        (409, "invalid_transition".into())
    );
    assert_eq!(state(&app, d.attempt_id).await, "consented");
}

#[tokio::test]
async fn the_upload_test_counts_what_it_receives_and_keeps_nothing() {
    let app = spawn_app().await;
    let url = format!("{}/api/agent/v1/upload-test", app.public);
    let blobs = app.blob_count();
    let r = app
        .http
        .post(&url)
        .body(vec![7u8; 512 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<UploadTestResult>().await.unwrap().bytes,
        512 * 1024
    );
    // Past 2 MiB: a precise 413, and the server serves on.
    let (status, code) = error_code(
        app.http
            .post(&url)
            .body(vec![0u8; UPLOAD_TEST_MAX_BYTES as usize + 1])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "too_large"));
    assert_eq!(
        app.http
            .post(&url)
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.blob_count(), blobs);
}

/// Open to anyone, so bounded on its own: eight slow senders hold every upload-test slot,
/// the ninth is told to come back (503 + Retry-After), and the exams' API serves on.
#[tokio::test]
async fn slow_upload_tests_cannot_take_more_than_their_slots() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let addr = app.public.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..server::ingest::gate::UPLOAD_TEST_SLOTS {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!("POST /api/agent/v1/upload-test HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000\r\n\r\nabc");
        s.write_all(head.as_bytes()).await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = app
        .http
        .post(format!("{}/api/agent/v1/upload-test", app.public))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await.1, "overloaded");
    let c = app.candidate().await;
    assert_eq!(
        app.consent(&c.token).await.status(),
        204,
        "the exams are served"
    );
    drop(slow);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.http
            .post(format!("{}/api/agent/v1/upload-test", app.public))
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A restarted agent resends the consent its spool kept, naming the notice it was given
/// under: once recorded, a newer notice version on the server does not refuse it.
#[tokio::test]
async fn a_consent_already_recorded_is_accepted_again_whatever_its_version() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    assert_eq!(app.consent(&c.token).await.status(), 204);
    let again = app
        .http
        .post(format!("{}/api/agent/v1/consent", app.public))
        .bearer_auth(&c.token)
        .json(&ConsentRequest {
            notice_version: "2026-11-v2".into(),
            sealed: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    // Before any consent, an unknown version is still refused.
    let d = app.candidate().await;
    let first = app
        .http
        .post(format!("{}/api/agent/v1/consent", app.public))
        .bearer_auth(&d.token)
        .json(&ConsentRequest {
            notice_version: "2026-11-v2".into(),
            sealed: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(first).await.0, 400);
}

/// A short code for a candidate who types rather than clicks: the platform asks for one,
/// the agent trades it once for the launch token; wrong guesses lock the address out.
#[tokio::test]
async fn a_launch_code_buys_the_token_once_and_guessing_is_locked_out() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let r = app
        .platform_json(
            reqwest::Method::POST,
            &format!("attempts/{}/launch-code", c.attempt_id),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let code: LaunchCodeResponse = r.json().await.unwrap();
    assert!(
        protocol::launch_code::normalise(&code.code).is_some(),
        "{}",
        code.code
    );
    let redeem = |typed: String| {
        app.http
            .post(format!("{}/api/agent/v1/launch-code", app.public))
            .json(&RedeemCodeRequest { code: typed })
            .send()
    };
    // Typed in lower case with a space: the same code.
    let r = redeem(code.code.to_lowercase().replace('-', " "))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: AddCandidateResponse = r.json().await.unwrap();
    assert_eq!(got.attempt_id, c.attempt_id);
    assert_eq!(got.launch_token, c.token);
    assert_eq!(
        error_code(redeem(code.code.clone()).await.unwrap()).await,
        (404, "not_found".into()),
        "once only"
    );
    assert_eq!(
        error_code(redeem("not a code".into()).await.unwrap())
            .await
            .0,
        404
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "launch_code_used" && e.attempt_id == Some(c.attempt_id.into())));

    // Guessing: past the per-address limit, even a right code waits.
    let fresh: LaunchCodeResponse = app
        .platform_json(
            reqwest::Method::POST,
            &format!("attempts/{}/launch-code", c.attempt_id),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    for _ in 0..app.settings.limits.login_max_failures_per_address {
        let _ = redeem("ZZZZ-ZZZZ".into()).await.unwrap();
    }
    let locked = redeem(fresh.code.clone()).await.unwrap();
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    // Not for an attempt past recording, nor a revoked token.
    app.platform_post(&format!("attempts/{}/token/revoke", c.attempt_id))
        .await;
    assert_eq!(
        app.platform_json(
            reqwest::Method::POST,
            &format!("attempts/{}/launch-code", c.attempt_id),
            None
        )
        .await
        .status(),
        409
    );
}
