//! The attack suite's harness: a fresh server, a well-behaved agent recording the test
//! source while an attack runs against the same server, and the figures a run is judged
//! by (every fragment acknowledged, p99 acknowledgement latency, the server's peak RSS
//! read from `/proc`). Each scenario writes its figures to `target/attack-report/` for
//! `scripts/attack-report` to tabulate. Traffic goes to loopback only, bounded in time.

use super::*;
use base64::Engine;
use protocol::api::*;
use protocol::StreamKey;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bound the suite holds the server to under every attack: the ingest memory budget
/// of the defaults (256 MiB) plus 128 MiB for everything else.
pub const PEAK_RSS_BOUND_MIB: u64 = 384;
/// How long the well-behaved agent records during an attack: 20 s in the test suite,
/// longer for the report (`ATTACK_RECORDING`, set by `scripts/attack-report`) so that its
/// p99 rests on more than a dozen acknowledgements.
fn recording() -> String {
    std::env::var("ATTACK_RECORDING").unwrap_or_else(|_| "20s".into())
}

/// How many concurrent workers an attack runs: all of them for the report, a quarter in
/// the test suite, where the fault scenarios' browsers share the same two cores (at full
/// rate beside them, Firefox's audio fell seconds behind).
pub fn workers(full: u64) -> u64 {
    if std::env::var_os("ATTACK_RECORDING").is_some() {
        full
    } else {
        (full / 4).max(1)
    }
}

/// Between two requests of one worker: nothing for the report, 20 ms in the test suite.
pub async fn pace() {
    if std::env::var_os("ATTACK_RECORDING").is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Target {
    pub public: String,
    pub staff: String,
    /// The server's data directory, for the command line (staff accounts, assignments).
    pub data: std::path::PathBuf,
    pub http: reqwest::Client,
    pub stop: Arc<AtomicBool>,
    /// Requests the attack made, and how many of them the server answered at all.
    pub sent: Arc<AtomicU64>,
    pub answered: Arc<AtomicU64>,
}

impl Target {
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// A candidate who consented and opened a stream, with the stream key in hand.
pub struct Attacker {
    pub token: String,
    pub attempt: uuid::Uuid,
    pub stream: uuid::Uuid,
    pub key: StreamKey,
}

pub async fn attacker(public: &str, http: &reqwest::Client) -> Attacker {
    let (attempt, token) = enrol_at(public).await;
    let r = http
        .post(format!("{}/api/agent/v1/consent", public))
        .bearer_auth(&token)
        .json(&ConsentRequest {
            notice_version: NOTICE_VERSION.into(),
            sealed: None,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let o: OpenStreamResponse = http
        .post(format!("{}/api/agent/v1/streams", public))
        .bearer_auth(&token)
        .json(&OpenStreamRequest {
            agent_version: "attacker".into(),
            os: "linux".into(),
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = StreamKey::from_bytes(
        &base64::engine::general_purpose::STANDARD
            .decode(o.stream_key)
            .unwrap(),
    )
    .unwrap();
    Attacker {
        token,
        attempt: attempt.parse().unwrap(),
        stream: o.stream_id,
        key,
    }
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub scenario: String,
    pub fragments_sealed: u64,
    pub chunks_acknowledged: u64,
    pub ack_p50_ms: u64,
    pub ack_p99_ms: u64,
    pub ack_max_ms: u64,
    pub server_peak_rss_mib: u64,
    pub attack_requests: u64,
    pub attack_answered: u64,
    pub integrity: String,
}

/// Runs `attack` against a fresh server while a well-behaved agent records; returns the
/// figures after asserting the promises: every fragment acknowledged and stored, the
/// recording intact, the peak RSS under the bound.
pub async fn scenario<F, Fut>(name: &str, attack: F) -> Figures
where
    F: FnOnce(Arc<Target>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    scenario_with(name, "", attack).await
}

/// The same, the server started with `config` (TOML) over its defaults.
pub async fn scenario_with<F, Fut>(name: &str, config: &str, attack: F) -> Figures
where
    F: FnOnce(Arc<Target>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let config_file = tmp.path().join("attack.toml");
    std::fs::write(&config_file, config).unwrap();
    let server = Server::start_with(&data, 0, &["--config", config_file.to_str().unwrap()]);
    let (attempt, token) = enrol(&server).await;
    let target = Arc::new(Target {
        public: server.public.clone(),
        staff: server.staff.clone(),
        data: data.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop: Arc::new(AtomicBool::new(false)),
        sent: Arc::new(AtomicU64::new(0)),
        answered: Arc::new(AtomicU64::new(0)),
    });
    let attack = tokio::spawn(attack(target.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, &recording(), &spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    target.stop.store(true, Ordering::SeqCst);
    // An assertion the attack itself makes fails the scenario.
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(30), attack).await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let rss = peak_rss_mib(server.child.id());

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name}: the well-behaved agent failed: {stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = server.cli(&["attempt", "show", &attempt]);
    let figures = Figures {
        scenario: name.into(),
        fragments_sealed: s["fragments_sealed"].as_u64().unwrap(),
        chunks_acknowledged: s["chunks_acknowledged"].as_u64().unwrap(),
        ack_p50_ms: s["ack_latency"]["p50_ms"].as_u64().unwrap(),
        ack_p99_ms: s["ack_latency"]["p99_ms"].as_u64().unwrap(),
        ack_max_ms: s["ack_latency"]["max_ms"].as_u64().unwrap(),
        server_peak_rss_mib: rss,
        attack_requests: target.sent.load(Ordering::SeqCst),
        attack_answered: target.answered.load(Ordering::SeqCst),
        integrity: report["integrity"].as_str().unwrap_or_default().into(),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/attack-report");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&figures).unwrap(),
    )
    .unwrap();
    eprintln!("{figures:?}");

    assert_eq!(
        figures.chunks_acknowledged, figures.fragments_sealed,
        "{name}: every fragment acknowledged"
    );
    assert_eq!(
        report["fragments_stored"].as_u64().unwrap(),
        figures.fragments_sealed,
        "{name}: {report:#}"
    );
    assert_eq!(figures.integrity, "ok", "{name}: {report:#}");
    assert!(
        rss <= PEAK_RSS_BOUND_MIB,
        "{name}: server peak RSS {rss} MiB over the {PEAK_RSS_BOUND_MIB} MiB bound"
    );
    figures
}
