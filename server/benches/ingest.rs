//! Ingest saturation against nginx, in one run: 50 concurrent uploaders PUT sealed chunks
//! (64 KiB and 512 KiB) as fast as they can to a real server on loopback, which verifies
//! each tag, writes the blob durably and commits the row before answering; then the same
//! bytes, the same way, to nginx writing them into a directory (WebDAV PUT, no fsync).
//! Storage set-ups: SQLite + local directory, and PostgreSQL + Garage (throwaway servers,
//! as the tests start them).
//!
//! `scripts/bench-ingest` (installs nginx if missing) or `cargo bench -p server --bench ingest`.
//! Without `--bench` (as `cargo test --benches` runs it) a tiny pass checks it still works.

#[path = "../tests/support/garage.rs"]
mod garage;
#[path = "../tests/support/pg.rs"]
mod pg;

use base64::Engine;
use protocol::api::*;
use protocol::{Fragment, StreamKey, StreamSealer};
use server::clock::{Clock, SystemClock};
use server::startup::Application;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UPLOADERS: usize = 50;
const TOKEN: &str = "bench-platform";

struct Job {
    token: String,
    stream: uuid::Uuid,
    chunks: Vec<Vec<u8>>,
}

async fn enrol(http: &reqwest::Client, public: &str, sitting: uuid::Uuid, n: usize) -> (String, OpenStreamResponse) {
    let c: AddCandidateResponse =
        http.post(format!("{public}/api/integration/v1/sittings/{sitting}/candidates")).bearer_auth(TOKEN).json(&serde_json::json!({ "ref": format!("c{n}") })).send().await.unwrap().json().await.unwrap();
    let t = c.launch_token;
    http.post(format!("{public}/api/agent/v1/consent")).bearer_auth(&t).json(&ConsentRequest { notice_version: NOTICE_VERSION.into() }).send().await.unwrap();
    let s = http.post(format!("{public}/api/agent/v1/streams")).bearer_auth(&t).json(&OpenStreamRequest { agent_version: "bench".into(), os: "linux".into() }).send().await.unwrap().json().await.unwrap();
    (t, s)
}

/// Chunks/s and MB/s of `UPLOADERS` tasks each PUTting its list in order; `url` names where.
async fn saturate(http: &reqwest::Client, jobs: Vec<(String, Vec<Vec<u8>>)>, auth: Option<Vec<String>>, expect: &[u16]) -> (f64, f64) {
    let n: usize = jobs.iter().map(|j| j.1.len()).sum();
    let bytes: usize = jobs.iter().flat_map(|j| j.1.iter().map(Vec::len)).sum();
    let start = Instant::now();
    let tasks: Vec<_> = jobs
        .into_iter()
        .enumerate()
        .map(|(k, (base, chunks))| {
            let http = http.clone();
            let token = auth.as_ref().map(|a| a[k].clone());
            let expect = expect.to_vec();
            tokio::spawn(async move {
                for (i, c) in chunks.into_iter().enumerate() {
                    let mut req = http.put(format!("{base}/{i}")).body(c);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let status = req.send().await.unwrap().status().as_u16();
                    assert!(expect.contains(&status), "PUT {base}/{i}: {status}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, bytes as f64 / secs / 1e6)
}

async fn ours(settings: server::configuration::Settings, chunk_size: usize, per_uploader: u32) -> (f64, f64, Vec<(String, Vec<Vec<u8>>)>) {
    let app = Application::build(settings, Arc::new(SystemClock) as Arc<dyn Clock>).await.unwrap();
    let public = format!("http://{}", app.public_addr());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().pool_max_idle_per_host(UPLOADERS).build().unwrap();
    let sitting: CreateSittingResponse =
        http.post(format!("{public}/api/integration/v1/sittings")).bearer_auth(TOKEN).json(&serde_json::json!({ "ref": format!("bench-{}", uuid::Uuid::new_v4()) })).send().await.unwrap().json().await.unwrap();
    // Enrol and seal everything before the clock starts.
    let mut jobs = Vec::new();
    for n in 0..UPLOADERS {
        let (token, s) = enrol(&http, &public, sitting.sitting_id, n).await;
        let key = StreamKey::from_bytes(&base64::engine::general_purpose::STANDARD.decode(&s.stream_key).unwrap()).unwrap();
        let mut sealer = StreamSealer::new(key, s.attempt_id, s.stream_id);
        let payload: Vec<u8> = (0..chunk_size).map(|i| (i * 7 + n) as u8).collect();
        let chunks = (0..per_uploader).map(|i| sealer.seal(Fragment { data: &payload, media_start_us: 0, media_end_us: 0, last: i + 1 == per_uploader }).unwrap().1).collect();
        jobs.push(Job { token, stream: s.stream_id, chunks });
    }
    let tokens = jobs.iter().map(|j| j.token.clone()).collect();
    let same_bytes: Vec<(String, Vec<Vec<u8>>)> = jobs.iter().enumerate().map(|(k, j)| (format!("u{k}"), j.chunks.clone())).collect();
    let targets = jobs.into_iter().map(|j| (format!("{public}/api/agent/v1/streams/{}/chunks", j.stream), j.chunks)).collect();
    let (cps, mbps) = saturate(&http, targets, Some(tokens), &[201]).await;
    (cps, mbps, same_bytes)
}

struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn nginx() -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  client_max_body_size 16m;\n  client_body_buffer_size 1m;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {r};\n    location / {{ dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
            d = dir.path().display(),
            r = root.display()
        ),
    )
    .unwrap();
    let child = Command::new("nginx").arg("-c").arg(&conf).arg("-p").arg(dir.path()).spawn().expect("nginx (scripts/bench-ingest installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, port, _dir: dir }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base_settings(dir: &std::path::Path) -> server::configuration::Settings {
    let mut s = server::configuration::load(None).unwrap();
    s.server.data_dir = dir.to_owned();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    s.integration.token = Some(TOKEN.into());
    s.limits.max_concurrent_ingests = 1024;
    s
}

async fn row(setup: &str, settings: server::configuration::Settings, chunk_size: usize, per: u32, nginx: &Nginx) {
    let (ours_cps, ours_mbps, same_bytes) = ours(settings, chunk_size, per).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(UPLOADERS).build().unwrap();
    let targets = same_bytes.into_iter().map(|(name, c)| (format!("http://127.0.0.1:{}/{setup}-{chunk_size}/{name}", nginx.port), c)).collect();
    let (ng_cps, ng_mbps) = saturate(&http, targets, None, &[201, 204]).await;
    println!(
        "| {setup} | {} KiB | {} | {ours_cps:.0} | {ours_mbps:.1} | {ng_cps:.0} | {ng_mbps:.1} | {:.2} |",
        chunk_size / 1024,
        per as usize * UPLOADERS,
        ours_cps / ng_cps
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let per = if full { 20 } else { 1 };
    if !full && Command::new("nginx").arg("-v").output().is_err() {
        eprintln!("nginx not installed: skipping the smoke pass of the ingest benchmark (scripts/bench-ingest installs it)");
        return;
    }
    let ng = nginx();
    println!("| storage | chunk | chunks | ours chunks/s | ours MB/s | nginx chunks/s | nginx MB/s | ours / nginx |");
    println!("|---|---|---|---|---|---|---|---|");
    rt.block_on(async {
        for size in [64 * 1024, 512 * 1024] {
            let dir = tempfile::tempdir().unwrap();
            row("sqlite+local", base_settings(dir.path()), size, per, &ng).await;
        }
        let cluster = pg::Cluster::start().await;
        let bucket = garage::Garage::start();
        for size in [64 * 1024, 512 * 1024] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = base_settings(dir.path());
            s.database.url = Some(cluster.url.clone());
            s.database.max_connections = 32;
            s.object_store = bucket.settings.clone();
            row("postgres+garage", s, size, per, &ng).await;
        }
    });
}
