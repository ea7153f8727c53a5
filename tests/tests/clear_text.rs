//! Issue 19 (#8): after a destruction, nothing in the database, the audit trail or the logs
//! ties a person to what was found. A recording is made under a distinctive reference,
//! reviewed with a flag and a note, held with a reason, exported, erased with a reason;
//! then the database files, the audit trail and the server's debug log are searched for
//! every one of those texts.

mod support;

use std::path::Path;
use support::*;
use uuid::Uuid;

const REFERENCE: &str = "DUPONT-Jeanne-4242";
const NOTE: &str = "Mme Dupont consulte son telephone";
const HOLD: &str = "enquete Dupont 2027-17";
const ERASURE: &str = "demande de Jeanne Dupont";
const RECIPIENT: &str = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg";

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Every file of the database (main file, WAL), byte for byte.
fn database_bytes(data: &Path) -> Vec<u8> {
    files_under(data)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("proctor.sqlite")
        })
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_ties_a_person_to_what_was_found_after_destruction() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, spool, log) = (
        tmp.path().join("data"),
        tmp.path().join("spool"),
        tmp.path().join("server.log"),
    );
    let server = Server::start_logging(&data, &log);
    let s = post_platform(
        format!("{}/api/integration/v1/sittings", server.public),
        serde_json::json!({ "ref": format!("S-{}", Uuid::new_v4()) }),
    )
    .await;
    let sitting = s["sitting_id"].as_str().unwrap().to_owned();
    let c = post_platform(
        format!(
            "{}/api/integration/v1/sittings/{sitting}/candidates",
            server.public
        ),
        serde_json::json!({ "ref": REFERENCE }),
    )
    .await;
    let (attempt, token) = (
        c["attempt_id"].as_str().unwrap().to_owned(),
        c["launch_token"].as_str().unwrap().to_owned(),
    );
    let out = tokio::task::spawn_blocking({
        let cmd = agent(&server.public, &token, "3s", &spool);
        move || { cmd }.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.cli(&["attempt", "end", &attempt]);
    // While the recording lives, the reference reads back (sealed at rest, not lost).
    assert_eq!(
        server.cli(&["attempt", "show", &attempt])["reference"],
        REFERENCE
    );
    assert!(
        !holds(&database_bytes(&data), REFERENCE),
        "the reference is never in clear in the database"
    );

    // A reviewer flags what they saw, with a note, and submits.
    let login = format!("rev-{}", &Uuid::new_v4().to_string()[..8]);
    cli(
        &data,
        &["staff", "add", "--role", "reviewer", "--login", &login],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    server.cli(&["assign", "--sitting", &sitting, "--login", &login]);
    let reviewer = staff_session(&server.staff, &login, "Kilo-Tango-2026!").await;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/staff/v1/attempts/{attempt}{p}", server.staff);
    let review = http
        .get(api("/review"))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(review.status(), 200);
    let flag = http
        .post(api("/flags"))
        .bearer_auth(&reviewer)
        .json(&serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "phone_or_device", "severity": "high", "note": NOTE }))
        .send()
        .await
        .unwrap();
    assert_eq!(flag.status(), 201, "{}", flag.text().await.unwrap());
    let submitted = http
        .post(api("/review/submit"))
        .bearer_auth(&reviewer)
        .json(&serde_json::json!({ "outcome": "irregularities" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        submitted.status(),
        200,
        "{}",
        submitted.text().await.unwrap()
    );

    // The DPO holds it, lifts the hold, exports it for the candidate, and erases it.
    server.cli(&["attempt", "hold", &attempt, "--reason", HOLD]);
    server.cli(&["attempt", "release", &attempt]);
    let export = tmp.path().join(format!("{REFERENCE}.age"));
    server.cli(&[
        "attempt",
        "export",
        &attempt,
        "--recipient",
        RECIPIENT,
        "--out",
        export.to_str().unwrap(),
    ]);
    let erased = server.cli(&["attempt", "erase", &attempt, "--reason", ERASURE]);
    assert_eq!(erased["destroyed"], true, "{erased}");
    server.cli(&["retention", "run"]);

    // What is left says destroyed, under a pseudonym.
    let shown = server.cli(&["attempt", "show", &attempt]);
    assert_eq!(shown["state"], "destroyed", "{shown}");
    assert!(
        shown["reference"].as_str().unwrap().starts_with("p:"),
        "{shown}"
    );
    let db = rusqlite::Connection::open_with_flags(
        data.join("proctor.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [&attempt], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM flags WHERE attempt_id = ?1"), 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM reviews WHERE attempt_id = ?1 AND outcome IS NOT NULL"),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM reviews WHERE attempt_id = ?1"),
        1,
        "who reviewed, and when, stays"
    );
    let trail: String = db
        .prepare("SELECT group_concat(action || ' ' || detail, char(10)) FROM audit WHERE attempt_id = ?1")
        .unwrap()
        .query_row([&attempt], |r| r.get(0))
        .unwrap();
    for what in [
        "phone_or_device",
        "\"high\"",
        "irregularities",
        "\"category\"",
        "\"start_ms\"",
        "\"recipient\"",
        "\"file\"",
    ] {
        assert!(
            !trail.contains(what),
            "the audit trail names {what:?}:\n{trail}"
        );
    }
    drop(db);
    let database = database_bytes(&data);
    let logged = std::fs::read(&log).unwrap();
    assert!(logged.len() > 1000, "the debug log was written");
    assert!(
        holds(&database, &attempt),
        "the scan reads the database's rows"
    );
    for text in [REFERENCE, NOTE, HOLD, ERASURE, RECIPIENT] {
        assert!(!holds(&database, text), "the database holds {text:?}");
        assert!(!holds(&logged, text), "the server's log holds {text:?}");
    }
}
