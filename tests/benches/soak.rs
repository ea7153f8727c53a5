//! The soak (not in CI: `scripts/soak`, 30 minutes by default, `SOAK_MINUTES` to change):
//! 20 agents record at once while the link flaps at random (down 5 to 30 s every 1 to 3
//! minutes). Every recording arrives whole; the server's and the agents' memory at the
//! start and the end are printed, and growth must stay within 64 MB for the server and
//! 32 MB for each agent.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::Duration;
use support::scene::*;
use support::*;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    use rand::Rng;
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let scene = Scene::new();
    let sitting = scene.show()["sitting_id"].as_str().unwrap().to_owned();
    let mut agents = Vec::new();
    for i in 0..20 {
        let c = scene.server.cli(&[
            "candidate",
            "add",
            "--sitting",
            &sitting,
            "--ref",
            &format!("soak-{i}"),
        ]);
        let (attempt, token) = (
            c["attempt_id"].as_str().unwrap().to_owned(),
            c["launch_token"].as_str().unwrap().to_owned(),
        );
        let mut cmd = scene.net.command(&bin("capture-agent"));
        cmd.args([
            "--server",
            &format!("https://{}", scene.listen),
            "--token",
            &token,
            "--source",
            "test",
            "--duration",
            &format!("{minutes}m"),
            "--consent",
            "--spool",
        ])
        .arg(scene.tmp.path().join(format!("spool-{i}")))
        .arg("--ca-file")
        .arg(&scene.cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        agents.push((attempt, start(cmd)));
    }
    let server_pid = scene.server.child.id();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let agent_pids: Vec<u32> = agents
        .iter()
        .map(|(_, r)| r.0.as_ref().unwrap().id())
        .collect();
    let (server_start, agents_start) = (
        rss_kb(server_pid),
        agent_pids.iter().map(|p| rss_kb(*p)).collect::<Vec<_>>(),
    );
    let end = std::time::Instant::now() + Duration::from_secs(minutes * 60 - 90);
    let mut flaps = 0;
    while std::time::Instant::now() < end {
        let (wait, down) = {
            let mut r = rand::thread_rng();
            (r.gen_range(60..180), r.gen_range(5..30))
        };
        tokio::time::sleep(
            Duration::from_secs(wait).min(end.saturating_duration_since(std::time::Instant::now())),
        )
        .await;
        if std::time::Instant::now() >= end {
            break;
        }
        scene.net.link(false);
        tokio::time::sleep(Duration::from_secs(down)).await;
        scene.net.link(true);
        flaps += 1;
    }
    let agents_end: Vec<u64> = agent_pids.iter().map(|p| rss_kb(*p)).collect();
    let mut outputs = Vec::new();
    for (attempt, running) in agents {
        outputs.push((attempt, finish(running).await));
    }
    let server_end = rss_kb(server_pid);
    eprintln!("soak: {minutes} min, 20 agents, {flaps} link flaps");
    eprintln!(
        "server RSS: {} MB at the start, {} MB at the end",
        server_start / 1024,
        server_end / 1024
    );
    let growth: Vec<i64> = agents_start
        .iter()
        .zip(&agents_end)
        .map(|(a, b)| *b as i64 - *a as i64)
        .collect();
    eprintln!(
        "agent RSS at the start (MB): {:?}",
        agents_start.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    eprintln!(
        "agent RSS growth (MB): {:?}",
        growth.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    for (attempt, out) in &outputs {
        let s = summary(out);
        let report = scene.server.cli(&["attempt", "show", attempt]);
        assert_eq!(
            report["fragments_stored"], s["fragments_sealed"],
            "{attempt}: {report:#}"
        );
        assert_eq!(report["integrity"], "ok", "{attempt}: {report:#}");
    }
    assert!(
        server_end.saturating_sub(server_start) < 64 * 1024,
        "server memory grew {} MB",
        (server_end - server_start) / 1024
    );
    assert!(
        growth.iter().all(|g| *g < 32 * 1024),
        "an agent's memory grew past 32 MB: {growth:?}"
    );
}
