//! Ingest throughput: 50 concurrent uploaders PUT sealed chunks to a real server on
//! loopback (SQLite, local blobs, fsync per chunk: the durability rule is kept).
//! `cargo bench -p server --bench ingest` — prints chunks/s and MB/s per chunk size.

use base64::Engine;
use protocol::api::*;
use protocol::{Fragment, StreamKey, StreamSealer};
use server::clock::{Clock, SystemClock};
use server::startup::Application;
use std::sync::Arc;
use std::time::Instant;

const UPLOADERS: usize = 50;
const TOKEN: &str = "bench-platform";

async fn enrol(http: &reqwest::Client, public: &str, sitting: uuid::Uuid, n: usize) -> (String, OpenStreamResponse) {
    let c: AddCandidateResponse = http
        .post(format!("{public}/api/integration/v1/sittings/{sitting}/candidates"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "ref": format!("c{n}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = c.launch_token;
    http.post(format!("{public}/api/agent/v1/consent"))
        .bearer_auth(&t)
        .json(&ConsentRequest { notice_version: NOTICE_VERSION.into() })
        .send()
        .await
        .unwrap();
    let s: OpenStreamResponse = http
        .post(format!("{public}/api/agent/v1/streams"))
        .bearer_auth(&t)
        .json(&OpenStreamRequest { agent_version: "bench".into(), os: "linux".into() })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (t, s)
}

async fn run(chunk_size: usize, per_uploader: u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = server::configuration::load(None).unwrap();
    settings.server.data_dir = dir.path().to_owned();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    settings.integration.token = Some(TOKEN.into());
    let app = Application::build(settings, Arc::new(SystemClock) as Arc<dyn Clock>).await.unwrap();
    let public = format!("http://{}", app.public_addr());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().pool_max_idle_per_host(UPLOADERS).build().unwrap();
    let sitting: CreateSittingResponse = http
        .post(format!("{public}/api/integration/v1/sittings"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "ref": "bench" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Enrol and seal everything before the clock starts.
    let mut jobs = Vec::new();
    for n in 0..UPLOADERS {
        let (token, s) = enrol(&http, &public, sitting.sitting_id, n).await;
        let key = StreamKey::from_bytes(&base64::engine::general_purpose::STANDARD.decode(&s.stream_key).unwrap()).unwrap();
        let mut sealer = StreamSealer::new(key, s.attempt_id, s.stream_id);
        let payload: Vec<u8> = (0..chunk_size).map(|i| (i * 7 + n) as u8).collect();
        let chunks: Vec<Vec<u8>> = (0..per_uploader)
            .map(|i| sealer.seal(Fragment { data: &payload, media_start_us: 0, media_end_us: 0, last: i + 1 == per_uploader }).unwrap().1)
            .collect();
        jobs.push((token, s.stream_id, chunks));
    }
    let start = Instant::now();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|(token, stream, chunks)| {
            let http = http.clone();
            let public = public.clone();
            tokio::spawn(async move {
                for (i, c) in chunks.into_iter().enumerate() {
                    let r = http
                        .put(format!("{public}/api/agent/v1/streams/{stream}/chunks/{i}"))
                        .bearer_auth(&token)
                        .body(c)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = UPLOADERS as f64 * per_uploader as f64;
    println!(
        "ingest {:>4} KiB x {:>4} chunks, {UPLOADERS} uploaders: {:>7.1} chunks/s {:>7.1} MB/s ({:.2} s)",
        chunk_size / 1024,
        n as u64,
        n / secs,
        n * chunk_size as f64 / secs / 1e6,
        secs
    );
}

fn main() {
    // `cargo test --benches` passes --bench-less args; run a tiny pass there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let per = if quick { 2 } else { 20 };
    rt.block_on(run(64 * 1024, per));
    rt.block_on(run(512 * 1024, per));
}
