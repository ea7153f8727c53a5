use super::{accounts, agent, integration, public, pv, review, staff};
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CLOE Connect proctoring",
        description = "Agent, integration and staff APIs. Errors are JSON {error, message}."
    ),
    paths(
        agent::attempt_info,
        agent::notice,
        agent::refuse,
        agent::redeem_launch_code,
        agent::upload_test,
        agent::heartbeat,
        agent::webrtc_offer,
        agent::webrtc_close,
        agent::consent,
        agent::withdraw,
        agent::open_stream,
        agent::put_chunk,
        agent::end_stream,
        integration::create_sitting,
        integration::add_candidate,
        integration::attempt_status,
        integration::end_attempt,
        integration::reissue_token,
        integration::revoke_token,
        integration::launch_code,
        integration::review_outcome,
        integration::receipt_public_key,
        public::receipt_public_key,
        integration::decide_pv,
        integration::pv_status,
        integration::retention,
        integration::receipt,
        pv::plan,
        pv::decide,
        staff::login,
        staff::attempt,
        staff::media,
        review::queue,
        review::logout,
        review::timeline,
        review::fragment,
        review::thumbnail,
        review::activity,
        review::review,
        review::submit,
        review::second_review,
        review::outcome,
        review::create_flag,
        review::update_flag,
        review::delete_flag,
        accounts::change_password,
        accounts::begin_totp,
        accounts::confirm_totp,
        accounts::list_staff,
        accounts::create_staff,
        accounts::staff_action,
        accounts::assign,
        accounts::unassign,
        accounts::totp_required,
        accounts::audit
    )
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
