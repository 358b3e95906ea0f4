//! The PM handler: HTTP requests in, commits (and a sync trigger) out. Git stays the single
//! source of truth: the API never writes a TaskRun; it commits task folders and `context-v<N>.md`
//! files, pushes them, and asks the sync to run now.

pub mod auth;
pub mod badge;
pub mod change;
pub mod commit;
pub mod error;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod validate;

pub use commit::{CommitError, Person, RepoWriter, WriterConfig, Written};
pub use error::{ApiError, ApiResponse};
pub use state::{AppState, Readiness, Writes};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use error::BodyLimit;
use routes::{context, health, operations, status, tasks, webhook};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API calls of the PM handler (a reflector on TaskRuns; retry and cancel read and annotate
/// one), for the RBAC check of deploy/.
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: crate::names::GROUP,
    resource: "taskruns",
    // get + patch: retry and cancel annotate a TaskRun.
    verbs: &["get", "list", "watch", "patch"],
}];

/// The default address: loopback only, unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// The annotated routes with their OpenAPI document.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tasks::submit_task, tasks::list_tasks))
        .routes(routes!(tasks::get_task))
        .routes(routes!(context::add_context))
        .routes(routes!(operations::retry_task))
        .routes(routes!(operations::cancel_task))
        .routes(routes!(status::get_status))
        .routes(routes!(status::badge))
        .routes(routes!(status::get_revision_status))
        .routes(routes!(webhook::git_webhook))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// Every endpoint, with the body limit, the request timeout and the ApiResponse shape for
/// unknown routes and methods. `orchestrator run` and `orchestrator api` both mount this.
pub fn router(state: AppState) -> Router {
    let (routes, document) = documented_routes().split_for_parts();
    let document = Arc::new(document);
    routes
        .route(
            openapi::OPENAPI_PATH,
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(Extension(BodyLimit(state.body_limit)))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            limit_time,
        ))
        .layer(middleware::from_fn_with_state(
            state.api_metrics.clone(),
            count_request,
        ))
        .layer(
            // A 503 from /readyz is an answer, not a server failure worth an ERROR line.
            TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(state)
}

/// Serves [`router`] on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, state, shutdown).await
}

/// Serves [`router`] on a bound listener (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
    }
    let header_read_timeout = state.header_read_timeout;
    crate::http_serve::serve(listener, router(state), header_read_timeout, shutdown)
        .await
        .map_err(ServeError::Serve)
}

async fn count_request(
    State(metrics): State<metrics::ApiMetrics>,
    request: Request,
    next: Next,
) -> Response {
    // The route template, never the raw path: ids would make unbounded label values.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn limit_time(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            seconds: limit.as_secs(),
        }
        .into_response(),
    }
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint {method} {}; the endpoints are listed at {}",
        uri.path(),
        openapi::OPENAPI_PATH
    ))
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    let mut response = ApiError::NotFound(format!(
        "{} does not take {method}; see {}",
        uri.path(),
        openapi::OPENAPI_PATH
    ))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}
