//! The public listener's routes anyone may call without a credential (the launch page and
//! its script, the notice, a launch code, the receipts' key): a budget of their own,
//! small beside the listener's, and a cap per network, so that slow or numerous anonymous
//! requests can hold only that budget while agents' uploads and the exam platform's calls
//! keep theirs. Their bodies have a short deadline (`OPEN_BODY_TIMEOUT`).

use super::error::AppError;
use super::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A launch code's body is ~30 bytes: two seconds is generous even on a poor line.
pub const OPEN_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Anonymous requests in progress, per network (an IPv4 address, an IPv6 /64).
struct PerNetwork {
    counts: Mutex<HashMap<String, usize>>,
    max: usize,
}

/// Held while one anonymous request runs: gives its network's place back when dropped.
struct Held {
    gate: Arc<PerNetwork>,
    network: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.network);
            }
        }
    }
}

/// `routes` with the anonymous budget and the per-network cap.
pub fn guarded(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    let gate = Arc::new(PerNetwork {
        counts: Mutex::new(HashMap::new()),
        max: state.http.max_unauthenticated_per_address.max(1),
    });
    routes
        .layer(super::overload::layer(
            state.http.max_unauthenticated_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), gate),
            per_network,
        ))
}

async fn per_network(
    State((app, gate)): State<(AppState, Arc<PerNetwork>)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let client = super::client_addr(&app, peer, req.headers());
    let network = crate::enrolment::network_of(&client);
    let held = {
        let mut counts = gate.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(network.clone()).or_insert(0);
        if *n >= gate.max {
            return AppError::TooManyRequests.into_response();
        }
        *n += 1;
        Held {
            gate: gate.clone(),
            network,
        }
    };
    let response = next.run(req).await;
    drop(held);
    response
}
