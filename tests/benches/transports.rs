//! The data channel against HTTPS, on loopback, in the same run (`scripts/bench-transports`):
//!
//! 1. **catch-up**: a 10-minute backlog (300 sealed chunks of 137 KB, what an agent spools
//!    offline at 548 kbit/s) drained by the real agent binary over each transport; seconds
//!    and × real time (goal ≥ 10×);
//! 2. **acknowledgement latency** with 200 agents (the agent's own transport code, in one
//!    process), each sending a 137 KB chunk every 2 s for 60 s: p50 / p99;
//! 3. **server memory per connected agent**: the server's RSS with 200 agents connected,
//!    less its RSS before, over 200.
//!
//! Rounds alternate the transports; the table gives medians. `BENCH_ROUNDS` (default 3).

#[path = "../tests/support/mod.rs"]
mod support;

use capture_agent::client::Api;
use capture_agent::transport::{Link, Mode};
use protocol::{Fragment, LaunchToken, StreamKey, StreamOpening, StreamSealer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::scene::rss_kb;
use support::*;
use uuid::Uuid;

const CHUNK: usize = 137_000;
const BACKLOG: u32 = 300;
const AGENTS: usize = 200;
const LOAD: Duration = Duration::from_secs(60);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn server(dir: &std::path::Path) -> Server {
    // A 10-minute backlog arrives at once: the window bounding a stream's index by its age
    // must allow it (the attempt was created a moment ago, here).
    Server::start_with_env(
        dir,
        0,
        &[],
        &[("PROCTOR_LIMITS__INDEX_WINDOW_MARGIN".into(), "1h".into())],
    )
}

/// A stream of `n` sealed chunks of `CHUNK` bytes (random: incompressible, like media),
/// keyed by the agent and sealed to the token's key.
fn sealed_stream(token: &str, started_ms: u64, n: u32) -> (Uuid, Vec<Vec<u8>>) {
    let (attempt, public) = LaunchToken::parse(token).unwrap().offline.unwrap();
    let (id, key) = (Uuid::new_v4(), StreamKey::generate());
    let mut sealer = StreamSealer::with_opening(
        key.clone(),
        attempt,
        id,
        StreamOpening::seal(&public, &attempt, &id, started_ms, &key),
    );
    let data: Vec<u8> = (0..CHUNK).map(|_| rand::random()).collect();
    let chunks = (0..n)
        .map(|i| {
            sealer
                .seal(Fragment {
                    data: &data,
                    media_start_us: i as u64 * 2_000_000,
                    media_end_us: (i as u64 + 1) * 2_000_000,
                    last: i + 1 == n,
                })
                .unwrap()
                .1
        })
        .collect();
    (id, chunks)
}

/// Catch-up: the spool holds the 10-minute backlog; the agent records 2 s more and exits
/// once everything is acknowledged. The leftovers are queued at the start, so the largest
/// acknowledgement latency the agent reports is the time its last leftover took: the
/// catch-up.
async fn catch_up(transport: &str) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(&tmp.path().join("data"));
    let (attempt, token) = enrol(&server).await;
    let spool = tmp.path().join("spool");
    let (stream, chunks) = sealed_stream(&token, unix_ms() - 600_000, BACKLOG);
    let dir = spool.join(&attempt).join(stream.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    for (i, c) in chunks.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:010}.chunk")), c).unwrap();
    }
    std::fs::write(dir.join("final"), (BACKLOG - 1).to_string()).unwrap();
    let out = tokio::task::spawn_blocking({
        let mut cmd = agent(&server.public, &token, "2s", &spool);
        cmd.args(["--transport", transport]);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let took = summary["ack_latency"]["max_ms"].as_f64().unwrap() / 1000.0;
    let report = server.cli(&["attempt", "show", &attempt]);
    assert_eq!(
        report["chunks_by_transport"][transport].as_u64().unwrap() as u32 >= BACKLOG,
        true,
        "{report:#}"
    );
    took
}

struct Load {
    p50_ms: f64,
    p99_ms: f64,
    rss_per_agent_kb: f64,
    acked: usize,
}

/// 200 agents, each its own link (its own data channel and UDP socket, or its own HTTPS
/// connection), one 137 KB chunk every 2 s each.
async fn load(mode: Mode) -> Load {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(&tmp.path().join("data"));
    let pid = server.child.id();
    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        let (_, token) = enrol(&server).await;
        let credential = LaunchToken::parse(&token).unwrap().credential().to_owned();
        let api = Api::new(server.public.parse().unwrap(), credential, None).unwrap();
        assert!(api
            .consent(protocol::api::NOTICE_VERSION, &consent(&token))
            .await
            .is_ok());
        agents.push((token, Arc::new(Link::new(api, mode))));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kb(pid);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let connected = Arc::new(tokio::sync::Barrier::new(AGENTS + 1));
    let mut tasks = Vec::new();
    for (i, (token, link)) in agents.into_iter().enumerate() {
        let (latencies, connected) = (latencies.clone(), connected.clone());
        tasks.push(tokio::spawn(async move {
            let n = (LOAD.as_secs() / 2) as u32;
            let (stream, chunks) = sealed_stream(&token, unix_ms(), n + 1);
            // Spread the agents over the 2 s period.
            tokio::time::sleep(Duration::from_millis(2000 * i as u64 / AGENTS as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            for (index, chunk) in chunks.into_iter().enumerate() {
                tick.tick().await;
                let sent = Instant::now();
                let r = link.put_chunk(stream, index as u32, chunk).await;
                assert!(r.is_ok(), "agent {i} chunk {index}: {r:?}");
                if index == 0 {
                    connected.wait().await;
                    continue; // the first one opens the channel: not a steady-state figure
                }
                latencies
                    .lock()
                    .unwrap()
                    .push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    connected.wait().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = rss_kb(pid);
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = std::mem::take(&mut *latencies.lock().unwrap());
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    Load {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        rss_per_agent_kb: (busy.saturating_sub(idle)) as f64 / AGENTS as f64,
        acked: v.len(),
    }
}

fn consent(token: &str) -> Vec<u8> {
    let (attempt, public) = LaunchToken::parse(token).unwrap().offline.unwrap();
    let c = protocol::api::OfflineConsent {
        notice_version: protocol::api::NOTICE_VERSION.into(),
        given_at_ms: unix_ms() as i64,
    };
    protocol::seal_to_attempt(
        &public,
        &attempt,
        protocol::api::CONSENT_PURPOSE,
        &serde_json::to_vec(&c).unwrap(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    if !full {
        // `cargo test --benches`: one catch-up each, to check the bench still runs.
        for t in ["webrtc", "https"] {
            eprintln!("catch-up over {t}: {:.1} s", catch_up(t).await);
        }
        return;
    }
    let (mut cu_dc, mut cu_https, mut dc, mut https) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        cu_dc.push(catch_up("webrtc").await);
        cu_https.push(catch_up("https").await);
        dc.push(load(Mode::Webrtc).await);
        https.push(load(Mode::Https).await);
    }
    let media = BACKLOG as f64 * 2.0;
    let row = |name: &str, cu: &[f64], l: &[Load]| {
        let c = median(cu.to_vec());
        println!(
            "| {name} | {c:.1} s ({:.0}× real time) | {:.1} / {:.1} ms | {:.0} KB | {} |",
            media / c,
            median(l.iter().map(|x| x.p50_ms).collect()),
            median(l.iter().map(|x| x.p99_ms).collect()),
            median(l.iter().map(|x| x.rss_per_agent_kb).collect()),
            l.iter().map(|x| x.acked).sum::<usize>()
        )
    };
    println!("| transport | catch-up of a 10-min backlog | ack p50 / p99, {AGENTS} agents | server RSS per agent | chunks acked |");
    println!("|---|---|---|---|---|");
    row("data channel (str0m)", &cu_dc, &dc);
    row("HTTPS (HTTP/1.1)", &cu_https, &https);
}
