//! Issue 20: what one staff account can do, and what an admin can undo.

use crate::helpers::*;

/// #6: an assignment can be taken away (API; the page and the command line call the same
/// use case), audited, and the reviewer's open session loses the sitting at its next request.
#[tokio::test]
async fn an_unassigned_reviewer_loses_the_sitting_at_the_next_request() {
    let app = spawn_app().await;
    let (sitting, attempts) = app.ended_sitting(1, 1).await;
    let attempt = attempts[0].0.attempt_id;
    let reviewer = reviewer_of(&app, "relectrice", attempt).await;
    let admin = add_staff(&app, "admin2", "admin").await;
    let report = || async {
        app.http
            .get(format!("{}/api/staff/v1/attempts/{attempt}", app.staff))
            .bearer_auth(&reviewer)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(report().await, 200);
    let unassign = |token: &str, sitting: String, login: &str| {
        app.http
            .delete(format!(
                "{}/api/staff/v1/admin/assignments/{sitting}/{login}",
                app.staff
            ))
            .bearer_auth(token)
            .send()
    };
    // Only an admin; a malformed id and an unknown login are refused as JSON.
    let r = unassign(&reviewer, sitting.to_string(), "relectrice")
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 403);
    let r = unassign(&admin, "not-an-id".into(), "relectrice")
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
    let r = unassign(&admin, sitting.to_string(), "personne")
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".into()));
    assert_eq!(report().await, 200, "nothing changed by refused requests");

    let r = unassign(&admin, sitting.to_string(), "relectrice")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The same session, at once: the attempt is as unknown as any other sitting's.
    assert_eq!(report().await, 404);
    let queue: serde_json::Value = app
        .http
        .get(format!("{}/api/staff/v1/queue", app.staff))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 0, "{queue}");
    // Twice: there is nothing left to remove.
    let r = unassign(&admin, sitting.to_string(), "relectrice")
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "not_found".into()));
    let trail = app.db().await.audit_trail().await.unwrap();
    let entry = trail
        .iter()
        .find(|e| e.action == "sitting_unassigned")
        .expect("the unassignment is audited");
    assert_eq!(entry.actor, "admin2");
    assert!(entry.detail.contains("relectrice") && entry.detail.contains(&sitting.to_string()));
}

/// #7: what admins did to an account is told to its owner at the next login, on the page
/// (before anything else) as in the API, once: a second factor removed, a password reset
/// by the operator on the server.
#[tokio::test]
async fn the_owner_is_told_what_admins_did_to_the_account() {
    let app = spawn_app().await;
    let _reviewer = add_staff(&app, "relectrice", "reviewer").await;
    let admin = add_staff(&app, "admin1", "admin").await;
    let r = app
        .http
        .post(format!(
            "{}/api/staff/v1/admin/staff/relectrice/remove-totp",
            app.staff
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let temporary = app
        .state()
        .await
        .accounts
        .reset_password_by_operator("relectrice")
        .await
        .unwrap();
    let page = |password: String| {
        app.http
            .post(format!("{}/login", app.staff))
            .form(&[("login", "relectrice"), ("password", password.as_str())])
            .send()
    };
    let r = page(temporary.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "the notices come before anything else");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("second facteur retiré") && body.contains("admin1"),
        "{body}"
    );
    assert!(
        body.contains("mot de passe réinitialisé") && body.contains("admin-cli"),
        "{body}"
    );
    let r = page(temporary).await.unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains("account-notices"), "told once: {body}");
}
