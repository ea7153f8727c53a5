//! The attack suite against the real server binary on loopback: during each attack a
//! well-behaved agent records the test source and must keep every fragment, and the
//! server's peak RSS must stay under `PEAK_RSS_BOUND_MIB`. Figures: `scripts/attack-report`
//! (the newer scenarios run a quarter of their workers in the test suite: `workers`).

mod support;

use bytes::Bytes;
use protocol::Fragment;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::attack::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread")]
async fn baseline_without_attack() {
    scenario("baseline", |_t: Arc<Target>| async {}).await;
}

/// 500 connections sending their headers one byte a second.
#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_500_connections() {
    scenario("slow_loris_500", |t: Arc<Target>| async move {
        let addr = t.public.trim_start_matches("http://").to_owned();
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let (t, addr) = (t.clone(), addr.clone());
                tokio::spawn(async move {
                    let header = format!("PUT /api/agent/v1/streams/x/chunks/{i} HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n", "a".repeat(200));
                    while t.running() {
                        let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        };
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        for b in header.bytes() {
                            if !t.running() || conn.write_all(&[b]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
    })
    .await;
}

/// 200 concurrent 8 MiB bodies, from 50 candidates (4 each: the per-attempt cap), so that
/// the global ingest memory budget is what holds.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_8_mib_bodies() {
    scenario("bodies_200x8MiB", |t: Arc<Target>| async move {
        let mut attackers = Vec::new();
        for _ in 0..50 {
            attackers.push(Arc::new(attacker(&t.public, &t.http).await));
        }
        let body = Bytes::from(vec![0x5au8; 8 * 1024 * 1024 - 1024]);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (t, a, body) = (t.clone(), attackers[i % 50].clone(), body.clone());
                tokio::spawn(async move {
                    while t.running() {
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let r = t
                            .http
                            .put(format!(
                                "{}/api/agent/v1/streams/{}/chunks/1",
                                t.public, a.stream
                            ))
                            .bearer_auth(&a.token)
                            .body(body.clone())
                            .send()
                            .await;
                        if r.is_ok() {
                            t.answered.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
    })
    .await;
}

/// A valid chunk sealed at index 2³²−2 by a candidate holding the stream key, sent again
/// and again; the report of that attempt must stay small and fast.
#[tokio::test(flavor = "multi_thread")]
async fn chunk_bomb_at_index_2_pow_32_minus_2() {
    scenario("chunk_bomb", |t: Arc<Target>| async move {
        let a = attacker(&t.public, &t.http).await;
        let index = u32::MAX - 1;
        let bomb = protocol::seal_chunk(
            &a.key,
            a.attempt,
            a.stream,
            index,
            [7; 32],
            Fragment {
                data: b"boom",
                media_start_us: 0,
                media_end_us: 2_000_000,
                last: true,
            },
        );
        while t.running() {
            t.sent.fetch_add(1, Ordering::Relaxed);
            let r = t
                .http
                .put(format!(
                    "{}/api/agent/v1/streams/{}/chunks/{index}",
                    t.public, a.stream
                ))
                .bearer_auth(&a.token)
                .body(bomb.clone())
                .send()
                .await;
            if let Ok(r) = r {
                assert_eq!(r.status(), 422, "the bomb must be refused");
                t.answered.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// 1,000 wrong staff logins (many logins, one address), 20 at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_wrong_logins() {
    scenario("wrong_logins_1000", |t: Arc<Target>| async move {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (t, next) = (t.clone(), next.clone());
                tokio::spawn(async move {
                    while t.running() {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= 1000 {
                            break;
                        }
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let body = serde_json::json!({ "login": format!("guess-{}", n % 37), "password": format!("Wrong-{n}!") });
                        if let Ok(r) = t.http.post(format!("{}/api/staff/v1/login", t.staff)).json(&body).send().await {
                            assert!(matches!(r.status().as_u16(), 401 | 429 | 503), "{}", r.status());
                            t.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
    })
    .await;
}

/// One candidate's token opening streams as fast as it can.
#[tokio::test(flavor = "multi_thread")]
async fn stream_open_flood_from_one_token() {
    scenario("stream_open_flood", |t: Arc<Target>| async move {
        let a = Arc::new(attacker(&t.public, &t.http).await);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (t, a) = (t.clone(), a.clone());
                tokio::spawn(async move {
                    while t.running() {
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let body = serde_json::json!({ "agent_version": "flood", "os": "linux" });
                        if let Ok(r) = t
                            .http
                            .post(format!("{}/api/agent/v1/streams", t.public))
                            .bearer_auth(&a.token)
                            .json(&body)
                            .send()
                            .await
                        {
                            assert!(
                                matches!(r.status().as_u16(), 201 | 429 | 503),
                                "{}",
                                r.status()
                            );
                            t.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
    })
    .await;
}

/// Issue 20 #1, the activity bomb: a candidate's fragments each carry as much activity as
/// an 8 MiB chunk holds (a million seconds of it in a 2-second fragment), then a
/// reviewer opens that attempt's strip again and again while the agent records.
#[tokio::test(flavor = "multi_thread")]
async fn activity_bomb_opened_again_and_again() {
    scenario("activity_bomb", |t: Arc<Target>| async move {
        let a = attacker(&t.public, &t.http).await;
        let mut sealer = protocol::StreamSealer::new(a.key.clone(), a.attempt, a.stream);
        let bomb = protocol::Activity {
            first_s: 0,
            motion: vec![100; 1_000_000],
            audio: vec![100; 1_000_000],
        };
        let media = vec![0u8; 1024];
        for i in 0..=8u32 {
            let plain = if i == 0 {
                b"init".to_vec()
            } else {
                protocol::encode_payload(&media, &bomb, b"")
            };
            let (_, chunk) = sealer
                .seal(Fragment {
                    data: &plain,
                    media_start_us: u64::from(i.saturating_sub(1)) * 2_000_000,
                    media_end_us: u64::from(i) * 2_000_000,
                    last: i == 8,
                })
                .unwrap();
            t.sent.fetch_add(1, Ordering::Relaxed);
            let r = t
                .http
                .put(format!(
                    "{}/api/agent/v1/streams/{}/chunks/{i}",
                    t.public, a.stream
                ))
                .bearer_auth(&a.token)
                .body(chunk)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "the media is kept");
            t.answered.fetch_add(1, Ordering::Relaxed);
        }
        let reviewer = reviewer_session(&t, &a.attempt.to_string()).await;
        while t.running() {
            pace().await;
            t.sent.fetch_add(1, Ordering::Relaxed);
            let r = t
                .http
                .get(format!(
                    "{}/api/staff/v1/attempts/{}/activity",
                    t.staff, a.attempt
                ))
                .bearer_auth(&reviewer)
                .send()
                .await;
            if let Ok(r) = r {
                assert_eq!(r.status(), 200);
                let strip: serde_json::Value = r.json().await.unwrap();
                // Fragments 1 to 7 (the 8th is the stream's final one, never in the strip).
                assert_eq!(
                    strip["fragments_without"], 7,
                    "every bomb dropped at ingest"
                );
                t.answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
}

/// Ends the attacker's attempt and gives a reviewer assigned to it a session.
async fn reviewer_session(t: &Target, attempt: &str) -> String {
    let ended = t
        .http
        .post(format!(
            "{}/api/integration/v1/attempts/{attempt}/end",
            t.public
        ))
        .bearer_auth(support::PLATFORM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let report = support::cli(&t.data, &["attempt", "show", attempt], &[]);
    let sitting = report["sitting_id"].as_str().unwrap().to_owned();
    support::cli(
        &t.data,
        &[
            "staff",
            "add",
            "--role",
            "reviewer",
            "--login",
            "relectrice",
        ],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    support::cli(
        &t.data,
        &["assign", "--sitting", &sitting, "--login", "relectrice"],
        &[],
    );
    support::staff_session(&t.staff, "relectrice", "Kilo-Tango-2026!").await
}

/// Issue 20 #2, the audit flood: a candidate re-seals its stream's first chunk with other
/// bytes, eight at a time, as fast as the server answers; each is a conflict.
#[tokio::test(flavor = "multi_thread")]
async fn audit_flood_of_conflicting_chunks() {
    let before_after = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let counts = before_after.clone();
    scenario("audit_flood", |t: Arc<Target>| async move {
        let a = Arc::new(attacker(&t.public, &t.http).await);
        let first = protocol::seal_chunk(
            &a.key,
            a.attempt,
            a.stream,
            0,
            [0; 32],
            Fragment {
                data: b"init",
                media_start_us: 0,
                media_end_us: 0,
                last: false,
            },
        );
        let put = |body: Vec<u8>| {
            t.http
                .put(format!(
                    "{}/api/agent/v1/streams/{}/chunks/0",
                    t.public, a.stream
                ))
                .bearer_auth(&a.token)
                .body(body)
                .send()
        };
        assert_eq!(put(first).await.unwrap().status(), 201);
        // The trail's entries about conflicts, read with `audit list`.
        let conflicts = || {
            let out = std::process::Command::new(support::bin("proctor-server"))
                .arg("--data-dir")
                .arg(&t.data)
                .args(["audit", "list"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("chunk_conflict"))
                .count() as u64
        };
        let before = conflicts();
        let tasks: Vec<_> = (0..workers(8))
            .map(|k| {
                let (t, a) = (t.clone(), a.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while t.running() {
                        pace().await;
                        n += 1;
                        let other = protocol::seal_chunk(
                            &a.key,
                            a.attempt,
                            a.stream,
                            0,
                            [0; 32],
                            Fragment {
                                data: format!("another init {k}-{n}").as_bytes(),
                                media_start_us: 0,
                                media_end_us: 0,
                                last: false,
                            },
                        );
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let r = t
                            .http
                            .put(format!(
                                "{}/api/agent/v1/streams/{}/chunks/0",
                                t.public, a.stream
                            ))
                            .bearer_auth(&a.token)
                            .body(other)
                            .send()
                            .await;
                        if let Ok(r) = r {
                            assert!(
                                matches!(r.status().as_u16(), 409 | 429 | 503),
                                "{}",
                                r.status()
                            );
                            t.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for done in futures::future::join_all(tasks).await {
            done.unwrap();
        }
        *counts.lock().unwrap() = (before, conflicts());
    })
    .await;
    let (before, after) = *before_after.lock().unwrap();
    assert_eq!(
        (before, after),
        (0, 1),
        "conflicts audited once (an incident per ten minutes), not each"
    );
}

/// Issue 20 #4: 100 new anonymous requests a second (launch codes whose bodies never
/// finish), held open, while the agent uploads.
#[tokio::test(flavor = "multi_thread")]
async fn slow_anonymous_bodies_at_100_per_second() {
    scenario("slow_bodies_100_per_s", |t: Arc<Target>| async move {
        let addr = t.public.trim_start_matches("http://").to_owned();
        let mut held = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / workers(100)));
        while t.running() {
            tick.tick().await;
            let (t2, addr) = (t.clone(), addr.clone());
            held.push(tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                t2.sent.fetch_add(1, Ordering::Relaxed);
                let head = "POST /api/agent/v1/launch-code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"c";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 512];
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await {
                    if n > 0 {
                        t2.answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for h in held {
            let _ = h.await;
        }
    })
    .await;
}

/// Issue 20 #5: launch-code guesses from thousands of IPv6 addresses in hundreds of /64s,
/// behind a trusted load balancer (the client in `X-Forwarded-For`).
#[tokio::test(flavor = "multi_thread")]
async fn launch_code_guessing_from_many_ipv6_addresses() {
    let config = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n";
    scenario_with("code_guessing_ipv6", config, |t: Arc<Target>| async move {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let found = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks: Vec<_> = (0..workers(16))
            .map(|_| {
                let (t, next, found) = (t.clone(), next.clone(), found.clone());
                tokio::spawn(async move {
                    while t.running() {
                        pace().await;
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let from = format!("2001:db8:{:x}:{:x}::{:x}", n % 300, n % 7, n);
                        t.sent.fetch_add(1, Ordering::Relaxed);
                        let r = t
                            .http
                            .post(format!("{}/api/agent/v1/launch-code", t.public))
                            .header("x-forwarded-for", from)
                            .json(&serde_json::json!({ "code": format!("{:08}", n % 100_000_000) }))
                            .send()
                            .await;
                        if let Ok(r) = r {
                            match r.status().as_u16() {
                                404 => {}
                                400 | 429 | 503 => {}
                                200 => {
                                    found.fetch_add(1, Ordering::Relaxed);
                                }
                                other => panic!("{other}"),
                            }
                            t.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for done in futures::future::join_all(tasks).await {
            done.unwrap();
        }
        assert_eq!(found.load(Ordering::Relaxed), 0, "no code guessed");
    })
    .await;
}
