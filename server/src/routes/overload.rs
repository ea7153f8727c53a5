//! The listener-wide cap on requests in progress: past it, a request is answered at once
//! with 503 and `Retry-After` (tower's load shedding over one shared concurrency limit)
//! instead of waiting in a queue that grows with the flood.

use crate::routes::error::AppError;
use axum::error_handling::HandleErrorLayer;
use axum::response::IntoResponse;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};

pub fn layer(
    max_in_flight: usize,
) -> impl tower::Layer<
    axum::routing::Route,
    Service: tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
                 + Send
                 + Sync
                 + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: BoxError| async move {
            if e.is::<tower::load_shed::error::Overloaded>() {
                AppError::Overloaded.into_response()
            } else {
                AppError::Internal(anyhow::anyhow!("middleware: {e}")).into_response()
            }
        }))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1)))
}
