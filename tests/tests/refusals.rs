//! What the real agent does with each kind of refusal: nothing stays stranded in the spool
//! unsaid. The live stream lost by the server → recording goes on in a new stream; a
//! closed attempt → the agent stops and says so; an unsendable leftover → dropped with its
//! reason logged.

mod support;

use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_live_stream_forgotten_by_the_server_goes_on_in_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start(&data, 0);
    let (attempt, token) = enrol(&server).await;
    let child = agent(&server.public, &token, "16s", &spool)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The server loses the stream (a restore from an older backup, say).
    let db = rusqlite::Connection::open(data.join("proctor.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(&format!(
        "DELETE FROM chunks WHERE stream_id IN (SELECT id FROM streams WHERE attempt_id = '{attempt}');
         DELETE FROM streams WHERE attempt_id = '{attempt}';"
    ))
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("summary: {stderr}"));
    assert_eq!(s["streams_opened"], 2, "{s:#}\n{stderr}");
    assert!(
        stderr.contains("nouvelle session"),
        "the candidate is told: {stderr}"
    );
    assert!(
        !out.status.success(),
        "chunks the server lost make an incomplete run"
    );

    let report = server.cli(&["attempt", "show", &attempt]);
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{report:#}");
    assert_eq!(streams[0]["status"], "complete", "{report:#}");
    assert_eq!(report["integrity"], "ok", "{report:#}");
    // The new stream opens with the initialisation segment and plays on its own.
    let media = staff_media(&server, &attempt, streams[0]["stream_id"].as_str().unwrap()).await;
    let decoded = media::decode(&media).expect("the reopened stream decodes");
    assert!(decoded.video_seconds >= 6.0, "{decoded:?}");
    assert_eq!(
        s["chunks_acknowledged"].as_u64().unwrap() + s["chunks_dropped"].as_u64().unwrap(),
        s["fragments_sealed"].as_u64().unwrap(),
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_attempt_stops_the_agent_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("no-grace.toml");
    std::fs::write(&config, "[limits]\nupload_grace = \"0s\"\n").unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start_with(&data, 0, &["--config", config.to_str().unwrap()]);
    let (attempt, token) = enrol(&server).await;
    // The contract command: end the attempt as the platform's API does.
    let ended = cli(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "attempt",
            "end",
            &attempt,
        ],
        &[],
    );
    assert_eq!(ended["state"], "ended");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "5s", &spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Votre épreuve est terminée"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it stopped at once, not after retrying"
    );
    assert_eq!(
        server.cli(&["attempt", "show", &attempt])["streams"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsendable_leftover_is_dropped_with_its_reason_not_kept_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start(&data, 0);
    let (attempt, token) = enrol(&server).await;
    // A leftover of a stream the server never opened (its first chunk was lost).
    let stale_id = uuid::Uuid::new_v4();
    let mut sealer = protocol::StreamSealer::new(
        protocol::StreamKey::generate(),
        attempt.parse().unwrap(),
        stale_id,
    );
    let third = (0..4)
        .map(|_| {
            sealer
                .seal(protocol::Fragment {
                    data: b"media",
                    media_start_us: 0,
                    media_end_us: 0,
                    last: false,
                })
                .unwrap()
                .1
        })
        .last()
        .unwrap();
    let stale = spool.join(&attempt).join(stale_id.to_string());
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("0000000003.chunk"), third).unwrap();
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "4s", &spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["chunks_dropped"], 1, "{s:#}");
    assert_eq!(
        s["chunks_acknowledged"], s["fragments_sealed"],
        "the new recording is whole: {s:#}"
    );
    let log = std::fs::read_to_string(spool.join(&attempt).join("dropped.log")).unwrap();
    assert!(
        log.contains("index=3") && log.contains("stream_not_opened"),
        "{log}"
    );
    assert!(
        files_under(&spool)
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "chunk")),
        "nothing stranded"
    );
    assert_eq!(
        server.cli(&["attempt", "show", &attempt])["integrity"],
        "ok"
    );
}

/// Issue 19 (#13): the server destroyed the recording (erasure, a PV) while chunks still
/// waited on the candidate's computer: the agent erases them and says so, rather than
/// keeping the last copy of a destroyed recording in its spool.
#[tokio::test(flavor = "multi_thread")]
async fn a_destroyed_recording_is_erased_from_the_spool_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start(&data, 0);
    let (attempt, token) = enrol(&server).await;
    // A first run leaves chunks behind (killed before it could send them all)…
    let leftover = spool.join(&attempt).join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("0000000000.chunk"), b"sealed bytes").unwrap();
    // …then the recording is destroyed on the server.
    let erased = server.cli(&[
        "attempt",
        "erase",
        &attempt,
        "--reason",
        "demande du candidat",
    ]);
    assert_eq!(erased["destroyed"], true, "{erased}");
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "10s", &spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ce qui en restait sur cet ordinateur est effacé"),
        "{stderr}"
    );
    assert!(
        !spool.join(&attempt).exists(),
        "the destroyed attempt's spool is gone: {:?}",
        files_under(&spool)
    );
}
