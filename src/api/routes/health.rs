//! `/healthz` (alive), `/readyz` (the readiness checks) and `/metrics` (the shared registry).

use crate::api::error::{Answer, ApiResponse};
use crate::api::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process is alive and serving.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = ApiResponse)))]
pub async fn healthz() -> Answer {
    Answer(StatusCode::OK, ApiResponse::ok("alive", None))
}

/// Ready when every check holds (source fetched once, cluster reachable, caches synced).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready; data maps each check to true", body = ApiResponse),
        (status = 503, description = "Not ready; data says which check fails", body = ApiResponse),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Answer {
    let checks = state.readiness.evaluate();
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name.as_str())
        .collect();
    let data = serde_json::Value::Object(
        checks
            .iter()
            .map(|(name, ok)| (name.clone(), serde_json::Value::Bool(*ok)))
            .collect(),
    );
    if failing.is_empty() {
        Answer(StatusCode::OK, ApiResponse::ok("ready", Some(data)))
    } else {
        Answer(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiResponse::failed(format!("not ready: {}", failing.join(", ")), Some(data)),
        )
    }
}

/// Prometheus metrics in OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        (state.metrics)(),
    )
        .into_response()
}
