//! The command-line contract on production storage: every command of the contract, run as
//! an operator would, with `--database-url postgres://…`, `--object-store s3://BUCKET` and
//! `--key-dir`, the endpoint and credentials from the environment. Nothing may land in the
//! data directory: no SQLite file, no blob.

mod support;

#[path = "../../server/tests/support/garage.rs"]
mod garage;
#[path = "../../server/tests/support/pg.rs"]
mod pg;

use std::path::Path;
use std::process::Command;
use support::*;

struct Production {
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

impl Production {
    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        self.flags
            .iter()
            .map(String::as_str)
            .chain(rest.iter().copied())
            .collect()
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("PROCTOR_LOG", "warn")])
            .collect()
    }

    fn cli(&self, data: &Path, rest: &[&str]) -> serde_json::Value {
        cli(data, &self.args(rest), &self.env())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_contract_runs_on_postgres_and_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = pg::Cluster::start().await;
    let bucket = garage::Garage::start();
    let s3 = &bucket.settings;
    let keys = tmp.path().join("keys");
    let prod = Production {
        flags: vec![
            "--database-url".into(),
            cluster.url.clone(),
            "--object-store".into(),
            s3.url.clone().unwrap(),
            "--key-dir".into(),
            keys.to_str().unwrap().into(),
        ],
        env: bucket.env(),
    };
    let data = tmp.path().join("data");

    // Enrolment, retried after a lost answer: the same answers.
    let sitting = prod.cli(&data, &["sitting", "create", "--ref", "SESSION-2026-12"]);
    assert_eq!(
        prod.cli(&data, &["sitting", "create", "--ref", "SESSION-2026-12"]),
        sitting
    );
    let sitting_id = sitting["sitting_id"].as_str().unwrap();
    let cand = prod.cli(
        &data,
        &[
            "candidate",
            "add",
            "--sitting",
            sitting_id,
            "--ref",
            "candidat-7",
        ],
    );
    assert_eq!(
        prod.cli(
            &data,
            &[
                "candidate",
                "add",
                "--sitting",
                sitting_id,
                "--ref",
                "candidat-7"
            ]
        ),
        cand
    );
    let (attempt, token) = (
        cand["attempt_id"].as_str().unwrap(),
        cand["launch_token"].as_str().unwrap(),
    );

    // The server on the same storage, the real agent recording 6 s.
    let server_env: Vec<(String, String)> = prod.env.clone();
    let server = Server::start_with_env(&data, 0, &prod.args(&[]), &server_env);
    let out = tokio::task::spawn_blocking({
        let (url, token, spool) = (
            server.public.clone(),
            token.to_owned(),
            tmp.path().join("spool"),
        );
        move || agent(&url, &token, "6s", &spool).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let shown = prod.cli(&data, &["attempt", "show", attempt]);
    assert_eq!(shown["state"], "recording", "{shown:#}");
    assert_eq!(
        shown["fragments_stored"], summary["fragments_sealed"],
        "{shown:#}"
    );
    assert_eq!(shown["integrity"], "ok", "{shown:#}");
    assert_eq!(shown["streams"][0]["status"], "complete", "{shown:#}");
    assert_eq!(
        shown["streams"][0]["missing"],
        serde_json::json!([]),
        "{shown:#}"
    );

    let ended = prod.cli(&data, &["attempt", "end", attempt]);
    assert_eq!(ended["state"], "ended", "{ended:#}");
    assert!(ended["new_streams_until"].is_string(), "{ended:#}");
    assert_eq!(
        prod.cli(&data, &["attempt", "end", attempt]),
        ended,
        "ending again gives the same answer"
    );
    let shown = prod.cli(&data, &["attempt", "show", attempt]);
    assert_eq!(shown["state"], "ended", "{shown:#}");
    assert!(shown["ended_at"].is_string(), "{shown:#}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let out = Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args(prod.args(&["attempt", "end", &unknown]))
        .envs(prod.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("attempt not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Everything went to PostgreSQL, the bucket and the key directory.
    let left: Vec<_> = files_under(&data);
    assert!(
        left.iter()
            .all(|f| !f.to_string_lossy().contains("proctor.sqlite")
                && !f.to_string_lossy().contains("blobs")),
        "{left:?}"
    );
    assert!(!files_under(&keys).is_empty(), "the KEK lives in --key-dir");
}
