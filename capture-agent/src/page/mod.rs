//! The candidate's page: served by the agent on 127.0.0.1 at a random port, opened in the
//! default browser.
//!
//! Only the candidate's own browser gets in: the address carries a one-time secret, traded
//! at the first visit for a session cookie (HttpOnly, SameSite=Strict) and burnt; every
//! request must name the page's own host (no DNS rebinding) and every action its own
//! origin with a JSON body (no cross-site form). A closed page can be reopened with a new
//! link (`Page::new_link`). The page shows [`crate::board::Board`] and sends the
//! candidate's choices to it; it decides nothing.

use crate::board::{Action, Board, Phase};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHELL: &str = include_str!("assets/index.html");

/// The page: this agent's shell around the steps both agents share, the preview a JPEG.
static INDEX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    candidate_ui::compose_page(
        SHELL,
        r#"<img id="preview" width="320" height="240" alt="">"#,
    )
});
const SCRIPT: &str = include_str!("assets/page.js");
const STYLE: &str = candidate_ui::PAGE_CSS;
const COOKIE: &str = "cloe_page";

struct Secrets {
    /// The one-time secrets of the links not used yet, hashed (the last few: a candidate
    /// slow to open the first may still use it after the page was offered again).
    links: Vec<[u8; 32]>,
    /// Sessions handed out (one per link used), hashed.
    sessions: Vec<[u8; 32]>,
}

#[derive(Clone)]
struct PageState {
    board: Arc<Board>,
    secrets: Arc<Mutex<Secrets>>,
    host: String,
    fragment: Duration,
}

pub struct Page {
    state: PageState,
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Page {
    /// Binds 127.0.0.1 on a port the system picks and serves until dropped.
    pub async fn start(board: Arc<Board>, fragment: Duration) -> anyhow::Result<Page> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let state = PageState {
            board,
            secrets: Arc::new(Mutex::new(Secrets {
                links: Vec::new(),
                sessions: Vec::new(),
            })),
            host: format!("127.0.0.1:{port}"),
            fragment,
        };
        let app = Router::new()
            .route("/", get(index))
            .route(
                "/page.js",
                get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route(
                "/page.css",
                get(|| async { asset("text/css; charset=utf-8", STYLE) }),
            )
            .route("/api/text", get(text))
            .route("/api/state", get(view))
            .route("/preview.jpg", get(preview))
            .route("/api/consent", post(consent))
            .route("/api/devices", post(devices))
            .route(
                "/api/upload-test",
                post(|s: State<PageState>| act(s, &[Phase::Check], Action::UploadTest)),
            )
            .route(
                "/api/start",
                post(|s: State<PageState>| act(s, &[Phase::Check], Action::Start)),
            )
            .route(
                "/api/finish",
                post(|s: State<PageState>| act(s, &[Phase::Recording], Action::Finish)),
            )
            .route(
                "/api/withdraw",
                post(|s: State<PageState>| {
                    act(s, &[Phase::Check, Phase::Recording], Action::Withdraw)
                }),
            )
            .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the candidate page stopped");
            }
        });
        Ok(Page {
            state,
            port,
            server,
        })
    }

    /// A fresh one-time link; the four before it, if unused, still work.
    pub fn new_link(&self) -> String {
        let secret = random_hex();
        let mut secrets = self.state.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if secrets.links.len() >= 5 {
            secrets.links.remove(0);
        }
        secrets.links.push(hash(&secret));
        format!("http://{}/?k={secret}", self.state.host)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

impl Secrets {
    /// Whether the request carries a session this page handed out.
    fn knows(&self, headers: &HeaderMap) -> bool {
        let cookies = headers.get_all(header::COOKIE);
        let session = cookies
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_owned)
            });
        session.is_some_and(|v| self.sessions.contains(&hash(&v)))
    }
}

/// Host, origin, session and content type, then the security headers on every answer.
async fn guard(State(s): State<PageState>, req: Request<axum::body::Body>, next: Next) -> Response {
    let headers = req.headers();
    if headers.get(header::HOST).and_then(|h| h.to_str().ok()) != Some(s.host.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            "wrong_host",
            "this page only answers at its own address",
        );
    }
    let path = req.uri().path();
    let public = matches!(path, "/" | "/page.js" | "/page.css");
    if !public {
        if !s
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .knows(headers)
        {
            return error(
                StatusCode::UNAUTHORIZED,
                "no_session",
                "open the page with the address the agent printed",
            );
        }
    }
    if req.method() == Method::POST {
        // Exactly one of each: a repeated header is not read one way here and another there.
        let only = |name| {
            let mut all = headers.get_all(name).iter();
            match (all.next(), all.next()) {
                (Some(v), None) => v.to_str().ok().map(str::to_owned),
                _ => None,
            }
        };
        let origin_ok =
            only(header::ORIGIN).as_deref() == Some(format!("http://{}", s.host).as_str());
        let json = only(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json"));
        if !origin_ok {
            return error(
                StatusCode::FORBIDDEN,
                "wrong_origin",
                "actions come from the page itself",
            );
        }
        if !json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_required",
                "actions are JSON",
            );
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
struct Link {
    k: Option<String>,
}

async fn index(
    State(s): State<PageState>,
    Query(link): Query<Link>,
    headers: HeaderMap,
) -> Response {
    let mut secrets = s.secrets.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = link.k {
        let h = hash(&k);
        if let Some(at) = secrets.links.iter().position(|l| *l == h) {
            // Burnt at once: the address in the history or a screenshot opens nothing.
            secrets.links.remove(at);
            let session = random_hex();
            secrets.sessions.push(hash(&session));
            let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
            let mut resp = Redirect::to("/").into_response();
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("hex cookie"),
            );
            return resp;
        }
    }
    if !secrets.knows(&headers) {
        let text = candidate_ui::text("link_expired").unwrap_or_default();
        let body = format!("<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><title>CLOE Connect</title></head><body><main><h1>CLOE Connect</h1><p>{text}</p></main></body></html>");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX.as_str(),
    )
        .into_response()
}

async fn text() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        candidate_ui::page_json(),
    )
        .into_response()
}

async fn view(State(s): State<PageState>) -> Response {
    s.board.seen();
    Json(s.board.view(s.fragment)).into_response()
}

async fn preview(State(s): State<PageState>) -> Response {
    match s.board.sight().and_then(|sight| sight.jpeg()) {
        Some(jpeg) => (
            [(header::CONTENT_TYPE, "image/jpeg")],
            jpeg.as_ref().clone(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "no_preview", "no camera image now"),
    }
}

/// An action, if the run is at the step it belongs to and none was taken there yet.
fn act(State(s): State<PageState>, at: &[Phase], action: Action) -> std::future::Ready<Response> {
    std::future::ready(if s.board.act_at(at, action) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::CONFLICT,
            "wrong_step",
            "not possible at this step",
        )
    })
}

#[derive(Deserialize)]
struct ConsentBody {
    accept: bool,
}

async fn consent(s: State<PageState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ConsentBody>(&body) {
        Ok(c) => act(s, &[Phase::Notice], Action::Consent { accept: c.accept }).await,
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    }
}

#[derive(Deserialize)]
struct DevicesBody {
    camera: String,
    microphone: String,
}

async fn devices(s: State<PageState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<DevicesBody>(&body) {
        Ok(d) if d.camera.len() <= 200 && d.microphone.len() <= 200 => {
            act(
                s,
                &[Phase::Check],
                Action::ChooseDevices {
                    camera: d.camera,
                    microphone: d.microphone,
                },
            )
            .await
        }
        Ok(_) => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "device ids are short",
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    }
}

/// Opens the page in the default browser; says so when it cannot.
pub fn open_in_browser(url: &str) {
    if let Err(e) = open::that_detached(url) {
        tracing::warn!(error = %e, "could not open the browser");
    }
}

#[cfg(test)]
mod tests;
