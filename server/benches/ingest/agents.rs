//! Agents held: N candidates, each sealing and sending one ~100 KiB fragment every 2 s, as
//! a real agent does, starting at random moments of the period. N grows step by step; a
//! step holds when every chunk is acknowledged 201 and the 99th percentile of the
//! acknowledgement latency (send to answer, seen by the agent) is at most 250 ms.
//!
//! The agents share one HTTP client, so idle agents hold no connection of their own: the
//! figure is for requests, not for thousands of idle keep-alive sockets.
//!
//! With `unrelated`, each step runs on a file system another program has just written
//! that many bytes to, never synced (`crate::dirty`): written right before the step
//! (untimed, so that the copy's CPU is not what is measured), dirty during it, removed
//! after it. The step records the most dirty data the kernel held meanwhile.

use crate::target::{Agent, Target};
use rand::Rng;
use std::time::{Duration, Instant};

pub const FRAGMENT_BYTES: usize = 100 * 1024;
pub const PERIOD: Duration = Duration::from_secs(2);
pub const P99_LIMIT_MS: f64 = 250.0;

pub struct Step {
    pub agents: usize,
    pub chunks: usize,
    pub failed: usize,
    /// What the refused got: an HTTP status, or `error` for no answer.
    pub refusals: std::collections::BTreeMap<String, usize>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The most dirty or under write-back data (MiB) sampled during the step.
    pub dirty_peak_mib: u64,
}

impl Step {
    pub fn held(&self) -> bool {
        self.failed == 0 && self.p99_ms <= P99_LIMIT_MS
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Each agent sends `fragments` fragments, one per period; returns the latencies (ms) and
/// how many were refused.
async fn run_step(
    http: &reqwest::Client,
    agents: Vec<Agent>,
    fragments: u32,
) -> (Vec<Agent>, Vec<f64>, Vec<String>) {
    let start = tokio::time::Instant::now();
    // One payload for all: each agent's key makes its chunks its own.
    let mut payload = vec![0u8; FRAGMENT_BYTES];
    rand::thread_rng().fill(&mut payload[..]);
    let payload = std::sync::Arc::new(payload);
    let tasks: Vec<_> = agents
        .into_iter()
        .map(|mut a| {
            let (http, payload) = (http.clone(), payload.clone());
            let offset =
                Duration::from_millis(rand::thread_rng().gen_range(0..PERIOD.as_millis() as u64));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(start + offset, PERIOD);
                let (mut lat, mut failed) = (Vec::new(), Vec::new());
                for _ in 0..fragments {
                    tick.tick().await;
                    let (i, chunk) = a.seal(&payload, false);
                    let sent = Instant::now();
                    match http
                        .put(format!("{}/{i}", a.url))
                        .bearer_auth(&a.token)
                        .body(chunk)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().as_u16() == 201 => {
                            lat.push(sent.elapsed().as_secs_f64() * 1e3)
                        }
                        Ok(r) => failed.push(r.status().as_u16().to_string()),
                        // Which kind: refused at connect, cut while sent (after the one
                        // retry), or another.
                        Err(e) => failed.push(
                            if e.is_connect() {
                                "connect"
                            } else if e.is_request() {
                                "cut"
                            } else {
                                "error"
                            }
                            .to_owned(),
                        ),
                    }
                }
                (a, lat, failed)
            })
        })
        .collect();
    let (mut back, mut all, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for t in tasks {
        let (a, lat, f) = t.await.unwrap();
        back.push(a);
        all.extend(lat);
        failed.extend(f);
    }
    (back, all, failed)
}

/// Grows N through `steps` until one does not hold; returns every step run.
pub async fn held(
    target: &Target,
    steps: &[usize],
    fragments: u32,
    unrelated: Option<(&std::path::Path, u64)>,
) -> Vec<Step> {
    let mut agents: Vec<Agent> = Vec::new();
    let mut out = Vec::new();
    for &n in steps {
        let have = agents.len();
        if n > have {
            agents.extend(target.enrol(have, n).await);
        }
        crate::target::settle();
        let writer = unrelated.map(|(dir, bytes)| crate::dirty::Unrelated::write(dir, bytes));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(crate::dirty::mib()));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    peak.fetch_max(crate::dirty::mib(), std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let (back, mut lat, refused) = run_step(&target.http, agents, fragments).await;
        sampler.abort();
        drop(writer);
        agents = back;
        lat.sort_by(|a, b| a.total_cmp(b));
        let mut refusals = std::collections::BTreeMap::new();
        refused
            .into_iter()
            .for_each(|r| *refusals.entry(r).or_default() += 1);
        let (p50_ms, p99_ms) = if lat.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(&lat, 0.5), percentile(&lat, 0.99))
        };
        let step = Step {
            agents: n,
            chunks: lat.len(),
            failed: refusals.values().sum(),
            refusals,
            p50_ms,
            p99_ms,
            dirty_peak_mib: peak.load(std::sync::atomic::Ordering::Relaxed),
        };
        let held = step.held();
        eprintln!(
            "  {n} agents: {} chunks, refused {:?}, p50 {:.1} ms, p99 {:.1} ms, dirty up to {} MiB",
            step.chunks, step.refusals, step.p50_ms, step.p99_ms, step.dirty_peak_mib
        );
        out.push(step);
        if !held {
            break;
        }
    }
    out
}
