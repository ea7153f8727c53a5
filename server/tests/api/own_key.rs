//! Issue 20: what one candidate's own launch token and stream key can do. Every byte
//! inside a sealed fragment and every time the agent claims are theirs to choose; each
//! test here is an attack that worked before its fix.

use crate::helpers::*;
use protocol::{Activity, Fragment, StreamSealer};

/// A stream whose fragments carry the given activity (`None`: a version 1 payload).
fn with_activity(s: &OpenStream, fragments: &[Option<Activity>]) -> Vec<Vec<u8>> {
    let mut sealer = StreamSealer::new(s.key.clone(), s.attempt_id, s.stream_id);
    let n = fragments.len() as u32 + 1;
    (0..=n)
        .map(|i| {
            let plain = match fragments.get(i.wrapping_sub(1) as usize) {
                _ if i == 0 => b"init segment".to_vec(),
                Some(Some(a)) => protocol::encode_payload(b"media", a, b""),
                _ => b"media, version 1".to_vec(),
            };
            let frag = Fragment {
                data: &plain,
                media_start_us: u64::from(i.saturating_sub(1)) * 2_000_000,
                media_end_us: u64::from(i) * 2_000_000,
                last: i == n,
            };
            sealer.seal(frag).unwrap().1
        })
        .collect()
}

fn seconds(first_s: u32, motion: Vec<u8>) -> Activity {
    Activity {
        first_s,
        audio: motion.iter().map(|m| 100 - m).collect(),
        motion,
    }
}

async fn strip(app: &TestApp, reviewer: &str, attempt: uuid::Uuid) -> serde_json::Value {
    let r = app
        .http
        .get(format!(
            "{}/api/staff/v1/attempts/{attempt}/activity",
            app.staff
        ))
        .bearer_auth(reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// One column of the strip's points (0: time, 1: motion, 2: audio).
fn column(strip: &serde_json::Value, k: usize) -> Vec<i64> {
    strip["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[k].as_i64().unwrap())
        .collect()
}

/// #1, the activity bomb: a fragment of two seconds carrying hours of activity
/// used to be decrypted and expanded into the strip, every time the attempt was opened.
/// Ingest now keeps the media and drops an activity longer than its fragment, and the
/// strip is built from what ingest kept: no fragment opened, no blob read.
#[tokio::test]
async fn an_activity_longer_than_its_fragment_never_reaches_the_strip() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    // As much as the chunk limit of these tests allows (64 KiB; 8 MiB holds ~2 million).
    let bomb = seconds(2, vec![50; 10_000]);
    let chunks = with_activity(
        &s,
        &[
            Some(seconds(0, vec![10, 20])),
            Some(bomb),
            None,
            Some(seconds(6, vec![30, 40])),
        ],
    );
    for (i, chunk) in chunks.into_iter().enumerate() {
        let r = app.put_chunk(&c.token, s.stream_id, i as u32, chunk).await;
        assert_eq!(r.status(), 201, "fragment {i}: the media is the recording");
    }
    let ended = app
        .platform_post(&format!("attempts/{}/end", c.attempt_id))
        .await;
    assert_eq!(ended.status(), 200);
    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    // Every blob gone: the strip does not need them.
    std::fs::remove_dir_all(app.data.path().join("blobs")).unwrap();
    let strip = strip(&app, &reviewer, c.attempt_id).await;
    let levels = column(&strip, 1);
    assert_eq!(levels, [10, 20, 30, 40], "{strip}");
    let times = column(&strip, 0);
    assert_eq!(times[1] - times[0], 1000);
    assert_eq!(times[2] - times[0], 6000, "fragment 4 starts at 6 s");
    assert_eq!(
        strip["fragments_without"], 2,
        "the bomb and the version 1 fragment"
    );
    assert_eq!(strip["truncated"], false);
}

/// #2, the audit flood: every conflicting chunk (another chunk sealed at an index already
/// stored) wrote an audit entry and its checkpoint, and cost the attempt nothing. Now it is
/// an incident like the others (one entry per attempt per ten minutes), and its bytes are
/// charged to the attempt's quota.
#[tokio::test]
async fn conflicting_chunks_are_charged_and_audited_once() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let honest = seal_stream(&s, 1);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, honest[0].clone())
            .await
            .status(),
        201
    );
    let db = app.db().await;
    let charged = || async { db.attempt(c.attempt_id.into()).await.unwrap().bytes_stored };
    let (before, entries) = (charged().await, db.audit_count().await.unwrap());
    let mut refused = 0;
    for n in 0..40u32 {
        let other = protocol::seal_chunk(
            &s.key,
            s.attempt_id,
            s.stream_id,
            0,
            [0; 32],
            Fragment {
                data: format!("another init segment {n}").as_bytes(),
                media_start_us: 0,
                media_end_us: 0,
                last: false,
            },
        );
        refused += other.len() as u64;
        assert_eq!(
            error_code(app.put_chunk(&c.token, s.stream_id, 0, other).await).await,
            (409, "conflicting_chunk".into())
        );
    }
    assert_eq!(
        charged().await,
        before + refused,
        "every refused byte charged"
    );
    let trail = db.audit_page(entries as i64, 1_000).await.unwrap();
    let conflicts: Vec<_> = trail
        .iter()
        .filter(|e| e.detail.contains("chunk_conflict"))
        .collect();
    assert_eq!(conflicts.len(), 1, "{trail:?}");
    assert_eq!(conflicts[0].action, "agent_incident");
    assert!(
        trail.len() <= 2,
        "forty conflicts, not forty entries: {trail:?}"
    );
}

/// #11: a revoked (or expired) token kept sending heartbeats, reading its attempt and
/// opening data-channel sessions (dropping the real agent's). Now these follow the chunks'
/// rule: only while a stream opened under the live token is still recording.
#[tokio::test]
async fn a_revoked_token_carries_on_only_the_stream_it_opened_while_live() {
    let app = spawn_app_with(|s| s.webrtc.enabled = true).await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 1);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    let revoked = app
        .platform_post(&format!("attempts/{}/token/revoke", c.attempt_id))
        .await;
    assert_eq!(revoked.status(), 200);
    let heartbeat = || {
        app.http
            .post(format!("{}/api/agent/v1/heartbeat", app.public))
            .bearer_auth(&c.token)
            .json(&serde_json::json!({ "backlog_chunks": 0, "backlog_bytes": 0 }))
            .send()
    };
    let info = || {
        app.http
            .get(format!("{}/api/agent/v1/attempt", app.public))
            .bearer_auth(&c.token)
            .send()
    };
    let offer = || {
        app.http
            .post(format!("{}/api/agent/v1/webrtc", app.public))
            .bearer_auth(&c.token)
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
    };
    // The stream opened while the token was live is still recording: it carries on.
    assert_eq!(heartbeat().await.unwrap().status(), 204);
    assert_eq!(info().await.unwrap().status(), 200);
    assert_eq!(
        error_code(offer().await.unwrap()).await.0,
        400,
        "signalling reaches the offer's parsing"
    );
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.end_stream(&c.token, s.stream_id, 1).await.status(), 204);
    // Nothing of it records any more: the revoked token is refused everywhere.
    for r in [
        heartbeat().await.unwrap(),
        info().await.unwrap(),
        offer().await.unwrap(),
    ] {
        assert_eq!(error_code(r).await, (401, "token_revoked".into()));
    }
    let silences = app
        .db()
        .await
        .agent_silences(c.attempt_id.into())
        .await
        .unwrap();
    assert!(silences.is_empty());
}

/// #8: the candidate's bytes reached the reviewer's decoders as they were sealed. Now an
/// initialisation segment must carry only the agents' codecs, and a thumbnail must be a
/// small JPEG; anything else is refused and audited as altered.
#[tokio::test]
async fn only_what_agents_make_reaches_the_reviewers_decoders() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    // HEVC where the agents write H.264: a decoder the reviewer's browser was never meant
    // to be handed candidate bytes for.
    let mut hevc = fragment_data(0, s.stream_id);
    let at = hevc.windows(4).position(|w| w == b"avc1").unwrap();
    hevc[at..at + 4].copy_from_slice(b"hvc1");
    let png = b"\x89PNG\r\n\x1a\n not a thumbnail".to_vec();
    let jpeg = {
        let mut j = vec![
            0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0, 120, 0, 160, 1, 1, 0x11, 0,
        ];
        j.extend([0xFF, 0xDA, 0, 2, 0x12, 0x34, 0xFF, 0xD9]);
        j
    };
    let mut sealer = StreamSealer::new(s.key.clone(), s.attempt_id, s.stream_id);
    for (i, plain) in [
        hevc,
        protocol::encode_payload(b"media 1", &seconds(0, vec![1, 2]), &png),
        protocol::encode_payload(b"media 2", &seconds(2, vec![1, 2]), &jpeg),
    ]
    .iter()
    .enumerate()
    {
        let i = i as u32;
        let frag = Fragment {
            data: plain,
            media_start_us: u64::from(i.saturating_sub(1)) * 2_000_000,
            media_end_us: u64::from(i) * 2_000_000,
            last: i == 2,
        };
        let chunk = sealer.seal(frag).unwrap().1;
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i, chunk)
                .await
                .status(),
            201
        );
    }
    app.platform_post(&format!("attempts/{}/end", c.attempt_id))
        .await;
    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let get = |path: String| {
        app.http
            .get(format!(
                "{}/api/staff/v1/attempts/{}/streams/{}/{path}",
                app.staff, c.attempt_id, s.stream_id
            ))
            .bearer_auth(&reviewer)
            .send()
    };
    assert_eq!(
        error_code(get("fragments/0".into()).await.unwrap()).await,
        (422, "fragment_altered".into())
    );
    // The whole-range stream is cut where its first part is refused: nothing of it sent.
    let sent = get("media".into()).await.unwrap().bytes().await;
    assert!(sent.as_deref().map_or(true, |b| b.is_empty()), "{sent:?}");
    let r = get("fragments/1/thumbnail".into()).await.unwrap();
    assert_eq!(error_code(r).await, (422, "fragment_altered".into()));
    let r = get("fragments/2/thumbnail".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), jpeg.as_slice());
    let trail = app.db().await.audit_trail().await.unwrap();
    let altered: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "fragment_altered")
        .collect();
    assert!(
        altered
            .iter()
            .any(|e| e.detail.contains("codec no agent uses")),
        "{altered:?}"
    );
    assert!(
        altered.iter().any(|e| e.detail.contains("not a JPEG")),
        "{altered:?}"
    );
}

/// #3: media sent after the exam's end (store-and-forward, or made up afterwards with the
/// candidate's own keys) used to look like any other: "ok", no mark. Every stream now says
/// when it reached the server; the report, the timeline and the queue show how late, and
/// past `[review] late_upload_after` the verdict is `late_upload`.
#[tokio::test]
async fn media_received_after_the_end_is_shown_as_such() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 3);
    for i in 0..2 {
        let r = app
            .put_chunk(&c.token, s.stream_id, i, chunks[i as usize].clone())
            .await;
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        app.platform_post(&format!("attempts/{}/end", c.attempt_id))
            .await
            .status(),
        200
    );
    // Two hours after the end, the rest of the stream arrives.
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    for i in 2..4 {
        let r = app
            .put_chunk(&c.token, s.stream_id, i, chunks[i as usize].clone())
            .await;
        assert_eq!(r.status(), 201, "store-and-forward stays allowed");
    }
    let r = operator_report(&app, c.attempt_id).await;
    assert_eq!(r["integrity"], "late_upload", "{r}");
    assert_eq!(r["late_streams"], 1);
    assert_eq!(r["streams"][0]["received_after_end_s"], 7200.0, "{r}");
    assert!(r["streams"][0]["received_until"].as_str().is_some());

    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let get = |path: &str| {
        app.http
            .get(format!("{}/api/staff/v1{path}", app.staff))
            .bearer_auth(&reviewer)
            .send()
    };
    let timeline: serde_json::Value = get(&format!("/attempts/{}/timeline", c.attempt_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timeline["streams"][0]["received_after_end_ms"], 7_200_000);
    // Fragment by fragment: when each reached the server, beside the exam's end.
    let ended = timeline["ended_ms"].as_u64().unwrap();
    let received: Vec<u64> = timeline["streams"][0]["fragments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[3].as_u64().unwrap())
        .collect();
    assert_eq!(received.len(), 3, "{timeline}");
    assert!(received[0] <= ended, "fragment 1 on time");
    assert_eq!(
        received[1] - ended,
        7_200_000,
        "fragments 2 and 3 two hours late"
    );
    assert_eq!(received[2] - ended, 7_200_000);
    let queue: serde_json::Value = get("/queue").await.unwrap().json().await.unwrap();
    assert_eq!(queue[0]["late_streams"], 1, "{queue}");
    assert_eq!(queue[0]["integrity"], "late_upload");

    // On time: nothing to show.
    let (c2, s2) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s2, 1).into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c2.token, s2.stream_id, i as u32, chunk)
                .await
                .status(),
            201
        );
    }
    app.platform_post(&format!("attempts/{}/end", c2.attempt_id))
        .await;
    let r = operator_report(&app, c2.attempt_id).await;
    assert_eq!(r["integrity"], "ok", "{r}");
    assert_eq!(r["streams"][0]["received_after_end_s"], 0.0);
    assert_eq!(r["late_streams"], 0);
}

/// What `attempt show` prints.
async fn operator_report(app: &TestApp, attempt: uuid::Uuid) -> serde_json::Value {
    let state = app.state().await;
    let report = state
        .review
        .report_for_operator(attempt.into())
        .await
        .unwrap();
    serde_json::to_value(report).unwrap()
}

/// #5: wrong launch codes were limited per exact address and per instance: each IPv6
/// address of a /64 was a fresh key, and behind the load balancer everyone shared one. Now
/// they count per network (an IPv4 address, an IPv6 /64) and for everyone, in the shared
/// database, with the client taken from `X-Forwarded-For` only when a trusted proxy says so.
#[tokio::test]
async fn launch_code_guesses_count_per_network_and_for_everyone() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.limits.launch_code_max_failures = 45;
    })
    .await;
    let guess = |from: String| {
        app.http
            .post(format!("{}/api/agent/v1/launch-code", app.public))
            .header("x-forwarded-for", format!("198.51.100.9, {from}"))
            .json(&serde_json::json!({ "code": "ZZZZ-ZZZZ" }))
            .send()
    };
    let per_network = app.settings.limits.login_max_failures_per_address;
    // Every guess from its own address of one /64: the /64 is locked all the same.
    for n in 0..per_network {
        let r = guess(format!("2001:db8:7:1::{n:x}")).await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = guess("2001:db8:7:1:ffff::1".into()).await.unwrap();
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()));
    // Another network (and the address the client itself wrote first) is not.
    assert_eq!(guess("2001:db8:7:2::1".into()).await.unwrap().status(), 404);
    // From many networks, the ceiling for everyone: 45 failures in all.
    let mut answers = Vec::new();
    for n in 0..30u32 {
        answers.push(
            guess(format!("2001:db8:{n:x}:9::1"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(answers.contains(&429), "{answers:?}");
    let real = app.candidate().await;
    let code: serde_json::Value = app
        .platform_json(
            reqwest::Method::POST,
            &format!("attempts/{}/launch-code", real.attempt_id),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .http
        .post(format!("{}/api/agent/v1/launch-code", app.public))
        .header("x-forwarded-for", "203.0.113.5")
        .json(&serde_json::json!({ "code": code["code"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "codes pause for everyone past the ceiling (links still work)"
    );
}

/// The header is believed only from a trusted proxy: a client writing it gains nothing.
#[tokio::test]
async fn a_forwarded_header_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    let per_network = app.settings.limits.login_max_failures_per_address;
    for n in 0..per_network {
        let r = app
            .http
            .post(format!("{}/api/agent/v1/launch-code", app.public))
            .header("x-forwarded-for", format!("2001:db8:{n:x}::1"))
            .json(&serde_json::json!({ "code": "ZZZZ-ZZZZ" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = app
        .http
        .post(format!("{}/api/agent/v1/launch-code", app.public))
        .header("x-forwarded-for", "2001:db8:ffff::1")
        .json(&serde_json::json!({ "code": "ZZZZ-ZZZZ" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "every guess counted against the real peer");
}

/// #4: anonymous requests held the whole listener. Slow launch-code bodies (no token
/// needed) from many networks now hold at most the anonymous budget, one network at most
/// its cap, each for two seconds; uploads and the exam platform's calls go on meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn slow_anonymous_requests_hold_only_their_own_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| {
        s.limits.max_concurrent_requests = 12;
        s.limits.max_unauthenticated_requests = 4;
        s.limits.max_unauthenticated_per_address = 2;
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let (c, s) = app.recording_candidate().await;
    let addr = app.public.trim_start_matches("http://").to_owned();
    // A body announced, three bytes sent, the rest never.
    let stall = |network: &str| {
        let (addr, network) = (addr.clone(), network.to_owned());
        async move {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /api/agent/v1/launch-code HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {network}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"c"
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp
        }
    };
    let answer = |mut tcp: tokio::net::TcpStream| async move {
        let mut out = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut out))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    };
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    for n in 0..16 {
        held.push(stall(&format!("2001:db8:{:x}::1", n / 2)).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The listener's 12 places minus the 4 anonymous ones are the agents' and the
    // platform's: both are served while 16 slow anonymous requests wait.
    let chunks = seal_stream(&s, 1);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.create_sitting("PENDANT-L-ATTAQUE").await.status(), 201);
    // Of the 16, 4 held their place and were cut at the body deadline (408); the others
    // were answered at once (503 past the budget, or 429 past their network's cap).
    let mut statuses = Vec::new();
    for tcp in held {
        let out = answer(tcp).await;
        statuses.push(out.split_whitespace().nth(1).unwrap_or("none").to_owned());
    }
    let count = |code: &str| statuses.iter().filter(|s| *s == code).count();
    assert_eq!(count("408"), 4, "{statuses:?}");
    assert_eq!(count("503") + count("429"), 12, "{statuses:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "cut at 2 s"
    );
    // One network alone: its third request is refused while two wait.
    let mut same = vec![stall("192.0.2.44").await, stall("192.0.2.44").await];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    same.push(stall("192.0.2.44").await);
    let third = answer(same.pop().unwrap()).await;
    assert!(
        third.starts_with("HTTP/1.1 429") && third.contains("too_many_requests"),
        "{third}"
    );
}

/// Fragments stored before ingest took activity out (an earlier version's rows) still
/// draw their strip: each is opened once, its activity held to its duration like any.
#[tokio::test]
async fn fragments_stored_before_still_draw_their_activity() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = with_activity(
        &s,
        &[
            Some(seconds(0, vec![10, 20])),
            Some(seconds(2, vec![30, 40])),
        ],
    );
    for (i, chunk) in chunks.into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i as u32, chunk)
                .await
                .status(),
            201
        );
    }
    app.platform_post(&format!("attempts/{}/end", c.attempt_id))
        .await;
    // As an earlier version stored them: no activity taken out.
    let db = app.data.path().join("proctor.sqlite");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE chunks SET activity = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let strip = strip(&app, &reviewer, c.attempt_id).await;
    let levels = column(&strip, 1);
    assert_eq!(levels, [10, 20, 30, 40], "{strip}");
    assert_eq!(strip["fragments_without"], 0);
}
