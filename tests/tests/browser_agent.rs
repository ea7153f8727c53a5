//! The browser capture agent (`/launch#TOKEN`, served by the server) in headless Chromium
//! with a fake camera (a deterministic Y4M file) and microphone: the notice and consent,
//! the device check, 60 s of recording, finish, and a recording the server holds whole
//! (`integrity: ok`, `missing: []`) that GStreamer decodes; a refusal that sends only the
//! refusal; a withdrawal that leaves nothing in the browser; the platform ending the exam;
//! and the page's contract (CSP, the token never sent, every word from the server). Each
//! step passes axe-core's WCAG 2.1 A and AA rules; screenshots land in
//! `target/screenshots/browser_*.png`.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::browser::{
    accessible, click, firefox, screenshot_dir, visible, Browser, Firefox, Sound,
};
use support::*;

/// A 2 s loop of 640x480 I420 at 15 frame/s: a grey ramp and a white square that moves,
/// so that the encoder and the activity strip have something to see.
fn fake_camera(dir: &Path) -> PathBuf {
    let path = dir.join("camera.y4m");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write!(f, "YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n").unwrap();
    for n in 0..30usize {
        f.write_all(b"FRAME\n").unwrap();
        let (sx, sy) = (40 + n * 16, 120 + (n % 10) * 12);
        let mut y = vec![0u8; 640 * 480];
        for row in 0..480 {
            for col in 0..640 {
                let inside = (sx..sx + 80).contains(&col) && (sy..sy + 80).contains(&row);
                y[row * 640 + col] = if inside {
                    235
                } else {
                    16 + (col / 4) as u8 / 2
                };
            }
        }
        f.write_all(&y).unwrap();
        f.write_all(&vec![128u8; 2 * 320 * 240]).unwrap();
    }
    f.flush().unwrap();
    path
}

async fn chromium(dir: &Path) -> Browser {
    let camera = fake_camera(dir);
    Browser::start_with_args(&[
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", camera.display()),
        // The server's data channel listens on loopback here; Chromium skips loopback
        // candidates unless told (a candidate's browser reaches a public address).
        "--allow-loopback-in-peer-connection".into(),
    ])
    .await
}

async fn shot(b: &Browser, name: &str) {
    b.screenshot(&screenshot_dir().join(format!("browser_{name}.png")))
        .await;
}

async fn phase(b: &Browser, what: &str, phase: &str, timeout: Duration) {
    b.until(
        what,
        timeout,
        &format!("return document.body.dataset.phase === '{phase}'"),
    )
    .await;
}

fn report(server: &Server, attempt: &str) -> serde_json::Value {
    server.cli(&["attempt", "show", attempt])
}

/// A candidate through the integration API: (attempt, token, browser link).
async fn enrol_browser(server: &Server) -> (String, String, String) {
    let s = post_platform(
        format!("{}/api/integration/v1/sittings", server.public),
        serde_json::json!({ "ref": format!("B-{}", uuid::Uuid::new_v4()) }),
    )
    .await;
    let c = post_platform(
        format!(
            "{}/api/integration/v1/sittings/{}/candidates",
            server.public,
            s["sitting_id"].as_str().unwrap()
        ),
        serde_json::json!({ "ref": "candidat-navigateur" }),
    )
    .await;
    let token = c["launch_token"].as_str().unwrap().to_owned();
    let link = c["browser_link"].as_str().unwrap().to_owned();
    assert_eq!(link, format!("{}/launch#{token}", server.public));
    (c["attempt_id"].as_str().unwrap().into(), token, link)
}

/// The notice from the server, the box, "Accepter et continuer": the device check.
async fn consent(b: &Browser, server: &Server, link: &str, token: &str, check_a11y: bool) {
    b.client.goto(link).await.unwrap();
    phase(b, "the notice", "notice", Duration::from_secs(30)).await;
    // The token was read from the fragment and is gone from the address bar.
    let href = b.js("return location.href").await;
    assert!(
        !href
            .as_str()
            .unwrap()
            .contains(token.split('.').next().unwrap())
            && !href.as_str().unwrap().contains('#'),
        "{href}"
    );
    let version = reqwest::get(format!("{}/api/agent/v1/notice", server.public))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["version"]
        .clone();
    assert_eq!(
        b.js("return document.getElementById('notice-version').textContent")
            .await,
        version
    );
    assert_eq!(b.js("return [document.getElementById('consent-box').checked, document.getElementById('accept').disabled]").await, serde_json::json!([false, true]));
    if check_a11y {
        shot(b, "1_notice").await;
        accessible(b, "the notice").await;
    }
    click(b, "consent-box").await;
    click(b, "accept").await;
    phase(b, "the device check", "check", Duration::from_secs(30)).await;
}

async fn record(b: &Browser, check_a11y: bool) {
    b.until("the camera's preview", Duration::from_secs(20), "const v = document.getElementById('preview'); return v.videoWidth === 640 && v.readyState >= 2").await;
    b.until(
        "the encoder's line",
        Duration::from_secs(20),
        "return document.getElementById('encoder').textContent.includes('H.264')",
    )
    .await;
    b.until(
        "the storage line",
        Duration::from_secs(20),
        "return document.getElementById('disk').textContent.includes('Mo')",
    )
    .await;
    if check_a11y {
        click(b, "upload-test").await;
        b.until("the upload verdict", Duration::from_secs(30), "return document.getElementById('upload-result').textContent.startsWith('Connexion suffisante')").await;
        let mut moved = false;
        for _ in 0..50 {
            if b.js("return document.getElementById('level').value")
                .await
                .as_f64()
                .unwrap_or(0.0)
                > 0.01
            {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            moved,
            "the level meter moves with the fake microphone's beeps"
        );
        shot(b, "2_check").await;
        accessible(b, "the device check").await;
    }
    click(b, "start").await;
    phase(b, "recording", "recording", Duration::from_secs(20)).await;
    visible(b, "the recording indicator", "rec").await;
}

/// A server, and Chromium recording one candidate (consent given, "start" clicked).
struct Scene {
    _tmp: tempfile::TempDir,
    server: Server,
    attempt: String,
    token: String,
    link: String,
    b: Browser,
}

/// A server, one candidate and Chromium with its fake devices; nothing opened yet.
async fn scene(env: &[(String, String)]) -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(&tmp.path().join("data"), 0, &[], env);
    let (attempt, token, link) = enrol_browser(&server).await;
    let b = chromium(tmp.path()).await;
    Scene {
        _tmp: tmp,
        server,
        attempt,
        token,
        link,
        b,
    }
}

async fn recording(env: &[(String, String)]) -> Scene {
    let s = scene(env).await;
    consent(&s.b, &s.server, &s.link, &s.token, false).await;
    record(&s.b, false).await;
    s
}

async fn finish(b: &Browser) {
    click(b, "finish").await;
    click(b, "finish-yes").await;
    phase(b, "you may close", "done", Duration::from_secs(120)).await;
    assert!(b
        .js("return document.body.innerText")
        .await
        .as_str()
        .unwrap()
        .contains("Vous pouvez fermer cette fenêtre"));
    let counted = b.js("return [document.getElementById('progress').value, document.getElementById('progress').max]").await;
    let status = agent_status(b).await;
    assert_eq!(
        counted[0], counted[1],
        "every fragment sent: {counted}; the page: {status}"
    );
    assert_eq!(
        status["refusals"],
        serde_json::json!([]),
        "no chunk refused or dropped: {status}"
    );
}

/// The files the page still holds in its origin-private file system, by path.
async fn spooled_files(b: &Browser) -> Vec<String> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             (async () => { const out = []; const walk = async (d, p) => { for await (const [k, h] of d.entries()) { if (h.kind === 'file') out.push(p + k); else await walk(h, p + k + '/'); } };
               await walk(await navigator.storage.getDirectory(), ''); return out; })().then(done, (e) => done(['error: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_records_60_s_in_chromium_and_the_server_holds_it_whole() {
    let Scene {
        _tmp,
        server,
        attempt,
        token,
        link,
        b,
    } = scene(&[]).await;
    consent(&b, &server, &link, &token, true).await;
    let r = report(&server, &attempt);
    assert_eq!(
        r["streams"],
        serde_json::json!([]),
        "nothing recorded during the check: {r}"
    );
    record(&b, true).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    shot(&b, "3_recording").await;
    accessible(&b, "recording").await;
    tokio::time::sleep(Duration::from_secs(55)).await;
    let elapsed = b
        .js("return document.getElementById('elapsed').textContent")
        .await;
    assert!(elapsed.as_str().unwrap() >= "00:00:59", "{elapsed}");
    // "Terminer" while the server is paused: the finishing step shows what is left.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGSTOP) };
    click(&b, "finish").await;
    click(&b, "finish-yes").await;
    phase(
        &b,
        "the upload's progress",
        "finishing",
        Duration::from_secs(20),
    )
    .await;
    shot(&b, "4_finishing").await;
    accessible(&b, "finishing").await;
    unsafe { libc::kill(server.child.id() as i32, libc::SIGCONT) };
    phase(&b, "you may close", "done", Duration::from_secs(120)).await;
    let status = agent_status(&b).await;
    assert_eq!(
        (status["acked"].clone(), status["refusals"].clone()),
        (status["sealed"].clone(), serde_json::json!([])),
        "{status}"
    );
    shot(&b, "5_done").await;
    accessible(&b, "done").await;
    let left = spooled_files(&b).await;
    assert!(
        left.len() == 1 && left[0].ends_with("/streams.json"),
        "only the spool's stream list is left in the browser: {left:?}"
    );

    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"]),
        (Some("ok"), &serde_json::json!([])),
        "{r}"
    );
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{r}");
    let seconds = streams[0]["recorded_seconds"].as_f64().unwrap();
    assert!(
        (56.0..=66.0).contains(&seconds),
        "{seconds} s recorded: {r}"
    );
    assert_eq!(r["state"], "recording", "{r}");
    // `auto` sends over the browser's own WebRTC data channel when it opens.
    assert!(
        r["chunks_by_transport"]["webrtc"].as_u64().unwrap_or(0) >= 28,
        "the data channel carried the recording: {r}"
    );
    let stream = streams[0]["stream_id"].as_str().unwrap();
    let media = staff_media(&server, &attempt, stream).await;
    let d = support::media::decode(&media).expect("GStreamer decodes the browser's recording");
    assert_eq!((d.width, d.height), (640, 480), "{d:?}");
    assert!(d.video_seconds > 55.0 && d.audio_seconds > 55.0, "{d:?}");
    assert!(
        d.video_frames as f64 > d.video_seconds * 12.0,
        "about 15 frame/s: {d:?}"
    );
    b.close().await;
    reviewer_plays(&server, &attempt).await;
}

/// The reviewer app in Chromium plays the browser's recording (H.264 + Opus, read from the
/// init segment), seeks, and shows the activity strip and the thumbnails the page made.
async fn reviewer_plays(server: &Server, attempt: &str) {
    const PASSWORD: &str = "Kilo-Tango-2026!";
    server.cli(&["attempt", "end", attempt]);
    cli(
        &server.data,
        &["staff", "add", "--role", "reviewer", "--login", "relecteur"],
        &[("PROCTOR_PASSWORD", PASSWORD)],
    );
    let sitting = server.cli(&["attempt", "show", attempt])["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.cli(&["assign", "--sitting", &sitting, "--login", "relecteur"]);
    let staff = server.staff.replace("127.0.0.1", "localhost");
    let b = Browser::start().await;
    b.first_login(&staff, "relecteur", PASSWORD, "Quatre-Chevaux-Bleus-9")
        .await;
    b.client
        .goto(&format!("{staff}/attempts/{attempt}"))
        .await
        .unwrap();
    b.until(
        "the player to load",
        Duration::from_secs(15),
        "return !!window.__player && document.getElementById('video').readyState >= 2",
    )
    .await;
    let mime = b.js("return window.__player().mime").await;
    assert!(
        mime.as_str().unwrap().contains("opus") && mime.as_str().unwrap().contains("avc1."),
        "{mime}"
    );
    b.client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.keys(" ").await;
    b.until(
        "playback to advance",
        Duration::from_secs(10),
        "return window.__player().t > 1.0 && !window.__player().paused",
    )
    .await;
    let frame = b
        .js("const v = document.getElementById('video'); const c = document.createElement('canvas'); c.width = 64; c.height = 48;
             const x = c.getContext('2d'); x.drawImage(v, 0, 0, 64, 48); const d = x.getImageData(0, 0, 64, 48).data;
             let max = 0; for (let i = 0; i < d.length; i += 4) max = Math.max(max, d[i] + d[i + 1] + d[i + 2]);
             return { max, w: v.videoWidth };")
        .await;
    assert!(
        frame["w"] == 640 && frame["max"].as_u64().unwrap() > 400,
        "the moving white square is drawn: {frame}"
    );
    b.until("the activity strip", Duration::from_secs(10), "const p = window.__player(); return p.activity >= 50 && p.moving >= 40 && p.sounding >= 20").await;
    // Every fragment's activity was taken: none longer than its header's range.
    let without = b.js("return window.__player().activityWithout").await;
    assert_eq!(without, 0, "fragments without activity");
    b.js("const t = document.getElementById('timeline'); const r = t.getBoundingClientRect();
          t.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + r.width * 0.3, clientY: r.top + 5, bubbles: true }));")
        .await;
    b.until("a thumbnail on hover", Duration::from_secs(10), "const i = document.getElementById('thumb'); return !i.hidden && i.complete && i.naturalWidth === 160 && i.naturalHeight === 120").await;
    b.js("const t = document.getElementById('timeline'); const r = t.getBoundingClientRect();
          t.dispatchEvent(new MouseEvent('click', { clientX: r.left + r.width * 0.5, clientY: r.top + 5, bubbles: true }));")
        .await;
    b.until(
        "the seek to the middle",
        Duration::from_secs(10),
        "const p = window.__player(); return p.t > 26 && p.t < 34 && !p.paused",
    )
    .await;
    b.screenshot(&screenshot_dir().join("browser_6_reviewer.png"))
        .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_in_the_browser_sends_only_the_refusal() {
    let Scene {
        _tmp,
        server,
        attempt,
        link,
        b,
        ..
    } = scene(&[]).await;
    b.client.goto(&link).await.unwrap();
    phase(&b, "the notice", "notice", Duration::from_secs(30)).await;
    click(&b, "refuse").await;
    click(&b, "refuse-yes").await;
    phase(&b, "the refusal", "refused", Duration::from_secs(10)).await;
    b.until(
        "the refusal sent",
        Duration::from_secs(20),
        "return document.getElementById('refused-body').textContent.startsWith('Rien n')",
    )
    .await;
    shot(&b, "refused").await;
    accessible(&b, "the refusal").await;
    let r = report(&server, &attempt);
    assert_eq!(
        (r["state"].as_str(), &r["streams"]),
        (Some("withdrawn"), &serde_json::json!([])),
        "{r}"
    );
    assert_eq!(
        spooled_files(&b).await,
        Vec::<String>::new(),
        "nothing kept in the browser"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawal_stops_the_recording_and_leaves_nothing_in_the_browser() {
    let Scene {
        _tmp,
        server,
        attempt,
        b,
        ..
    } = recording(&[]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    click(&b, "withdraw").await;
    click(&b, "withdraw-yes").await;
    phase(&b, "withdrawn", "withdrawn", Duration::from_secs(10)).await;
    b.until("the withdrawal sent", Duration::from_secs(30), "return document.getElementById('withdrawn-body').textContent.startsWith('L\\'enregistrement est arrêté et votre retrait')").await;
    // The receipt the withdrawal brought back, checked in the page against the published
    // key, and offered as a file.
    b.until("the receipt checked", Duration::from_secs(20), "return document.getElementById('withdrawn-receipt').textContent.startsWith('Reçu de destruction vérifié')").await;
    let file = b
        .js("return document.getElementById('withdrawn-receipt-file').download")
        .await;
    assert_eq!(file, format!("recu-destruction-{attempt}.json").as_str());
    shot(&b, "withdrawn").await;
    accessible(&b, "the withdrawal").await;
    // Withdrawn means erased: the server destroyed the recording at once, with a receipt.
    let r = report(&server, &attempt);
    assert_eq!(
        (
            r["state"].as_str(),
            r["retention"]["receipt"]["receipt"]["reason"].as_str()
        ),
        (Some("destroyed"), Some("consent_withdrawn")),
        "{r}"
    );
    assert_eq!(
        spooled_files(&b).await,
        Vec::<String>::new(),
        "nothing of a withdrawn recording stays in the browser"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_ends_the_exam_and_the_page_sends_the_rest() {
    let Scene {
        _tmp,
        server,
        attempt,
        b,
        ..
    } = recording(&[]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/integration/v1/attempts/{attempt}/end",
            server.public
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    phase(&b, "you may close", "done", Duration::from_secs(60)).await;
    assert_eq!(
        b.js("return !document.getElementById('ended-by-platform').hidden")
            .await,
        serde_json::json!(true)
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), r["state"].as_str()),
        (Some("ok"), Some("ended")),
        "{r}; the page: {}",
        agent_status(&b).await
    );
    b.close().await;
}

#[tokio::test]
async fn the_launch_page_has_a_strict_policy_and_every_word_from_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let r = reqwest::get(format!("{}/launch", server.public))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .expect("a script-src directive");
    assert!(
        !script_src.contains("unsafe-inline") && !script_src.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(h["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "nothing inline"
    );
    let text: serde_json::Value = reqwest::get(format!("{}/launch/text.json", server.public))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in html
        .split("data-text=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
    {
        assert!(
            text[key].as_str().is_some_and(|t| !t.is_empty()),
            "the page's word {key} is missing"
        );
    }
    let js = reqwest::get(format!("{}/launch/agent.js", server.public))
        .await
        .unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(js.text().await.unwrap(), web_agent_bundle());
    // The command-line contract: `candidate add` prints the browser link beside the token.
    let sitting = server.cli(&["sitting", "create", "--ref", "CLI-LINK"]);
    let c = server.cli(&[
        "candidate",
        "add",
        "--sitting",
        sitting["sitting_id"].as_str().unwrap(),
        "--ref",
        "c1",
    ]);
    // The CLI knows the configured address (`[server] public_url`, else `listen`), not the
    // port this test's server bound.
    let link = c["browser_link"].as_str().unwrap();
    assert!(
        link.starts_with("http://127.0.0.1:")
            && link.ends_with(&format!("/launch#{}", c["launch_token"].as_str().unwrap())),
        "{link}"
    );
}

fn web_agent_bundle() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-agent/dist/agent.js"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_records_60_s_in_firefox_and_the_server_holds_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, _token, link) = enrol_browser(&server).await;
    let sound = Sound::start();
    let page = tokio::task::spawn_blocking(move || firefox(&["record", &link, "60"], &sound))
        .await
        .unwrap();
    assert_eq!(
        (page["phase"].as_str(), &page["error"]),
        (Some("done"), &serde_json::Value::Null),
        "{page}"
    );
    assert_eq!(page["progress"][0], page["progress"][1], "{page}");
    assert!(
        !page["href"].as_str().unwrap().contains('#'),
        "the token left the address bar: {page}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"]),
        (Some("ok"), &serde_json::json!([])),
        "{r}"
    );
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{r}");
    let seconds = streams[0]["recorded_seconds"].as_f64().unwrap();
    assert!(
        (56.0..=66.0).contains(&seconds),
        "{seconds} s recorded: {r}"
    );
    eprintln!("Firefox: chunks by transport {}", r["chunks_by_transport"]);
    let media = staff_media(&server, &attempt, streams[0]["stream_id"].as_str().unwrap()).await;
    let d = support::media::decode(&media).expect("GStreamer decodes Firefox's recording");
    assert!(d.video_seconds > 55.0 && d.audio_seconds > 55.0, "{d:?}");
    assert!(
        d.video_frames as f64 > d.video_seconds * 12.0,
        "about 15 frame/s: {d:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_in_firefox_sends_only_the_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, _token, link) = enrol_browser(&server).await;
    let sound = Sound::start();
    let page = tokio::task::spawn_blocking(move || firefox(&["refuse", &link], &sound))
        .await
        .unwrap();
    assert_eq!(
        (page["phase"].as_str(), &page["error"]),
        (Some("refused"), &serde_json::Value::Null),
        "{page}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["state"].as_str(), &r["streams"]),
        (Some("withdrawn"), &serde_json::json!([])),
        "{r}"
    );
}

/// No fragmented-MP4 box, JPEG or payload header in clear in any file under `dir`: the
/// plaintext's own markers (`moof` then `mfhd`; a JPEG's SOI and JFIF header; the first
/// media sample's `ftyp`) would show, and a ciphertext holds them by chance with odds of
/// 2^-96 per place.
fn assert_nothing_in_clear(dir: &Path) {
    let markers: [&[u8]; 3] = [
        b"moof\0\0\0\x10mfhd",
        b"\xff\xd8\xff\xe0\0\x10JFIF\0",
        b"ftypiso5\0\0\x02\0",
    ];
    let mut scanned = 0u64;
    for path in files_under(dir) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        scanned += bytes.len() as u64;
        for m in markers {
            assert!(
                !bytes.windows(m.len()).any(|w| w == m),
                "media in clear in {}",
                path.display()
            );
        }
    }
    assert!(
        scanned > 1_000_000,
        "the spool is on disk in the profile ({scanned} bytes scanned)"
    );
}

async fn agent_status(b: &Browser) -> serde_json::Value {
    b.js("return window.__agent()").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_in_the_middle_resumes_and_loses_nothing_that_was_sealed() {
    let Scene {
        _tmp,
        server,
        attempt,
        link,
        b,
        ..
    } = recording(&[]).await;
    // Counted on what the page sealed, not on wall time: a starved page seals late.
    b.until(
        "four fragments sealed",
        Duration::from_secs(60),
        "return window.__agent().sealed >= 5",
    )
    .await;
    let sealed = agent_status(&b).await["sealed"].as_u64().unwrap();
    // The candidate reloads the page (F5): the address has no token any more.
    b.client.refresh().await.unwrap();
    phase(
        &b,
        "the recording again",
        "recording",
        Duration::from_secs(30),
    )
    .await;
    b.until("the resumption said", Duration::from_secs(5), "return document.getElementById('message').textContent.startsWith('L\\'enregistrement a repris')").await;
    b.until(
        "fragments sealed in the new stream",
        Duration::from_secs(60),
        "return window.__agent().sealed >= 4",
    )
    .await;
    finish(&b).await;
    let left = spooled_files(&b).await;
    assert!(
        left.len() == 1 && left[0].ends_with("/streams.json"),
        "{left:?}"
    );
    let r = report(&server, &attempt);
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "a new stream after the reload: {r}");
    // The first stream holds every fragment sealed before the reload, without a hole, and
    // ends abruptly; the time between the two streams is a gap on record.
    assert_eq!(
        (streams[0]["missing"].clone(), streams[1]["missing"].clone()),
        (serde_json::json!([]), serde_json::json!([])),
        "{r}"
    );
    // The init segment and every fragment the page had sealed (and spooled) by the reload.
    assert!(
        streams[0]["fragments_stored"].as_u64().unwrap() >= sealed,
        "{sealed} sealed before the reload: {r}"
    );
    assert_eq!(streams[1]["status"], "complete", "{r}");
    assert_ne!(streams[0]["status"], "complete", "{r}");
    assert!(
        !r["gaps"].as_array().unwrap().is_empty(),
        "the reload shows as a gap: {r}"
    );
    // Reopening the link after a crash (a new tab) resumes the same way.
    let reopened = b.client.new_window(true).await.unwrap();
    b.client.switch_to_window(reopened.handle).await.unwrap();
    b.client.goto(&link).await.unwrap();
    // After "Terminer", nothing records again without a click: the device check waits.
    phase(
        &b,
        "the device check, not a recording",
        "check",
        Duration::from_secs(30),
    )
    .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_unreachable_for_the_first_30_s_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Server::start(&data, port);
    let (attempt, _token, link) = enrol_browser(&server).await;
    let b = chromium(tmp.path()).await;
    b.client.goto(&link).await.unwrap();
    phase(&b, "the notice", "notice", Duration::from_secs(30)).await;
    // The page is loaded; then the server is gone: consent, check and recording go on.
    server.kill();
    click(&b, "consent-box").await;
    click(&b, "accept").await;
    phase(&b, "the device check", "check", Duration::from_secs(10)).await;
    record(&b, false).await;
    // 30 s of recording with the server down, counted from the recording's start: on a
    // loaded machine the consent and the device check alone can take seconds.
    let outage = std::time::Instant::now();
    b.until(
        "offline shown",
        Duration::from_secs(30),
        "return document.getElementById('upload-state').textContent.startsWith('Hors ligne')",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let status = agent_status(&b).await;
    assert!(
        status["sealed"].as_u64().unwrap() >= 10 && status["acked"] == 0,
        "recorded offline: {status}"
    );
    // Half a minute of recording sits in the browser: none of it in clear anywhere the
    // browser writes (OPFS, IndexedDB, caches, its whole profile).
    assert_nothing_in_clear(b.profile_dir());
    assert!(
        status["lowestKbps"].as_u64().unwrap() < 500,
        "the bitrate followed the backlog down: {status}"
    );
    let server = Server::start(&data, port);
    b.until(
        "the backlog sent",
        Duration::from_secs(60),
        "const a = window.__agent(); return a.acked >= a.sealed - 1 && !a.offline",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    finish(&b).await;
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"]),
        (Some("ok"), &serde_json::json!([])),
        "{r}"
    );
    assert_eq!(r["streams"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["recorded_seconds"].as_f64().unwrap() >= 30.0, "{r}");
    let media = staff_media(
        &server,
        &attempt,
        r["streams"][0]["stream_id"].as_str().unwrap(),
    )
    .await;
    // The markers looked for in the browser's profile are those of this very plaintext.
    for m in [&b"moof\0\0\0\x10mfhd"[..], b"ftypiso5\0\0\x02\0"] {
        assert!(
            media.windows(m.len()).any(|w| w == m),
            "{m:?} is a marker of the page's media"
        );
    }
    let d = support::media::decode(&media).expect("decodes across the bitrate changes");
    assert!(
        d.video_seconds >= 30.0 && d.video_frames as f64 > d.video_seconds * 12.0,
        "{d:?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tab_in_front_for_30_s_stops_nothing() {
    let Scene {
        _tmp,
        server,
        attempt,
        b,
        ..
    } = recording(&[]).await;
    let ours = b.client.window().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The exam in another tab, in front, for 30 s.
    let exam = b.client.new_window(true).await.unwrap();
    b.client.switch_to_window(exam.handle).await.unwrap();
    b.client
        .goto(&format!("{}/health", server.public))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(ours).await.unwrap();
    let status = agent_status(&b).await;
    assert!(
        status["hiddenMs"].as_u64().unwrap() >= 25_000,
        "the page was hidden: {status}"
    );
    finish(&b).await;
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"], &r["gaps"]),
        (Some("ok"), &serde_json::json!([]), &serde_json::json!([])),
        "{r}"
    );
    assert_eq!(
        r["agent_silences"],
        serde_json::json!([]),
        "heartbeats went on: {r}"
    );
    let seconds = r["recorded_seconds"].as_f64().unwrap();
    assert!(seconds >= 33.0, "{seconds} s: {r}");
    let media = staff_media(
        &server,
        &attempt,
        r["streams"][0]["stream_id"].as_str().unwrap(),
    )
    .await;
    let d = support::media::decode(&media).unwrap();
    assert!(
        d.video_frames as f64 > d.video_seconds * 12.0,
        "frames kept coming while hidden: {d:?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_code_a_browser_that_cannot_record_and_a_denied_camera_each_get_clear_french() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, _token, _link) = enrol_browser(&server).await;
    let code = server.cli(&["attempt", "launch-code", &attempt])["code"]
        .as_str()
        .unwrap()
        .to_owned();

    // No link at hand: /launch asks for the short code, a wrong one is refused in words.
    let b = chromium(tmp.path()).await;
    b.client
        .goto(&format!("{}/launch", server.public))
        .await
        .unwrap();
    phase(&b, "the code step", "code", Duration::from_secs(20)).await;
    shot(&b, "code").await;
    accessible(&b, "the code step").await;
    b.client
        .find(fantoccini::Locator::Id("code"))
        .await
        .unwrap()
        .send_keys("AAAA-AAAA")
        .await
        .unwrap();
    click(&b, "code-go").await;
    b.until(
        "the refusal of a wrong code",
        Duration::from_secs(10),
        "return document.getElementById('code-error').textContent.includes('inconnu')",
    )
    .await;
    let field = b
        .client
        .find(fantoccini::Locator::Id("code"))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys(&code).await.unwrap();
    click(&b, "code-go").await;
    phase(&b, "the notice", "notice", Duration::from_secs(20)).await;
    b.close().await;

    // A browser without WebCodecs (Firefox with them switched off): what to use instead,
    // nothing broken, nothing sent.
    let sound = Sound::start();
    let launch = format!("{}/launch", server.public);
    let page = tokio::task::spawn_blocking(move || firefox(&["unsupported", &launch], &sound))
        .await
        .unwrap();
    assert_eq!(
        (
            page["phase"].as_str(),
            page["missing"].as_str(),
            &page["error"]
        ),
        (
            Some("unsupported"),
            Some("webcodecs"),
            &serde_json::Value::Null
        ),
        "{page}"
    );
    assert!(
        page["message"]
            .as_str()
            .unwrap()
            .contains("Google Chrome, Microsoft Edge ou Firefox"),
        "{page}"
    );
    assert_eq!(
        page["axe"],
        serde_json::json!([]),
        "accessibility of the unsupported step: {page}"
    );

    // Camera and microphone refused: which setting to change, and a retry.
    let (second, _, link2) = enrol_browser(&server).await;
    let b = Browser::start_with_args(&[
        "--use-fake-device-for-media-stream".into(),
        "--deny-permission-prompts".into(),
    ])
    .await;
    b.client.goto(&link2).await.unwrap();
    phase(&b, "the notice", "notice", Duration::from_secs(20)).await;
    click(&b, "consent-box").await;
    click(&b, "accept").await;
    phase(
        &b,
        "the permission step",
        "permission",
        Duration::from_secs(20),
    )
    .await;
    assert!(b
        .js("return document.body.innerText")
        .await
        .as_str()
        .unwrap()
        .contains("Autoriser"));
    shot(&b, "permission").await;
    accessible(&b, "the permission step").await;
    assert_eq!(report(&server, &second)["streams"], serde_json::json!([]));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_data_channel_unreachable_https_carries_everything() {
    // The server tells agents a UDP address where nothing answers: no channel opens.
    let Scene {
        _tmp,
        server,
        attempt,
        b,
        ..
    } = recording(&[("PROCTOR_WEBRTC__ANNOUNCE".into(), "127.0.0.1:9".into())]).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(agent_status(&b).await["channelOpen"], false);
    finish(&b).await;
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"]),
        (Some("ok"), &serde_json::json!([])),
        "{r}"
    );
    let https = r["chunks_by_transport"]["https"].as_u64().unwrap_or(0);
    assert!(
        https >= 6 && r["chunks_by_transport"].get("webrtc").is_none(),
        "HTTPS carried it all: {r}"
    );
    b.close().await;
}

/// A Firefox run on its own thread (the driver blocks), with its sound server.
async fn in_firefox<T: Send + 'static>(f: impl FnOnce(&Sound) -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || f(&Sound::start()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn firefox_withdrawal_leaves_nothing_and_another_tab_in_front_stops_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (withdrawn, _, link) = enrol_browser(&server).await;
    let page = in_firefox(move |s| firefox(&["withdraw", &link, "6"], s)).await;
    assert_eq!(
        (page["phase"].as_str(), &page["spooled"], &page["error"]),
        (
            Some("withdrawn"),
            &serde_json::json!([]),
            &serde_json::Value::Null
        ),
        "{page}"
    );
    assert_eq!(report(&server, &withdrawn)["state"], "destroyed");
    assert!(
        page["receipt"]
            .as_str()
            .is_some_and(|t| t.starts_with("Reçu de destruction vérifié")),
        "Firefox checks the receipt with the published key: {page}"
    );

    let (attempt, _, link) = enrol_browser(&server).await;
    let page = in_firefox(move |s| firefox(&["hidden", &link, "30"], s)).await;
    assert_eq!(
        (
            page["phase"].as_str(),
            page["hiddenWhileAway"].as_str(),
            &page["error"]
        ),
        (Some("done"), Some("hidden"), &serde_json::Value::Null),
        "{page}"
    );
    assert!(
        page["agent"]["hiddenMs"].as_u64().unwrap() >= 25_000,
        "{page}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (
            r["integrity"].as_str(),
            &r["missing"],
            &r["gaps"],
            &r["agent_silences"]
        ),
        (
            Some("ok"),
            &serde_json::json!([]),
            &serde_json::json!([]),
            &serde_json::json!([])
        ),
        "{r}"
    );
    let media = staff_media(
        &server,
        &attempt,
        r["streams"][0]["stream_id"].as_str().unwrap(),
    )
    .await;
    let d = support::media::decode(&media).unwrap();
    assert!(
        d.video_seconds >= 32.0 && d.video_frames as f64 > d.video_seconds * 12.0,
        "frames kept coming while hidden: {d:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firefox_reload_resumes_and_the_platform_ends_the_exam() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), 0);
    let (attempt, _, link) = enrol_browser(&server).await;
    let page = in_firefox(move |s| firefox(&["reload", &link, "9"], s)).await;
    assert_eq!(
        (page["phase"].as_str(), &page["error"]),
        (Some("done"), &serde_json::Value::Null),
        "{page}"
    );
    assert!(
        page["resumed"]
            .as_str()
            .unwrap()
            .starts_with("L'enregistrement a repris"),
        "{page}"
    );
    assert_eq!(
        page["axe"],
        serde_json::json!([]),
        "accessibility of the resume step: {page}"
    );
    let r = report(&server, &attempt);
    let streams = r["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{r}");
    assert_eq!(
        (
            streams[0]["missing"].clone(),
            streams[1]["missing"].clone(),
            streams[1]["status"].as_str()
        ),
        (
            serde_json::json!([]),
            serde_json::json!([]),
            Some("complete")
        ),
        "{r}"
    );
    assert!(!r["gaps"].as_array().unwrap().is_empty(), "{r}");

    let (attempt, _, link) = enrol_browser(&server).await;
    let public = server.public.clone();
    let ended = attempt.clone();
    let page = in_firefox(move |s| {
        let mut ff = Firefox::start(&["ended", &link], s);
        assert_eq!(ff.event(), "recording");
        std::thread::sleep(Duration::from_secs(8));
        let end = tokio::runtime::Handle::current().block_on(async {
            reqwest::Client::new()
                .post(format!("{public}/api/integration/v1/attempts/{ended}/end"))
                .bearer_auth(PLATFORM_TOKEN)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(end.is_success(), "the platform ends the attempt: {end}");
        ff.go_on();
        ff.finish()
    })
    .await;
    assert_eq!(
        (
            page["phase"].as_str(),
            &page["endedByPlatform"],
            &page["error"]
        ),
        (
            Some("done"),
            &serde_json::json!(true),
            &serde_json::Value::Null
        ),
        "{page}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), r["state"].as_str()),
        (Some("ok"), Some("ended")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firefox_with_the_server_unreachable_for_the_first_30_s_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(&data, port);
    let (attempt, _, link) = enrol_browser(&server).await;
    let page = in_firefox(move |s| {
        let mut server = server;
        let mut ff = Firefox::start(&["wait", &link], s);
        assert_eq!(ff.event(), "notice");
        server.kill();
        let outage = std::time::Instant::now();
        ff.go_on();
        assert_eq!(ff.event(), "recording");
        std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
        // Half a minute of recording sits in Firefox's OPFS (storage/default/ORIGIN/fs):
        // none of it in clear anywhere in its profile.
        assert_nothing_in_clear(ff.profile());
        let opfs: u64 = files_under(&ff.profile().join("storage/default"))
            .iter()
            .filter(|f| f.components().any(|c| c.as_os_str() == "fs"))
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum();
        assert!(
            opfs > 500_000,
            "the scan saw the spool in Firefox's OPFS ({opfs} bytes)"
        );
        let server = Server::start(&data, port);
        ff.go_on();
        (ff.finish(), server)
    })
    .await;
    let (page, server) = page;
    assert_eq!(
        (page["phase"].as_str(), &page["error"]),
        (Some("done"), &serde_json::Value::Null),
        "{page}"
    );
    let r = report(&server, &attempt);
    assert_eq!(
        (r["integrity"].as_str(), &r["missing"]),
        (Some("ok"), &serde_json::json!([])),
        "{r}"
    );
    assert!(r["recorded_seconds"].as_f64().unwrap() >= 30.0, "{r}");
}
