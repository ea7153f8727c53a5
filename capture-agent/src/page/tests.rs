use super::*;

struct Visit {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

async fn open(page: &Page) -> Visit {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = page.new_link();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("HttpOnly; SameSite=Strict"));
    // The link is burnt: a second visit with it gets nothing.
    assert_eq!(http.get(&link).send().await.unwrap().status(), 403);
    Visit {
        http,
        base: format!("http://127.0.0.1:{}", page.port),
        cookie,
    }
}

impl Visit {
    fn post(&self, path: &str, body: &str) -> reqwest::RequestBuilder {
        self.post_as(path, body, &self.base, "application/json")
    }
    fn post_as(
        &self,
        path: &str,
        body: &str,
        origin: &str,
        content_type: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.to_owned())
    }
}

#[tokio::test]
async fn only_the_candidates_browser_gets_in() {
    let (board, mut actions) = Board::new();
    let page = Page::start(board.clone(), Duration::from_secs(2))
        .await
        .unwrap();
    let v = open(&page).await;
    let state = v
        .http
        .get(format!("{}/api/state", v.base))
        .header(header::COOKIE, &v.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
    assert_eq!(state.headers()[header::CACHE_CONTROL], "no-store");
    assert!(state.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(
        state.json::<serde_json::Value>().await.unwrap()["phase"],
        "notice"
    );

    // No session, a forged one, another host name (DNS rebinding), another origin, a form.
    let no_session = v
        .http
        .get(format!("{}/api/state", v.base))
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 401);
    assert_eq!(
        no_session.json::<serde_json::Value>().await.unwrap()["error"],
        "no_session"
    );
    assert_eq!(
        v.http
            .get(format!("{}/api/state", v.base))
            .header(header::COOKIE, "cloe_page=00")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        v.http
            .get(format!("{}/", v.base))
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "no page without the link"
    );
    let rebound = v
        .http
        .get(format!("{}/api/state", v.base))
        .header(header::COOKIE, &v.cookie)
        .header(header::HOST, "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let cross = v
        .post_as(
            "/api/consent",
            r#"{"accept":true}"#,
            "http://evil.example",
            "application/json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let doubled = v
        .post("/api/consent", r#"{"accept":true}"#)
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 403, "two origins");
    let form = v
        .post_as(
            "/api/consent",
            "accept=true",
            &v.base,
            "application/x-www-form-urlencoded",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    assert_eq!(
        v.post("/api/consent", "{").send().await.unwrap().status(),
        400
    );
    assert!(
        actions.try_recv().is_err(),
        "nothing refused reached the run"
    );

    // Recording cannot be started from the notice.
    let early = v.post("/api/start", "{}").send().await.unwrap();
    assert_eq!(early.status(), 409);
    assert_eq!(
        early.json::<serde_json::Value>().await.unwrap()["error"],
        "wrong_step"
    );
    assert!(actions.try_recv().is_err());

    assert_eq!(
        v.post("/api/consent", r#"{"accept":true}"#)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(actions.recv().await, Some(Action::Consent { accept: true }));
    // A refusal clicked after the acceptance, before the run moved on, is refused.
    assert_eq!(
        v.post("/api/consent", r#"{"accept":false}"#)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    assert!(actions.try_recv().is_err());
    assert!(board.last_seen().is_some());

    // A new link for a reopened page; the old session still works.
    let again = open(&page).await;
    assert_ne!(again.cookie, v.cookie);
    assert_eq!(
        v.http
            .get(format!("{}/api/state", v.base))
            .header(header::COOKIE, &v.cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
