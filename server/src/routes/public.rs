//! What anyone may read on the public listener without a credential: the key that signs
//! destruction receipts, so that a candidate checks their receipt against the key the
//! server publishes, never against the one written inside the receipt.

use super::AppState;
use crate::routes::error::AppError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/public/v1/receipts/public-key",
        get(receipt_public_key),
    )
}

/// The published key and its id, as `proctor-server receipt public-key` prints them.
pub(super) fn published_key(app: &AppState) -> Result<serde_json::Value, AppError> {
    let key = app.retention.receipt_public_key()?;
    let key_id = protocol::receipt_key_id(&key).map_err(|e| AppError::Internal(e.into()))?;
    Ok(serde_json::json!({ "algorithm": "Ed25519", "key_id": key_id, "public_key": key }))
}

#[utoipa::path(get, path = "/api/public/v1/receipts/public-key", tag = "public",
    responses((status = 200, description = "the Ed25519 key that signs destruction receipts (base64) and its key id")))]
pub async fn receipt_public_key(
    State(app): State<AppState>,
) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(published_key(&app)?))
}
