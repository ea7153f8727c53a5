//! What the candidate's page costs while recording (`scripts/bench-page`): the agent's CPU
//! (share of one core) and memory over a minute of recording, in the command-line mode
//! (`--consent`, no page) and with the page open in headless Chromium (polling every
//! second, as it does while recording), rounds alternating, medians. Also the browser's
//! own CPU over the same minute. The agent is the release binary (`AGENT_BIN` to change);
//! the server is the debug one the tests use. Goal: the page adds ≤ 2 % of one core.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::browser::Browser;
use support::procs::{chromium_pids, cpu_seconds, release_agent};
use support::*;

const WINDOW: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(10);

fn rss_mb(pid: u32) -> f64 {
    support::scene::rss_kb(pid) as f64 / 1024.0
}

struct Sample {
    agent_cpu_pct: f64,
    agent_rss_mb: f64,
    browser_cpu_pct: f64,
}

/// The agent's (and the browser's) CPU over WINDOW, once recording has settled.
async fn measure(pid: u32) -> Sample {
    tokio::time::sleep(SETTLE).await;
    let (a0, b0) = (
        cpu_seconds(pid),
        chromium_pids().iter().map(|p| cpu_seconds(*p)).sum::<f64>(),
    );
    tokio::time::sleep(WINDOW).await;
    let (a1, b1) = (
        cpu_seconds(pid),
        chromium_pids().iter().map(|p| cpu_seconds(*p)).sum::<f64>(),
    );
    Sample {
        agent_cpu_pct: (a1 - a0) / WINDOW.as_secs_f64() * 100.0,
        agent_rss_mb: rss_mb(pid),
        browser_cpu_pct: (b1 - b0).max(0.0) / WINDOW.as_secs_f64() * 100.0,
    }
}

fn spawn(args: &[&str], spool: &Path) -> Child {
    Command::new(release_agent())
        .args(args)
        .arg("--spool")
        .arg(spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn cli_round(server: &Server, tmp: &Path) -> Sample {
    let (_, token) = enrol(server).await;
    let total = (SETTLE + WINDOW + Duration::from_secs(5)).as_secs();
    let mut child = spawn(
        &[
            "--server",
            &server.public,
            "--token",
            &token,
            "--source",
            "test",
            "--consent",
            "--duration",
            &format!("{total}s"),
        ],
        &tmp.join(format!("cli-{token:.12}")),
    );
    let s = measure(child.id()).await;
    assert!(tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
        .success());
    s
}

async fn page_round(server: &Server, tmp: &Path) -> Sample {
    let (_, token) = enrol(server).await;
    let mut child = spawn(
        &[
            "--server",
            &server.public,
            "--token",
            &token,
            "--source",
            "test",
            "--no-browser",
        ],
        &tmp.join(format!("page-{token:.12}")),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("candidate page: ")
        .unwrap()
        .to_owned();
    let b = Browser::start().await;
    b.client.goto(&url).await.unwrap();
    let click = |id: &'static str| {
        let b = &b;
        async move {
            b.until(id, Duration::from_secs(20), &format!("const e = document.getElementById('{id}'); return !!e && e.offsetParent !== null && !e.disabled")).await;
            b.client
                .find(fantoccini::Locator::Id(id))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    click("consent-box").await;
    click("accept").await;
    click("start").await;
    let s = measure(child.id()).await;
    click("finish").await;
    click("finish-yes").await;
    assert!(tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
        .success());
    b.close().await;
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    assert!(
        release_agent().exists(),
        "{} not built: scripts/bench-page builds it",
        release_agent().display()
    );
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (mut cli, mut page) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so that drift on a noisy machine hits both.
        if round % 2 == 0 {
            cli.push(cli_round(&server, tmp.path()).await);
            page.push(page_round(&server, tmp.path()).await);
        } else {
            page.push(page_round(&server, tmp.path()).await);
            cli.push(cli_round(&server, tmp.path()).await);
        }
        let (c, p) = (cli.last().unwrap(), page.last().unwrap());
        eprintln!("round {round}: agent CPU {:.2} % (command line) vs {:.2} % (page); RSS {:.0} vs {:.0} MB; browser {:.2} %", c.agent_cpu_pct, p.agent_cpu_pct, c.agent_rss_mb, p.agent_rss_mb, p.browser_cpu_pct);
    }
    let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (c_cpu, p_cpu) = (m(&cli, |s| s.agent_cpu_pct), m(&page, |s| s.agent_cpu_pct));
    println!("| agent, {} s of recording, medians of {rounds} | command line (--consent) | page open | difference |", WINDOW.as_secs());
    println!("|---|---|---|---|");
    println!(
        "| CPU, % of one core | {c_cpu:.2} | {p_cpu:.2} | {:+.2} points |",
        p_cpu - c_cpu
    );
    println!(
        "| memory (RSS), MB | {:.0} | {:.0} | {:+.0} |",
        m(&cli, |s| s.agent_rss_mb),
        m(&page, |s| s.agent_rss_mb),
        m(&page, |s| s.agent_rss_mb) - m(&cli, |s| s.agent_rss_mb)
    );
    println!(
        "| the browser tab (all Chromium processes), % of one core | — | {:.2} | |",
        m(&page, |s| s.browser_cpu_pct)
    );
}
