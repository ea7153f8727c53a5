//! Ingest benchmark, ours against nginx in the same run, on SQLite + local directory and
//! on PostgreSQL + Garage (throwaway servers, as the tests start them):
//!
//! - saturation: 50 uploaders PUT sealed 64 KiB and 512 KiB chunks back to back to a real
//!   server on loopback, which verifies each tag, writes the blob, syncs it and commits
//!   the row (group commit) before answering; then the same bytes to nginx writing them
//!   into a directory (WebDAV PUT, no fsync). Rounds alternate ours and nginx.
//! - where the time goes: the server's per-stage timings over the saturation run, and the
//!   whole machine's CPU per chunk in our rounds and in nginx's (`/proc/stat`);
//! - agents held: N agents each sending one ~100 KiB fragment every 2 s, N growing until
//!   the 99th percentile acknowledgement latency passes 250 ms; on SQLite + local, beside
//!   1 GiB of another program's unsynced writes to the same file system in each step.
//!
//! It says how much dirty data the kernel held when it started: the blob sync must not
//! depend on it, and a figure taken on a quiet file system should say so.
//!
//! `scripts/bench-ingest` (installs nginx if missing) or `cargo bench -p server --bench ingest`.
//! For a profile of one part: `INGEST_BENCH_ONLY=sqlite+local` (or `postgres+garage`)
//! runs one storage, `INGEST_BENCH_PHASE=saturation` (or `agents`) one phase,
//! `INGEST_BENCH_CHUNK_KIB=64` (or `512`) one chunk size of the saturation phase.
//! The server's settings take the `PROCTOR_*` environment as it does: e.g.
//! `PROCTOR_OBJECT_STORE__LOCAL_FILES=per_chunk` for the local layout before stream files.
//! Without `--bench` (as `cargo test --benches` runs it) a tiny pass checks it still works.

#[path = "../../tests/support/garage.rs"]
mod garage;
#[path = "../../tests/support/pg.rs"]
mod pg;

mod agents;
mod cpu;
mod dirty;
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
    /// Unrelated bytes written to the blobs' file system in each step (SQLite + local).
    unrelated: u64,
}

const FULL: Plan = Plan {
    rounds: 5,
    per_round: 40,
    steps: &[
        250, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000,
    ],
    fragments: 5,
    unrelated: 1 << 30,
};
const SMOKE: Plan = Plan {
    rounds: 1,
    per_round: 1,
    steps: &[4],
    fragments: 1,
    unrelated: 16 << 20,
};

async fn setup_rows(
    setup: &str,
    settings: impl Fn() -> (Settings, tempfile::TempDir),
    plan: &Plan,
    ng: &nginx::Nginx,
) -> Vec<agents::Step> {
    let phase = std::env::var("INGEST_BENCH_PHASE").ok();
    let sizes: &[usize] = match phase.as_deref() {
        Some("agents") => &[],
        _ => match std::env::var("INGEST_BENCH_CHUNK_KIB").as_deref() {
            Ok("64") => &[64 * 1024],
            Ok("512") => &[512 * 1024],
            _ => &[64 * 1024, 512 * 1024],
        },
    };
    for &size in sizes {
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
        eprintln!(
            "  the machine's CPU ({setup}, {} KiB): {}",
            size / 1024,
            row.cpu()
        );
    }
    if phase.as_deref() == Some("saturation") {
        return Vec::new();
    }
    let (s, dir) = settings();
    let local = s.object_store.url.is_none();
    let target = Target::start(s).await;
    eprintln!("agents held, {setup}:");
    // Unrelated writes land beside the blobs: the data directory's own file system.
    let unrelated = local.then(|| (dir.path(), plan.unrelated));
    agents::held(&target, plan.steps, plan.fragments, unrelated).await
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
    println!(
        "Dirty or under write-back when the run started: {} MiB (/proc/meminfo).",
        dirty::mib()
    );
    println!();
    println!("| storage | chunk | rounds × chunks | ours chunks/s | ours MB/s | nginx chunks/s | nginx MB/s | ours / nginx (min–max) | S3 store alone chunks/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("INGEST_BENCH_ONLY").ok();
    let runs = |setup: &str| only.as_deref().is_none_or(|o| o == setup);
    let held = rt.block_on(async {
        let local = || {
            let dir = tempfile::tempdir().unwrap();
            (target::settings(dir.path()), dir)
        };
        let mut held = Vec::new();
        if runs("sqlite+local") {
            held.push((
                "sqlite+local",
                setup_rows("sqlite+local", local, &plan, &ng).await,
            ));
        }
        if !runs("postgres+garage") {
            return held;
        }
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
        held.push((
            "postgres+garage",
            setup_rows("postgres+garage", remote, &plan, &ng).await,
        ));
        held
    });
    println!();
    println!(
        "| storage | unrelated writes per step | agents held (p99 ≤ {} ms) | at that step: chunks, p50, p99, dirty peak | next step |",
        agents::P99_LIMIT_MS
    );
    println!("|---|---|---|---|---|");
    for (setup, steps) in held {
        let ok = steps.iter().rev().find(|s| s.held());
        let next = steps.iter().find(|s| !s.held());
        let at = ok.map_or("–".into(), |s| {
            format!(
                "{}, {:.0} ms, {:.0} ms, {} MiB",
                s.chunks, s.p50_ms, s.p99_ms, s.dirty_peak_mib
            )
        });
        let unrelated = if setup == "sqlite+local" {
            format!("{} MiB, never synced", plan.unrelated >> 20)
        } else {
            "none".to_owned()
        };
        let next = next.map_or("not reached".into(), |s| {
            format!(
                "{}: p99 {:.0} ms, refused {:?}",
                s.agents, s.p99_ms, s.refusals
            )
        });
        println!(
            "| {setup} | {unrelated} | {} | {at} | {next} |",
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
