//! HTTP routes by feature. Handlers parse, call the use cases (`crate::state::AppState`), and shape the answer;
//! every error is a JSON `ErrorBody` with a precise 4xx.

mod accounts;
pub mod agent;
mod assigned;
pub mod error;
mod errors;
mod integration;
mod launch;
mod open;
pub mod openapi;
mod overload;
mod pages;
pub mod path;
pub(crate) mod public;
mod pv;
mod review;
pub mod session;
mod staff;

use crate::ingest::BodyRefused;
use crate::routes::error::AppError;
use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts};
use axum::Router;

pub use crate::state::AppState;

/// JSON request bodies are small; anything bigger is refused before parsing.
const JSON_LIMIT: usize = 64 * 1024;

pub fn public_router(state: AppState) -> Router {
    let limit = state.http.max_concurrent_requests;
    let anonymous = Router::new()
        .merge(agent::open_router())
        .merge(launch::router())
        .merge(public::router());
    Router::new()
        .merge(agent::router())
        .merge(integration::router())
        .merge(open::guarded(anonymous, &state))
        .merge(common())
        .with_state(state)
        .layer(overload::layer(limit))
}

pub fn staff_router(state: AppState) -> Router {
    let limit = state.http.max_concurrent_requests;
    let router = Router::new()
        .merge(staff::router())
        .merge(review::router())
        .merge(pv::router())
        .merge(accounts::router())
        .merge(pages::router())
        .merge(common())
        .with_state(state)
        .layer(overload::layer(limit));
    with_security_headers(router)
}

/// On every staff answer, pages, media and JSON alike: nothing cached, nothing framed, no
/// referrer, no inline script or style, no type sniffing.
fn with_security_headers(router: Router) -> Router {
    use axum::http::{HeaderName, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let set = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    router
        .layer(set("content-security-policy", reviewer::CSP))
        .layer(set("referrer-policy", "no-referrer"))
        .layer(set("cache-control", "no-store"))
        .layer(set("x-content-type-options", "nosniff"))
        .layer(set("x-frame-options", "DENY"))
}

fn common() -> Router<AppState> {
    Router::new()
        .route(
            "/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/api/openapi.json", axum::routing::get(openapi::serve))
        .fallback(|| async { AppError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            AppError::BadRequest("method not allowed on this route".into())
        })
}

pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, AppError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| AppError::BodyTimeout)?;
    read.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            AppError::TooLarge(limit as u64)
        } else {
            AppError::BodyIncomplete
        }
    })
}

/// Reads a body whose length is known and already reserved (`ingest::gate`) into one
/// buffer of exactly that size: collecting frames and then joining them would hold the
/// body twice, which is what the reservation must bound.
pub async fn read_body_exact(
    body: Body,
    length: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyRefused> {
    use http_body_util::BodyExt;
    let read = async move {
        let mut body = body;
        let mut buf = bytes::BytesMut::with_capacity(length);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyRefused::Incomplete)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > length {
                    return Err(BodyRefused::LongerThanDeclared);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyRefused::Timeout)?
}

/// JSON bodies are small: a client that cannot send 64 KiB in this time is not a client.
const JSON_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, AppError> {
    let bytes = read_body(body, JSON_LIMIT, JSON_TIMEOUT).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The client's address: the peer's, or behind a trusted proxy the last address of
/// `X-Forwarded-For` that is not a trusted proxy (earlier ones are whatever the client
/// wrote). A malformed header counts as the proxy itself.
pub fn client_addr(
    app: &AppState,
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
) -> String {
    let trusted = &app.http.trusted_proxies;
    if !trusted.contains(&peer.ip()) {
        return peer.ip().to_string();
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer.ip())
        .to_string()
}

/// An id the caller names by its type (`AttemptId`, `SittingId`, …), from a form field or a
/// path segment read by hand.
pub fn parse_id<T: std::str::FromStr>(s: &str, what: &'static str) -> Result<T, AppError> {
    s.parse()
        .map_err(|_| AppError::BadRequest(format!("{what} is not a valid id")))
}

pub fn bearer(parts: &Parts) -> Result<&str, AppError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or(AppError::Unauthorized)
}
