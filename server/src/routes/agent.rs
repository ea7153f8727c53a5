//! Agent API: a candidate's launch token writes to its own attempt only, never reads.

use super::path::Path;
use super::{bearer, parse_id, read_body_exact, read_json, AppState};
use crate::db::StreamId;
use crate::identity::AgentIdentity;
use crate::ingest::Via;
use crate::routes::error::AppError;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use protocol::api::*;
use std::net::SocketAddr;

/// The agent's routes that need no token (`open::guarded` wraps them).
pub fn open_router() -> Router<AppState> {
    Router::new()
        .route("/api/agent/v1/notice", get(notice))
        .route("/api/agent/v1/launch-code", post(redeem_launch_code))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/agent/v1/attempt", get(attempt_info))
        .route("/api/agent/v1/upload-test", post(upload_test))
        .route("/api/agent/v1/consent", post(consent))
        .route("/api/agent/v1/refuse", post(refuse))
        .route("/api/agent/v1/heartbeat", post(heartbeat))
        .route("/api/agent/v1/withdraw", post(withdraw))
        .route("/api/agent/v1/streams", post(open_stream))
        .route("/api/agent/v1/webrtc", post(webrtc_offer))
        .route(
            "/api/agent/v1/webrtc/{session}",
            axum::routing::delete(webrtc_close),
        )
        .route(
            "/api/agent/v1/streams/{stream_id}/chunks/{index}",
            put(put_chunk),
        )
        .route("/api/agent/v1/streams/{stream_id}/end", post(end_stream))
}

impl FromRequestParts<AppState> for AgentIdentity {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(state.ingest.authenticate_agent(bearer(parts)?).await?)
    }
}

#[utoipa::path(get, path = "/api/agent/v1/attempt", tag = "agent",
    responses((status = 200, description = "what the agent needs to record without the server: the attempt's public key, the notice version, the fragment length"),
        (status = 401), (status = 410, description = "recording destroyed")))]
pub async fn attempt_info(
    State(app): State<AppState>,
    who: AgentIdentity,
) -> Result<Json<AttemptInfo>, AppError> {
    Ok(Json(app.ingest.attempt_info(&who).await?))
}

#[utoipa::path(post, path = "/api/agent/v1/webrtc", tag = "agent",
    request_body(content = String, content_type = "application/sdp", description = "the agent's SDP offer (a data channel)"),
    responses((status = 201, description = "the SDP answer; Location names the session (DELETE ends it)"), (status = 400, description = "not an SDP offer"),
        (status = 401), (status = 404, description = "the data channel transport is off: use HTTPS"), (status = 409, description = "the recording is closed"),
        (status = 410, description = "recording destroyed"), (status = 503, description = "too many agents connected: use HTTPS")))]
pub async fn webrtc_offer(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    who: AgentIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, HeaderMap, String), AppError> {
    let transport = app
        .webrtc
        .as_deref()
        .ok_or(AppError::NotFound("webrtc transport"))?;
    match who.attempt.state {
        crate::lifecycle::AttemptState::Destroyed => return Err(AppError::Gone),
        crate::lifecycle::AttemptState::InReview
        | crate::lifecycle::AttemptState::Reviewed
        | crate::lifecycle::AttemptState::Decided => return Err(AppError::RecordingClosed),
        _ => {}
    }
    // A token no longer live opens no session (it would drop the real agent's), unless a
    // stream it opened while live is still recording.
    app.ingest.require_carry_on(&who).await?;
    let offer = super::read_body(body, 64 * 1024, std::time::Duration::from_secs(10)).await?;
    let offer = std::str::from_utf8(&offer)
        .map_err(|_| AppError::BadRequest("the SDP offer is not UTF-8".into()))?;
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| {
            protocol::LaunchToken::parse(t)
                .map(|l| l.credential().to_owned())
                .unwrap_or_else(|_| t.trim().to_owned())
        })
        .ok_or(AppError::Unauthorized)?;
    let via = Via {
        transport: crate::db::Transport::Webrtc,
        client_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let (session, answer) = transport
        .answer(who.attempt.id, credential, via, offer)
        .await?;
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/sdp"),
    );
    out.insert(
        header::LOCATION,
        axum::http::HeaderValue::from_str(&format!("/api/agent/v1/webrtc/{session}"))
            .expect("ASCII"),
    );
    Ok((StatusCode::CREATED, out, answer))
}

#[utoipa::path(delete, path = "/api/agent/v1/webrtc/{session}", tag = "agent",
    responses((status = 204, description = "the session is closed"), (status = 400), (status = 401)))]
pub async fn webrtc_close(
    State(app): State<AppState>,
    Path(session): Path<uuid::Uuid>,
    who: AgentIdentity,
) -> Result<StatusCode, AppError> {
    if let Some(t) = app.webrtc.as_deref() {
        t.close(session, who.attempt.id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/agent/v1/heartbeat", tag = "agent",
    responses((status = 204, description = "heard; an agent marked silent is no longer"), (status = 400), (status = 401)))]
pub async fn heartbeat(
    State(app): State<AppState>,
    who: AgentIdentity,
    body: Body,
) -> Result<StatusCode, AppError> {
    app.liveness.heartbeat(&who, read_json(body).await?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/agent/v1/consent", tag = "agent",
    responses((status = 204, description = "consent recorded"), (status = 400), (status = 401)))]
pub async fn consent(
    State(app): State<AppState>,
    who: AgentIdentity,
    body: Body,
) -> Result<StatusCode, AppError> {
    app.ingest
        .record_consent(&who, read_json(body).await?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/agent/v1/notice", tag = "agent",
    responses((status = 200, description = "the information notice the candidate reads before consenting: version, title, sections (no token needed)")))]
pub async fn notice(State(app): State<AppState>) -> Json<protocol::notice::Notice> {
    Json(app.ingest.notice())
}

#[utoipa::path(post, path = "/api/agent/v1/launch-code", tag = "agent",
    responses((status = 200, description = "the launch token the code stood for (no token needed; the code works once)"), (status = 400),
        (status = 404, description = "unknown, used or expired code"), (status = 409, description = "the attempt's token is revoked"),
        (status = 429, description = "too many wrong codes from this address; see Retry-After")))]
pub async fn redeem_launch_code(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AddCandidateResponse>, AppError> {
    let body = super::read_body(body, 1024, super::open::OPEN_BODY_TIMEOUT).await?;
    let req: RedeemCodeRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?;
    let client = super::client_addr(&app, peer, &headers);
    Ok(Json(
        app.enrolment.redeem_launch_code(&req.code, &client).await?,
    ))
}

#[utoipa::path(post, path = "/api/agent/v1/refuse", tag = "agent",
    responses((status = 200, description = "refusal recorded: the attempt is withdrawn, nothing was or will be recorded"), (status = 400), (status = 401),
        (status = 409, description = "consent was already given (withdraw it instead)"), (status = 410, description = "recording destroyed")))]
pub async fn refuse(
    State(app): State<AppState>,
    who: AgentIdentity,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let state = app
        .ingest
        .refuse_consent(&who, read_json(body).await?)
        .await?;
    Ok(Json(
        serde_json::json!({ "attempt_id": who.attempt.id, "state": state }),
    ))
}

#[utoipa::path(post, path = "/api/agent/v1/upload-test", tag = "agent",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "up to 2 MiB of anything, read and thrown away"),
    responses((status = 200, description = "bytes received and the time the server spent receiving them (no token needed; nothing is stored)"),
        (status = 408, description = "body slower than 15 s"), (status = 413, description = "more than 2 MiB"), (status = 503, description = "8 tests already running; see Retry-After")))]
pub async fn upload_test(
    State(app): State<AppState>,
    body: Body,
) -> Result<Json<UploadTestResult>, AppError> {
    use http_body_util::BodyExt;
    // Open to anyone (the practice check has no token), so it gets few slots of its own and
    // a short deadline: slow senders cannot take the listener's request budget from the
    // exams' uploads.
    let _slot = app.ingest.upload_test_slot()?;
    let started = std::time::Instant::now();
    // Counted and dropped frame by frame: the test costs no memory, and nothing is kept.
    let count = async move {
        let mut body = body;
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|_| AppError::BodyIncomplete)?.into_data() {
                bytes += data.len() as u64;
                if bytes > UPLOAD_TEST_MAX_BYTES {
                    return Err(AppError::TooLarge(UPLOAD_TEST_MAX_BYTES));
                }
            }
        }
        Ok(bytes)
    };
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(15), count)
        .await
        .map_err(|_| AppError::BodyTimeout)??;
    Ok(Json(UploadTestResult {
        bytes,
        server_ms: started.elapsed().as_millis() as u64,
    }))
}

#[utoipa::path(post, path = "/api/agent/v1/withdraw", tag = "agent",
    responses((status = 200, description = "consent withdrawn; no stream opens any more, and the recording is destroyed at once: `state` is `destroyed` and `receipt` the signed destruction receipt (`withdrawn` and no receipt while a legal hold stands: destroyed at its lift)"),
        (status = 401), (status = 409, description = "not consented, or already ended"), (status = 410, description = "recording already destroyed")))]
pub async fn withdraw(
    State(app): State<AppState>,
    who: AgentIdentity,
) -> Result<Json<serde_json::Value>, AppError> {
    app.ingest.withdraw_consent(&who).await?;
    let receipt = app.retention.erase_withdrawn(who.attempt.id).await?;
    // No receipt: a legal hold keeps the withdrawn attempt until its lift.
    let state = if receipt.is_some() {
        crate::lifecycle::AttemptState::Destroyed
    } else {
        crate::lifecycle::AttemptState::Withdrawn
    };
    Ok(Json(
        serde_json::json!({ "attempt_id": who.attempt.id, "state": state, "receipt": receipt }),
    ))
}

#[utoipa::path(post, path = "/api/agent/v1/streams", tag = "agent",
    responses((status = 201, description = "stream opened; body carries the stream key"), (status = 401, description = "unknown, expired or revoked token"),
        (status = 403, description = "consent required"), (status = 409, description = "attempt ended (past the upload grace) or withdrawn"),
        (status = 410, description = "recording destroyed"), (status = 429, description = "stream quota of the attempt reached")))]
pub async fn open_stream(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    who: AgentIdentity,
    body: Body,
) -> Result<(StatusCode, Json<OpenStreamResponse>), AppError> {
    let resp = app
        .ingest
        .open_stream(&who, read_json(body).await?, peer.ip().to_string())
        .await?;
    Ok((StatusCode::CREATED, Json(resp)))
}

#[utoipa::path(put, path = "/api/agent/v1/streams/{stream_id}/chunks/{index}", tag = "agent",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "sealed chunk, wire format v1"),
    responses((status = 201, description = "stored durably"), (status = 200, description = "same chunk already stored"),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 408, description = "body too slow"),
        (status = 409, description = "another chunk holds this index, or the stream ended before it"), (status = 410, description = "recording destroyed"),
        (status = 411), (status = 413), (status = 422, description = "authentication tag invalid, or index / media time ahead of the stream's age"),
        (status = 429, description = "per-attempt quota or concurrency; see Retry-After"), (status = 503, description = "server busy; see Retry-After")))]
pub async fn put_chunk(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((stream_id, index)): Path<(String, String)>,
    who: AgentIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ChunkAck>), AppError> {
    let started = std::time::Instant::now();
    let via = Via {
        transport: crate::db::Transport::Https,
        client_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let (stream_id, index, length) = chunk_address(&stream_id, &index, &headers)
        .inspect_err(|e| crate::metrics::chunk_refused(e.status_and_code().1))?;
    let read = |deadline| read_body_exact(body, length as usize, deadline);
    let ack = app
        .ingest
        .receive_chunk(&who, stream_id, index, length, read, &via, started)
        .await?;
    Ok((
        if ack.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(ack),
    ))
}

/// The chunk's stream, index and length (known before a byte of body is read).
fn chunk_address(
    stream_id: &str,
    index: &str,
    headers: &HeaderMap,
) -> Result<(StreamId, u32, u64), AppError> {
    let stream_id = parse_id(stream_id, "stream id")?;
    let index: u32 = index
        .parse()
        .map_err(|_| AppError::BadRequest("index must be a non-negative integer".into()))?;
    let length: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or(AppError::LengthRequired)?;
    Ok((stream_id, index, length))
}

#[utoipa::path(post, path = "/api/agent/v1/streams/{stream_id}/end", tag = "agent",
    responses((status = 204, description = "stream ended"), (status = 404), (status = 409)))]
pub async fn end_stream(
    State(app): State<AppState>,
    Path(stream_id): Path<StreamId>,
    who: AgentIdentity,
    body: Body,
) -> Result<StatusCode, AppError> {
    app.ingest
        .end_stream(&who, stream_id, read_json(body).await?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
