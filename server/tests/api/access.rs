//! The access matrix: every staff route, JSON API and pages, against every kind of
//! caller, with the exact status of each cell. A cell that changes is a change of who may
//! do what, and must show up here.

use crate::helpers::*;
use std::time::Duration;
use uuid::Uuid;

/// The callers, in the order of each row's statuses.
const WHO: [&str; 8] = [
    "anonymous",
    "expired session",
    "candidate token",
    "reviewer",
    "other reviewer",
    "jury",
    "admin",
    "must change password",
];

struct Cell {
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
    expect: [u16; 8],
}

fn cell(method: &str, path: String, body: Option<serde_json::Value>, expect: [u16; 8]) -> Cell {
    Cell {
        method: method.parse().unwrap(),
        path,
        body,
        expect,
    }
}

#[tokio::test]
async fn every_role_against_every_staff_route() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, 3).into_iter().enumerate() {
        assert!(app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk)
            .await
            .status()
            .is_success());
    }
    app.end_stream(&c.token, s.stream_id, 3).await;
    let proctor = app.state().await;
    proctor
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let sitting = app.sitting_of(c.attempt_id).await;

    // The expired session idles past the limit before the others log in.
    let expired = add_staff(&app, "endormie", "reviewer").await;
    app.clock.advance(Duration::from_secs(31 * 60));
    let reviewer = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let outsider = add_staff(&app, "autre", "reviewer").await;
    let jury = add_staff(&app, "jure", "jury").await;
    proctor
        .accounts
        .assign_sitting("jure", sitting, "test")
        .await
        .unwrap();
    let admin = add_staff(&app, "admin", "admin").await;
    proctor
        .accounts
        .add_staff("nouvelle", "reviewer", "Kilo-Tango-2026")
        .await
        .unwrap();
    proctor
        .accounts
        .assign_sitting("nouvelle", sitting, "test")
        .await
        .unwrap();
    let pending = staff_login(&app, "nouvelle", "Kilo-Tango-2026").await;
    let tokens: [Option<&str>; 8] = [
        None,
        Some(&expired),
        Some(&c.token),
        Some(&reviewer),
        Some(&outsider),
        Some(&jury),
        Some(&admin),
        Some(&pending),
    ];

    let (a, st) = (c.attempt_id, s.stream_id);
    let api = |p: &str| format!("/api/staff/v1{p}");
    let flag = serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "talking", "severity": "low", "note": "" });
    let unknown = Uuid::new_v4();
    #[rustfmt::skip]
    let matrix = vec![
        //                                                                                   anon expd cand  rev  out jury adm  pend
        cell("GET", api("/queue"), None,                                                    [401, 401, 401, 200, 200, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}")), None,                                   [401, 401, 401, 200, 404, 200, 200, 403]),
        cell("GET", api(&format!("/attempts/{a}/timeline")), None,                          [401, 401, 401, 200, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/streams/{st}/fragments/1")), None,          [401, 401, 401, 200, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/streams/{st}/fragments/9")), None,          [401, 401, 401, 404, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{unknown}/timeline")), None,                    [401, 401, 401, 404, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/activity")), None,                          [401, 401, 401, 200, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/streams/{st}/fragments/1/thumbnail")), None, [401, 401, 401, 404, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/streams/{st}/media")), None,                [401, 401, 401, 200, 404, 403, 403, 403]),
        cell("GET", api(&format!("/attempts/{a}/review")), None,                            [401, 401, 401, 200, 404, 403, 403, 403]),
        cell("POST", api(&format!("/attempts/{a}/flags")), Some(flag.clone()),              [401, 401, 401, 201, 404, 403, 403, 403]),
        cell("PUT", api(&format!("/attempts/{a}/flags/{unknown}")), Some(flag.clone()),     [401, 401, 401, 404, 404, 403, 403, 403]),
        cell("DELETE", api(&format!("/attempts/{a}/flags/{}", Uuid::new_v4())), None,      [401, 401, 401, 404, 404, 403, 403, 403]),
        cell("POST", api(&format!("/attempts/{a}/review/submit")), Some(serde_json::json!({ "outcome": "no_irregularity" })),
                                                                                            [401, 401, 401, 409, 404, 403, 403, 403]),
        cell("POST", api(&format!("/attempts/{a}/second-review")), Some(serde_json::json!({ "reviewer": "autre" })),
                                                                                            [401, 401, 401, 403, 403, 409, 409, 403]),
        cell("GET", api(&format!("/attempts/{a}/outcome")), None,                           [401, 401, 401, 200, 404, 200, 200, 403]),
        cell("GET", api("/admin/staff"), None,                                              [401, 401, 401, 403, 403, 403, 200, 403]),
        cell("POST", api("/admin/staff/nobody/disable"), None,                              [401, 401, 401, 403, 403, 403, 404, 403]),
        cell("POST", api("/admin/assignments"), Some(serde_json::json!({ "login": "nobody", "sitting": sitting })),
                                                                                            [401, 401, 401, 403, 403, 403, 404, 403]),
        cell("POST", api("/admin/totp-required"), Some(serde_json::json!({ "required": false })),
                                                                                            [401, 401, 401, 403, 403, 403, 204, 403]),
        cell("GET", api("/admin/audit"), None,                                              [401, 401, 401, 403, 403, 403, 200, 403]),
        cell("POST", api("/account/password"), Some(serde_json::json!({ "current": "wrong", "new": "Quatre-Chevaux-Bleus-9" })),
                                                                                            [401, 401, 401, 403, 403, 403, 403, 403]),
        cell("GET", api("/account/totp"), None,                                             [401, 401, 401, 200, 200, 200, 200, 200]),
        cell("GET", "/metrics".into(), None,                                                [200, 200, 200, 200, 200, 200, 200, 200]),
        // Pages: no session (or a dead one) goes to the login page; something pending
        // goes to the page that settles it.
        cell("GET", "/".into(), None,                                                       [200, 200, 200, 303, 303, 303, 303, 303]),
        cell("GET", "/queue".into(), None,                                                  [303, 303, 303, 200, 200, 403, 403, 303]),
        cell("GET", format!("/attempts/{a}"), None,                                         [303, 303, 303, 200, 404, 403, 403, 303]),
        cell("GET", "/jury".into(), None,                                                   [303, 303, 303, 403, 403, 200, 403, 303]),
        cell("GET", "/admin".into(), None,                                                  [303, 303, 303, 403, 403, 403, 200, 303]),
        cell("GET", "/admin/audit".into(), None,                                            [303, 303, 303, 403, 403, 403, 200, 303]),
        cell("GET", "/account/password".into(), None,                                      [303, 303, 303, 200, 200, 200, 200, 200]),
        cell("POST", api("/logout"), None,                                                  [401, 401, 401, 204, 204, 204, 204, 204]),
    ];

    // Redirects are part of the answer: not followed.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut wrong = Vec::new();
    for cell in &matrix {
        for (i, token) in tokens.iter().enumerate() {
            let mut req = http.request(cell.method.clone(), format!("{}{}", app.staff, cell.path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &cell.body {
                req = req.json(b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            if status != cell.expect[i] {
                wrong.push(format!(
                    "{} {} as {}: {} (expected {}) {}",
                    cell.method,
                    cell.path,
                    WHO[i],
                    status,
                    cell.expect[i],
                    r.text().await.unwrap_or_default()
                ));
                continue;
            }
            // Every API refusal is JSON with its code; pages answer HTML.
            if status >= 400 && cell.path.starts_with("/api/") {
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(
                    body["error"].is_string(),
                    "{} {}: {body}",
                    cell.method,
                    cell.path
                );
                if WHO[i] == "must change password" {
                    assert!(
                        body["error"] == "password_change_required"
                            || cell.path.contains("/account/"),
                        "the pending account is told why: {} {body}",
                        cell.path
                    );
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn a_cookie_session_needs_the_csrf_token_for_every_change() {
    let app = spawn_app().await;
    let (c, _) = app.recording_candidate().await;
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/staff/v1/attempts/{}/flags", app.staff, c.attempt_id);
    let flag = serde_json::json!({ "start_ms": 1_000, "end_ms": 2_000, "category": "talking", "severity": "low" });
    let cookie = format!("proctor_staff={token}");
    // Reading with the cookie alone is fine; changing is not.
    let r = http
        .get(format!(
            "{}/api/staff/v1/attempts/{}/review",
            app.staff, c.attempt_id
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(&url)
        .header("cookie", &cookie)
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let r = http
        .post(&url)
        .header("cookie", &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let csrf = server::routes::session::csrf_token(&token);
    let r = http
        .post(&url)
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Nothing was stored from the refused attempts.
    assert_eq!(
        app.db()
            .await
            .flags_of(c.attempt_id.into())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn every_staff_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/", "/assets/player.js", "/api/staff/v1/queue", "/health"] {
        let r = app
            .http
            .get(format!("{}{path}", app.staff))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    // The pages live on the staff listener only.
    assert_eq!(
        app.http
            .get(format!("{}/", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.http
            .get(format!("{}/assets/player.js", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
