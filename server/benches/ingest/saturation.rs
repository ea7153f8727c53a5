//! Saturation: 50 uploaders PUT sealed chunks back to back, against us and then, in the
//! same round, the same bytes against nginx. Rounds alternate the two so that the
//! machine's drift hits both; the table gives the median round.

use crate::cpu;
use crate::nginx::Nginx;
use crate::stages;
use crate::target::{Agent, Target};
use object_store::path::Path as ObjectPath;
use server::blobs::BlobStore;
use std::time::Instant;

pub const UPLOADERS: usize = 50;

pub struct Row {
    pub ours: Vec<f64>,
    pub nginx: Vec<f64>,
    /// The object store alone, PUT the same bytes straight from 50 tasks (S3 only): the
    /// ceiling that store puts on us.
    pub store: Vec<f64>,
    pub chunk_bytes: usize,
    pub chunks_per_round: usize,
    pub stages: String,
    /// The machine's CPU over each round, ours and nginx's.
    pub ours_cpu: Vec<cpu::Round>,
    pub nginx_cpu: Vec<cpu::Round>,
    pub store_cpu: Vec<cpu::Round>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Row {
    /// Median CPU per chunk and idle share, ours then nginx's.
    pub fn cpu(&self) -> String {
        let m = |rounds: &[cpu::Round]| {
            let per: Vec<f64> = rounds.iter().map(|r| r.ms_per_chunk).collect();
            let idle: Vec<f64> = rounds.iter().map(|r| r.idle * 100.0).collect();
            let switches: Vec<f64> = rounds.iter().map(|r| r.switches_per_chunk).collect();
            format!(
                "{:.2} ms of CPU and {:.0} context switches per chunk, {:.0} % idle",
                median(&per),
                median(&switches),
                median(&idle)
            )
        };
        let mut line = format!("ours {} · nginx {}", m(&self.ours_cpu), m(&self.nginx_cpu));
        if !self.store_cpu.is_empty() {
            line += &format!(" · store alone {}", m(&self.store_cpu));
        }
        line
    }

    pub fn print(&self, setup: &str) {
        let (o, n) = (median(&self.ours), median(&self.nginx));
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.nginx)
            .map(|(o, n)| o / n)
            .collect();
        let mb = |cps: f64| cps * self.chunk_bytes as f64 / 1e6;
        let store = if self.store.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.0}", median(&self.store))
        };
        println!(
            "| {setup} | {} KiB | {} × {} | {o:.0} | {:.1} | {n:.0} | {:.1} | {:.2} ({:.2}–{:.2}) | {store} |",
            self.chunk_bytes / 1024,
            self.ours.len(),
            self.chunks_per_round,
            mb(o),
            mb(n),
            median(&ratios),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
}

/// PUTs each list in order, one task per list; `auth` gives each task its bearer token.
/// Returns chunks per second.
async fn put_all(
    http: &reqwest::Client,
    lists: Vec<(String, Vec<(u32, Vec<u8>)>)>,
    auth: Option<Vec<String>>,
    expect: &'static [u16],
) -> f64 {
    let n: usize = lists.iter().map(|l| l.1.len()).sum();
    let start = Instant::now();
    let tasks: Vec<_> = lists
        .into_iter()
        .enumerate()
        .map(|(k, (base, chunks))| {
            let http = http.clone();
            let token = auth.as_ref().map(|a| a[k].clone());
            tokio::spawn(async move {
                for (i, c) in chunks {
                    let mut req = http.put(format!("{base}/{i}")).body(c);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let status = req.send().await.unwrap().status().as_u16();
                    assert!(expect.contains(&status), "PUT {base}/{i}: {status}");
                }
            })
        })
        .map(|t| async { t.await.unwrap() })
        .collect();
    futures::future::join_all(tasks).await;
    n as f64 / start.elapsed().as_secs_f64()
}

/// PUTs each list straight into the object store, one task per list; chunks per second.
async fn put_store(store: &BlobStore, label: &str, lists: Vec<Vec<(u32, Vec<u8>)>>) -> f64 {
    let n: usize = lists.iter().map(Vec::len).sum();
    let start = Instant::now();
    let tasks = lists.into_iter().enumerate().map(|(k, chunks)| {
        let (store, label) = (store.clone(), label.to_owned());
        tokio::spawn(async move {
            for (i, c) in chunks {
                store
                    .put(
                        &ObjectPath::from(format!("alone/{label}/u{k}/{i}")),
                        c.into(),
                    )
                    .await
                    .unwrap();
            }
        })
    });
    futures::future::join_all(tasks.map(|t| async { t.await.unwrap() })).await;
    n as f64 / start.elapsed().as_secs_f64()
}

pub async fn run(
    target: &Target,
    nginx: &Nginx,
    store: Option<&BlobStore>,
    label: &str,
    chunk_bytes: usize,
    rounds: usize,
    per_round: u32,
) -> Row {
    let mut agents: Vec<Agent> = target.enrol(0, UPLOADERS).await;
    let (mut ours, mut theirs, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_cpu, mut nginx_cpu, mut store_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let chunks = UPLOADERS * per_round as usize;
    let before = stages::snapshot();
    for round in 0..rounds {
        // Sealed before the clock starts: only ingest is timed.
        let sealed: Vec<Vec<(u32, Vec<u8>)>> = agents
            .iter_mut()
            .enumerate()
            .map(|(n, a)| {
                let payload: Vec<u8> = (0..chunk_bytes)
                    .map(|i| (i * 7 + n + round) as u8)
                    .collect();
                (0..per_round).map(|_| a.seal(&payload, false)).collect()
            })
            .collect();
        let to_nginx = sealed
            .iter()
            .enumerate()
            .map(|(k, chunks)| {
                (
                    format!("http://127.0.0.1:{}/{label}/r{round}/u{k}", nginx.port),
                    chunks.clone(),
                )
            })
            .collect();
        let to_store = store.map(|_| sealed.clone());
        let to_us = agents
            .iter()
            .zip(sealed)
            .map(|(a, c)| (a.url.clone(), c))
            .collect();
        let tokens = agents.iter().map(|a| a.token.clone()).collect();
        crate::target::settle();
        let before = cpu::now();
        ours.push(put_all(&target.http, to_us, Some(tokens), &[201]).await);
        ours_cpu.push(cpu::Round::since(before, chunks));
        let http = crate::target::client();
        crate::target::settle();
        let before = cpu::now();
        theirs.push(put_all(&http, to_nginx, None, &[201, 204]).await);
        nginx_cpu.push(cpu::Round::since(before, chunks));
        if let (Some(store), Some(lists)) = (store, to_store) {
            crate::target::settle();
            let before = cpu::now();
            alone.push(put_store(store, &format!("{label}/r{round}"), lists).await);
            store_cpu.push(cpu::Round::since(before, chunks));
        }
    }
    let stages = stages::snapshot().summary_since(&before);
    Row {
        ours,
        nginx: theirs,
        store: alone,
        chunk_bytes,
        chunks_per_round: chunks,
        stages,
        ours_cpu,
        nginx_cpu,
        store_cpu,
    }
}
