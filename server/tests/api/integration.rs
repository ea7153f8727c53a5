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
    let c: AddCandidateResponse = r.json().await.unwrap();
    assert!(c.launch_token.starts_with("clt_") && c.launch_token.len() > 40);
    // Same references again: conflicts, nothing new stored.
    assert_eq!(error_code(app.create_sitting("CLOE-2026-11-23").await).await, (409, "conflict".into()));
    assert_eq!(error_code(app.add_candidate(s.sitting_id, "cand-42").await).await, (409, "conflict".into()));
}

#[tokio::test]
async fn integration_api_refuses_bad_input() {
    let app = spawn_app().await;
    let url = format!("{}/api/integration/v1/sittings", app.public);
    let r = app.http.post(&url).json(&serde_json::json!({ "ref": "x" })).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = app.http.post(&url).bearer_auth("wrong").json(&serde_json::json!({ "ref": "x" })).send().await.unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = app.http.post(&url).bearer_auth(PLATFORM_TOKEN).body("{not json").send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    let r = app.http.post(&url).bearer_auth(PLATFORM_TOKEN).body(vec![b' '; 200_000]).send().await.unwrap();
    assert_eq!(error_code(r).await, (413, "too_large".into()));
    assert_eq!(error_code(app.create_sitting("   ").await).await, (400, "bad_request".into()));
    assert_eq!(error_code(app.add_candidate(Uuid::new_v4(), "c").await).await, (404, "not_found".into()));
    let r = app.http.post(format!("{url}/not-a-uuid/candidates")).bearer_auth(PLATFORM_TOKEN).json(&serde_json::json!({"ref":"c"})).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    // Still serving everyone else.
    assert_eq!(app.create_sitting("after-the-storm").await.status(), 201);
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.http.get(format!("{}/api/openapi.json", app.public)).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/agent/v1/streams/{stream_id}/chunks/{index}", "/api/integration/v1/sittings", "/api/staff/v1/attempts/{attempt_id}/streams/{stream_id}/media"] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn refuses_plain_http_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = server::configuration::load(None).unwrap();
    settings.server.data_dir = dir.path().to_owned();
    settings.server.listen = "0.0.0.0:0".parse().unwrap();
    settings.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    let clock: std::sync::Arc<dyn server::clock::Clock> = std::sync::Arc::new(server::clock::SystemClock);
    let err = server::startup::Application::build(settings, clock).await.err().expect("must refuse");
    assert!(err.to_string().contains("without TLS"), "{err}");
}
