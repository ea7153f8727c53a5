//! End-to-end: the real server and agent, the test source recorded for real.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;
use support::*;

fn wait(mut cmd: std::process::Command) -> Output {
    cmd.output().expect("run capture-agent")
}

fn summary(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "capture-agent failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("agent prints a JSON summary")
}

fn spool_files(spool: &Path) -> usize {
    files_under(spool)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_seals_uploads_stores_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start(&data, 0);
    let (attempt, token) = enrol(&server).await;

    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "20s", &spool);
        move || wait(cmd)
    })
    .await
    .unwrap();
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Information sur l'enregistrement"),
        "the notice is shown before capture"
    );
    let sealed = s["fragments_sealed"].as_u64().unwrap();
    assert_eq!(s["chunks_acknowledged"].as_u64().unwrap(), sealed);
    assert!(
        sealed >= 10,
        "20 s in 2 s fragments plus the init segment, got {sealed}"
    );
    assert_eq!(
        spool_files(&spool),
        0,
        "acknowledged chunks leave the spool"
    );

    let report = server.cli(&["attempt", "show", &attempt]);
    assert_eq!(
        report["fragments_stored"].as_u64().unwrap(),
        sealed,
        "every fragment stored once: {report:#}"
    );
    assert!(
        report["recorded_seconds"].as_f64().unwrap() >= 19.0,
        "{report:#}"
    );
    assert_eq!(report["integrity"], "ok", "{report:#}");
    assert_eq!(report["state"], "recording");
    assert_eq!(report["missing"].as_array().unwrap().len(), 0);
    assert!(
        s["ack_latency"]["p99_ms"].as_u64().is_some(),
        "the agent reports its acknowledgement latency: {s:#}"
    );
    assert_eq!(report["gaps"].as_array().unwrap().len(), 0);
    let stream = report["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(report["streams"][0]["status"], "complete");

    let media = staff_media(&server, &attempt, &stream).await;
    let decoded = media::decode(&media).expect("decrypted media decodes");
    assert!(
        (19.0..=22.0).contains(&decoded.video_seconds),
        "{decoded:?}"
    );
    assert!(
        (19.0..=22.0).contains(&decoded.audio_seconds),
        "{decoded:?}"
    );
    assert!(decoded.video_frames >= 19 * 15 * 9 / 10, "{decoded:?}");
    assert_eq!((decoded.width, decoded.height), (640, 480));

    assert_no_plaintext(&media, &[&spool, &data]);
    let audit = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args(["audit", "list"])
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("recording_viewed") && l.contains(&attempt)),
        "the read is audited"
    );
    assert_eq!(server.cli(&["audit", "verify"])["chain"], "intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_resumes_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let mut server = Server::start(&data, 0);
    let port = server.public_port();
    let (attempt, token) = enrol(&server).await;

    let mut first = agent(&server.public, &token, "60s", &spool)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The server goes away so that sealed chunks pile up in the spool, then the agent dies.
    server.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let left = spool_files(&spool);
    assert!(left >= 2, "the outage left chunks in the spool ({left})");

    let server = Server::start(&data, port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "6s", &spool);
        move || wait(cmd)
    })
    .await
    .unwrap();
    summary(&out);
    assert_eq!(spool_files(&spool), 0, "leftovers uploaded");

    let report = server.cli(&["attempt", "show", &attempt]);
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{report:#}");
    assert_eq!(streams[0]["status"], "ended_abruptly");
    assert!(
        streams[0]["missing"].as_array().unwrap().is_empty(),
        "nothing recorded was lost: {report:#}"
    );
    assert!(
        streams[0]["fragments_stored"].as_u64().unwrap() as usize >= left + 2,
        "{report:#}"
    );
    assert!(
        streams[0]["recorded_seconds"].as_f64().unwrap() >= 6.0,
        "{report:#}"
    );
    assert_eq!(streams[1]["status"], "complete");
    assert_eq!(
        report["gaps"].as_array().unwrap().len(),
        1,
        "the restart shows as a gap: {report:#}"
    );
    assert_eq!(
        report["integrity"], "incomplete",
        "an abrupt end is reported, not hidden"
    );

    // The abrupt stream still plays up to where it was cut.
    let media = staff_media(&server, &attempt, streams[0]["stream_id"].as_str().unwrap()).await;
    let decoded = media::decode(&media).expect("decodes");
    assert!(decoded.video_seconds >= 5.9, "{decoded:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restarted_mid_upload_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let mut server = Server::start(&data, 0);
    let port = server.public_port();
    let (attempt, token) = enrol(&server).await;

    let child = agent(&server.public, &token, "16s", &spool)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let server = Server::start(&data, port);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let s = summary(&out);

    let report = server.cli(&["attempt", "show", &attempt]);
    assert_eq!(report["integrity"], "ok", "{report:#}");
    assert_eq!(
        report["fragments_stored"], s["fragments_sealed"],
        "{report:#}"
    );
    assert!(
        report["recorded_seconds"].as_f64().unwrap() >= 15.0,
        "{report:#}"
    );
    assert_eq!(spool_files(&spool), 0);
}
