//! The jury's PV in headless Chromium: the sitting's page, the form (validated with
//! reservations, one contested candidate), the refusal while a review is unsubmitted, the
//! explicit override, the confirmation page that says what is deleted now and what is kept
//! until when, the irreversible decision. Screenshots in `target/screenshots/`.

mod support;

use fantoccini::Locator;
use std::time::Duration;
use support::browser::{screenshot_dir, Browser};
use support::*;

async fn post(url: String, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(PLATFORM_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jury_decides_the_pv_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, 0);
    let sitting = post(
        format!("{}/api/integration/v1/sittings", server.public),
        serde_json::json!({ "ref": "TOEIC-2027-03-12" }),
    )
    .await["sitting_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut attempts = Vec::new();
    for reference in ["Dupont", "Martin"] {
        let c = post(
            format!(
                "{}/api/integration/v1/sittings/{sitting}/candidates",
                server.public
            ),
            serde_json::json!({ "ref": reference }),
        )
        .await;
        attempts.push((
            c["attempt_id"].as_str().unwrap().to_owned(),
            c["launch_token"].as_str().unwrap().to_owned(),
        ));
    }
    // Both record a few seconds, side by side, then the exam ends.
    let runs = attempts.iter().enumerate().map(|(i, (_, token))| {
        let cmd = agent(
            &server.public,
            token,
            "4s",
            &tmp.path().join(format!("spool-{i}")),
        );
        tokio::task::spawn_blocking(move || { cmd }.output().unwrap())
    });
    for out in futures::future::join_all(runs).await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "agent: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (a, _) in &attempts {
        server.cli(&["attempt", "end", a]);
    }
    cli(
        &data,
        &["staff", "add", "--role", "jury", "--login", "presidente"],
        &[("PROCTOR_PASSWORD", "Kilo-Tango-2026!")],
    );
    server.cli(&["assign", "--sitting", &sitting, "--login", "presidente"]);

    let b = Browser::start().await;
    let c = &b.client;
    let staff = server.staff.replace("127.0.0.1", "localhost");
    b.first_login(
        &staff,
        "presidente",
        "Kilo-Tango-2026!",
        "Quatre-Chevaux-Bleus-9",
    )
    .await;
    b.until(
        "the jury page",
        Duration::from_secs(10),
        "return location.pathname === '/jury'",
    )
    .await;
    b.until("the undecided PV", Duration::from_secs(5), "return document.querySelector('#sittings a') !== null && document.body.textContent.includes('PV non encore décidé')").await;
    c.find(Locator::Css("#sittings a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until(
        "the PV form",
        Duration::from_secs(10),
        "return document.getElementById('pv-form') !== null",
    )
    .await;

    // With reservations, Martin contested; the unsubmitted reviews refuse it at first.
    let martin = &attempts[1].0;
    b.js("document.getElementById('outcome-reservations').click()")
        .await;
    c.find(Locator::Id(&format!("contested-{martin}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.screenshot(&screenshot_dir().join("jury_pv_form.png"))
        .await;
    c.find(Locator::Css("#pv-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until("the refusal: reviews unsubmitted", Duration::from_secs(10), "const e = document.querySelector('.error'); return e !== null && e.textContent.includes('ne sont pas transmises')").await;
    b.js("document.getElementById('outcome-reservations').click()")
        .await;
    c.find(Locator::Id(&format!("contested-{martin}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("override"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#pv-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The confirmation says plainly what goes now and what stays until when.
    b.until(
        "the confirmation page",
        Duration::from_secs(10),
        "return document.getElementById('pv-confirm') !== null",
    )
    .await;
    let rows = b.js("return Array.from(document.querySelectorAll('#pv-plan tbody tr')).map(r => r.textContent.replace(/\\s+/g, ' ').trim())").await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("Dupont") && r.contains("supprimé immédiatement")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("Martin") && r.contains("conservé jusqu’au")),
        "{rows:?}"
    );
    let text = b.js("return document.body.textContent").await;
    assert!(text.as_str().unwrap().contains("irréversible"), "{text}");
    b.screenshot(&screenshot_dir().join("jury_pv_confirm.png"))
        .await;
    // Nothing is decided until confirmed.
    assert_eq!(
        server.cli(&["attempt", "show", &attempts[0].0])["state"],
        "ended"
    );
    c.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#pv-confirm button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until("the recorded decision", Duration::from_secs(15), "const r = document.getElementById('pv-receipts'); return r !== null && r.textContent.startsWith('1 ')").await;
    b.screenshot(&screenshot_dir().join("jury_pv_done.png"))
        .await;

    let dupont = server.cli(&["attempt", "show", &attempts[0].0]);
    assert_eq!(dupont["state"], "destroyed", "{dupont:#}");
    assert_eq!(
        dupont["retention"]["receipt"]["receipt"]["by"],
        "presidente"
    );
    let kept = server.cli(&["attempt", "show", martin]);
    assert_eq!(
        (
            kept["state"].as_str(),
            kept["retention"]["contested"].as_bool()
        ),
        (Some("decided"), Some(true)),
        "{kept:#}"
    );
    assert!(kept["retention"]["destroy_at"].is_string(), "{kept:#}");
    // Back on the jury page, the PV reads as decided, with no link to decide again.
    c.goto(&format!("{staff}/jury")).await.unwrap();
    b.until("the decided PV", Duration::from_secs(10), "return document.querySelector('.pv-decided') !== null && document.querySelector('#sittings a') === null").await;
    b.close().await;
}
