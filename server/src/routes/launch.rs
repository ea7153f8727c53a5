//! The browser capture agent on the public listener: `/launch` (the page; the token stays
//! in the address's fragment, which browsers never send), its one script, its words and
//! stylesheet. Static files with a strict policy: nothing here reads a token or a body.

use super::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The browser agent's shell around the steps both agents share, the preview live video.
static PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    candidate_ui::compose_page(
        web_agent::INDEX_HTML,
        r#"<video id="preview" width="320" height="240" muted playsinline autoplay></video>"#,
    )
});

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/launch",
            get(|| async { asset("text/html; charset=utf-8", PAGE.as_str()) }),
        )
        .route(
            "/launch/agent.js",
            get(|| async { asset("text/javascript; charset=utf-8", web_agent::AGENT_JS) }),
        )
        .route(
            "/launch/page.css",
            get(|| async { asset("text/css; charset=utf-8", candidate_ui::PAGE_CSS) }),
        )
        .route(
            "/launch/text.json",
            get(|| async { asset("application/json", candidate_ui::page_json()) }),
        )
}

fn asset(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(web_agent::CSP),
    );
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(web_agent::PERMISSIONS_POLICY),
    );
    // Nothing of the page in the HTTP cache: a new version is served at once, and the
    // address never sits in a cache entry.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    r
}
