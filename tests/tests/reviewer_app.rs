//! The reviewer app in headless Chromium, on recordings made by the real agent: log in,
//! the queue, play (time advances, a frame is drawn), seek to the middle, 4×, a missing
//! fragment and a gap between streams jumped, a flag added with the keyboard, the review
//! submitted, logout. Screenshots of the queue and the player land in
//! `target/screenshots/`.

mod support;

use std::time::Duration;
use support::browser::{screenshot_dir, Browser};
use support::*;

const PASSWORD: &str = "Kilo-Tango-2026!";
const NEW_PASSWORD: &str = "Quatre-Chevaux-Bleus-9";

async fn run_agent(cmd: std::process::Command) {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_watches_flags_and_submits_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The quiet recording below is read from a file faster than real time: the window
    // that bounds a stream's media time by its age must allow it.
    let server = Server::start_with_env(
        &data,
        0,
        &[],
        &[
            ("PROCTOR_LIMITS__INDEX_WINDOW_MARGIN".into(), "24h".into()),
            // A file per chunk, as on S3: one fragment is lost below, alone (in a stream's
            // file a loss takes the file's tail; `packing.rs` in the API tests).
            (
                "PROCTOR_OBJECT_STORE__LOCAL_FILES".into(),
                "per_chunk".into(),
            ),
        ],
    );
    let (whole, whole_token) = enrol(&server).await;
    let (cut, cut_token) = enrol(&server).await;
    let (calm, calm_token) = enrol(&server).await;

    // One recording of 20 s, and one whose agent is killed after ~7 s and started again
    // 4 s later (two streams with a gap between them), recorded side by side.
    let a = run_agent(agent(
        &server.public,
        &whole_token,
        "20s",
        &tmp.path().join("spool-a"),
    ));
    let b = async {
        let spool = tmp.path().join("spool-b");
        let mut first = agent(&server.public, &cut_token, "60s", &spool)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(7)).await;
        first.kill().unwrap();
        first.wait().unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        run_agent(agent(&server.public, &cut_token, "6s", &spool)).await;
    };
    // 6 s of a still black picture and silence, then 6 s of the moving ball and ticks.
    let calm_file = quiet_then_busy(tmp.path());
    let c = async {
        let mut cmd = std::process::Command::new(bin("capture-agent"));
        cmd.args([
            "--server",
            &server.public,
            "--token",
            &calm_token,
            "--consent",
            "--source",
        ])
        .arg(format!("file:{}", calm_file.display()));
        cmd.arg("--spool").arg(tmp.path().join("spool-c"));
        run_agent(cmd).await;
    };
    tokio::join!(a, b, c);
    for attempt in [&whole, &cut, &calm] {
        server.cli(&["attempt", "end", attempt]);
    }
    // A fragment lost in the middle of the first recording (as if never uploaded).
    let report = server.cli(&["attempt", "show", &whole]);
    let stream = report["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = rusqlite::Connection::open(data.join("proctor.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        db.execute(
            "DELETE FROM chunks WHERE stream_id = ?1 AND idx = 5",
            [&stream]
        )
        .unwrap(),
        1
    );
    drop(db);

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
        &[("PROCTOR_PASSWORD", PASSWORD)],
    );
    for attempt in [&whole, &cut, &calm] {
        let sitting = server.cli(&["attempt", "show", attempt])["sitting_id"]
            .as_str()
            .unwrap()
            .to_owned();
        server.cli(&["assign", "--sitting", &sitting, "--login", "relectrice"]);
    }

    let staff = server.staff.replace("127.0.0.1", "localhost");
    let b = Browser::start().await;
    let c = &b.client;

    // Log in.
    c.goto(&format!("{staff}/")).await.unwrap();
    c.find(fantoccini::Locator::Id("login"))
        .await
        .unwrap()
        .send_keys("relectrice")
        .await
        .unwrap();
    c.find(fantoccini::Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(fantoccini::Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // First login: the password chosen by the admin must be replaced first, under the
    // CNIL rule (a common one is refused).
    b.until(
        "the password page",
        Duration::from_secs(10),
        "return location.pathname === '/account/password'",
    )
    .await;
    b.change_password(PASSWORD, "Azerty-2026!").await;
    b.until("the refusal of a common password", Duration::from_secs(5), "return document.querySelector('.error') !== null && location.pathname === '/account/password'").await;
    b.change_password(PASSWORD, NEW_PASSWORD).await;
    b.until(
        "the queue",
        Duration::from_secs(10),
        "return location.pathname === '/queue'",
    )
    .await;

    // The queue: both attempts, the cut one incomplete.
    assert_eq!(
        b.js("return document.querySelectorAll('#queue tbody tr').length")
            .await,
        3
    );
    let rows = b.js("return Array.from(document.querySelectorAll('#queue tbody tr')).map(r => r.dataset.integrity)").await;
    assert_eq!(
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| *r == "incomplete")
            .count(),
        2,
        "{rows}"
    );
    b.screenshot(&screenshot_dir().join("queue.png")).await;

    // The player on the whole recording: play, time advances, a frame is drawn.
    c.goto(&format!("{staff}/attempts/{whole}")).await.unwrap();
    b.until(
        "the player to load",
        Duration::from_secs(15),
        "return !!window.__player && document.getElementById('video').readyState >= 2",
    )
    .await;
    c.find(fantoccini::Locator::Css("body"))
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
             let max = 0; const colours = new Set();
             for (let i = 0; i < d.length; i += 4) { max = Math.max(max, d[i] + d[i + 1] + d[i + 2]); colours.add((d[i] >> 5) * 64 + (d[i + 1] >> 5) * 8 + (d[i + 2] >> 5)); }
             return { max, colours: colours.size, w: v.videoWidth };")
        .await;
    assert!(frame["w"].as_u64().unwrap() >= 320, "{frame}");
    // The test source draws a white ball on black: a bright pixel and several colours.
    assert!(
        frame["max"].as_u64().unwrap() > 400 && frame["colours"].as_u64().unwrap() >= 2,
        "a real frame was drawn: {frame}"
    );

    // The activity strip: the ball moves and the ticks sound, second by second, as the
    // agent measured them; a thumbnail shows when hovering the timeline.
    b.until("the activity strip", Duration::from_secs(10), "const p = window.__player(); return p.activity >= 15 && p.moving >= 10 && p.sounding >= 10").await;
    b.js("const t = document.getElementById('timeline'); const r = t.getBoundingClientRect();
          t.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + r.width * 0.3, clientY: r.top + 5, bubbles: true }));")
        .await;
    b.until("a thumbnail on hover", Duration::from_secs(10), "const i = document.getElementById('thumb'); return !i.hidden && i.complete && i.naturalWidth === 160 && i.naturalHeight === 120").await;

    // Seek to the middle by clicking the timeline.
    b.js("const t = document.getElementById('timeline'); const r = t.getBoundingClientRect();
          t.dispatchEvent(new MouseEvent('click', { clientX: r.left + r.width * 0.5, clientY: r.top + 5, bubbles: true }));")
        .await;
    b.until(
        "the seek to the middle",
        Duration::from_secs(10),
        "const p = window.__player(); return p.t > 13 && p.t < 17 && !p.paused",
    )
    .await;
    b.screenshot(&screenshot_dir().join("player.png")).await;

    // Back to the start, 4×: the missing fragment 5 (8–10 s) is jumped, playback goes on.
    b.js("document.getElementById('speed').value = '4'; document.getElementById('speed').dispatchEvent(new Event('change'));").await;
    b.keys("\u{E012}\u{E012}\u{E012}\u{E012}").await; // ← ×4: −20 s, clamped to the start
    b.until(
        "4× playback across the missing fragment",
        Duration::from_secs(20),
        "const p = window.__player(); return p.rate === 4 && p.t > 12 && p.jumps >= 1",
    )
    .await;

    // A flag with the keyboard: F, a category, a note, Enter on the save button.
    b.keys(" ").await;
    b.until(
        "pause",
        Duration::from_secs(5),
        "return window.__player().paused",
    )
    .await;
    c.find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.keys("f").await;
    b.until("the flag form", Duration::from_secs(5), "return !document.getElementById('flag-form').hidden && document.activeElement.id === 'flag-category'").await;
    b.keys("\u{E015}").await; // ↓: the second category
    b.keys("\u{E004}\u{E004}parle à quelqu’un hors champ\u{E004}\u{E007}")
        .await; // Tab severity, Tab note, type, Tab save, Enter
    b.until(
        "the flag in the list",
        Duration::from_secs(5),
        "return document.querySelectorAll('#flags li').length === 1",
    )
    .await;
    let flag_text = b
        .js("return document.querySelector('#flags li').textContent")
        .await;
    assert!(
        flag_text
            .as_str()
            .unwrap()
            .contains("Candidat absent du champ")
            && flag_text.as_str().unwrap().contains("hors champ"),
        "{flag_text}"
    );

    // Edit it: severity raised.
    b.js("Array.from(document.querySelectorAll('#flags li button')).find(x => x.textContent === 'Modifier').click()").await;
    b.until("the flag form, filled", Duration::from_secs(5), "return !document.getElementById('flag-form').hidden && document.getElementById('flag-category').value === 'candidate_absent'").await;
    b.js("document.getElementById('flag-severity').value = 'high'; document.getElementById('flag-save').click()").await;
    b.until("the edited flag", Duration::from_secs(5), "const li = document.querySelectorAll('#flags li'); return li.length === 1 && li[0].textContent.includes('Élevée')").await;

    // Submit the review: irregularities found.
    c.find(fantoccini::Locator::Id("submit-irregularities"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until("the submitted review", Duration::from_secs(5), "return !document.getElementById('submitted').hidden && document.getElementById('add-flag').hidden").await;
    let outcome = reqwest::Client::new()
        .get(format!(
            "{}/api/integration/v1/attempts/{whole}/review",
            server.public
        ))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(outcome["status"], "submitted", "{outcome}");
    assert_eq!(
        outcome["rounds"][0]["outcome"], "irregularities",
        "{outcome}"
    );
    assert_eq!(
        outcome["rounds"][0]["categories"]["candidate_absent"], 1,
        "{outcome}"
    );

    // The cut recording: 4× from the start, the gap between the streams jumped. One of its
    // fragments lost from the store: the player says missing, not altered (issue 20 #13).
    let first = server.cli(&["attempt", "show", &cut])["streams"][0]["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lost = std::fs::read_dir(data.join("blobs").join("attempts").join(&cut).join(&first))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("0000000002-"))
        .expect("fragment 2 of the first stream");
    std::fs::remove_file(lost.path()).unwrap();
    c.goto(&format!("{staff}/attempts/{cut}")).await.unwrap();
    b.until(
        "the player to load",
        Duration::from_secs(15),
        "return !!window.__player && document.getElementById('video').readyState >= 2",
    )
    .await;
    let gaps = b
        .js("return document.querySelectorAll('#timeline .gap').length")
        .await;
    assert_eq!(gaps, 1, "the gap is drawn");
    b.js("document.getElementById('speed').value = '4'; document.getElementById('speed').dispatchEvent(new Event('change')); document.getElementById('video').play();").await;
    // Issue 20 #13: still at 4× in the second stream (a new source used to reset it to 1×).
    b.until("the second stream playing at 4×", Duration::from_secs(30), "const p = window.__player(); return p.stream === 1 && p.t > 1 && !p.paused && p.jumps >= 1 && p.rate === 4 && document.getElementById('speed').value === '4'").await;
    let (missing, altered) = (
        b.js("return document.querySelectorAll('#timeline .missing').length")
            .await,
        b.js("return document.querySelectorAll('#timeline .altered').length")
            .await,
    );
    assert_eq!(missing, 1, "the lost fragment is drawn as missing");
    assert_eq!(altered, 0, "and not as altered");

    // Quiet stretches skipped: with the box ticked, playback leaves the still, silent first
    // 6 s at once instead of playing them.
    c.goto(&format!("{staff}/attempts/{calm}")).await.unwrap();
    b.until(
        "the player to load",
        Duration::from_secs(15),
        "return !!window.__player && document.getElementById('video').readyState >= 2",
    )
    .await;
    b.until(
        "the activity strip",
        Duration::from_secs(10),
        "return window.__player().activity >= 10",
    )
    .await;
    b.js("document.getElementById('skip-quiet').click(); document.getElementById('video').play();")
        .await;
    let started = std::time::Instant::now();
    b.until(
        "the skip past the quiet stretch",
        Duration::from_secs(10),
        "const p = window.__player(); return p.t >= 5.5 && p.jumps >= 1 && !p.paused",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "6 s of quiet were skipped, not played ({:?})",
        started.elapsed()
    );

    // Log out: back to the login page, and the queue is closed.
    c.find(fantoccini::Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until(
        "the login page",
        Duration::from_secs(5),
        "return location.pathname === '/' && !!document.getElementById('password')",
    )
    .await;
    c.goto(&format!("{staff}/queue")).await.unwrap();
    b.until(
        "the redirect to login",
        Duration::from_secs(5),
        "return location.pathname === '/'",
    )
    .await;
    // The jury of the first sitting sees the outcome, not the notes, and may ask a second review.
    cli(
        &data,
        &["staff", "add", "--role", "jury", "--login", "jure"],
        &[("PROCTOR_PASSWORD", PASSWORD)],
    );
    let sitting = server.cli(&["attempt", "show", &whole])["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.cli(&["assign", "--sitting", &sitting, "--login", "jure"]);
    b.first_login(&staff, "jure", PASSWORD, NEW_PASSWORD).await;
    b.until(
        "the jury page",
        Duration::from_secs(5),
        "return location.pathname === '/jury'",
    )
    .await;
    let jury = b
        .js("return document.getElementById('jury').innerText")
        .await;
    let jury = jury.as_str().unwrap();
    assert!(
        jury.contains("irrégularités constatées")
            && jury.contains("Candidat absent du champ ×1")
            && !jury.contains("hors champ"),
        "{jury}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('form[action=\"/jury/second-review\"]').length")
            .await,
        1
    );
    b.close().await;

    // Every fragment watched is in the audit trail, with its media time.
    let trail = std::process::Command::new(bin("proctor-server"))
        .arg("--data-dir")
        .arg(&data)
        .args(["audit", "list"])
        .output()
        .unwrap();
    let trail = String::from_utf8_lossy(&trail.stdout);
    assert!(
        trail
            .lines()
            .filter(|l| l.contains("recording_viewed") && l.contains("media_from_ms"))
            .count()
            >= 5
    );
    assert!(trail.lines().any(|l| l.contains("review_submitted")));
    assert!(
        trail.lines().any(|l| l.contains("activity_viewed"))
            && trail.lines().any(|l| l.contains("thumbnail_viewed"))
    );
    assert!(trail.lines().any(|l| l.contains("staff_logout")));
    assert_eq!(server.cli(&["audit", "verify"])["chain"], "intact");
}

/// A file whose first 6 s are a still black picture and silence, the next 6 s the moving
/// ball and ticks (H.264 + AAC in MP4, made with gst-launch in about a second).
fn quiet_then_busy(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("calme.mp4");
    let caps = "video/x-raw,width=320,height=240,framerate=15/1";
    let audio = "audio/x-raw,rate=48000,channels=1";
    let pipeline = format!(
        "concat name=vc ! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! h264parse ! mp4mux name=m ! filesink location={path} \
         videotestsrc pattern=black num-buffers=90 ! {caps} ! vc. videotestsrc pattern=ball num-buffers=90 ! {caps} ! vc. \
         concat name=ac ! audioconvert ! avenc_aac ! aacparse ! m. \
         audiotestsrc wave=silence num-buffers=282 samplesperbuffer=1024 ! {audio} ! ac. audiotestsrc wave=ticks num-buffers=282 samplesperbuffer=1024 ! {audio} ! ac.",
        path = path.display()
    );
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "gst-launch {pipeline}");
    path
}
