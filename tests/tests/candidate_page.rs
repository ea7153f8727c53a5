//! The candidate's page in headless Chromium, driving the real agent (test source) against
//! the real server: the notice with the server's version, no recording without consent,
//! the device check (preview, moving level meter, device choice, upload test), the
//! recording indicator, finish → progress → "you may close"; a refusal that sends only the
//! refusal; the platform ending the exam; a withdrawal. Each step's screenshot lands in
//! `target/screenshots/candidate_*.png`, and each step passes axe-core's WCAG 2.1 A and AA
//! rules. The server's stored media is checked against the consent and end times.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use support::browser::{accessible, click, screenshot_dir, visible, Browser};
use support::*;

/// The agent in page mode, and the address it printed.
struct PageAgent {
    child: Child,
    url: String,
    stdout: std::sync::mpsc::Receiver<String>,
}

impl PageAgent {
    fn start(server: &Server, token: &str, spool: &Path) -> PageAgent {
        Self::start_with_env(server, token, spool, &[])
    }

    fn start_with_env(
        server: &Server,
        token: &str,
        spool: &Path,
        env: &[(&str, &str)],
    ) -> PageAgent {
        let mut child = Command::new(bin("capture-agent"))
            .args([
                "--server",
                &server.public,
                "--token",
                token,
                "--source",
                "test",
                "--no-browser",
                "--spool",
            ])
            .arg(spool)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent prints its page's address");
        // The command-line contract: one line starting with "candidate page: ".
        let url = first
            .strip_prefix("candidate page: ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/?k="),
            "{url}"
        );
        PageAgent {
            child,
            url,
            stdout: rx,
        }
    }

    /// Waits for the agent to exit 0 and returns its summary.
    async fn summary(mut self) -> serde_json::Value {
        let status = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(s) = self.child.try_wait().unwrap() {
                    std::thread::sleep(Duration::from_millis(200));
                    let lines: Vec<String> = self.stdout.try_iter().collect();
                    return (s, lines);
                }
                assert!(Instant::now() < deadline, "the agent did not exit");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .unwrap();
        assert!(status.0.success(), "agent exit {:?}", status.0);
        let text: String = status
            .1
            .into_iter()
            .filter(|l| !l.starts_with("candidate page: "))
            .collect::<Vec<_>>()
            .join("\n");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary: {e}: {text}"))
    }
}

impl Drop for PageAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn shot(b: &Browser, name: &str) {
    b.screenshot(&screenshot_dir().join(format!("candidate_{name}.png")))
        .await;
}

fn report(server: &Server, attempt: &str) -> serde_json::Value {
    server.cli(&["attempt", "show", attempt])
}

fn unix_ms(rfc3339: &serde_json::Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        rfc3339.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Whether the recording indicator can be seen.
const REC_SHOWN: &str = "const r = document.getElementById('rec'); return getComputedStyle(r).display !== 'none' && r.offsetParent !== null";

/// Consent on the page: the notice with the server's version, the box, the button.
async fn consent(b: &Browser, server: &Server, agent: &PageAgent, step_shots: bool) {
    b.client.goto(&agent.url).await.unwrap();
    visible(b, "the notice", "phase-notice").await;
    let version = reqwest::get(format!("{}/api/agent/v1/notice", server.public))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["version"]
        .clone();
    b.until(
        "the server's notice version",
        Duration::from_secs(10),
        &format!("return document.getElementById('notice-version').textContent === {version}"),
    )
    .await;
    // The box starts unticked and the button cannot be used without it.
    assert_eq!(b.js("return [document.getElementById('consent-box').checked, document.getElementById('accept').disabled]").await, serde_json::json!([false, true]));
    assert_eq!(
        b.js(REC_SHOWN).await,
        serde_json::json!(false),
        "a recording indicator before consent"
    );
    if step_shots {
        shot(b, "1_notice").await;
        accessible(b, "the notice").await;
    }
    click(b, "consent-box").await;
    assert_eq!(
        b.js("return document.getElementById('accept').disabled")
            .await,
        serde_json::json!(false)
    );
    click(b, "accept").await;
    visible(b, "the device check", "phase-check").await;
}

/// Consent, then "start" at once after the device check.
async fn start_recording(b: &Browser, server: &Server, agent: &PageAgent) {
    consent(b, server, agent, false).await;
    click(b, "start").await;
    visible(b, "the recording step", "phase-recording").await;
}

/// "Terminer l'épreuve", confirmed, until "you may close".
async fn finish(b: &Browser) {
    click(b, "finish").await;
    click(b, "finish-yes").await;
    visible(b, "you may close", "phase-done").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_consents_checks_records_and_finishes_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let agent = PageAgent::start(&server, &token, &tmp.path().join("spool"));
    let b = Browser::start().await;

    // Before consent: the page refuses to start recording, and the server has nothing.
    b.client.goto(&agent.url).await.unwrap();
    visible(&b, "the notice", "phase-notice").await;
    let early = b.js("return fetch('/api/start', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).then(r => r.status)").await;
    assert_eq!(early, serde_json::json!(409));
    assert_eq!(report(&server, &attempt)["state"], "enrolled");
    let before_consent = now_ms();
    consent(&b, &server, &agent, true).await;

    // The device check: a preview frame, a level meter that moves, two cameras to choose from.
    b.until(
        "a preview frame",
        Duration::from_secs(20),
        "const i = document.getElementById('preview'); return i.complete && i.naturalWidth === 320",
    )
    .await;
    let mut levels = std::collections::BTreeSet::new();
    for _ in 0..40 {
        levels.insert(
            (b.js("return document.getElementById('level').value")
                .await
                .as_f64()
                .unwrap()
                * 100.0) as i64,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        levels.len() >= 3 && *levels.last().unwrap() > 30,
        "the level meter moves: {levels:?}"
    );
    assert_eq!(
        b.js("return document.getElementById('camera').options.length")
            .await,
        serde_json::json!(2)
    );
    b.js("const s = document.getElementById('camera'); s.value = 'test:smpte'; s.dispatchEvent(new Event('change')); return true").await;
    b.until("the second camera", Duration::from_secs(10), "return fetch('/api/state').then(r => r.json()).then(v => v.chosen && v.chosen[0] === 'test:smpte')").await;
    click(&b, "upload-test").await;
    b.until("the upload verdict", Duration::from_secs(30), "return document.getElementById('upload-result').textContent.startsWith('Connexion suffisante')").await;
    assert!(b
        .js("return document.getElementById('disk').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("Mo"));
    assert_eq!(
        b.js(REC_SHOWN).await,
        serde_json::json!(false),
        "a recording indicator during the check"
    );
    shot(&b, "2_check").await;
    accessible(&b, "the device check").await;
    // Consent is recorded; nothing is recorded during the check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = report(&server, &attempt);
    assert_eq!(r["state"], "consented");
    assert_eq!(r["streams"], serde_json::json!([]));
    let consent_at = unix_ms(&r["consent_at"]);
    assert!(
        consent_at >= before_consent - 1000,
        "consent dated before it was given"
    );

    let start_clicked = now_ms();
    click(&b, "start").await;
    visible(&b, "the recording indicator", "rec").await;
    visible(&b, "the recording step", "phase-recording").await;
    let e0 = b
        .js("return document.getElementById('elapsed').textContent")
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_ne!(
        b.js("return document.getElementById('elapsed').textContent")
            .await,
        e0,
        "elapsed time runs"
    );
    shot(&b, "3_recording").await;
    accessible(&b, "recording").await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Finish while the server is paused: the page shows what is left to send, then "you may close".
    click(&b, "finish").await;
    click(&b, "finish-yes").await;
    let finish_clicked = now_ms();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGSTOP) };
    visible(&b, "the upload progress", "progress").await;
    shot(&b, "4_finishing").await;
    accessible(&b, "finishing").await;
    assert_eq!(
        b.js(REC_SHOWN).await,
        serde_json::json!(false),
        "the indicator stays after capture stopped"
    );
    unsafe { libc::kill(server.child.id() as i32, libc::SIGCONT) };
    visible(&b, "you may close", "phase-done").await;
    assert!(b
        .js("return document.body.innerText")
        .await
        .as_str()
        .unwrap()
        .contains("Vous pouvez fermer cette fenêtre"));
    let counted = b.js("return [document.getElementById('progress').value, document.getElementById('progress').max]").await;
    assert_eq!(counted[0], counted[1], "every fragment sent: {counted}");
    shot(&b, "5_done").await;
    accessible(&b, "done").await;

    let s = agent.summary().await;
    assert_eq!(
        (
            s["consent"].as_str(),
            s["ended_by"].as_str(),
            s["chunks_dropped"].as_u64()
        ),
        (Some("given"), Some("finished"), Some(0)),
        "{s}"
    );
    b.close().await;

    // Stored media lies between the click on "start" and the click on "finish" (one
    // fragment of slack for the last, flushed at the end).
    let r = report(&server, &attempt);
    assert_eq!(r["integrity"], "ok", "{r}");
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    let started = unix_ms(&streams[0]["started_at"]);
    let end = started + (streams[0]["recorded_seconds"].as_f64().unwrap() * 1000.0) as i64;
    assert!(
        started >= start_clicked - 1000 && started >= consent_at,
        "recording before the start: {started} < {start_clicked}"
    );
    assert!(
        end <= finish_clicked + 2500,
        "recording after the finish: {end} > {finish_clicked}"
    );
    assert!(
        streams[0]["recorded_seconds"].as_f64().unwrap() >= 6.0,
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusing_consent_sends_only_the_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let spool = tmp.path().join("spool");
    let agent = PageAgent::start(&server, &token, &spool);
    let b = Browser::start().await;
    b.client.goto(&agent.url).await.unwrap();
    visible(&b, "the notice", "phase-notice").await;
    click(&b, "refuse").await;
    visible(&b, "the refusal's confirmation", "refuse-confirm").await;
    click(&b, "refuse-yes").await;
    visible(&b, "the refusal", "phase-refused").await;
    b.until(
        "the refusal sent",
        Duration::from_secs(20),
        "return document.getElementById('refused-body').textContent.startsWith('Rien n')",
    )
    .await;
    shot(&b, "refused").await;
    accessible(&b, "the refusal").await;
    let s = agent.summary().await;
    assert_eq!(
        (s["consent"].as_str(), s["fragments_sealed"].as_u64()),
        (Some("refused"), Some(0)),
        "{s}"
    );
    b.close().await;

    // The server holds the refusal and nothing else: no consent, no stream, no blob; the
    // agent kept nothing either.
    let r = report(&server, &attempt);
    assert_eq!(
        (
            r["state"].as_str(),
            &r["consent_at"],
            r["fragments_stored"].as_u64()
        ),
        (Some("withdrawn"), &serde_json::Value::Null, Some(0)),
        "{r}"
    );
    assert_eq!(r["streams"], serde_json::json!([]));
    let out = Command::new(bin("proctor-server"))
        .args(["--data-dir", server.data.to_str().unwrap(), "audit", "list"])
        .output()
        .unwrap();
    let actions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["attempt_id"].as_str() == Some(attempt.as_str()))
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"consent_refused".to_owned()),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a.starts_with("consent_recorded")
            || a.starts_with("stream")
            || a.starts_with("chunk")),
        "{actions:?}"
    );
    assert!(files_under(&server.data.join("blobs")).is_empty());
    assert!(
        files_under(&spool).is_empty(),
        "the agent spooled something: {:?}",
        files_under(&spool)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_ending_the_exam_stops_the_recording_and_withdrawal_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);

    // The platform ends the exam: the page says so, nothing is recorded after the end.
    let (attempt, token) = enrol(&server).await;
    let agent = PageAgent::start(&server, &token, &tmp.path().join("spool-a"));
    let b = Browser::start().await;
    start_recording(&b, &server, &agent).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/integration/v1/attempts/{attempt}/end",
            server.public
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    visible(&b, "you may close", "phase-done").await;
    assert_eq!(
        b.js("return document.getElementById('ended-by-platform').hidden")
            .await,
        serde_json::json!(false)
    );
    let s = agent.summary().await;
    assert_eq!(s["ended_by"], "ended_by_platform", "{s}");
    let r = report(&server, &attempt);
    let ended = unix_ms(&r["ended_at"]);
    let stream = &r["streams"][0];
    let end = unix_ms(&stream["started_at"])
        + (stream["recorded_seconds"].as_f64().unwrap() * 1000.0) as i64;
    // Bounded by the agent's look at the attempt (every 2 s) and the fragment it flushes.
    assert!(
        end <= ended + 4500,
        "recorded {} ms after the end",
        end - ended
    );
    assert_eq!(r["integrity"], "ok", "{r}");

    // A withdrawal: capture stops, the server records it, the spool is emptied.
    let (attempt, token) = enrol(&server).await;
    let spool = tmp.path().join("spool-b");
    let agent = PageAgent::start(&server, &token, &spool);
    start_recording(&b, &server, &agent).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    click(&b, "withdraw").await;
    visible(&b, "the consequence of a withdrawal", "withdraw-confirm").await;
    assert!(b
        .js("return document.getElementById('withdraw-confirm').innerText")
        .await
        .as_str()
        .unwrap()
        .contains("ne pourra pas être validée"));
    shot(&b, "withdraw_confirm").await;
    accessible(&b, "the withdrawal's confirmation").await;
    let withdrawn_at = now_ms();
    click(&b, "withdraw-yes").await;
    visible(&b, "the withdrawal", "phase-withdrawn").await;
    b.until("the withdrawal recorded", Duration::from_secs(30), "return document.getElementById('withdrawn-body').textContent.includes('votre retrait a été enregistré')").await;
    shot(&b, "withdrawn").await;
    accessible(&b, "withdrawn").await;
    let s = agent.summary().await;
    assert_eq!(
        (s["consent"].as_str(), s["ended_by"].as_str()),
        (Some("withdrawn"), Some("withdrawn")),
        "{s}"
    );
    // Withdrawn means erased: the server destroyed what it had received at once, with a
    // receipt dated after the click, and the agent kept nothing.
    let r = report(&server, &attempt);
    let receipt = &r["retention"]["receipt"]["receipt"];
    assert_eq!(
        (
            r["state"].as_str(),
            receipt["reason"].as_str(),
            &r["streams"]
        ),
        (
            Some("destroyed"),
            Some("consent_withdrawn"),
            &serde_json::json!([])
        ),
        "{r}"
    );
    assert!(
        unix_ms(&receipt["destroyed_at"]) >= withdrawn_at - 1000,
        "{r}"
    );
    assert!(
        !spool.join(&attempt).exists(),
        "the withdrawn attempt's spool is gone"
    );
    b.close().await;
}

fn agent_cmd(args: &[&str]) -> std::process::Output {
    Command::new(bin("capture-agent"))
        .args(args)
        .output()
        .unwrap()
}

/// The practice session's check: fit with the test source, refused without a camera or a
/// server, and nothing recorded.
#[tokio::test(flavor = "multi_thread")]
async fn check_says_whether_the_computer_is_fit_without_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let spool = tmp.path().join("spool");
    let spool = spool.to_str().unwrap();
    let fit = agent_cmd(&[
        "check",
        "--server",
        &server.public,
        "--source",
        "test",
        "--spool",
        spool,
    ]);
    let text = String::from_utf8_lossy(&fit.stdout);
    assert!(fit.status.success(), "{text}");
    assert!(
        text.contains("prêt pour l'épreuve")
            && text.contains("image reçue")
            && text.contains("son reçu"),
        "{text}"
    );

    // This machine (CI) has no camera: the report says so in plain words and exits 1.
    let none = agent_cmd(&[
        "check",
        "--server",
        &server.public,
        "--spool",
        spool,
        "--json",
    ]);
    assert_eq!(none.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&none.stdout).unwrap();
    assert_eq!(
        report["lines"][0],
        serde_json::json!({ "what": "camera", "ok": false, "detail": "aucune caméra trouvée" }),
        "this test expects a machine without a camera: {report}"
    );

    // No server: not fit.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let offline = agent_cmd(&[
        "check",
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--source",
        "test",
        "--spool",
        spool,
        "--json",
    ]);
    assert_eq!(offline.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    let server_line = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["what"] == "server")
        .unwrap();
    assert_eq!(server_line["ok"], false);
    assert!(files_under(&server.data.join("blobs")).is_empty());
    assert!(files_under(Path::new(spool)).is_empty());
}

/// No camera: a clear refusal in French before anything is sent, never a black recording.
#[tokio::test(flavor = "multi_thread")]
async fn no_camera_is_a_clear_refusal_and_nothing_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let spool = tmp.path().join("spool");
    let out = agent_cmd(&[
        "--server",
        &server.public,
        "--token",
        &token,
        "--consent",
        "--duration",
        "5s",
        "--spool",
        spool.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Aucune caméra trouvée"),
        "this test expects a machine without a camera: {err}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["state"].as_str(), &r["consent_at"]),
        (Some("enrolled"), &serde_json::Value::Null),
        "{r}"
    );
}

/// One click on the platform's link: `capture-agent launch LINK`, and the scheme's
/// `.desktop` file that registers it.
#[tokio::test(flavor = "multi_thread")]
async fn the_launch_link_starts_the_exam() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let encoded: String = server
        .public
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let link = format!("cloeconnect://launch?server={encoded}&token={token}");
    let out = agent_cmd(&[
        "launch",
        &link,
        "--source",
        "test",
        "--consent",
        "--duration",
        "5s",
        "--spool",
        tmp.path().join("spool").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["chunks_acknowledged"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(report(&server, &attempt)["integrity"], "ok");
    // A short code instead of the link: typed, traded once for the token.
    let (attempt2, _) = enrol(&server).await;
    let code = post_platform(
        format!(
            "{}/api/integration/v1/attempts/{attempt2}/launch-code",
            server.public
        ),
        serde_json::json!({}),
    )
    .await;
    let code = code["code"].as_str().unwrap().to_lowercase();
    let spool2 = tmp.path().join("spool2");
    let out = agent_cmd(&[
        "launch",
        &code,
        "--server",
        &server.public,
        "--source",
        "test",
        "--consent",
        "--duration",
        "4s",
        "--spool",
        spool2.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report(&server, &attempt2)["integrity"], "ok");
    let again = agent_cmd(&["launch", &code, "--server", &server.public, "--consent"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("déjà utilisé"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A link for another server over plain HTTP is refused before anything starts.
    let bad = agent_cmd(&[
        "launch",
        &format!("cloeconnect://launch?server=http%3A%2F%2Fexample.org&token={token}"),
        "--consent",
    ]);
    assert_eq!(bad.status.code(), Some(2));

    let desktop = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../capture-agent/packaging/linux/cloeconnect.desktop");
    let valid = Command::new("desktop-file-validate")
        .arg(&desktop)
        .output()
        .expect("desktop-file-utils is installed by scripts/install-deps");
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stdout)
    );
    let text = std::fs::read_to_string(&desktop).unwrap();
    assert!(
        text.contains("MimeType=x-scheme-handler/cloeconnect;")
            && text.contains("Exec=/usr/bin/capture-agent launch %u")
    );
}

/// The Debian package (`cargo deb`, as scripts/package-deb builds it; here from the debug
/// binary the suite already built): the agent, the scheme's `.desktop` file, the GStreamer
/// runtime among its dependencies, and a binary that runs from the package's tree.
#[test]
fn the_debian_package_holds_the_agent_its_link_scheme_and_its_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let built = Command::new("cargo")
        .args([
            "deb",
            "-p",
            "capture-agent",
            "--profile",
            "dev",
            "--no-build",
            "--quiet",
            "--output",
        ])
        .arg(tmp.path())
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&root)
        .output()
        .expect("cargo-deb is installed by scripts/test");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = files_under(tmp.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let info = String::from_utf8(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for dep in [
        "gstreamer1.0-plugins-base",
        "gstreamer1.0-plugins-good",
        "gstreamer1.0-plugins-bad",
        "gstreamer1.0-libav",
        "libgstreamer1.0-0",
    ] {
        assert!(
            info.lines()
                .any(|l| l.trim_start().starts_with("Depends:") && l.contains(dep)),
            "{dep} missing from Depends:\n{info}"
        );
    }
    let tree = tmp.path().join("tree");
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    let version = Command::new(tree.join("usr/bin/capture-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("capture-agent "),
        "{version:?}"
    );
    let desktop = tree.join("usr/share/applications/cloeconnect.desktop");
    assert!(Command::new("desktop-file-validate")
        .arg(&desktop)
        .status()
        .unwrap()
        .success());
}

/// A camera unplugged mid-exam (injected: `CLOE_AGENT_UNPLUG`): the page says so, the gap
/// is on record between two streams, and recording resumes when the camera is back.
#[tokio::test(flavor = "multi_thread")]
async fn an_unplugged_camera_leaves_a_gap_and_recording_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let agent = PageAgent::start_with_env(
        &server,
        &token,
        &tmp.path().join("spool"),
        &[("CLOE_AGENT_UNPLUG", "5s,5s")],
    );
    let b = Browser::start().await;
    consent(&b, &server, &agent, false).await;
    click(&b, "start").await;
    visible(&b, "the camera lost", "device-lost").await;
    assert!(b
        .js("return document.getElementById('rec-label').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("indisponible"));
    shot(&b, "device_lost").await;
    accessible(&b, "a lost camera").await;
    b.until(
        "the camera back",
        Duration::from_secs(30),
        "return document.getElementById('device-lost').hidden",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    finish(&b).await;
    let s = agent.summary().await;
    assert_eq!(
        (s["streams_opened"].as_u64(), &s["capture_error"]),
        (Some(2), &serde_json::Value::Null),
        "{s}"
    );
    b.close().await;

    let r = report(&server, &attempt);
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{r}");
    assert_eq!(
        streams[0]["status"], "ended_abruptly",
        "the loss shows where it happened"
    );
    assert_eq!(streams[1]["status"], "complete");
    assert!(
        streams[1]["recorded_seconds"].as_f64().unwrap() >= 5.0,
        "{r}"
    );
    let gap = r["gaps"]
        .as_array()
        .unwrap()
        .first()
        .unwrap_or_else(|| panic!("no gap on record: {r}"));
    assert!(gap["seconds"].as_f64().unwrap() >= 4.0, "{r}");
}

/// Closing the page does not stop the recording silently: the browser warns first while
/// recording, and once the page has been closed the agent, still recording, offers it
/// again with a new address, which opens on the recording step.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_page_is_offered_again_and_the_recording_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, token) = enrol(&server).await;
    let agent = PageAgent::start(&server, &token, &tmp.path().join("spool"));
    let b = Browser::start().await;
    start_recording(&b, &server, &agent).await;
    let warned = b.js("const e = new Event('beforeunload', { cancelable: true }); window.dispatchEvent(e); return e.defaultPrevented").await;
    assert_eq!(
        warned,
        serde_json::json!(true),
        "no warning before leaving while recording"
    );
    // Past the agent's first minute, the page goes away.
    tokio::time::sleep(Duration::from_secs(40)).await;
    b.client.goto("about:blank").await.unwrap();
    let closed_at = Instant::now();
    let rx = &agent.stdout;
    let again = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the page was not offered again");
        if let Some(url) = line.strip_prefix("candidate page: ") {
            break url.to_owned();
        }
    };
    assert!(
        closed_at.elapsed() >= Duration::from_secs(25),
        "offered again while the page was still open"
    );
    b.client.goto(&again).await.unwrap();
    visible(&b, "the recording step, again", "phase-recording").await;
    visible(&b, "the recording indicator", "rec").await;
    finish(&b).await;
    let s = agent.summary().await;
    assert_eq!(s["ended_by"], "finished", "{s}");
    b.close().await;
    // One stream, whole: the recording never stopped.
    let r = report(&server, &attempt);
    assert_eq!(
        (
            r["streams"].as_array().unwrap().len(),
            r["integrity"].as_str()
        ),
        (1, Some("ok")),
        "{r}"
    );
    assert!(r["recorded_seconds"].as_f64().unwrap() >= 60.0, "{r}");
}
