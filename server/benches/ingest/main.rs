//! Ingest benchmark, ours against nginx in the same run, on SQLite + local directory and
//! on PostgreSQL + Garage (throwaway servers, as the tests start them):
//!
//! - saturation: 50 uploaders PUT sealed 64 KiB and 512 KiB chunks back to back to a real
//!   server on loopback, which verifies each tag, writes the blob, syncs it and commits
//!   the row (group commit) before answering; then the same bytes to nginx writing them
//!   into a directory (WebDAV PUT, no fsync). Rounds alternate ours and nginx.
//! - where the time goes: the server's per-stage timings over the saturation run;
//! - agents held: N agents each sending one ~100 KiB fragment every 2 s, N growing until
//!   the 99th percentile acknowledgement latency passes 250 ms.
//!
//! `scripts/bench-ingest` (installs nginx if missing) or `cargo bench -p server --bench ingest`.
//! Without `--bench` (as `cargo test --benches` runs it) a tiny pass checks it still works.

#[path = "../../tests/support/garage.rs"]
mod garage;
#[path = "../../tests/support/pg.rs"]
mod pg;

mod agents;
mod nginx;
mod saturation;
mod stages;
mod target;

use server::configuration::Settings;
use target::Target;

struct Plan {
    rounds: usize,
    per_round: u32,
    steps: &'static [usize],
    fragments: u32,
}

const FULL: Plan = Plan {
    rounds: 5,
    per_round: 40,
    steps: &[
        250, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000,
    ],
    fragments: 5,
};
const SMOKE: Plan = Plan {
    rounds: 1,
    per_round: 1,
    steps: &[4],
    fragments: 1,
};

async fn setup_rows(
    setup: &str,
    settings: impl Fn() -> (Settings, tempfile::TempDir),
    plan: &Plan,
    ng: &nginx::Nginx,
) -> Vec<agents::Step> {
    for size in [64 * 1024, 512 * 1024] {
        let (s, _dir) = settings();
        // Only S3 gets a store-alone figure: a local put is nginx's job without the fsync.
        let store = s
            .object_store
            .url
            .is_some()
            .then(|| server::blobs::BlobStore::open(&s.object_store, _dir.path()).unwrap());
        let target = Target::start(s).await;
        let row = saturation::run(
            &target,
            ng,
            store.as_ref(),
            &format!("{setup}-{size}"),
            size,
            plan.rounds,
            plan.per_round,
        )
        .await;
        row.print(setup);
        eprintln!(
            "  where the time goes ({setup}, {} KiB): {}",
            size / 1024,
            row.stages
        );
    }
    let (s, _dir) = settings();
    let target = Target::start(s).await;
    eprintln!("agents held, {setup}:");
    agents::held(&target, plan.steps, plan.fragments).await
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if !full && !nginx::installed() {
        eprintln!("nginx not installed: skipping the smoke pass of the ingest benchmark (scripts/bench-ingest installs it)");
        return;
    }
    let plan = if full { FULL } else { SMOKE };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ng = nginx::start();
    println!("| storage | chunk | rounds × chunks | ours chunks/s | ours MB/s | nginx chunks/s | nginx MB/s | ours / nginx (min–max) | S3 store alone chunks/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let held = rt.block_on(async {
        let local = || {
            let dir = tempfile::tempdir().unwrap();
            (target::settings(dir.path()), dir)
        };
        let sqlite = setup_rows("sqlite+local", local, &plan, &ng).await;
        let cluster = pg::Cluster::start().await;
        let bucket = garage::Garage::start();
        let remote = || {
            let dir = tempfile::tempdir().unwrap();
            let mut s = target::settings(dir.path());
            s.database.url = Some(cluster.url.clone());
            s.database.max_connections = 32;
            s.object_store = bucket.settings.clone();
            (s, dir)
        };
        let postgres = setup_rows("postgres+garage", remote, &plan, &ng).await;
        [("sqlite+local", sqlite), ("postgres+garage", postgres)]
    });
    println!();
    println!(
        "| storage | agents held (p99 ≤ {} ms) | at that step: chunks, p50, p99 | next step |",
        agents::P99_LIMIT_MS
    );
    println!("|---|---|---|---|");
    for (setup, steps) in held {
        let ok = steps.iter().rev().find(|s| s.held());
        let next = steps.iter().find(|s| !s.held());
        let at = ok.map_or("–".into(), |s| {
            format!("{}, {:.0} ms, {:.0} ms", s.chunks, s.p50_ms, s.p99_ms)
        });
        let next = next.map_or("not reached".into(), |s| {
            format!(
                "{}: p99 {:.0} ms, refused {:?}",
                s.agents, s.p99_ms, s.refusals
            )
        });
        println!(
            "| {setup} | {} | {at} | {next} |",
            ok.map_or(0, |s| s.agents)
        );
        if !full {
            // Latency on a loaded CI machine proves nothing; every chunk must land.
            assert!(
                steps.iter().all(|s| s.chunks > 0 && s.failed == 0),
                "{setup}: the smoke pass lost chunks"
            );
        }
    }
}
