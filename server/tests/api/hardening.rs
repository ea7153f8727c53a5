//! The public listener against a candidate who wants the recording to fail: defects found
//! by reading the code, each with its test, and the limits that keep everyone else served.

use crate::helpers::*;
use protocol::Fragment;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn sealed_at(s: &OpenStream, index: u32, data: &[u8], media_end_us: u64) -> Vec<u8> {
    protocol::seal_chunk(
        &s.key,
        s.attempt_id,
        s.stream_id,
        index,
        [1; 32],
        Fragment {
            data,
            media_start_us: 0,
            media_end_us,
            last: false,
        },
    )
}

/// Defect: one chunk at index ~4·10⁹ made the next report enumerate every index.
#[tokio::test]
async fn a_chunk_bomb_index_is_refused_and_missing_fragments_are_ranges() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let bomb = sealed_at(&s, u32::MAX - 1, b"boom", 2_000_000);
    let r = app
        .put_chunk(&c.token, s.stream_id, u32::MAX - 1, bomb)
        .await;
    assert_eq!(r.headers()["retry-after"], "30");
    assert_eq!(error_code(r).await, (422, "index_out_of_window".into()));
    // Media time far ahead of the stream's age: refused too.
    let far = sealed_at(&s, 3, b"late", 10 * 3600 * 1_000_000);
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 3, far).await).await,
        (422, "media_time_out_of_window".into())
    );
    assert_eq!(app.chunk_rows(s.stream_id).await, 0);

    // Within the window, holes are reported as ranges.
    let chunks = seal_stream(&s, 12);
    for i in [0usize, 1, 5, 12] {
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i as u32, chunks[i].clone())
                .await
                .status(),
            201
        );
    }
    let (report, _) = report_of(&app, c.attempt_id).await;
    assert_eq!(
        report["streams"][0]["missing"],
        serde_json::json!([{ "from": 2, "to": 4 }, { "from": 6, "to": 11 }])
    );
    assert_eq!(report["missing"].as_array().unwrap().len(), 2);
    // The incident is in the attempt's audit, once per kind.
    let trail = app.db().await.audit_trail().await.unwrap();
    let incidents: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "agent_incident")
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
}

async fn report_of(app: &TestApp, attempt: uuid::Uuid) -> (serde_json::Value, String) {
    let login = format!("rev-{}", &uuid::Uuid::new_v4().to_string()[..6]);
    let token = reviewer_of(app, &login, attempt).await;
    let r = app
        .http
        .get(format!("{}/api/staff/v1/attempts/{attempt}", app.staff))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    (r.json().await.unwrap(), token)
}

/// Defect: two concurrent PUTs of different chunks at one index could both pass the row
/// check, and the second overwrote the blob of the first after it got its 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_puts_keep_the_acknowledged_chunk_bit_for_bit() {
    conflicting_puts(None).await;
}

/// The same on PostgreSQL and a real S3 server that ignores conditional writes (Garage 2.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_puts_keep_the_acknowledged_chunk_on_postgres_and_s3_too() {
    conflicting_puts(Some(
        spawn_app_on_postgres_and_s3(|s| s.limits.max_ingests_per_attempt = 64).await,
    ))
    .await;
}

async fn conflicting_puts(app: Option<TestApp>) {
    let app = match app {
        Some(a) => a,
        None => spawn_app_with(|s| s.limits.max_ingests_per_attempt = 64).await,
    };
    let blobs = app.blobs();
    let (c, s) = app.recording_candidate().await;
    let init = seal_stream(&s, 0).remove(0);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, init).await.status(),
        201
    );
    for round in 1..=10u32 {
        // 16 different, valid chunks for the same index, sent at once.
        let candidates: Vec<Vec<u8>> = (0..16)
            .map(|k| {
                let data = vec![k as u8; 4096 + k * 512];
                sealed_at(&s, round, &data, u64::from(round) * 2_000_000)
            })
            .collect();
        let answers = futures::future::join_all(
            candidates
                .iter()
                .map(|b| app.put_chunk(&c.token, s.stream_id, round, b.clone())),
        )
        .await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        let winners: Vec<usize> = statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == 201)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one acknowledgement, got {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{statuses:?}"
        );
        // What is stored is, bit for bit, the chunk that was acknowledged.
        let row = app
            .db()
            .await
            .chunk(s.stream_id.into(), round)
            .await
            .unwrap();
        assert_eq!(
            blobs
                .read_chunk(s.attempt_id.into(), &row)
                .await
                .unwrap()
                .as_ref(),
            candidates[winners[0]].as_slice(),
            "round {round}"
        );
        // The refused duplicates left no object behind (on a directory their bytes went to
        // the stream's file, where no row points at them).
        for (k, c) in candidates
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != winners[0])
        {
            use sha2::Digest as _;
            let loser = server::blobs::chunk_path(
                s.attempt_id.into(),
                s.stream_id.into(),
                round,
                &sha2::Sha256::digest(c).into(),
            );
            assert!(
                matches!(
                    blobs.get(&loser).await,
                    Err(server::blobs::BlobError::NotFound)
                ),
                "round {round}: refused chunk {k} left its object"
            );
        }
    }
}

#[tokio::test]
async fn quotas_per_attempt_answer_429_and_spare_the_others() {
    let app = spawn_app_with(|s| {
        s.limits.max_streams_per_attempt = 3;
        s.limits.max_chunks_per_stream = 4;
        s.capture.bitrate_kbps = 0; // no byte budget at all
    })
    .await;
    let (c, s) = app.recording_candidate().await;
    app.open_stream(&c.token).await;
    app.open_stream(&c.token).await;
    let flood = futures::future::join_all((0..20).map(|_| app.open_stream_raw(&c.token))).await;
    for r in flood {
        assert_eq!(error_code(r).await, (429, "stream_quota_exceeded".into()));
    }
    let chunk = sealed_at(&s, 4, b"x", 0);
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 4, chunk).await).await,
        (429, "chunk_quota_exceeded".into())
    );
    let big = sealed_at(&s, 1, &[0u8; 100], 0);
    let r = app.put_chunk(&c.token, s.stream_id, 1, big).await;
    assert_eq!(r.headers()["retry-after"], "600");
    assert_eq!(error_code(r).await, (429, "byte_quota_exceeded".into()));
    // Another candidate is untouched.
    let other = app.candidate().await;
    app.consent(&other.token).await;
    assert_eq!(app.open_stream_raw(&other.token).await.status(), 201);
}

/// Sends raw bytes on a fresh connection and returns what came back before it closed.
fn raw_exchange(addr: &str, parts: &[&[u8]], pause: Duration) -> String {
    let mut tcp = std::net::TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for p in parts {
        if tcp.write_all(p).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let app = spawn_app_with(|s| {
        s.limits.header_read_timeout = Duration::from_secs(1);
        s.limits.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let (c, s) = app.recording_candidate().await;
    // Headers one byte every 300 ms: the connection is closed after about a second.
    let addr = app.public.clone();
    let started = Instant::now();
    let req = "PUT /api/agent/v1/streams/x/chunks/1 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let bytes: Vec<Vec<u8>> = req.bytes().map(|b| vec![b]).collect();
    let out = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &addr,
            &bytes.iter().map(|b| b.as_slice()).collect::<Vec<_>>(),
            Duration::from_millis(300),
        )
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow headers were not cut: {:?}",
        started.elapsed()
    );
    assert!(!out.contains("201"), "{out}");
    // A body that never arrives: 408 with its JSON error.
    let addr = app.public.clone();
    let head = format!(
        "PUT /api/agent/v1/streams/{}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\nabc",
        s.stream_id, c.token
    );
    let out = tokio::task::spawn_blocking(move || {
        raw_exchange(&addr, &[head.as_bytes()], Duration::from_millis(10))
    })
    .await
    .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 408") && out.contains("body_timeout"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_need_a_length_and_a_flood_gets_503_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.max_concurrent_requests = 1).await;
    let (c, s) = app.recording_candidate().await;
    // A streamed body has no Content-Length: 411, before any byte is read.
    let addr = app.public.clone();
    let head = format!(
        "PUT /api/agent/v1/streams/{}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        s.stream_id, c.token
    );
    let out = tokio::task::spawn_blocking(move || {
        raw_exchange(&addr, &[head.as_bytes()], Duration::from_millis(10))
    })
    .await
    .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 411") && out.contains("length_required"),
        "{out}"
    );
    // One request holds the only slot (its body never comes)…
    let addr = app.public.trim_start_matches("http://").to_owned();
    let mut holder = std::net::TcpStream::connect(&addr).unwrap();
    write!(holder, "PUT /api/agent/v1/streams/{}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n", s.stream_id, c.token).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …so the next is shed at once, with a JSON body and a Retry-After.
    let r = app
        .http
        .get(format!("{}/health", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(error_code(r).await, (503, "overloaded".into()));
    drop(holder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.http
            .get(format!("{}/health", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn failed_logins_lock_out_and_the_audit_keeps_a_bounded_login() {
    let app = spawn_app().await;
    add_staff(&app, "relectrice", "reviewer").await;
    let login = |l: String, p: &str| {
        app.http
            .post(format!("{}/api/staff/v1/login", app.staff))
            .json(&serde_json::json!({ "login": l, "password": p }))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            error_code(login("relectrice".into(), "Wrong-pass-1").await.unwrap()).await,
            (401, "unauthorized".into())
        );
    }
    // Locked: even the right password waits.
    let r = login("relectrice".into(), STAFF_PASSWORD).await.unwrap();
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 800
    );
    assert_eq!(error_code(r).await, (429, "login_locked".into()));
    app.clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(
        login("relectrice".into(), STAFF_PASSWORD)
            .await
            .unwrap()
            .status(),
        200
    );
    // A hostile login string is stored bounded and without control characters.
    let nasty = format!("evil\n{}", "x".repeat(200));
    assert_eq!(login(nasty, "whatever").await.unwrap().status(), 401);
    let trail = app.db().await.audit_trail().await.unwrap();
    let last = trail
        .iter()
        .rev()
        .find(|e| e.action == "staff_login_failed")
        .unwrap();
    assert_eq!(last.actor.chars().count(), 64);
    assert!(last.actor.starts_with("evil?"));
}

#[tokio::test]
async fn a_destroyed_attempt_answers_gone() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 1);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    // Destruction itself comes with the deletion issue; its state already closes every door.
    app.state()
        .await
        .attempts
        .transition(
            c.attempt_id.into(),
            server::lifecycle::Transition::Destroy,
            "test",
        )
        .await
        .unwrap();
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
                .await
        )
        .await,
        (410, "gone".into())
    );
    let (_, staff) = report_of(&app, c.attempt_id).await;
    let r = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{}/streams/{}/media",
            app.staff, c.attempt_id, s.stream_id
        ))
        .bearer_auth(staff)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (410, "gone".into()));
}
