//! `--now RFC3339` on any command: the injected clock of the command-line contract, so
//! that deadlines can be checked without waiting for them.

mod support;

use std::path::Path;
use support::*;

/// A command run at the moment given.
fn at(data: &Path, now: &str, args: &[&str]) -> serde_json::Value {
    cli(data, &[&["--now", now], args].concat(), &[CLOCK_OVERRIDE])
}

#[test]
fn every_command_runs_at_the_moment_given() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let at = |now: &str, args: &[&str]| at(data, now, args);
    let sitting = at(
        "2027-02-01T00:00:00Z",
        &["sitting", "create", "--ref", "HORLOGE"],
    );
    let sitting = sitting["sitting_id"].as_str().unwrap().to_owned();
    let cand = at(
        "2027-02-01T00:00:00Z",
        &["candidate", "add", "--sitting", &sitting, "--ref", "c"],
    );
    // The launch token lives 7 days from the moment given.
    assert!(
        cand["token_expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2027-02-08T00:00:0"),
        "{cand}"
    );
    let attempt = cand["attempt_id"].as_str().unwrap().to_owned();
    let ended = at("2027-03-15T12:00:00Z", &["attempt", "end", &attempt]);
    assert!(
        ended["ended_at"]
            .as_str()
            .unwrap()
            .starts_with("2027-03-15T12:00:0"),
        "{ended}"
    );
    assert_eq!(ended["state"], "ended");
    // A time that is not RFC 3339 is refused before anything runs.
    let out = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(data)
        .args(["--now", "demain", "attempt", "show", &attempt])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

/// `--now` rewrites receipts' times and brings destruction forward: with the default
/// configuration it is refused, in production too even where allowed, before anything is
/// opened or written.
#[test]
fn the_clock_override_is_refused_by_default_and_in_production() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keys = tmp.path().join("keys");
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin("proctor-server"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--now",
                "2027-02-01T00:00:00Z",
                "sitting",
                "create",
                "--ref",
                "HORLOGE",
            ])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "--now ran with {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let default = run(&[]);
    assert!(default.contains("allow_clock_override"), "{default}");
    let production = run(&[
        CLOCK_OVERRIDE,
        ("PROCTOR_SERVER__PRODUCTION", "true"),
        ("PROCTOR_SERVER__KEY_DIR", keys.to_str().unwrap()),
    ]);
    assert!(production.contains("production"), "{production}");
    assert!(
        !data.join("proctor.sqlite").exists(),
        "a refused --now opened the database"
    );
    // The same command without --now runs: the refusal is the clock's alone.
    let created = cli(&data, &["sitting", "create", "--ref", "HORLOGE"], &[]);
    assert!(created["sitting_id"].is_string(), "{created}");
}

/// The retention contract: `pv decide`, `retention status`, `retention run [--dry-run]`,
/// `attempt show` once destroyed, one second either side of the 2-month deadline.
#[test]
fn the_retention_contract_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let at = |now: &str, args: &[&str]| at(data, now, args);
    let sitting = at(
        "2027-01-10T09:00:00Z",
        &["sitting", "create", "--ref", "PV"],
    )["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut attempts = Vec::new();
    for reference in ["a", "b"] {
        let a = at(
            "2027-01-10T09:00:00Z",
            &[
                "candidate",
                "add",
                "--sitting",
                &sitting,
                "--ref",
                reference,
            ],
        )["attempt_id"]
            .as_str()
            .unwrap()
            .to_owned();
        at("2027-01-10T10:00:00Z", &["attempt", "end", &a]);
        attempts.push(a);
    }
    // Unsubmitted reviews: refused unless the jury says so.
    let refused = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(data)
        .env(CLOCK_OVERRIDE.0, CLOCK_OVERRIDE.1)
        .args([
            "--now",
            "2027-01-11T00:00:00Z",
            "pv",
            "decide",
            "--sitting",
            &sitting,
            "--outcome",
            "refused",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not submitted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let decided = at(
        "2027-01-11T00:00:00Z",
        &[
            "pv",
            "decide",
            "--sitting",
            &sitting,
            "--outcome",
            "refused",
            "--override-unsubmitted",
            "--by",
            "jury-1",
        ],
    );
    assert_eq!(decided["receipts"], serde_json::json!([]), "{decided}");
    let status = at("2027-01-12T00:00:00Z", &["retention", "status"]);
    let listed: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["destroy_at"].as_str().unwrap())
        .collect();
    assert!(
        listed.len() == 2 && listed.iter().all(|t| t.starts_with("2027-03-11T00:00:0")),
        "{status:#}"
    );
    // One second before the deadline nothing is due; one second after, both are.
    assert_eq!(
        at("2027-03-10T23:59:59Z", &["retention", "run", "--dry-run"])["destroyed"],
        serde_json::json!([])
    );
    let dry = at("2027-03-11T00:00:01Z", &["retention", "run", "--dry-run"]);
    assert_eq!(dry["destroyed"].as_array().unwrap().len(), 2, "{dry:#}");
    assert_eq!(
        at("2027-03-11T00:00:01Z", &["retention", "status"])
            .as_array()
            .unwrap()
            .len(),
        2,
        "a dry run changes nothing"
    );
    let run = at("2027-03-11T00:00:01Z", &["retention", "run"]);
    assert_eq!(run["destroyed"].as_array().unwrap().len(), 2, "{run:#}");
    assert!(
        run["destroyed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["reason"] == "dispute_period_ended"),
        "{run:#}"
    );
    let shown = at("2027-03-11T00:00:02Z", &["attempt", "show", &attempts[0]]);
    assert_eq!(shown["state"], "destroyed", "{shown:#}");
    assert_eq!(
        shown["retention"]["receipt"]["receipt"]["reason"], "dispute_period_ended",
        "{shown:#}"
    );
    assert_eq!(
        at("2027-03-11T00:00:02Z", &["retention", "status"]),
        serde_json::json!([])
    );
}
