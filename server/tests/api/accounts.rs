//! Staff accounts: the forced first change, common passwords, the TOTP second factor (a
//! code used once), the admin's requirement of it, disabling, resets, password age.

use crate::helpers::*;
use std::time::Duration;

async fn post(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    app.http
        .post(format!("{}/api/staff/v1{path}", app.staff))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn login(
    app: &TestApp,
    login: &str,
    password: &str,
    totp: Option<String>,
) -> reqwest::Response {
    app.http
        .post(format!("{}/api/staff/v1/login", app.staff))
        .json(&serde_json::json!({ "login": login, "password": password, "totp": totp }))
        .send()
        .await
        .unwrap()
}

fn now_s(app: &TestApp) -> u64 {
    use server::clock::Clock;
    app.clock.now().unix_timestamp() as u64
}

#[tokio::test]
async fn the_first_login_must_change_the_password_and_common_ones_are_refused() {
    let app = spawn_app().await;
    app.state()
        .await
        .accounts
        .add_staff("relectrice", "reviewer", "Kilo-Tango-2026")
        .await
        .unwrap();
    let token = staff_login(&app, "relectrice", "Kilo-Tango-2026").await;
    assert_eq!(
        error_code(app.staff_get(&token, "/queue").await).await,
        (403, "password_change_required".into())
    );
    for (new, code) in [
        ("Azerty-2026!", "password_rejected"),
        ("court", "password_rejected"),
        ("Relectrice-Rouge-7", "password_rejected"),
    ] {
        let r = post(
            &app,
            &token,
            "/account/password",
            serde_json::json!({ "current": "Kilo-Tango-2026", "new": new }),
        )
        .await;
        assert_eq!(error_code(r).await, (400, code.into()), "{new}");
    }
    let r = post(
        &app,
        &token,
        "/account/password",
        serde_json::json!({ "current": "Kilo-Tango-2026", "new": "Kilo-Tango-2026" }),
    )
    .await;
    assert_eq!(r.status(), 400, "the same password again");
    let r = post(
        &app,
        &token,
        "/account/password",
        serde_json::json!({ "current": "Quatre-Chevaux-Bleus-9", "new": "Quatre-Chevaux-Bleus-9" }),
    )
    .await;
    assert_eq!(
        error_code(r).await,
        (403, "forbidden".into()),
        "the current password is checked"
    );
    let r = post(
        &app,
        &token,
        "/account/password",
        serde_json::json!({ "current": "Kilo-Tango-2026", "new": "Quatre-Chevaux-Bleus-9" }),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.staff_get(&token, "/queue").await.status(),
        200,
        "the same session goes on"
    );
    assert_eq!(
        login(&app, "relectrice", "Kilo-Tango-2026", None)
            .await
            .status(),
        401
    );
    assert_eq!(
        login(&app, "relectrice", "Quatre-Chevaux-Bleus-9", None)
            .await
            .status(),
        200
    );
    // Past the maximum age, the next login must change it again.
    app.clock.advance(Duration::from_secs(366 * 24 * 3600));
    let token = staff_login(&app, "relectrice", "Quatre-Chevaux-Bleus-9").await;
    assert_eq!(
        error_code(app.staff_get(&token, "/queue").await).await,
        (403, "password_change_required".into())
    );
}

/// Starts an enrolment; returns the secret and a generator for its codes.
async fn begin_totp(app: &TestApp, token: &str) -> (String, totp_rs::TOTP) {
    let begin: serde_json::Value = app
        .staff_get(token, "/account/totp")
        .await
        .json()
        .await
        .unwrap();
    let secret = begin["secret"].as_str().unwrap().to_owned();
    assert!(begin["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap(),
        None,
        String::new(),
    )
    .unwrap();
    (secret, totp)
}

#[tokio::test]
async fn totp_codes_are_checked_and_never_accepted_twice() {
    let app = spawn_app().await;
    let token = add_staff(&app, "relectrice", "reviewer").await;
    let (secret, totp) = begin_totp(&app, &token).await;
    let wrong = if totp.generate(now_s(&app)) == "123456" {
        "654321"
    } else {
        "123456"
    };
    let r = post(
        &app,
        &token,
        "/account/totp",
        serde_json::json!({ "secret": secret, "code": wrong }),
    )
    .await;
    assert_eq!(r.status(), 400, "a wrong first code enrols nothing");
    let code = totp.generate(now_s(&app));
    assert_eq!(
        post(
            &app,
            &token,
            "/account/totp",
            serde_json::json!({ "secret": secret, "code": code })
        )
        .await
        .status(),
        204
    );

    assert_eq!(
        error_code(login(&app, "relectrice", STAFF_PASSWORD, None).await).await,
        (401, "totp_required".into())
    );
    assert_eq!(
        login(&app, "relectrice", STAFF_PASSWORD, Some(code.clone()))
            .await
            .status(),
        401,
        "the enrolment's code is spent"
    );
    app.clock.advance(Duration::from_secs(30));
    let next = totp.generate(now_s(&app));
    assert_eq!(
        login(&app, "relectrice", STAFF_PASSWORD, Some(next.clone()))
            .await
            .status(),
        200
    );
    assert_eq!(
        login(&app, "relectrice", STAFF_PASSWORD, Some(next))
            .await
            .status(),
        401,
        "replayed"
    );
    // The secret is stored sealed, not in clear.
    let stored = app
        .db()
        .await
        .staff_by_login("relectrice")
        .await
        .unwrap()
        .totp_secret
        .unwrap();
    let raw = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    assert!(!stored.windows(raw.len()).any(|w| w == raw.as_slice()));
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "totp_enrolled" && e.actor == "relectrice"));
}

#[tokio::test]
async fn an_admin_requires_totp_disables_and_resets() {
    let app = spawn_app().await;
    let admin = add_staff(&app, "admin", "admin").await;
    let reviewer = add_staff(&app, "relectrice", "reviewer").await;
    // The admin enrols first: requiring TOTP applies to the admin's own account too.
    let (secret, totp) = begin_totp(&app, &admin).await;
    let code = totp.generate(now_s(&app));
    assert_eq!(
        post(
            &app,
            &admin,
            "/account/totp",
            serde_json::json!({ "secret": secret, "code": code })
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        post(
            &app,
            &admin,
            "/admin/totp-required",
            serde_json::json!({ "required": true })
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        error_code(app.staff_get(&reviewer, "/queue").await).await,
        (403, "totp_enrolment_required".into())
    );
    assert_eq!(
        app.staff_get(&reviewer, "/account/totp").await.status(),
        200,
        "the enrolment page stays open"
    );
    assert_eq!(
        post(
            &app,
            &admin,
            "/admin/totp-required",
            serde_json::json!({ "required": false })
        )
        .await
        .status(),
        204
    );
    assert_eq!(app.staff_get(&reviewer, "/queue").await.status(), 200);

    // Disabling ends the sessions at once and refuses the login like a wrong password.
    assert_eq!(
        post(
            &app,
            &admin,
            "/admin/staff/relectrice/disable",
            serde_json::json!({})
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.staff_get(&reviewer, "/queue").await.status(), 401);
    assert_eq!(
        error_code(login(&app, "relectrice", STAFF_PASSWORD, None).await).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        post(
            &app,
            &admin,
            "/admin/staff/relectrice/enable",
            serde_json::json!({})
        )
        .await
        .status(),
        200
    );

    // Issue 20 #7: a reset needs two admins. The first one's request changes nothing and
    // shows nothing; asking again changes nothing either; a second admin's confirmation
    // resets it and is the one answer with the one-time password.
    let reset = |token: String| {
        let app = &app;
        async move {
            post(
                app,
                &token,
                "/admin/staff/relectrice/reset-password",
                serde_json::json!({}),
            )
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()
        }
    };
    for _ in 0..2 {
        let asked = reset(admin.clone()).await;
        assert!(asked["temporary_password"].is_null(), "{asked}");
        assert!(asked["pending"].is_string(), "{asked}");
        assert_eq!(
            login(&app, "relectrice", STAFF_PASSWORD, None)
                .await
                .status(),
            200
        );
    }
    let second = add_staff(&app, "admin2", "admin").await;
    let reset = reset(second).await;
    let temporary = reset["temporary_password"].as_str().unwrap();
    assert_eq!(
        login(&app, "relectrice", STAFF_PASSWORD, None)
            .await
            .status(),
        401
    );
    // The owner is told at the next login what was done, and by whom; once.
    let first: serde_json::Value = login(&app, "relectrice", temporary, None)
        .await
        .json()
        .await
        .unwrap();
    let notices = first["account_notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{first}");
    assert_eq!(notices[0]["action"], "password_reset");
    assert_eq!(notices[0]["by"], serde_json::json!(["admin", "admin2"]));
    let token = staff_login(&app, "relectrice", temporary).await;
    assert_eq!(
        error_code(app.staff_get(&token, "/queue").await).await,
        (403, "password_change_required".into())
    );
    let again: serde_json::Value = login(&app, "relectrice", temporary, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["account_notices"], serde_json::json!([]), "told once");

    // Accounts created by the admin come with a one-time password too.
    let created = post(
        &app,
        &admin,
        "/admin/staff",
        serde_json::json!({ "login": "jure", "role": "jury" }),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert!(created["temporary_password"].as_str().unwrap().len() >= 12);
    let list: serde_json::Value = app
        .staff_get(&admin, "/admin/staff")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4, "with admin2");
    assert!(!list.to_string().contains("argon2"), "no hash leaves");
    let trail = app.db().await.audit_trail().await.unwrap();
    for action in [
        "totp_requirement_set",
        "staff_disabled",
        "staff_enabled",
        "password_reset_requested",
        "staff_added",
    ] {
        assert!(
            trail
                .iter()
                .any(|e| e.action == action && e.actor == "admin"),
            "{action} audited"
        );
    }
    assert!(trail.iter().any(|e| e.action == "password_reset"
        && e.actor == "admin2"
        && e.detail.contains("\"requested_by\":\"admin\"")));
}

/// Issue 20 #10: a session alone cannot swap the second factor (the password and a current
/// code of the one in place are asked), and a login without its code counts as a failure:
/// "code required" no longer confirms a guessed password for free.
#[tokio::test]
async fn replacing_a_second_factor_takes_its_proof_and_a_missing_code_counts() {
    let app = spawn_app().await;
    let token = add_staff(&app, "relectrice", "reviewer").await;
    let (secret, old) = begin_totp(&app, &token).await;
    let code = old.generate(now_s(&app));
    let enrol = |secret: &str, code: &str, proof: Option<(&str, String)>| {
        let mut body = serde_json::json!({ "secret": secret, "code": code });
        if let Some((password, current)) = proof {
            body["password"] = password.into();
            body["current_code"] = current.into();
        }
        post(&app, &token, "/account/totp", body)
    };
    assert_eq!(
        enrol(&secret, &code, None).await.status(),
        204,
        "the first one"
    );

    app.clock.advance(Duration::from_secs(30));
    let (secret2, new) = begin_totp(&app, &token).await;
    let new_code = new.generate(now_s(&app));
    for proof in [
        None,
        Some(("not-the-password", old.generate(now_s(&app)))),
        Some((STAFF_PASSWORD, "000000".to_owned())),
    ] {
        let r = enrol(&secret2, &new_code, proof).await;
        assert_eq!(r.status(), 403);
    }
    let r = enrol(
        &secret2,
        &new_code,
        Some((STAFF_PASSWORD, old.generate(now_s(&app)))),
    )
    .await;
    assert_eq!(
        r.status(),
        204,
        "the password and a current code replace it"
    );
    let trail = app.db().await.audit_trail().await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "totp_replacement_refused")
            .count(),
        3
    );
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        login(
            &app,
            "relectrice",
            STAFF_PASSWORD,
            Some(old.generate(now_s(&app)))
        )
        .await
        .status(),
        401,
        "the replaced factor is gone"
    );

    // The right password without a code, again and again: locked out like wrong guesses.
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(error_code(login(&app, "relectrice", STAFF_PASSWORD, None).await).await);
    }
    assert_eq!(answers[0], (401, "totp_required".into()));
    assert!(
        answers.contains(&(429, "login_locked".into())),
        "{answers:?}"
    );
    let r = login(
        &app,
        "relectrice",
        STAFF_PASSWORD,
        Some(new.generate(now_s(&app))),
    )
    .await;
    assert_eq!(error_code(r).await, (429, "login_locked".into()));
}
