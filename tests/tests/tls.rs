//! Agent ↔ server over real TLS: the agent verifies the certificate and has no way around it.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn agent_uploads_over_tls_and_refuses_an_unknown_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = tmp.path().join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_path = {:?}\nkey_path = {:?}\n",
            cert_path, key_path
        ),
    )
    .unwrap();

    let data = tmp.path().join("data");
    let server = Server::start_with(&data, 0, &["--config", config.to_str().unwrap()]);
    assert!(server.public.starts_with("https://"), "{}", server.public);

    // Enrol through the CLI: the test's HTTP client would need the CA too.
    let sitting = server.cli(&["sitting", "create", "--ref", "TLS"]);
    let cand = server.cli(&[
        "candidate",
        "add",
        "--sitting",
        sitting["sitting_id"].as_str().unwrap(),
        "--ref",
        "c",
    ]);
    let (attempt, token) = (
        cand["attempt_id"].as_str().unwrap(),
        cand["launch_token"].as_str().unwrap(),
    );

    // Without the CA: refused at the handshake, at once, nothing recorded, nothing sent.
    let untrusted = agent(&server.public, token, "3s", &tmp.path().join("spool-a"));
    let out = tokio::task::spawn_blocking(move || untrusted_output(untrusted))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificat"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.cli(&["attempt", "show", attempt])["state"],
        "enrolled"
    );

    // With the CA: a normal recording.
    let mut trusted = agent(&server.public, token, "4s", &tmp.path().join("spool-b"));
    trusted.arg("--ca-file").arg(&cert_path);
    let out = tokio::task::spawn_blocking(move || trusted.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = server.cli(&["attempt", "show", attempt]);
    assert_eq!(report["integrity"], "ok", "{report:#}");
    assert!(report["fragments_stored"].as_u64().unwrap() >= 3);
}

/// Runs the agent, killing it if it has not given up within 20 s (it must not retry forever).
fn untrusted_output(mut cmd: std::process::Command) -> std::process::Output {
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent kept retrying an untrusted certificate");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}
