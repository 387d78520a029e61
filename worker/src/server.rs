//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/health` (JSON), `/ready`, and
//! `/assignment` (the ticker list in force, which the operator reads to acknowledge a
//! hand-over).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use quotestream_api::contract::{ASSIGNMENT_PATH, HEALTH_PATH, METRICS_PATH, READY_PATH};
use tokio_util::sync::CancellationToken;

use crate::config_file::InForce;
use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
    in_force: InForce,
}

pub fn router(metrics: Metrics, health: Health, in_force: InForce) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics_text))
        .route(HEALTH_PATH, get(health_json))
        .route(READY_PATH, get(ready))
        .route(ASSIGNMENT_PATH, get(assignment))
        .with_state(AppState {
            metrics,
            health,
            in_force,
        })
}

/// Serves the endpoints on `addr` until `shutdown`; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    in_force: InForce,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    quotestream_runtime::serve(addr, router(metrics, health, in_force), shutdown).await
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    quotestream_runtime::metrics_response(s.metrics.render())
}

async fn health_json(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.health.report())
}

/// 200 or 503, with each sink's state as JSON (a failed sink names its setting and reason).
async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let report = s.health.readiness();
    let status = match report.ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(report))
}

/// The ticker list in force (`quotestream_api::worker_config::AppliedList`); 503 before the source
/// runs, when the worker has acknowledged nothing yet.
async fn assignment(State(s): State<AppState>) -> impl IntoResponse {
    match s.in_force.get() {
        Some(list) => Json(list).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no ticker list in force yet",
        )
            .into_response(),
    }
}
