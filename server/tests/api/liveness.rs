//! Liveness: heartbeats and chunks are signs of life; an exam's agent that says nothing for
//! `[liveness] silent_after` is marked silent, the silence kept as a gap on record.

use crate::helpers::*;
use protocol::api::*;

impl TestApp {
    async fn heartbeat(&self, token: &str, backlog_chunks: u64) -> reqwest::Response {
        self.http
            .post(format!("{}/api/agent/v1/heartbeat", self.public))
            .bearer_auth(token)
            .json(&Heartbeat {
                backlog_chunks,
                backlog_bytes: backlog_chunks * 140_000,
            })
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_silent_agent_is_marked_and_its_silence_kept_as_a_gap() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    assert_eq!(app.consent(&c.token).await.status(), 204);
    assert_eq!(app.heartbeat(&c.token, 0).await.status(), 204);
    let p = app.state_on_clock().await;
    assert_eq!(p.liveness.mark_silent_agents().await.unwrap(), 0);

    app.clock
        .advance(app.settings.liveness.silent_after + std::time::Duration::from_secs(5));
    assert_eq!(p.liveness.mark_silent_agents().await.unwrap(), 1);
    let status: AttemptStatus = app
        .http
        .get(format!(
            "{}/api/integration/v1/attempts/{}",
            app.public, c.attempt_id
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status.agent_silent_since.is_some(),
        "the platform sees it: {status:?}"
    );

    // Heard again (a heartbeat saying 12 chunks wait): the silence closes, 25 s long.
    app.clock.advance(std::time::Duration::from_secs(10));
    assert_eq!(app.heartbeat(&c.token, 12).await.status(), 204);
    let report = p
        .review
        .report_for_operator(c.attempt_id.into())
        .await
        .unwrap();
    assert_eq!(report.agent_silences.len(), 1);
    let seconds = report.agent_silences[0].seconds.unwrap();
    assert!((34.0..=36.0).contains(&seconds), "{seconds}");
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "agent_silent" && e.attempt_id == Some(c.attempt_id.into())));
    assert!(trail
        .iter()
        .any(|e| e.action == "agent_back" && e.attempt_id == Some(c.attempt_id.into())));

    // Nonsense and strangers are refused.
    let r = app
        .http
        .post(format!("{}/api/agent/v1/heartbeat", app.public))
        .bearer_auth(&c.token)
        .json(&serde_json::json!({ "backlog_chunks": u64::MAX, "backlog_bytes": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    assert_eq!(
        error_code(app.heartbeat("clt_nobody", 0).await).await,
        (401, "unauthorized".into())
    );
}
