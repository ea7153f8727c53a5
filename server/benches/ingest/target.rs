//! A real server to load: built from settings on loopback, with a sitting to enrol into.

use base64::Engine;
use protocol::api::*;
use protocol::{Fragment, StreamKey, StreamSealer};
use server::clock::{Clock, SystemClock};
use server::startup::Application;
use std::sync::Arc;

pub const TOKEN: &str = "bench-platform";

pub struct Target {
    pub public: String,
    pub http: reqwest::Client,
    sitting: uuid::Uuid,
}

/// One candidate with an open stream, sealing as its agent would.
pub struct Agent {
    pub token: String,
    pub url: String,
    sealer: StreamSealer,
    pub next: u32,
}

impl Agent {
    /// Seals the next fragment of `payload`; returns its index and the chunk.
    pub fn seal(&mut self, payload: &[u8], last: bool) -> (u32, Vec<u8>) {
        let i = self.next;
        self.next += 1;
        let us = u64::from(i) * 2_000_000;
        (
            i,
            self.sealer
                .seal(Fragment {
                    data: payload,
                    media_start_us: us,
                    media_end_us: us + 2_000_000,
                    last,
                })
                .expect("seal")
                .1,
        )
    }
}

/// Writes out what earlier phases left dirty in the page cache (nginx never syncs), so that
/// its write-back is not charged to the next timed phase. Untimed.
pub fn settle() {
    unsafe { libc::sync() };
}

pub fn settings(dir: &std::path::Path) -> server::configuration::Settings {
    let mut s = server::configuration::load(None).unwrap();
    s.server.data_dir = dir.to_owned();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    s.integration.token = Some(TOKEN.into());
    s.limits.max_concurrent_ingests = 1024;
    // Saturation sends a stream's chunks far faster than a camera makes them; the window
    // that bounds indices by the stream's age would refuse them.
    s.limits.index_window_margin = std::time::Duration::from_secs(24 * 3600);
    s
}

/// The load generator's client. Like the agent's: it drops a connection idle for 5 s,
/// before the server would (`header_read_timeout`, 10 s), and sends a PUT again, once, when
/// sending it failed (on loopback to a live server: a keep-alive connection closed under
/// it; a chunk PUT is idempotent).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .retry(
            reqwest::retry::for_host("127.0.0.1")
                .max_retries_per_request(1)
                .classify_fn(|r| {
                    let unsent = r
                        .error()
                        .and_then(|e| e.downcast_ref::<reqwest::Error>())
                        .is_some_and(reqwest::Error::is_request);
                    if r.method() == reqwest::Method::PUT && unsent {
                        r.retryable()
                    } else {
                        r.success()
                    }
                }),
        )
        .build()
        .unwrap()
}

impl Target {
    pub async fn start(settings: server::configuration::Settings) -> Self {
        let app = Application::build(settings, Arc::new(SystemClock) as Arc<dyn Clock>)
            .await
            .unwrap();
        let public = format!("http://{}", app.public_addr());
        tokio::spawn(app.run_until_stopped());
        let http = client();
        let sitting: CreateSittingResponse = post(
            &http,
            format!("{public}/api/integration/v1/sittings"),
            TOKEN,
            &serde_json::json!({ "ref": format!("bench-{}", uuid::Uuid::new_v4()) }),
        )
        .await
        .json()
        .await
        .unwrap();
        Self {
            public,
            http,
            sitting: sitting.sitting_id,
        }
    }

    async fn enrol_one(&self, n: usize) -> Agent {
        let (http, public) = (&self.http, &self.public);
        let c: AddCandidateResponse = post(
            http,
            format!(
                "{public}/api/integration/v1/sittings/{}/candidates",
                self.sitting
            ),
            TOKEN,
            &serde_json::json!({ "ref": format!("c{n}") }),
        )
        .await
        .json()
        .await
        .unwrap();
        let token = c.launch_token;
        post(
            http,
            format!("{public}/api/agent/v1/consent"),
            &token,
            &ConsentRequest {
                notice_version: NOTICE_VERSION.into(),
                sealed: None,
            },
        )
        .await;
        let s: OpenStreamResponse = post(
            http,
            format!("{public}/api/agent/v1/streams"),
            &token,
            &OpenStreamRequest {
                agent_version: "bench".into(),
                os: "linux".into(),
            },
        )
        .await
        .json()
        .await
        .unwrap();
        let key = StreamKey::from_bytes(
            &base64::engine::general_purpose::STANDARD
                .decode(&s.stream_key)
                .unwrap(),
        )
        .unwrap();
        Agent {
            token,
            url: format!("{public}/api/agent/v1/streams/{}/chunks", s.stream_id),
            sealer: StreamSealer::new(key, s.attempt_id, s.stream_id),
            next: 0,
        }
    }

    /// Candidates `from..to`, enrolled 16 at a time (untimed set-up).
    pub async fn enrol(&self, from: usize, to: usize) -> Vec<Agent> {
        use futures::StreamExt;
        futures::stream::iter(from..to)
            .map(|n| self.enrol_one(n))
            .buffered(16)
            .collect()
            .await
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    bearer: &str,
    body: &impl serde::Serialize,
) -> reqwest::Response {
    let r = http
        .post(&url)
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    r
}
