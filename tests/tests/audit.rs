//! `proctor-server audit verify` against someone who can write the database: an edited
//! row, the newest rows deleted, and a rewrite that recomputes every later hash are each
//! reported with the first bad entry; an intact trail passes.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// A trail of a few entries made through the CLI contract (sitting, candidates, staff,
/// assignment). Returns the number of entries.
fn make_trail(data: &Path) -> i64 {
    let sitting = cli(data, &["sitting", "create", "--ref", "SESSION-AUDIT"], &[]);
    let sitting = sitting["sitting_id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        cli(
            data,
            &[
                "candidate",
                "add",
                "--sitting",
                &sitting,
                "--ref",
                &format!("candidat-{n}"),
            ],
            &[],
        );
    }
    cli(
        data,
        &["staff", "add", "--role", "reviewer", "--login", "relecteur"],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    // The contract's spelling of the assignment.
    let assigned = cli(
        data,
        &["assign", "--sitting", &sitting, "--login", "relecteur"],
        &[],
    );
    assert_eq!(assigned["assigned"], true);
    let verified = cli(data, &["audit", "verify"], &[]);
    assert_eq!(verified["chain"], "intact");
    verified["entries"].as_i64().unwrap()
}

fn verify_fails(data: &Path) -> String {
    let out = Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(data)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "audit verify passed on a tampered trail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The database as an intruder opens it: the append-only triggers are in the way, so
/// they go first.
fn intruder(data: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(data.join("proctor.sqlite")).unwrap();
    db.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    db
}

#[test]
fn an_edited_audit_row_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = make_trail(tmp.path());
    assert!(entries >= 6, "{entries} entries");
    intruder(tmp.path())
        .execute("UPDATE audit SET actor = 'quelqu-un' WHERE seq = 3", [])
        .unwrap();
    let err = verify_fails(tmp.path());
    assert!(err.contains("audit entry 3 "), "{err}");
}

#[test]
fn deleted_newest_rows_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = make_trail(tmp.path());
    intruder(tmp.path())
        .execute("DELETE FROM audit WHERE seq > ?1", [entries - 2])
        .unwrap();
    let err = verify_fails(tmp.path());
    assert!(
        err.contains(&format!("audit entry {} is missing", entries - 1)),
        "{err}"
    );
}

#[test]
fn a_rewrite_with_recomputed_hashes_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = make_trail(tmp.path());
    let db = intruder(tmp.path());
    // Rewrite entry 2 and re-chain everything after it, as someone knowing the hash would.
    db.execute("UPDATE audit SET actor = 'quelqu-un' WHERE seq = 2", [])
        .unwrap();
    let trail: Vec<(i64, i64, String, String, Option<String>, String)> = db
        .prepare("SELECT seq, at, actor, action, attempt_id, detail FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = [0u8; 32];
    for (seq, at, actor, action, attempt, detail) in trail {
        let attempt = attempt.map(|a| a.parse().unwrap());
        let hash = server::db::audit_hash(&prev, seq, at, &actor, &action, attempt, &detail);
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev.to_vec(), hash.to_vec(), seq],
        )
        .unwrap();
        prev = hash;
    }
    assert_eq!(
        entries,
        db.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))
            .unwrap()
    );
    let err = verify_fails(tmp.path());
    assert!(
        err.contains("audit entry 2 differs from its checkpoint"),
        "{err}"
    );
}

/// The offline checker of destruction receipts (issue 8 lays it first): the published key
/// is stable; a receipt verifies, names a signer other than the published key as such,
/// and any edit breaks it. Needs no database.
#[test]
fn receipts_verify_offline_against_the_published_key() {
    let tmp = tempfile::tempdir().unwrap();
    let published = cli(tmp.path(), &["receipt", "public-key"], &[])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cli(tmp.path(), &["receipt", "public-key"], &[])["public_key"],
        published.as_str(),
        "one key, kept"
    );
    let init = cli(tmp.path(), &["receipt", "init-key"], &[]);
    assert_eq!(
        (&init["created"], init["public_key"].as_str()),
        (&serde_json::Value::Bool(false), Some(published.as_str())),
        "init-key keeps the key there: {init}"
    );
    let signer = protocol::ReceiptSigningKey::from_bytes(&[9; 32]);
    let receipt = protocol::Receipt {
        version: 1,
        attempt_id: uuid::Uuid::new_v4(),
        sitting_id: uuid::Uuid::new_v4(),
        destroyed_at: "2027-02-15T09:30:00Z".into(),
        reason: "pv_validated".into(),
        by: "jury:jure".into(),
        key_fingerprint: "cd".repeat(32),
        key_id: None,
        backups_unreadable_by: None,
        previous: None,
    };
    let file = tmp.path().join("recu.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&protocol::sign_receipt(&signer, receipt)).unwrap(),
    )
    .unwrap();
    let verify = |extra: &[&str]| {
        Command::new(bin("proctor-server"))
            .args(["receipt", "verify"])
            .arg(&file)
            .args(extra)
            .env("PROCTOR_SERVER__DATA_DIR", tmp.path().join("nowhere"))
            .output()
            .unwrap()
    };
    // Without a trusted key nothing is vouched for: the key inside a receipt is whoever
    // signed it, a forger included.
    let unpinned = verify(&[]);
    assert!(!unpinned.status.success());
    assert!(
        String::from_utf8_lossy(&unpinned.stderr).contains("a trusted public key is needed"),
        "{}",
        String::from_utf8_lossy(&unpinned.stderr)
    );
    let signer_key = protocol::public_key_text(&signer);
    let ok = verify(&["--public-key", &signer_key]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(
        shown["key_id"],
        protocol::receipt_key_id(&signer_key).unwrap().as_str()
    );
    // A receipt signed by any key but the published one is refused, however well signed.
    let other = verify(&["--public-key", &published]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("another key than the one published"));
    assert!(
        !tmp.path().join("nowhere").exists(),
        "verifying touches no data directory"
    );
    // The candidate checks theirs with the agent, in French, against the published key.
    let agent = |extra: &[&str]| {
        Command::new(bin("capture-agent"))
            .args(["receipt", "verify"])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap()
    };
    let no_key = agent(&[]);
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("il faut la clé publique du serveur"));
    let valid = agent(&["--public-key", &signer_key]);
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    assert!(String::from_utf8_lossy(&valid.stdout).starts_with("Reçu valide"));
    let forged = agent(&["--public-key", &published]);
    assert_eq!(forged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&forged.stderr).contains("Reçu NON valide"));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("pv_validated", "erasure_requested");
    std::fs::write(&file, text).unwrap();
    let edited = verify(&["--public-key", &signer_key]);
    assert!(!edited.status.success());
    assert!(
        String::from_utf8_lossy(&edited.stderr).contains("does not match"),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    let edited = agent(&["--public-key", &signer_key, "--json"]);
    assert_eq!(edited.status.code(), Some(1));
    let shown: serde_json::Value = serde_json::from_slice(&edited.stdout).unwrap();
    assert_eq!(shown["valid"], false, "{shown}");
}

/// Issue 19 (#8): the audit trail keeps an entry `[retention] audit_retention` (12 months
/// by default). Older entries leave at the sweep in one segment the server signs; `audit
/// verify` still passes, and names a forged segment or a kept entry removed.
#[test]
fn old_entries_leave_in_a_signed_segment_and_the_rest_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let at =
        |now: &str, args: &[&str]| cli(&data, &[&["--now", now], args].concat(), &[CLOCK_OVERRIDE]);
    let sitting = at(
        "2027-01-10T09:00:00Z",
        &["sitting", "create", "--ref", "S-OLD"],
    );
    let sitting = sitting["sitting_id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        at(
            "2027-01-10T09:00:00Z",
            &[
                "candidate",
                "add",
                "--sitting",
                &sitting,
                "--ref",
                &format!("C-{n}"),
            ],
        );
    }
    at(
        "2027-06-01T09:00:00Z",
        &["sitting", "create", "--ref", "S-KEPT"],
    );
    let before = at("2027-06-01T09:00:01Z", &["audit", "verify"]);
    assert_eq!(before["retired_up_to"], 0, "{before}");

    // Thirteen months after the first entries: January's go, June's stay.
    let swept = at("2028-02-10T00:00:00Z", &["retention", "run"]);
    let retired = &swept["audit_retired"];
    let up_to = retired[1].as_i64().unwrap();
    assert_eq!(retired[0], 1, "{swept}");
    assert!(
        up_to >= 4,
        "the sitting and its three candidates at least: {swept}"
    );
    let after = at("2028-02-10T00:00:01Z", &["audit", "verify"]);
    assert_eq!(
        (&after["chain"], &after["retired_up_to"]),
        (&serde_json::json!("intact"), &serde_json::json!(up_to)),
        "{after}"
    );
    let db = intruder(&data);
    let oldest: i64 = db
        .query_row("SELECT MIN(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(oldest, up_to + 1, "the retired entries left the database");
    let kept: String = db
        .query_row("SELECT group_concat(action) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(!kept.contains("candidate_added"), "{kept}");
    // A sweep with nothing more to retire retires nothing.
    let again = at("2028-02-10T00:05:00Z", &["retention", "run"]);
    assert!(again.get("audit_retired").is_none(), "{again}");

    // A segment made up by someone without the signing key is named.
    db.execute_batch(
        "DROP TRIGGER audit_segments_no_update;
         UPDATE audit_segments SET signed = replace(signed, '\"from_seq\":1', '\"from_seq\":2');",
    )
    .unwrap();
    let err = verify_fails(&data);
    assert!(err.contains("segment"), "{err}");
}

/// A kept entry removed behind the segment (the trigger dropped) breaks the chain from it.
#[test]
fn a_kept_entry_removed_after_a_retirement_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let at =
        |now: &str, args: &[&str]| cli(&data, &[&["--now", now], args].concat(), &[CLOCK_OVERRIDE]);
    at(
        "2027-01-10T09:00:00Z",
        &["sitting", "create", "--ref", "S-OLD"],
    );
    at(
        "2027-06-01T09:00:00Z",
        &["sitting", "create", "--ref", "S-KEPT-1"],
    );
    at(
        "2027-06-02T09:00:00Z",
        &["sitting", "create", "--ref", "S-KEPT-2"],
    );
    let swept = at("2028-02-10T00:00:00Z", &["retention", "run"]);
    let up_to = swept["audit_retired"][1].as_i64().unwrap();
    let db = intruder(&data);
    db.execute("DELETE FROM audit WHERE seq = ?1", [up_to + 1])
        .unwrap();
    let err = verify_fails(&data);
    assert!(err.contains(&format!("{}", up_to + 1)), "{err}");
}
