//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/health` (JSON), `/ready`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use quotestream_api::contract::{HEALTH_PATH, METRICS_PATH, READY_PATH};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

pub fn router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics_text))
        .route(HEALTH_PATH, get(health_json))
        .route(READY_PATH, get(ready))
        .with_state(AppState { metrics, health })
}

/// Serves the endpoints on `addr` until `shutdown`; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    quotestream_runtime::serve(addr, router(metrics, health), shutdown).await
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
