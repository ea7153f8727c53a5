//! Deletion you can prove, on the real binaries: the shredding proof on a real recording,
//! a SIGKILL at each step of a destruction followed by a restart that finishes it, and a
//! database backup restored after its key epoch was destroyed (SQLite and PostgreSQL).

mod support;

#[path = "../../server/tests/support/pg.rs"]
mod pg;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use uuid::Uuid;

/// The attempt's data key and its streams' keys, read and unwrapped before destruction:
/// what the scan looks for afterwards.
struct Secrets {
    wrapped_dek: Vec<u8>,
    dek: Vec<u8>,
    stream_keys: Vec<Vec<u8>>,
}

fn secrets(data: &Path, attempt: server::db::AttemptId) -> Secrets {
    let db = rusqlite::Connection::open_with_flags(
        data.join("proctor.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (epoch, wrapped_dek): (String, Vec<u8>) = db
        .query_row(
            "SELECT kek_epoch, wrapped_dek FROM attempts WHERE id = ?1",
            [attempt.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let keys = server::keys::KeyStore::open(&data.join("keys")).unwrap();
    let dek = keys
        .unwrap(
            &server::keys::WrappedKey {
                epoch,
                blob: wrapped_dek.clone(),
            },
            &attempt,
        )
        .unwrap();
    let mut stmt = db
        .prepare("SELECT id, salt, opening FROM streams WHERE attempt_id = ?1")
        .unwrap();
    let stream_keys = stmt
        .query_map([attempt.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })
        .unwrap()
        .map(|r| {
            let (id, salt, opening) = r.unwrap();
            let keying = match opening {
                Some(o) => server::db::StreamKeying::Opening(o),
                None => server::db::StreamKeying::Derived {
                    salt: salt.try_into().unwrap(),
                },
            };
            let stream = server::db::Stream {
                id: id.parse().unwrap(),
                attempt_id: attempt,
                keying,
                opened_at_ms: 0,
                ended_at_ms: None,
                final_index: None,
            };
            server::keys::stream_key(&dek, &attempt, &stream)
                .unwrap()
                .to_bytes()
                .to_vec()
        })
        .collect();
    Secrets {
        wrapped_dek,
        dek: dek.expose().to_vec(),
        stream_keys,
    }
}

/// Every file under `dirs` that holds `needle`.
fn hits(needle: &[u8], dirs: &[&Path]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| files_under(d))
        .filter(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}

async fn ended_recording(server: &Server, spool: &Path, duration: &str) -> (Uuid, String) {
    let (attempt, token) = enrol(server).await;
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, duration, spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.cli(&["attempt", "end", &attempt]);
    let sitting = server.cli(&["attempt", "show", &attempt])["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (attempt.parse().unwrap(), sitting)
}

async fn reviewer_token(server: &Server, sitting: &str) -> String {
    let login = format!("rev-{}", &Uuid::new_v4().to_string()[..8]);
    cli(
        &server.data,
        &["staff", "add", "--role", "reviewer", "--login", &login],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    server.cli(&["assign", "--sitting", sitting, "--login", &login]);
    staff_session(&server.staff, &login, "Kilo-Tango-2026!").await
}

fn verify_receipt_offline(server: &Server, receipt: &serde_json::Value, dir: &Path) {
    let file = dir.join(format!("receipt-{}.json", Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(receipt).unwrap()).unwrap();
    let key = server.cli(&["receipt", "public-key"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let checked = cli(
        Path::new("/nonexistent"),
        &[
            "receipt",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            &key,
        ],
        &[],
    );
    assert_eq!(checked["valid"], true, "{checked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shredding_proof_on_a_real_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    let server = Server::start(&data, 0);
    let (attempt, sitting) = ended_recording(&server, &spool, "8s").await;
    let report = server.cli(&["attempt", "show", &attempt.to_string()]);
    let stream = report["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let media = staff_media(&server, &attempt.to_string(), &stream).await;
    assert!(media::decode(&media).is_ok(), "a real recording");
    let s = secrets(&data, attempt.into());
    assert!(
        !hits(&s.wrapped_dek, &[&data]).is_empty(),
        "the scan finds the wrapped key while it exists"
    );
    let reviewer = reviewer_token(&server, &sitting).await;
    // The reviewer flags something, with a note about the candidate.
    let note = "regarde longuement vers la droite";
    let r = reqwest::Client::new()
        .post(format!("{}/api/staff/v1/attempts/{attempt}/flags", server.staff))
        .bearer_auth(&reviewer)
        .json(&serde_json::json!({ "start_ms": 1_000, "end_ms": 3_000, "category": "other", "severity": "low", "note": note }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The jury validates the PV without reservation (the review was never submitted).
    let decided = server.cli(&[
        "pv",
        "decide",
        "--sitting",
        &sitting,
        "--outcome",
        "validated",
        "--override-unsubmitted",
    ]);
    assert_eq!(
        decided["receipts"].as_array().unwrap().len(),
        1,
        "{decided}"
    );

    // Zero hits: the data key, the stream keys, the wrapped key, the candidate's address
    // in clear, the reviewer's note, the media, in the database and its WAL, the blobs, the key directory and
    // the agent's spool.
    let dirs = [data.as_path(), spool.as_path()];
    assert!(
        files_under(&data)
            .iter()
            .any(|f| f.ends_with("proctor.sqlite")),
        "the database file is scanned"
    );
    for (what, needle) in [("data key", &s.dek), ("wrapped data key", &s.wrapped_dek)]
        .into_iter()
        .chain(s.stream_keys.iter().map(|k| ("stream key", k)))
    {
        assert_eq!(
            hits(needle, &dirs),
            Vec::<PathBuf>::new(),
            "{what} found after destruction"
        );
    }
    assert_eq!(
        hits(b"127.0.0.1", &dirs),
        Vec::<PathBuf>::new(),
        "the candidate's address in clear"
    );
    assert_eq!(
        hits(note.as_bytes(), &dirs),
        Vec::<PathBuf>::new(),
        "the reviewer's note"
    );
    assert_no_plaintext(&media, &dirs);
    assert!(
        files_under(&data.join("blobs")).is_empty(),
        "every blob deleted"
    );

    // Every read answers 410; the report says destroyed, with a receipt anyone can check.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/staff/v1/attempts/{attempt}/streams/{stream}/fragments/1",
            server.staff
        ))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let after = server.cli(&["attempt", "show", &attempt.to_string()]);
    assert_eq!(after["state"], "destroyed", "{after:#}");
    assert_eq!(
        after["retention"]["receipt"]["receipt"]["reason"], "pv_validated",
        "{after:#}"
    );
    verify_receipt_offline(&server, &after["retention"]["receipt"], tmp.path());
}

/// Kills the server with SIGKILL at `step` of a PV validation's destruction, restarts it,
/// and shows the restart finishes: destroyed, receipted, no blob left.
async fn crash_at(step: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool) = (tmp.path().join("data"), tmp.path().join("spool"));
    // One file per chunk: a kill half-way through the blobs' deletion needs several of
    // them, which a short recording's stream file is not.
    let mut server = Server::start_with_env(
        &data,
        0,
        &[],
        &[
            ("PROCTOR_CRASH_AT".into(), step.into()),
            (
                "PROCTOR_OBJECT_STORE__LOCAL_FILES".into(),
                "per_chunk".into(),
            ),
        ],
    );
    let port = server.public_port();
    let (attempt, sitting) = ended_recording(&server, &spool, "4s").await;
    let blobs = files_under(&data.join("blobs")).len();
    assert!(blobs >= 2);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/integration/v1/sittings/{sitting}/pv",
            server.public
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .json(&serde_json::json!({ "outcome": "validated", "override_unsubmitted": true }))
        .send()
        .await;
    // Killed before the answer, or (blob deletion) just after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: the server was not killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{step}");
    let show = || cli(&data, &["attempt", "show", &attempt.to_string()], &[]);
    match step {
        "after-pv-recorded" => assert!(
            r.is_err() && show()["state"] == "decided",
            "{step}: decided, key not yet destroyed"
        ),
        "after-key-delete" => {
            assert!(r.is_err(), "{step}");
            assert_eq!(
                show()["state"],
                "destroyed",
                "{step}: the key is gone before the answer"
            );
            assert_eq!(
                files_under(&data.join("blobs")).len(),
                blobs,
                "{step}: the blobs are still there"
            );
        }
        _ => {
            // The worker is woken once the keys are destroyed and the answer is being
            // written: on a loaded machine it can reach the blobs (and the kill) before the
            // answer's bytes leave. Either way the decision was durable before the kill.
            match r {
                Ok(r) => assert_eq!(r.status(), 201, "{step}: the answer came"),
                Err(e) => assert!(e.is_request(), "{step}: {e}"),
            }
            assert_eq!(
                show()["state"],
                "destroyed",
                "{step}: the keys went before the blobs"
            );
            let left = files_under(&data.join("blobs")).len();
            assert!(
                left > 0 && left < blobs,
                "{step}: killed half-way ({left} of {blobs} left)"
            );
        }
    }

    // The restart finishes the job at start-up.
    server = Server::start(&data, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = show();
        if report["retention"]["blobs_purged"] == true {
            assert_eq!(report["state"], "destroyed");
            verify_receipt_offline(&server, &report["retention"]["receipt"], tmp.path());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: the restart did not finish: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        files_under(&data.join("blobs")).is_empty(),
        "{step}: a blob is left"
    );
    assert_eq!(
        server.cli(&["audit", "verify"])["chain"],
        "intact",
        "{step}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_the_pv_is_recorded_then_restart() {
    crash_at("after-pv-recorded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_the_key_delete_then_restart() {
    crash_at("after-key-delete").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_blob_deletion_then_restart() {
    crash_at("during-blob-deletion").await;
}

/// The command, expected to fail: its stderr.
fn cli_fails(data: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "proctor-server {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A backup taken before an attempt's destruction is restored after its day's KEK was
/// destroyed (measured against the time the receipt states): the attempt is destroyed again
/// from its tombstone, with the same receipt, and its key could not be unwrapped anyway. `restore` puts the backup back and returns the flags that name it.
fn backup_restore(
    data: &Path,
    flags: &[&str],
    backup: impl FnOnce(),
    restore: impl FnOnce() -> Vec<String>,
) {
    let at = |now: &str, rest: &[&str]| {
        cli(
            data,
            &[flags, &["--now", now], rest].concat(),
            &[CLOCK_OVERRIDE],
        )
    };
    let sitting = at(
        "2027-01-10T09:00:00Z",
        &["sitting", "create", "--ref", "S-BACKUP"],
    )["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempt = at(
        "2027-01-10T09:00:00Z",
        &["candidate", "add", "--sitting", &sitting, "--ref", "C-1"],
    )["attempt_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = data.join("keys");
    assert!(keys.join("kek-2027-01-10.key").exists());
    backup();
    // Erased the day it was created. Its day's KEK stays through the next day (a margin for
    // late clocks) and goes at the first sweep of the day after: what the receipt states.
    let erased = at(
        "2027-01-10T10:00:00Z",
        &[
            "attempt",
            "erase",
            &attempt,
            "--reason",
            "demande du candidat",
        ],
    );
    assert_eq!(
        erased["receipt"]["receipt"]["backups_unreadable_by"], "2027-01-12T00:05:00Z",
        "the next day's end plus one sweep interval: {erased}"
    );
    assert_eq!(
        at("2027-01-11T23:59:59Z", &["retention", "run"])["epochs_destroyed"],
        serde_json::json!([])
    );
    assert!(keys.join("kek-2027-01-10.key").exists());
    let swept = at("2027-01-12T00:00:01Z", &["retention", "run"]);
    assert_eq!(
        swept["epochs_destroyed"],
        serde_json::json!(["2027-01-10"]),
        "{swept}"
    );
    assert!(!keys.join("kek-2027-01-10.key").exists());
    let restored_flags = restore();
    let flags: Vec<&str> = restored_flags.iter().map(String::as_str).collect();
    let at = |now: &str, rest: &[&str]| {
        cli(
            data,
            &[&flags[..], &["--now", now], rest].concat(),
            &[CLOCK_OVERRIDE],
        )
    };
    // The backup predates the destruction, but the tombstone beside the keys does not: the
    // first command on the restored database destroys the attempt again, with the same
    // receipt (never a second one), and says so in the audit.
    let restored = at("2027-01-12T00:00:02Z", &["attempt", "show", &attempt]);
    assert_eq!(restored["state"], "destroyed", "{restored}");
    assert_eq!(
        restored["retention"]["receipt"], erased["receipt"],
        "the same receipt: {restored}"
    );
    let trail = at(
        "2027-01-12T00:00:02Z",
        &["attempt", "access-report", &attempt],
    );
    assert!(
        trail.to_string().contains("destruction_reapplied"),
        "{trail}"
    );
    // The receipt log beside the keys is whole: the restore added no second receipt.
    let log = at("2027-01-12T00:00:02Z", &["receipt", "log"]);
    assert_eq!(
        (&log["whole"], &log["receipts"]),
        (&serde_json::json!(true), &serde_json::json!(1)),
        "{log}"
    );
    let out = data.join("export.age");
    let err = cli_fails(
        data,
        &[
            &flags[..],
            &[
                "--now",
                "2027-01-12T00:00:02Z",
                "attempt",
                "export",
                &attempt,
                "--recipient",
                "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg",
                "--out",
                out.to_str().unwrap(),
            ],
        ]
        .concat(),
        &[CLOCK_OVERRIDE],
    );
    assert!(
        err.contains("destroyed"),
        "the restored key cannot be unwrapped: {err}"
    );
    assert!(
        std::fs::read(&out).map(|b| b.len() < 200).unwrap_or(true),
        "nothing of the recording was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_sqlite_backup_cannot_unwrap_a_shredded_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (db, copy) = (
        data.join("proctor.sqlite"),
        tmp.path().join("backup.sqlite"),
    );
    backup_restore(
        &data,
        &[],
        || {
            // A consistent online copy of the live file.
            rusqlite::Connection::open(&db)
                .unwrap()
                .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
                .unwrap();
        },
        || {
            for ext in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
            }
            std::fs::copy(&copy, &db).unwrap();
            Vec::new()
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_postgres_backup_cannot_unwrap_a_shredded_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cluster = pg::Cluster::start().await;
    let dump = tmp.path().join("backup.sql");
    let tool = |name: &str| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.exists())
            .collect();
        dirs.sort();
        dirs.pop().unwrap()
    };
    let url = cluster.url.clone();
    let restored = format!("{}_restored", url);
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE DATABASE postgres_restored")
        .execute(&admin)
        .await
        .unwrap();
    let live = url.clone();
    backup_restore(
        &data,
        &["--database-url", &live],
        || {
            let out = Command::new(tool("pg_dump"))
                .args(["-d", &url, "-f", dump.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
        || {
            // Restored into a database of its own, which the live one's URL then names.
            let out = Command::new(tool("psql"))
                .args([
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &restored,
                    "-f",
                    dump.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "psql: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            vec!["--database-url".into(), restored.clone()]
        },
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Issue 19 (#2): the database and the blobs are backed up (not the key directory, as the
/// deployment guide says), the PV is validated, then both are restored and the server
/// started again: the attempt is destroyed again before any byte of it can be read, with
/// the receipt it already had, and its restored blobs go.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_after_a_validated_pv_does_not_bring_the_recording_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool, backup) = (
        tmp.path().join("data"),
        tmp.path().join("spool"),
        tmp.path().join("backup"),
    );
    let mut server = Server::start(&data, 0);
    let (attempt, sitting) = ended_recording(&server, &spool, "4s").await;
    let stream = server.cli(&["attempt", "show", &attempt.to_string()])["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reviewer = reviewer_token(&server, &sitting).await;
    let fragment = |server: &Server| {
        reqwest::Client::new()
            .get(format!(
                "{}/api/staff/v1/attempts/{attempt}/streams/{stream}/fragments/1",
                server.staff
            ))
            .bearer_auth(&reviewer)
            .send()
    };
    assert_eq!(fragment(&server).await.unwrap().status(), 200);
    // The backup: the database and the blobs, taken with the server stopped.
    server.kill();
    std::fs::create_dir_all(&backup).unwrap();
    for f in ["proctor.sqlite", "proctor.sqlite-wal", "proctor.sqlite-shm"] {
        if data.join(f).exists() {
            std::fs::copy(data.join(f), backup.join(f)).unwrap();
        }
    }
    copy_tree(&data.join("blobs"), &backup.join("blobs"));
    let backed_up_blobs = files_under(&backup.join("blobs")).len();
    assert!(backed_up_blobs > 0);

    let mut server = Server::start(&data, 0);
    let decided = server.cli(&[
        "pv",
        "decide",
        "--sitting",
        &sitting,
        "--outcome",
        "validated",
        "--override-unsubmitted",
    ]);
    let receipt = decided["receipts"][0].clone();
    assert_eq!(receipt["receipt"]["reason"], "pv_validated", "{decided}");
    server.kill();

    // The restore: both put back as they were.
    for f in ["proctor.sqlite", "proctor.sqlite-wal", "proctor.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
        if backup.join(f).exists() {
            std::fs::copy(backup.join(f), data.join(f)).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(data.join("blobs"));
    copy_tree(&backup.join("blobs"), &data.join("blobs"));
    assert_eq!(files_under(&data.join("blobs")).len(), backed_up_blobs);

    let server = Server::start(&data, 0);
    // The first request already finds it destroyed.
    assert_eq!(fragment(&server).await.unwrap().status(), 410);
    let shown = server.cli(&["attempt", "show", &attempt.to_string()]);
    assert_eq!(shown["state"], "destroyed", "{shown:#}");
    assert_eq!(
        shown["retention"]["receipt"], receipt,
        "the same receipt, not a second one"
    );
    let report = server.cli(&["attempt", "access-report", &attempt.to_string()]);
    assert!(
        report.to_string().contains("destruction_reapplied"),
        "{report}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files_under(&data.join("blobs")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restored blobs were never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
