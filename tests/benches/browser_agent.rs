//! The browser agent against the native one (`scripts/bench-browser`), same settings
//! (640x480, 15 frame/s, H.264 constrained baseline from 500 kbit/s, 2 s fragments) and
//! the same picture: GStreamer's moving ball (`videotestsrc pattern=ball`), live in the
//! native agent and as Chromium's fake camera (a Y4M loop of it); ticks (native) and the
//! fake microphone's beeps (Chromium) for sound. Per round, alternating which goes first:
//! - CPU (share of one core) and memory (PSS, all processes: every Chromium process;
//!   the native agent) over 60 s of recording, after 10 s to settle;
//! - bytes acknowledged per recorded minute;
//! - catch-up: `BACKLOG_S` (default 600: a 10-minute outage) recorded with the server
//!   down, then the time from the server's return to the last acknowledgement.
//!
//! Medians of `BENCH_ROUNDS` (default 3). The native agent is the release binary
//! (`AGENT_BIN`); the server is the debug one the tests use, for both.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::browser::{click, Browser};
use support::procs::{chromium_pids, cpu_seconds, pss_mb, release_agent};
use support::*;

const WINDOW: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Cost {
    cpu_pct: f64,
    pss_mb: f64,
}

/// CPU and memory of `pids()` over WINDOW, after SETTLE.
async fn cost(pids: impl Fn() -> Vec<u32>) -> Cost {
    tokio::time::sleep(SETTLE).await;
    let c0: f64 = pids().iter().map(|p| cpu_seconds(*p)).sum();
    let t0 = Instant::now();
    let mut peak = 0f64;
    while t0.elapsed() < WINDOW {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(pids().iter().map(|p| pss_mb(*p)).sum());
    }
    let c1: f64 = pids().iter().map(|p| cpu_seconds(*p)).sum();
    Cost {
        cpu_pct: (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0,
        pss_mb: peak,
    }
}

/// The moving ball, 20 s of it, as the fake camera's Y4M loop.
fn ball_y4m(dir: &Path) -> PathBuf {
    let path = dir.join("ball.y4m");
    let ok = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "pattern=ball",
            "num-buffers=300",
            "!",
            "video/x-raw,format=I420,width=640,height=480,framerate=15/1",
            "!",
            "y4menc",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", path.display()))
        .status()
        .unwrap()
        .success();
    assert!(ok, "gst-launch-1.0 writes the Y4M");
    path
}

fn native_bytes(summary: &serde_json::Value) -> f64 {
    summary["bytes_acknowledged"].as_f64().unwrap()
}

struct Round {
    cost: Cost,
    bytes_per_min: f64,
}

async fn native_round(server: &Server, tmp: &Path) -> Round {
    let (_, token) = enrol(server).await;
    let secs = (SETTLE + WINDOW).as_secs() + 4;
    let child = Command::new(release_agent())
        .args([
            "--server",
            &server.public,
            "--token",
            &token,
            "--source",
            "test",
            "--consent",
            "--duration",
            &format!("{secs}s"),
            "--spool",
        ])
        .arg(tmp.join(format!("n-{token:.12}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let cost = cost(move || vec![pid]).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Round {
        cost,
        bytes_per_min: native_bytes(&summary) / summary["media_seconds"].as_f64().unwrap() * 60.0,
    }
}

async fn browser(camera: &Path) -> Browser {
    Browser::start_with_args(&[
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", camera.display()),
    ])
    .await
}

async fn start_recording(b: &Browser, server: &Server) {
    let s = post_platform(
        format!("{}/api/integration/v1/sittings", server.public),
        serde_json::json!({ "ref": format!("BB-{}", uuid::Uuid::new_v4()) }),
    )
    .await;
    let c = post_platform(
        format!(
            "{}/api/integration/v1/sittings/{}/candidates",
            server.public,
            s["sitting_id"].as_str().unwrap()
        ),
        serde_json::json!({ "ref": "c" }),
    )
    .await;
    b.client
        .goto(c["browser_link"].as_str().unwrap())
        .await
        .unwrap();
    b.until(
        "the notice",
        Duration::from_secs(30),
        "return document.body.dataset.phase === 'notice'",
    )
    .await;
    click(b, "consent-box").await;
    click(b, "accept").await;
    b.until("devices open", Duration::from_secs(30), "return document.body.dataset.phase === 'check' && !document.getElementById('start').disabled").await;
    click(b, "start").await;
    b.until(
        "recording",
        Duration::from_secs(30),
        "return document.body.dataset.phase === 'recording'",
    )
    .await;
}

async fn finish(b: &Browser, timeout: Duration) {
    click(b, "finish").await;
    click(b, "finish-yes").await;
    b.until(
        "all sent",
        timeout,
        "return document.body.dataset.phase === 'done'",
    )
    .await;
}

async fn browser_round(server: &Server, camera: &Path) -> Round {
    let b = browser(camera).await;
    start_recording(&b, server).await;
    let started = Instant::now();
    let cost = cost(chromium_pids).await;
    finish(&b, Duration::from_secs(60)).await;
    let s = b.js("return window.__agent()").await;
    b.close().await;
    // Media time ≈ the time recorded (the page's counters give bytes, not seconds).
    Round {
        cost,
        bytes_per_min: s["ackedBytes"].as_f64().unwrap() / started.elapsed().as_secs_f64() * 60.0,
    }
}

/// Records `backlog` with the server down, then times the upload once it is back.
async fn native_catch_up(data: &Path, port: u16, tmp: &Path, backlog: Duration) -> f64 {
    let mut server = Server::start(data, port);
    let (_, token) = enrol(&server).await;
    server.kill();
    let child = Command::new(release_agent())
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            &token,
            "--source",
            "test",
            "--consent",
            "--duration",
            &format!("{}s", backlog.as_secs()),
            "--spool",
        ])
        .arg(tmp.join(format!("c-{token:.12}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(backlog + Duration::from_secs(3)).await;
    let _server = Server::start(data, port);
    let back = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    back.elapsed().as_secs_f64()
}

async fn browser_catch_up(data: &Path, port: u16, camera: &Path, backlog: Duration) -> f64 {
    let mut server = Server::start(data, port);
    let b = browser(camera).await;
    start_recording(&b, &server).await;
    server.kill();
    tokio::time::sleep(backlog).await;
    click(&b, "finish").await;
    click(&b, "finish-yes").await;
    b.until(
        "the last fragment sealed",
        Duration::from_secs(30),
        "const a = window.__agent(); return a.phase === 'finishing' && a.capture === null",
    )
    .await;
    let _server = Server::start(data, port);
    let back = Instant::now();
    b.until(
        "all sent",
        backlog * 2,
        "return document.body.dataset.phase === 'done'",
    )
    .await;
    let t = back.elapsed().as_secs_f64();
    b.close().await;
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    assert!(
        release_agent().exists(),
        "{} not built: scripts/bench-browser builds it",
        release_agent().display()
    );
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let backlog = Duration::from_secs(
        std::env::var("BACKLOG_S")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(600),
    );
    let tmp = tempfile::tempdir().unwrap();
    let camera = ball_y4m(tmp.path());
    let server = Server::start(&tmp.path().join("data"), 0);
    let (mut native, mut page) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            native.push(native_round(&server, tmp.path()).await);
            page.push(browser_round(&server, &camera).await);
        } else {
            page.push(browser_round(&server, &camera).await);
            native.push(native_round(&server, tmp.path()).await);
        }
        let (n, p) = (native.last().unwrap(), page.last().unwrap());
        eprintln!(
            "round {round}: CPU {:.1} % (native) vs {:.1} % (browser); PSS {:.0} vs {:.0} MB; {:.2} vs {:.2} MB/min",
            n.cost.cpu_pct, p.cost.cpu_pct, n.cost.pss_mb, p.cost.pss_mb, n.bytes_per_min / 1e6, p.bytes_per_min / 1e6
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tmp.path().join("catch-up");
    let n_catch = native_catch_up(&data, port, tmp.path(), backlog).await;
    let b_catch = browser_catch_up(&data, port, &camera, backlog).await;
    let m = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let (nc, pc) = (m(&native, |r| r.cost.cpu_pct), m(&page, |r| r.cost.cpu_pct));
    let (nm, pm) = (m(&native, |r| r.cost.pss_mb), m(&page, |r| r.cost.pss_mb));
    let (nb, pb) = (
        m(&native, |r| r.bytes_per_min),
        m(&page, |r| r.bytes_per_min),
    );
    println!("| {} s of recording, medians of {rounds} rounds | native agent | browser agent (all Chromium processes) | browser / native |", WINDOW.as_secs());
    println!("|---|---|---|---|");
    println!(
        "| CPU, % of one core | {nc:.1} | {pc:.1} | {:.2} |",
        pc / nc
    );
    println!(
        "| memory (peak PSS), MB | {nm:.0} | {pm:.0} | {:.2} |",
        pm / nm
    );
    println!(
        "| bytes per recorded minute, MB | {:.2} | {:.2} | {:.2} |",
        nb / 1e6,
        pb / 1e6,
        pb / nb
    );
    println!("| catch-up of a {} s backlog, s (× real time) | {n_catch:.1} ({:.0}×) | {b_catch:.1} ({:.0}×) | {:.2} |", backlog.as_secs(), backlog.as_secs_f64() / n_catch, backlog.as_secs_f64() / b_catch, b_catch / n_catch);
}
