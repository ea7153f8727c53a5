//! `--now RFC3339` on any command: the injected clock of the command-line contract, so
//! that deadlines can be checked without waiting for them.

mod support;

use support::*;

#[test]
fn every_command_runs_at_the_moment_given() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let at = |now: &str, args: &[&str]| {
        let mut all = vec!["--now", now];
        all.extend_from_slice(args);
        cli(data, &all, &[])
    };
    let sitting = at("2027-02-01T00:00:00Z", &["sitting", "create", "--ref", "HORLOGE"]);
    let sitting = sitting["sitting_id"].as_str().unwrap().to_owned();
    let cand = at("2027-02-01T00:00:00Z", &["candidate", "add", "--sitting", &sitting, "--ref", "c"]);
    // The launch token lives 7 days from the moment given.
    assert!(cand["token_expires_at"].as_str().unwrap().starts_with("2027-02-08T00:00:0"), "{cand}");
    let attempt = cand["attempt_id"].as_str().unwrap().to_owned();
    let ended = at("2027-03-15T12:00:00Z", &["attempt", "end", &attempt]);
    assert!(ended["ended_at"].as_str().unwrap().starts_with("2027-03-15T12:00:0"), "{ended}");
    assert_eq!(ended["state"], "ended");
    // A time that is not RFC 3339 is refused before anything runs.
    let out = std::process::Command::new(bin("proctor-server")).arg("--data-dir").arg(data).args(["--now", "demain", "attempt", "show", &attempt]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}
