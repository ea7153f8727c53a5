//! Retention benchmark, on SQLite + a local directory and on PostgreSQL + Garage
//! (throwaway servers, as the tests start them):
//!
//! - PV validation of a sitting of 1,000 candidates, each with recorded fragments: the
//!   time until the decision answers (every key destroyed by then; goal ≤ 1 s) and until
//!   every blob is gone (goal ≤ 60 s). Baseline in the same run: the same keys destroyed
//!   one transaction per attempt.
//! - The same PV validation once every recording is packed (issue 22): 1,000 candidates
//!   with 9 packs each, as many objects as a sitting of 1,000 one-hour recordings has
//!   once packed (~285 MiB each at the agent's highest bitrate, 32 MiB packs); with the
//!   packing's own cost (fragments per second, paid once in the background).
//! - The retention sweep of 100,000 due attempts: the time until every key is destroyed
//!   (goal ≤ 10 s).
//!
//! `scripts/bench-retention` or `cargo bench -p server --bench retention`. Without
//! `--bench` (as `cargo test --benches` runs it) a tiny pass checks it still works.

#[path = "../tests/support/garage.rs"]
mod garage;
#[path = "../tests/support/pg.rs"]
mod pg;

use bytes::Bytes;
use server::clock::{Clock, SystemClock};
use server::configuration::Settings;
use server::db::{
    AttemptId, ChunkRow, NewChunk, SittingId, Stream, StreamId, StreamKeying, Transport,
};
use server::lifecycle::Transition;
use server::retention::PvRequest;
use server::state::AppState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Clone, Copy)]
struct Plan {
    candidates: usize,
    fragments: u32,
    fragment_bytes: usize,
    swept: i64,
}

const FULL: Plan = Plan {
    candidates: 1000,
    fragments: 10,
    fragment_bytes: 16 * 1024,
    swept: 100_000,
};
const SMOKE: Plan = Plan {
    candidates: 10,
    fragments: 2,
    fragment_bytes: 1024,
    swept: 500,
};
/// Packs per recording in the packed round: a one-hour recording at the agent's highest
/// bitrate (600 + 64 kbit/s, ~285 MiB) in packs of 32 MiB.
const PACKS_PER_RECORDING: u32 = 9;

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = server::configuration::load(None).unwrap();
    s.server.data_dir = dir.to_owned();
    s.database.max_connections = 16;
    // The sitting is seeded as loose objects, a file per chunk, as on S3 (and packed in
    // the packed round); a directory's default, a file per stream, is one object per
    // recording from the start.
    s.object_store.local_files = server::blobs::LocalFiles::PerChunk;
    s
}

/// The use cases, and the stores beneath them to seed a sitting fast.
struct Bench {
    app: AppState,
    db: Arc<dyn server::db::Database>,
    blobs: server::blobs::BlobStore,
}

impl std::ops::Deref for Bench {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.app
    }
}

async fn open(s: Settings) -> Bench {
    let db = server::state::open_database(&s).await.unwrap();
    let blobs = server::blobs::BlobStore::open(&s.object_store, &s.server.data_dir).unwrap();
    let app = AppState::open(s, Arc::new(SystemClock) as Arc<dyn Clock>)
        .await
        .unwrap();
    Bench { app, db, blobs }
}

/// A sitting of `n` ended attempts, each with one stream of `fragments` stored blobs.
async fn sitting(p: &Bench, plan: &Plan) -> (SittingId, Vec<AttemptId>) {
    let sitting = p
        .enrolment
        .create_sitting(&format!("bench-{}", Uuid::new_v4()), "bench")
        .await
        .unwrap()
        .value
        .sitting_id
        .into();
    let mut attempts = Vec::with_capacity(plan.candidates);
    let payload = Bytes::from(vec![0x5a; plan.fragment_bytes]);
    for i in 0..plan.candidates {
        let a = p
            .enrolment
            .add_candidate(sitting, &format!("c{i}"), "bench")
            .await
            .unwrap()
            .value
            .attempt_id
            .into();
        let stream = Stream {
            id: StreamId::random(),
            attempt_id: a,
            keying: StreamKeying::Derived { salt: [1; 32] },
            opened_at_ms: 0,
            ended_at_ms: None,
            final_index: None,
        };
        assert!(p
            .db
            .open_stream(stream.clone(), b"sealed".to_vec(), 10)
            .await
            .unwrap());
        let mut rows = Vec::new();
        let mut paths = Vec::new();
        for index in 0..plan.fragments {
            let sha: [u8; 32] = *Uuid::new_v4().as_bytes().repeat(2).first_chunk().unwrap();
            paths.push(server::blobs::chunk_path(a, stream.id, index, &sha));
            let row = ChunkRow {
                stream_id: stream.id,
                index,
                digest: sha,
                content_sha256: sha,
                prev_digest: [0; 32],
                size: payload.len() as u64,
                media_start_us: 0,
                media_end_us: 1,
                last: index + 1 == plan.fragments,
                pack: None,
            };
            rows.push(NewChunk {
                attempt: a,
                row,
                transport: Transport::Https,
                activity: None,
            });
        }
        futures::future::try_join_all(paths.iter().map(|path| p.blobs.put(path, payload.clone())))
            .await
            .unwrap();
        p.db.insert_chunks(&rows, 0).await.unwrap();
        // Ended by its agent: ready to pack (the packed round packs it).
        if let Some(last) = plan.fragments.checked_sub(1) {
            p.db.end_stream(stream.id, last, 0).await.unwrap();
        }
        p.attempts
            .transition(a, Transition::End, "bench")
            .await
            .unwrap();
        attempts.push(a);
    }
    (sitting, attempts)
}

/// The jury validates the sitting's PV without reservation (unsubmitted reviews
/// overridden): every key destroyed when it answers.
async fn validate(p: &Bench, sitting: SittingId) -> server::retention::PvResult {
    p.retention
        .decide_pv(
            "bench-jury",
            sitting,
            PvRequest {
                outcome: server::db::PvOutcome::Validated,
                contested: vec![],
                override_unsubmitted: true,
                decided_by: None,
            },
        )
        .await
        .unwrap()
}

/// PV validation: (keys destroyed when it answers, every blob gone).
async fn pv_validation(p: &Bench, plan: &Plan) -> (Duration, Duration) {
    let (sitting, attempts) = sitting(p, plan).await;
    let t0 = Instant::now();
    let result = validate(p, sitting).await;
    let keys = t0.elapsed();
    p.retention.purge_destroyed().await.unwrap();
    let blobs = t0.elapsed();
    assert_eq!(result.receipts.len(), attempts.len());
    for f in p.db.retention_facts(&attempts).await.unwrap() {
        assert!(f.destroyed_at_ms.is_some() && f.blobs_purged);
    }
    (keys, blobs)
}

/// Every stream of a sitting packed and its loose objects deleted, as the packer does in
/// the background: (time, fragments packed, packs written).
async fn pack_all(p: &Bench) -> (Duration, usize, usize) {
    let t0 = Instant::now();
    let (mut fragments, mut packs) = (0, 0);
    loop {
        let r = p.packer.run_once().await.unwrap();
        if r == Default::default() {
            return (t0.elapsed(), fragments, packs);
        }
        fragments += r.fragments_packed;
        packs += r.packs_written;
    }
}

/// Packs at their real size cost a store more to delete than small ones (Garage keeps a
/// reference per 1 MiB block): `n` recordings of nine packs each (32 MiB in the full run),
/// written straight
/// under their attempts (the purge deletes by prefix), destroyed by a PV, purged:
/// (objects, time from the answer until every object is gone).
async fn purge_full_size_packs(p: &Bench, n: usize, pack_bytes: usize) -> (usize, Duration) {
    let (sitting_id, attempts) = sitting(
        p,
        &Plan {
            candidates: n,
            fragments: 0,
            ..FULL
        },
    )
    .await;
    let pack = Bytes::from(vec![0xa5; pack_bytes]);
    for a in &attempts {
        let stream = StreamId::random();
        for k in 0..PACKS_PER_RECORDING {
            let path = server::blobs::pack_path(*a, stream, 7, k * 200);
            p.blobs.put(&path, pack.clone()).await.unwrap();
        }
    }
    validate(p, sitting_id).await;
    let t0 = Instant::now();
    p.retention.purge_destroyed().await.unwrap();
    let took = t0.elapsed();
    for a in &attempts {
        assert_eq!(p.blobs.count_attempt_objects(*a).await.unwrap(), 0);
    }
    (n * PACKS_PER_RECORDING as usize, took)
}

/// Baseline: the same number of keys destroyed one transaction per attempt.
async fn one_by_one(p: &Bench, plan: &Plan) -> Duration {
    let (_, attempts) = sitting(
        p,
        &Plan {
            fragments: 0,
            ..*plan
        },
    )
    .await;
    let facts = p.db.retention_facts(&attempts).await.unwrap();
    let t0 = Instant::now();
    for f in &facts {
        p.retention
            .destroy_keys(std::slice::from_ref(f), "bench")
            .await
            .unwrap();
    }
    t0.elapsed()
}

/// `n` attempts that ended 100 days ago with no decision (due by the 2-month ceiling),
/// written straight into the database (one statement: setting up is not what is measured).
async fn due_attempts(s: &Settings, sitting: SittingId, n: i64) {
    let ended = server::clock::unix_ms(time::OffsetDateTime::now_utc() - time::Duration::days(100));
    match &s.database.url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(
                "INSERT INTO attempts (id, sitting_id, ref, kek_epoch, wrapped_dek, dek_fingerprint, created_at, state, ended_at)
                 SELECT gen_random_uuid(), $1, 'swept-' || i, '2026-08', '\\x00'::bytea, 'fp', $2, 'ended', $2
                 FROM generate_series(1, $3) AS i",
            )
            .bind(sitting.as_uuid())
            .bind(ended)
            .bind(n)
            .execute(&pool)
            .await
            .unwrap();
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&format!(
                "sqlite://{}",
                s.server.data_dir.join("proctor.sqlite").display()
            ))
            .await
            .unwrap();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
                 INSERT INTO attempts (id, sitting_id, ref, token_hash, token_expires_at, kek_epoch, wrapped_dek, dek_fingerprint, created_at, state, ended_at)
                 SELECT printf('%08x-0000-4000-8000-%012x', i, i), ?1, 'swept-' || i, randomblob(32), 0, '2026-08', x'00', 'fp', ?2, 'ended', ?2 FROM n",
            )
            .bind(sitting.to_string())
            .bind(ended)
            .bind(n)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
}

async fn sweep(s: Settings, n: i64) -> (Duration, usize) {
    let p = open(s.clone()).await;
    let sitting = p
        .enrolment
        .create_sitting(&format!("swept-{}", Uuid::new_v4()), "bench")
        .await
        .unwrap()
        .value
        .sitting_id;
    due_attempts(&s, sitting.into(), n).await;
    let t0 = Instant::now();
    let destroyed = p.retention.destroy_due().await.unwrap();
    (t0.elapsed(), destroyed.len())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { FULL } else { SMOKE };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = pg::Cluster::start().await;
        let bucket = garage::Garage::start();
        let setups: Vec<(&str, Box<dyn Fn() -> (Settings, tempfile::TempDir)>)> = vec![
            ("sqlite+local", Box::new(|| {
                let dir = tempfile::tempdir().unwrap();
                (settings(dir.path()), dir)
            })),
            ("postgres+garage", Box::new(|| {
                let dir = tempfile::tempdir().unwrap();
                let mut s = settings(dir.path());
                // A database of its own per run, in the one cluster.
                s.database.url = Some(cluster.url.clone());
                s.object_store = bucket.settings.clone();
                (s, dir)
            })),
        ];
        println!("| storage | candidates × fragments | keys destroyed (answer) | goal | every blob gone | goal | blobs/s | baseline: one transaction per key | batch / baseline |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut sweeps = Vec::new();
        let mut packed_rounds = Vec::new();
        for (name, make) in &setups {
            let (s, _dir) = make();
            let p = open(s.clone()).await;
            let (keys, blobs) = pv_validation(&p, &plan).await;
            let baseline = one_by_one(&p, &plan).await;
            let n_blobs = plan.candidates as f64 * f64::from(plan.fragments);
            println!(
                "| {name} | {} × {} | {:.0} ms | ≤ 1 s | {:.1} s | ≤ 60 s | {:.0} | {:.0} ms | {:.1}× faster |",
                plan.candidates,
                plan.fragments,
                keys.as_secs_f64() * 1e3,
                blobs.as_secs_f64(),
                n_blobs / (blobs - keys).as_secs_f64(),
                baseline.as_secs_f64() * 1e3,
                baseline.as_secs_f64() / keys.as_secs_f64()
            );
            drop(p);

            // Packed: two fragments a pack, so that each recording is nine objects.
            let packed_plan = Plan {
                fragments: 2 * PACKS_PER_RECORDING,
                ..plan
            };
            let (mut s, _dir3) = make();
            s.packing.after = Duration::ZERO;
            s.packing.loose_grace = Duration::ZERO;
            s.packing.max_pack_bytes = 2 * plan.fragment_bytes as u64;
            let p = open(s).await;
            let (sitting_id, attempts) = sitting(&p, &packed_plan).await;
            let (packing, fragments, packs) = pack_all(&p).await;
            assert_eq!(fragments, attempts.len() * packed_plan.fragments as usize);
            assert_eq!(packs, attempts.len() * PACKS_PER_RECORDING as usize);
            let t0 = Instant::now();
            validate(&p, sitting_id).await;
            let keys = t0.elapsed();
            p.retention.purge_destroyed().await.unwrap();
            let gone = t0.elapsed();
            for a in &attempts {
                assert_eq!(p.blobs.count_attempt_objects(*a).await.unwrap(), 0);
            }
            let full_size = if full {
                purge_full_size_packs(&p, 10, 32 << 20).await
            } else {
                purge_full_size_packs(&p, 1, 1 << 20).await
            };
            packed_rounds.push((
                name,
                attempts.len(),
                fragments,
                packs,
                packing,
                keys,
                gone,
                full_size,
            ));
            drop(p);
            let (s, _dir2) = make();
            sweeps.push((name, sweep(s, plan.swept).await));
        }
        println!();
        println!("| storage | recordings × packs (fragments packed) | packing: fragments/s | keys destroyed (answer) | every object gone | goal | objects/s |");
        println!("|---|---|---|---|---|---|---|");
        let mut full_sizes = Vec::new();
        for (name, n, fragments, packs, packing, keys, gone, full_size) in packed_rounds {
            full_sizes.push((name, full_size));
            println!(
                "| {name} | {n} × {} ({fragments}) | {:.0} | {:.0} ms | {:.1} s | ≤ 60 s | {:.0} |",
                packs / n,
                fragments as f64 / packing.as_secs_f64(),
                keys.as_secs_f64() * 1e3,
                gone.as_secs_f64(),
                packs as f64 / (gone - keys).as_secs_f64()
            );
        }
        println!();
        println!("| storage | 32 MiB packs purged | in | objects/s | 1,000 one-hour recordings (9,000 packs) at that rate | goal |");
        println!("|---|---|---|---|---|---|");
        for (name, (objects, took)) in full_sizes {
            let rate = objects as f64 / took.as_secs_f64();
            println!(
                "| {name} | {objects} | {:.2} s | {rate:.0} | {:.0} s | ≤ 60 s |",
                took.as_secs_f64(),
                9_000.0 / rate
            );
        }
        println!();
        println!("| storage | due attempts | keys destroyed in | goal |");
        println!("|---|---|---|---|");
        for (name, (took, n)) in sweeps {
            assert_eq!(n as i64, plan.swept, "{name}: every due attempt destroyed");
            println!("| {name} | {n} | {:.1} s | ≤ 10 s |", took.as_secs_f64());
        }
    });
}
