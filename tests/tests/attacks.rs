//! The attack suite against the real server binary on loopback: during each attack a
//! well-behaved agent records the test source and must keep every fragment, and the
//! server's peak RSS must stay under `PEAK_RSS_BOUND_MIB`. Figures: `scripts/attack-report`.

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
