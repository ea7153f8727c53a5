//! Review playback on the server: a 2-hour recording (3,601 sealed chunks of the agent's
//! nominal size), then
//! - seek: 200 random positions, time from the request to the first decrypted byte of the
//!   right fragment, through the per-fragment endpoint the player uses; the baseline in
//!   the same run is the old whole-range endpoint (`/media?from=i&to=i`, init segment
//!   first) and, as a floor, reading the sealed object from the blob directory;
//! - CPU: the server process's CPU time (from /proc) to serve every fragment of the
//!   recording once, which is what playing it at any speed costs, per hour of recording.
//! The server is the release binary in its own process (`scripts/bench-review` builds it),
//! on SQLite + local blobs and then on PostgreSQL + Garage (throwaway servers, as the
//! tests start them). Run: `scripts/bench-review` (about 6 minutes here).

#[path = "../../tests/support/garage.rs"]
mod garage;
#[path = "../../tests/support/pg.rs"]
mod pg;

use base64::Engine;
use protocol::api::*;
use protocol::{Fragment, StreamKey, StreamSealer};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const PLATFORM: &str = "bench-platform";
const FRAGMENTS: u32 = 3_600; // 2 h of 2 s fragments
const FRAGMENT_BYTES: usize = 140 * 1024; // 2 s at the nominal 550 kbit/s
const SEEKS: usize = 200;

struct Server {
    child: Child,
    public: String,
    staff: String,
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/proctor-server");
    assert!(
        bin.exists(),
        "{} missing: scripts/bench-review builds it",
        bin.display()
    );
    bin
}

fn start(env: &[(String, String)]) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--staff-listen",
            "127.0.0.1:0",
        ])
        .env("PROCTOR_INTEGRATION__TOKEN", PLATFORM)
        // The recording is uploaded far faster than a camera makes it.
        .env("PROCTOR_LIMITS__INDEX_WINDOW_MARGIN", "24h")
        .env("PROCTOR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    while let Some(Ok(line)) = lines.next() {
        text.push_str(&line);
        if line.trim() == "}" {
            break;
        }
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Server {
        child,
        public: v["public"].as_str().unwrap().into(),
        staff: v["staff"].as_str().unwrap().into(),
        data,
        env: env.to_vec(),
    }
}

/// A structurally valid initialisation segment (`ftyp`, then `moov` with one `avc1`
/// track), padded to 1 KiB: the server checks one before serving it.
fn init_segment() -> Vec<u8> {
    fn mp4(kind: &[u8], payload: &[u8]) -> Vec<u8> {
        [&(payload.len() as u32 + 8).to_be_bytes()[..], kind, payload].concat()
    }
    let stsd = mp4(
        b"stsd",
        &[[0u8; 8].as_slice(), &mp4(b"avc1", &[0; 16])].concat(),
    );
    let trak = [b"stbl", b"minf", b"mdia", b"trak"]
        .iter()
        .fold(stsd, |inner, k| mp4(*k, &inner));
    let boxes = [mp4(b"ftyp", b"isom"), mp4(b"moov", &trak)].concat();
    [
        boxes.clone(),
        mp4(b"free", &vec![0; 1024 - 8 - boxes.len()]),
    ]
    .concat()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
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

fn cli(s: &Server, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(s.data.path())
        .args(args)
        // The server's own storage settings, then the command's.
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Milliseconds from asking for `url` to its first byte of body (the rest is read too).
async fn first_byte_ms(http: &reqwest::Client, url: &str, token: &str) -> f64 {
    let t = Instant::now();
    let mut r = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.chunk().await.unwrap().unwrap().is_empty());
    let ms = t.elapsed().as_secs_f64() * 1e3;
    while r.chunk().await.unwrap().is_some() {}
    ms
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(label: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
    println!(
        "| {label} | {p50:.2} | {p95:.2} | {:.2} |",
        ms[ms.len() - 1]
    );
    (p50, p95)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("\n## SQLite + local blobs");
    // A file per chunk, then packed, as on S3: the same two reads compared on both
    // storages. (By default a directory appends each stream to one file, which reads as
    // the packed round does.)
    let per_chunk = [(
        "PROCTOR_OBJECT_STORE__LOCAL_FILES".to_owned(),
        "per_chunk".to_owned(),
    )];
    let server = start(&per_chunk);
    let local = server::blobs::BlobStore::open_local_with(
        &server.data.path().join("blobs"),
        server::blobs::LocalFiles::PerChunk,
    )
    .unwrap();
    let mut settings = beside(&server);
    settings.object_store.local_files = server::blobs::LocalFiles::PerChunk;
    run(server, local, settings).await;

    println!("\n## PostgreSQL + Garage");
    let cluster = pg::Cluster::start().await;
    let bucket = garage::Garage::start();
    let mut env = bucket.env();
    env.push((
        "PROCTOR_OBJECT_STORE__URL".into(),
        bucket.settings.url.clone().unwrap(),
    ));
    env.push(("PROCTOR_DATABASE__URL".into(), cluster.url.clone()));
    let server = start(&env);
    let store = server::blobs::BlobStore::open(&bucket.settings, server.data.path()).unwrap();
    let mut settings = beside(&server);
    settings.database.url = Some(cluster.url.clone());
    settings.object_store = bucket.settings.clone();
    run(server, store, settings).await;
}

/// The settings of the running server's data directory, as its command line opens them.
fn beside(server: &Server) -> server::configuration::Settings {
    let mut s = server::configuration::load(None).unwrap();
    s.server.data_dir = server.data.path().to_owned();
    s
}

/// Records the 2-hour recording, then times the seeks against the whole-range endpoint
/// and against reading the sealed object straight from `blobs` (the floor), then the CPU.
async fn run(
    server: Server,
    blobs: server::blobs::BlobStore,
    settings: server::configuration::Settings,
) {
    let http = reqwest::Client::new();
    let (public, staff) = (server.public.clone(), server.staff.clone());

    // The recording: one attempt, one stream, 2 h.
    let sitting: CreateSittingResponse = post(
        &http,
        format!("{public}/api/integration/v1/sittings"),
        PLATFORM,
        &serde_json::json!({ "ref": "bench-review" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let c: AddCandidateResponse = post(
        &http,
        format!(
            "{public}/api/integration/v1/sittings/{}/candidates",
            sitting.sitting_id
        ),
        PLATFORM,
        &serde_json::json!({ "ref": "c" }),
    )
    .await
    .json()
    .await
    .unwrap();
    post(
        &http,
        format!("{public}/api/agent/v1/consent"),
        &c.launch_token,
        &ConsentRequest {
            notice_version: NOTICE_VERSION.into(),
            sealed: None,
        },
    )
    .await;
    let s: OpenStreamResponse = post(
        &http,
        format!("{public}/api/agent/v1/streams"),
        &c.launch_token,
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
    let mut sealer = StreamSealer::new(key, s.attempt_id, s.stream_id);
    let payload: Vec<u8> = (0..FRAGMENT_BYTES)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let init = init_segment();
    let started = Instant::now();
    let chunks_url = format!("{public}/api/agent/v1/streams/{}/chunks", s.stream_id);
    let mut uploads = futures::stream::FuturesUnordered::new();
    // Each sealed chunk's SHA-256, which names its object: the floor reads it by name.
    let mut names = Vec::new();
    for i in 0..=FRAGMENTS {
        let (start_us, data) = if i == 0 {
            (0, &init[..])
        } else {
            (u64::from(i - 1) * 2_000_000, &payload[..])
        };
        let end_us = if i == 0 { 0 } else { start_us + 2_000_000 };
        let (_, chunk) = sealer
            .seal(Fragment {
                data,
                media_start_us: start_us,
                media_end_us: end_us,
                last: i == FRAGMENTS,
            })
            .unwrap();
        use sha2::Digest as _;
        names.push(server::blobs::chunk_path(
            s.attempt_id.into(),
            s.stream_id.into(),
            i,
            &sha2::Sha256::digest(&chunk).into(),
        ));
        let req = http
            .put(format!("{chunks_url}/{i}"))
            .bearer_auth(&c.launch_token)
            .body(chunk)
            .send();
        uploads.push(req);
        // An attempt may have 4 uploads in flight (max_ingests_per_attempt).
        if uploads.len() >= 4 {
            use futures::StreamExt;
            let r = uploads.next().await.unwrap().unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }
    use futures::StreamExt;
    while let Some(r) = uploads.next().await {
        assert!(r.unwrap().status().is_success());
    }
    post(
        &http,
        format!("{public}/api/agent/v1/streams/{}/end", s.stream_id),
        &c.launch_token,
        &EndStreamRequest {
            final_index: FRAGMENTS,
        },
    )
    .await;
    post(
        &http,
        format!("{public}/api/integration/v1/attempts/{}/end", c.attempt_id),
        PLATFORM,
        &serde_json::json!({}),
    )
    .await;
    eprintln!(
        "recording of {FRAGMENTS} fragments uploaded in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    cli(
        &server,
        &["staff", "add", "--role", "reviewer", "--login", "banc"],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    cli(
        &server,
        &[
            "assign",
            "--sitting",
            &sitting.sitting_id.to_string(),
            "--login",
            "banc",
        ],
        &[],
    );
    let login: serde_json::Value = http
        .post(format!("{staff}/api/staff/v1/login"))
        .json(&serde_json::json!({ "login": "banc", "password": "Kilo-Tango-2026!" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{staff}/api/staff/v1/account/password"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({ "current": "Kilo-Tango-2026!", "new": "Quatre-Chevaux-Bleus-9" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // 200 random positions (fixed seed), as many seeks.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let positions: Vec<u32> = (0..SEEKS)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % u64::from(FRAGMENTS)) as u32
        })
        .collect();
    let fragment_url = |i: u32| {
        format!(
            "{staff}/api/staff/v1/attempts/{}/streams/{}/fragments/{i}",
            c.attempt_id, s.stream_id
        )
    };
    let media_url = |i: u32| {
        format!(
            "{staff}/api/staff/v1/attempts/{}/streams/{}/media?from={i}&to={i}",
            c.attempt_id, s.stream_id
        )
    };
    // Warm-up: connections, caches of the first lookups.
    for i in 1..=5 {
        http.get(fragment_url(i))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let mut ours = Vec::new();
    let mut old = Vec::new();
    let mut floor = Vec::new();
    for &i in &positions {
        // Ours: the fragment's first decrypted byte.
        ours.push(first_byte_ms(&http, &fragment_url(i), &token).await);
        // Baseline: the whole-range endpoint, which sends the init segment first.
        let t = Instant::now();
        let mut r = http
            .get(media_url(i))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut got = 0;
        while got <= 1024 {
            got += r.chunk().await.unwrap().unwrap().len();
        }
        old.push(t.elapsed().as_secs_f64() * 1e3);
        while r.chunk().await.unwrap().is_some() {}
        // Floor: the sealed object read from the store, no HTTP to us, no decryption.
        let t = Instant::now();
        let bytes = blobs.get(&names[i as usize]).await.unwrap();
        floor.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(bytes.len() > FRAGMENT_BYTES);
    }
    println!("\nSeek to the first decrypted byte of the right fragment, {SEEKS} random positions in a 2 h recording (ms):\n");
    println!("| path | p50 | p95 | max |\n|---|---|---|---|");
    let (_, p95) = summary("per-fragment endpoint (the player's)", ours);
    let (old50, _) = summary("baseline: /media?from=i&to=i", old);
    summary("floor: read the sealed object from the store", floor);
    println!(
        "\ngoal p95 ≤ 50 ms: {}",
        if p95 <= 50.0 { "met" } else { "NOT met" }
    );
    let _ = old50;

    // CPU to serve the whole recording once (what playback at 4× asks, over 30 min).
    let pid = server.child.id();
    let before = cpu_seconds(pid);
    let t = Instant::now();
    for i in 0..=FRAGMENTS {
        http.get(fragment_url(i))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - before;
    let hours = f64::from(FRAGMENTS) * 2.0 / 3600.0;
    println!(
        "\nServer CPU to serve the {hours:.0} h recording once: {cpu:.1} s ({:.1} CPU-s per hour of recording; at 4× an hour plays in 15 min: {:.2} % of one core), wall {wall:.1} s",
        cpu / hours,
        cpu / hours / (15.0 * 60.0) * 100.0
    );

    // Packed (issue 22): the same recording once the packer has run (32 MiB packs, the
    // loose objects deleted), the same positions read again, each fragment a ranged GET.
    let mut settings = settings;
    settings.packing.after = std::time::Duration::ZERO;
    settings.packing.loose_grace = std::time::Duration::ZERO;
    let db = server::state::open_database(&settings).await.unwrap();
    let state = server::state::AppState::open(
        settings,
        std::sync::Arc::new(server::clock::SystemClock) as std::sync::Arc<dyn server::clock::Clock>,
    )
    .await
    .unwrap();
    let t = Instant::now();
    let (mut fragments, mut packs) = (0, 0);
    loop {
        let r = state.packer.run_once().await.unwrap();
        if r == Default::default() {
            break;
        }
        fragments += r.fragments_packed;
        packs += r.packs_written;
    }
    let took = t.elapsed().as_secs_f64();
    // The store reclaims the loose objects' space in the background right after they are
    // deleted (Garage: block reference counts, then the blocks): a reviewer watches later.
    // REVIEW_BENCH_SETTLE_S (30 s by default; 0 to measure in the middle of it).
    let settle: u64 = std::env::var("REVIEW_BENCH_SETTLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    tokio::time::sleep(std::time::Duration::from_secs(settle)).await;
    println!(
        "\nPacked: {fragments} fragments into {packs} packs in {took:.1} s ({:.0} fragments/s), loose objects deleted; {settle} s later, the same {SEEKS} positions again (ms):\n",
        fragments as f64 / took
    );
    assert_eq!(fragments, FRAGMENTS as usize + 1);
    println!("| path | p50 | p95 | max |\n|---|---|---|---|");
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for &i in &positions {
        ours.push(first_byte_ms(&http, &fragment_url(i), &token).await);
        let row = db.chunk(s.stream_id.into(), i).await.unwrap();
        assert!(row.pack.is_some());
        let t = Instant::now();
        let bytes = blobs.read_chunk(c.attempt_id.into(), &row).await.unwrap();
        floor.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(bytes.len() as u64, row.size);
    }
    let (_, p95) = summary("per-fragment endpoint, packed", ours);
    summary(
        "floor: the fragment's range of its pack, from the store",
        floor,
    );
    println!(
        "\ngoal p95 ≤ 50 ms, packed: {}",
        if p95 <= 50.0 { "met" } else { "NOT met" }
    );
}
