use crate::helpers::*;
use protocol::api::*;
use uuid::Uuid;

#[tokio::test]
async fn platform_creates_sittings_and_candidates() {
    let app = spawn_app().await;
    let r = app.create_sitting("CLOE-2026-11-23").await;
    assert_eq!(r.status(), 201);
    let s: CreateSittingResponse = r.json().await.unwrap();
    let r = app.add_candidate(s.sitting_id, "cand-42").await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let c: AddCandidateResponse = r.json().await.unwrap();
    assert!(c.launch_token.starts_with("clt_") && c.launch_token.len() > 40);
}

/// References are kept as keyed pseudonyms (issue 19): a reference spelt like another
/// candidate's pseudonym is a new candidate, never that one; the stored row names nobody.
#[tokio::test]
async fn a_reference_spelt_like_a_pseudonym_finds_nobody_else() {
    let app = spawn_app().await;
    let s: CreateSittingResponse = app.create_sitting("S-PSEUDO").await.json().await.unwrap();
    let first: AddCandidateResponse = app
        .add_candidate(s.sitting_id, "DUPONT-Jeanne")
        .await
        .json()
        .await
        .unwrap();
    let stored = app
        .db()
        .await
        .attempt(first.attempt_id.into())
        .await
        .unwrap()
        .reference;
    let server::db::StoredReference::Pseudonymous { pseudonym, sealed } = stored else {
        panic!("stored in clear: {stored:?}")
    };
    assert!(pseudonym.starts_with("p:") && !pseudonym.contains("DUPONT"));
    assert!(!String::from_utf8_lossy(&sealed.unwrap()).contains("DUPONT"));
    let r = app.add_candidate(s.sitting_id, &pseudonym).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let other: AddCandidateResponse = r.json().await.unwrap();
    assert_ne!(other.attempt_id, first.attempt_id);
}

/// Defect: a platform that retried `candidate add` after a lost answer got 409 and could
/// never get the launch token again.
#[tokio::test]
async fn a_retried_enrolment_gets_the_same_answer() {
    let app = spawn_app().await;
    let first: CreateSittingResponse = app
        .create_sitting("CLOE-2026-12-01")
        .await
        .json()
        .await
        .unwrap();
    let r = app.create_sitting("CLOE-2026-12-01").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(
        r.json::<CreateSittingResponse>().await.unwrap().sitting_id,
        first.sitting_id
    );

    let c1: AddCandidateResponse = app
        .add_candidate(first.sitting_id, "cand-7")
        .await
        .json()
        .await
        .unwrap();
    let r = app.add_candidate(first.sitting_id, "cand-7").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let c2: AddCandidateResponse = r.json().await.unwrap();
    assert_eq!(
        (c2.attempt_id, &c2.launch_token, &c2.token_expires_at),
        (c1.attempt_id, &c1.launch_token, &c1.token_expires_at)
    );
    // The replayed token works: it is the same token, not a new one.
    assert_eq!(app.consent(&c2.launch_token).await.status(), 204);
    // Concurrent retries all get the one attempt.
    let answers =
        futures::future::join_all((0..8).map(|_| app.add_candidate(first.sitting_id, "cand-8")))
            .await;
    let mut ids = std::collections::HashSet::new();
    for r in answers {
        assert_eq!(r.status(), 201);
        ids.insert(r.json::<AddCandidateResponse>().await.unwrap().attempt_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Nothing stored twice.
    let trail = app.db().await.audit_trail().await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "candidate_added")
            .count(),
        2
    );
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "sitting_created")
            .count(),
        1
    );
}

#[tokio::test]
async fn integration_api_refuses_bad_input() {
    let app = spawn_app().await;
    let url = format!("{}/api/integration/v1/sittings", app.public);
    let r = app
        .http
        .post(&url)
        .json(&serde_json::json!({ "ref": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = app
        .http
        .post(&url)
        .bearer_auth("wrong")
        .json(&serde_json::json!({ "ref": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = app
        .http
        .post(&url)
        .bearer_auth(PLATFORM_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    let r = app
        .http
        .post(&url)
        .bearer_auth(PLATFORM_TOKEN)
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "too_large".into()));
    assert_eq!(
        error_code(app.create_sitting("   ").await).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(app.add_candidate(Uuid::new_v4(), "c").await).await,
        (404, "not_found".into())
    );
    let r = app
        .http
        .post(format!("{url}/not-a-uuid/candidates"))
        .bearer_auth(PLATFORM_TOKEN)
        .json(&serde_json::json!({"ref":"c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    // Still serving everyone else.
    assert_eq!(app.create_sitting("after-the-storm").await.status(), 201);
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .http
        .get(format!("{}/api/openapi.json", app.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/agent/v1/streams/{stream_id}/chunks/{index}",
        "/api/integration/v1/sittings",
        "/api/integration/v1/attempts/{attempt_id}/review",
        "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/media",
        "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/fragments/{index}",
        "/api/staff/v1/attempts/{attempt_id}/timeline",
        "/api/staff/v1/attempts/{attempt_id}/flags/{flag_id}",
        "/api/staff/v1/account/totp",
        "/api/staff/v1/admin/audit",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn refuses_plain_http_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = server::configuration::load(None).unwrap();
    settings.server.data_dir = dir.path().to_owned();
    settings.server.listen = "0.0.0.0:0".parse().unwrap();
    settings.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    let clock: std::sync::Arc<dyn server::clock::Clock> =
        std::sync::Arc::new(server::clock::SystemClock);
    let err = server::startup::Application::build(settings, clock)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("without TLS"), "{err}");
}

#[tokio::test]
async fn production_refuses_keys_inside_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = server::configuration::load(None).unwrap();
    settings.server.data_dir = dir.path().join("data");
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    settings.server.production = true;
    let clock: std::sync::Arc<dyn server::clock::Clock> =
        std::sync::Arc::new(server::clock::SystemClock);
    let err = server::startup::Application::build(settings.clone(), clock.clone())
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("key directory"), "{err}");
    settings.server.key_dir = Some(dir.path().join("data/../data/kek"));
    assert!(
        server::startup::Application::build(settings.clone(), clock.clone())
            .await
            .is_err(),
        "a path that walks back in is still inside"
    );
    settings.server.key_dir = Some(dir.path().join("data/../keys"));
    // Issue 19 (#4): nor does it create the receipt signing key silently.
    let err = server::startup::Application::build(settings.clone(), clock.clone())
        .await
        .err()
        .expect("must refuse without a signing key");
    assert!(err.to_string().contains("receipt init-key"), "{err}");
    let keys = server::keys::KeyStore::open(&dir.path().join("keys")).unwrap();
    let (_, created) = keys.init_receipt_signing_key().unwrap();
    let (_, again) = keys.init_receipt_signing_key().unwrap();
    assert_eq!((created, again), (true, false), "created once, then kept");
    // Nor the pseudonym key, which a new one would make every stored reference unfindable.
    let err = server::startup::Application::build(settings.clone(), clock.clone())
        .await
        .err()
        .expect("must refuse without a pseudonym key");
    assert!(err.to_string().contains("pseudonym key"), "{err}");
    assert_eq!(
        (
            keys.init_pseudonym_key().unwrap(),
            keys.init_pseudonym_key().unwrap()
        ),
        (true, false)
    );
    server::startup::Application::build(settings, clock)
        .await
        .expect("keys on their own directory");
    assert!(dir.path().join("keys").is_dir() && !dir.path().join("data/keys").exists());
}

/// The key that signs receipts is served on the public listener without a credential, the
/// same as the integration API gives the platform, with its key id.
#[tokio::test]
async fn the_receipt_key_is_public_and_is_the_platforms() {
    let app = spawn_app().await;
    let open: serde_json::Value = app
        .http
        .get(format!("{}/api/public/v1/receipts/public-key", app.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = open["public_key"].as_str().expect("a key").to_owned();
    assert_eq!(
        open["key_id"],
        protocol::receipt_key_id(&key).unwrap().as_str()
    );
    let platform: serde_json::Value = app
        .platform_json(reqwest::Method::GET, "receipts/public-key", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(platform, open);
}
