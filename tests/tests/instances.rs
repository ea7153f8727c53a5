//! Several stateless instances on one PostgreSQL and one bucket: the real agent's chunks
//! are spread across two servers by a round-robin proxy, one server is SIGKILLed mid-run,
//! and every fragment is stored exactly once and plays.

mod support;

#[path = "../../server/tests/support/garage.rs"]
mod garage;
#[path = "../../server/tests/support/pg.rs"]
mod pg;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A loopback TCP proxy handing each new connection to the next live backend in turn, and
/// closing a connection once it has been quiet for a moment, so that the agent's next
/// upload opens a new one (and lands on the other instance).
struct RoundRobin {
    port: u16,
    served: Arc<[AtomicUsize; 2]>,
}

async fn round_robin(backends: [u16; 2]) -> RoundRobin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counts = served.clone();
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let mut upstream = None;
            for k in 0..2 {
                let i = (next + k) % 2;
                if let Ok(s) = TcpStream::connect(("127.0.0.1", backends[i])).await {
                    counts[i].fetch_add(1, Ordering::SeqCst);
                    upstream = Some(s);
                    next = i + 1;
                    break;
                }
            }
            let Some(upstream) = upstream else { continue };
            tokio::spawn(pipe(client, upstream));
        }
    });
    RoundRobin { port, served }
}

async fn pipe(client: TcpStream, upstream: TcpStream) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let quiet = Duration::from_millis(400);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            match tokio::time::timeout(quiet * 10, cr.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    if uw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut answered = false;
        loop {
            use tokio::io::AsyncReadExt;
            let wait = if answered {
                quiet
            } else {
                Duration::from_secs(60)
            };
            match tokio::time::timeout(wait, ur.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    answered = true;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    };
    tokio::select! { _ = up => {}, _ = down => {} }
}

/// What every instance is given: the shared database and bucket.
fn production_env(cluster: &pg::Cluster, bucket: &garage::Garage) -> Vec<(String, String)> {
    let mut env = bucket.env();
    env.push(("PROCTOR_DATABASE__URL".into(), cluster.url.clone()));
    env.push((
        "PROCTOR_OBJECT_STORE__URL".into(),
        bucket.settings.url.clone().unwrap(),
    ));
    env
}

/// `attempt show` through the command line beside the instance on `data`.
fn attempt_show(
    data: &std::path::Path,
    keys: &std::path::Path,
    attempt: &str,
    env: &[(&str, &str)],
) -> serde_json::Value {
    cli(
        data,
        &[
            "--key-dir",
            keys.to_str().unwrap(),
            "attempt",
            "show",
            attempt,
        ],
        env,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_agent_and_survive_losing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = pg::Cluster::start().await;
    let bucket = garage::Garage::start();
    let env = production_env(&cluster, &bucket);
    let keys = tmp.path().join("keys");
    let key_arg = ["--key-dir", keys.to_str().unwrap()];
    let mut a = Server::start_with_env(&tmp.path().join("a"), 0, &key_arg, &env);
    let b = Server::start_with_env(&tmp.path().join("b"), 0, &key_arg, &env);
    let proxy = round_robin([a.public_port(), b.public_port()]).await;
    let (attempt, token) = enrol(&a).await;

    // HTTPS through the balancer: the data channel would go to one instance's UDP port,
    // around it (a channel lost with its instance falls back to HTTPS; the fault suite
    // covers that).
    let mut cmd = agent(
        &format!("http://127.0.0.1:{}", proxy.port),
        &token,
        "24s",
        &tmp.path().join("spool"),
    );
    cmd.args(["--transport", "https"]);
    let child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = [
        proxy.served[0].load(Ordering::SeqCst),
        proxy.served[1].load(Ordering::SeqCst),
    ];
    assert!(
        before[0] >= 2 && before[1] >= 2,
        "chunks went through both instances: {before:?}"
    );
    a.kill(); // SIGKILL, mid-run
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Every fragment stored exactly once (one row per index), the stream whole.
    let mut cli_env: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cli_env.push(("PROCTOR_LOG", "warn"));
    let report = attempt_show(&tmp.path().join("b"), &keys, &attempt, &cli_env);
    assert_eq!(
        report["fragments_stored"], summary["fragments_sealed"],
        "{report:#}\n{summary:#}"
    );
    assert_eq!(report["integrity"], "ok", "{report:#}");
    assert_eq!(report["streams"][0]["status"], "complete", "{report:#}");
    // And it plays, read back through the surviving instance from the bucket.
    let media = staff_media_env(
        &b,
        &attempt,
        report["streams"][0]["stream_id"].as_str().unwrap(),
        &cli_env,
    )
    .await;
    let decoded = media::decode(&media).expect("decodes");
    assert!(decoded.video_seconds >= 22.0, "{decoded:?}");
}

/// Issue 22: both instances pack the stream the real agent finished, at the same moment:
/// one set of packs stays in the bucket, the loose objects go, and the recording reads
/// back byte for byte the same, through either instance.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_pack_a_finished_recording_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = pg::Cluster::start().await;
    let bucket = garage::Garage::start();
    let mut env = production_env(&cluster, &bucket);
    // Packed 20 s after the end (time to read it loose first), every second, the loose
    // objects deleted at the next pass.
    for (k, v) in [
        ("ENABLED", "true"),
        ("AFTER", "20s"),
        ("INTERVAL", "1s"),
        ("LOOSE_GRACE", "0s"),
    ] {
        env.push((format!("PROCTOR_PACKING__{k}"), v.into()));
    }
    let keys = tmp.path().join("keys");
    let key_arg = ["--key-dir", keys.to_str().unwrap()];
    let a = Server::start_with_env(&tmp.path().join("a"), 0, &key_arg, &env);
    let b = Server::start_with_env(&tmp.path().join("b"), 0, &key_arg, &env);
    let (attempt, token) = enrol(&a).await;
    let mut cmd = agent(&a.public, &token, "10s", &tmp.path().join("spool"));
    cmd.args(["--transport", "https"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sealed = summary["fragments_sealed"].as_u64().unwrap() as usize;

    let mut cli_env: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cli_env.push(("PROCTOR_LOG", "warn"));
    let report = attempt_show(&tmp.path().join("b"), &keys, &attempt, &cli_env);
    let stream = report["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let loose = staff_media_env(&b, &attempt, &stream, &cli_env).await;
    let blobs = server::blobs::BlobStore::open(&bucket.settings, tmp.path()).unwrap();
    let id = uuid::Uuid::parse_str(&attempt).unwrap().into();
    assert_eq!(blobs.count_attempt_objects(id).await.unwrap(), sealed);

    let mut left = sealed;
    for _ in 0..120 {
        left = blobs.count_attempt_objects(id).await.unwrap();
        if left <= sealed / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        (1..=sealed / 2).contains(&left),
        "{sealed} loose objects became a few packs: {left}"
    );
    assert_eq!(
        staff_media_env(&a, &attempt, &stream, &cli_env).await,
        loose
    );
    assert_eq!(
        staff_media_env(&b, &attempt, &stream, &cli_env).await,
        loose
    );
    let decoded = media::decode(&loose).expect("decodes");
    assert!(decoded.video_seconds >= 8.0, "{decoded:?}");
}
