//! Dedicated review terminals: with `require_terminal`, the staff listener completes a
//! TLS handshake only with a client certificate from the institution's terminal CA
//! (issued by `proctor-server terminal issue`), and each recording access is audited with
//! that terminal's fingerprint. The public listener (agents) is unaffected. A terminal is
//! revoked by name (`terminal revoke`), effective at its next request.

mod support;

use support::*;

fn client(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(&[cert, key].concat()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_issued_terminals_reach_the_staff_listener_and_accesses_name_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server_cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, server_cert.cert.pem()).unwrap();
    std::fs::write(&key_path, server_cert.key_pair.serialize_pem()).unwrap();

    let issued = cli(
        &data,
        &[
            "terminal",
            "issue",
            "--name",
            "poste-1",
            "--out",
            tmp.path().join("terminals").to_str().unwrap(),
        ],
        &[],
    );
    let fingerprint = issued["fingerprint"].as_str().unwrap().to_owned();
    let (t_cert, t_key) = (
        std::fs::read(issued["certificate"].as_str().unwrap()).unwrap(),
        std::fs::read(issued["key"].as_str().unwrap()).unwrap(),
    );

    let config = tmp.path().join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_path = {cert_path:?}\nkey_path = {key_path:?}\nrequire_terminal = true\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(&data, 0, &["--config", config.to_str().unwrap()]);
    let sitting = server.cli(&["sitting", "create", "--ref", "TERMINAUX"]);
    let sitting = sitting["sitting_id"].as_str().unwrap().to_owned();
    let attempt = server.cli(&["candidate", "add", "--sitting", &sitting, "--ref", "c"])
        ["attempt_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli(
        &data,
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
    server.cli(&["assign", "--sitting", &sitting, "--login", "relectrice"]);
    let ca = server_cert.cert.pem().into_bytes();

    // No client certificate, or one from elsewhere: no handshake, no answer at all.
    let bare = client(&ca, None);
    assert!(
        bare.get(format!("{}/", server.staff)).send().await.is_err(),
        "a browser without a terminal certificate gets nothing"
    );
    let stranger = rcgen::generate_simple_self_signed(vec!["poste-pirate".into()]).unwrap();
    let foreign = client(
        &ca,
        Some((
            stranger.cert.pem().as_bytes(),
            stranger.key_pair.serialize_pem().as_bytes(),
        )),
    );
    assert!(
        foreign
            .get(format!("{}/", server.staff))
            .send()
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
    // Agents are not terminals: the public listener does not ask.
    assert_eq!(
        bare.get(format!("{}/health", server.public))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // From the terminal: the login page, a session, an access audited with the terminal.
    let terminal = client(&ca, Some((&t_cert, &t_key)));
    assert_eq!(
        terminal
            .get(format!("{}/", server.staff))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let token =
        staff_session_with(&terminal, &server.staff, "relectrice", "Kilo-Tango-2026!").await;
    let token = token.as_str();
    let r = terminal
        .get(format!("{}/api/staff/v1/attempts/{attempt}", server.staff))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let trail = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args(["audit", "list"])
        .output()
        .unwrap();
    let trail = String::from_utf8_lossy(&trail.stdout);
    let access = trail
        .lines()
        .find(|l| l.contains("attempt_report_viewed"))
        .expect("the access is audited");
    assert!(access.contains(&fingerprint), "{access}");
    assert!(trail
        .lines()
        .any(|l| l.contains("terminal_issued") && l.contains(&fingerprint)));

    // Issue 20 #12: revoked one by one. A name never issued is refused (a typo would leave
    // the real terminal working); the revoked terminal's open connection is refused at its
    // next request, a new handshake fails, and another terminal goes on.
    let other = cli(
        &data,
        &[
            "terminal",
            "issue",
            "--name",
            "poste-2",
            "--out",
            tmp.path().join("terminals").to_str().unwrap(),
        ],
        &[],
    );
    let second = client(
        &ca,
        Some((
            &std::fs::read(other["certificate"].as_str().unwrap()).unwrap(),
            &std::fs::read(other["key"].as_str().unwrap()).unwrap(),
        )),
    );
    let typo = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args(["terminal", "revoke", "--name", "poste-01"])
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("no terminal named poste-01"));
    let revoked = server.cli(&["terminal", "revoke", "--name", "poste-1"]);
    assert_eq!(revoked["revoked"], true);
    let r = terminal
        .get(format!("{}/api/staff/v1/attempts/{attempt}", server.staff))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "the connection opened before the revocation"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "terminal_revoked");
    let fresh = client(&ca, Some((&t_cert, &t_key)));
    assert!(
        fresh
            .get(format!("{}/", server.staff))
            .send()
            .await
            .is_err(),
        "a new handshake with the revoked certificate fails"
    );
    assert_eq!(
        second
            .get(format!("{}/", server.staff))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the other terminal goes on"
    );

    // Issue 20 #6, the contract's spelling: the assignment taken away, then nothing left.
    let unassigned = server.cli(&["unassign", "--sitting", &sitting, "--login", "relectrice"]);
    assert_eq!(unassigned["assigned"], false);
    let again = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "staff",
            "unassign",
            "--login",
            "relectrice",
            "--sitting",
            &sitting,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success(), "nothing left to unassign");
    let trail = cli(&data, &["audit", "verify"], &[]);
    assert_eq!(trail["chain"], "intact");
}
