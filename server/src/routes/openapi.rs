use super::{agent, integration, staff};
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "CLOE Connect proctoring", description = "Agent, integration and staff APIs. Errors are JSON {error, message}."),
    paths(
        agent::consent, agent::withdraw, agent::open_stream, agent::put_chunk, agent::end_stream,
        integration::create_sitting, integration::add_candidate, integration::attempt_status, integration::end_attempt,
        integration::reissue_token, integration::revoke_token,
        staff::login, staff::attempt, staff::media
    )
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
