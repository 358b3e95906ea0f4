//! `POST /api/v1/tasks/{id}/retry` and `/cancel`: a task id in, the `orchestrator.io/retry` or
//! `orchestrator.io/cancel` annotation on its TaskRun out (operations on a run, not commits).

use crate::api::auth::Authorized;
use crate::api::error::{Answer, ApiError, ApiResponse};
use crate::api::model::OperationData;
use crate::api::state::AppState;
use crate::api::validate::parse_task_id;
use crate::crd::TaskRun;
use crate::names::{FIELD_MANAGER_API, task_run_name};
use crate::operate::{Annotated, OperateError, request_cancel, request_retry};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct RetryQuery {
    /// Also retry a task that Succeeded.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CancelQuery {
    /// Who cancels, recorded on the TaskRun (default `api`).
    pub by: Option<String>,
}

fn cluster(state: &AppState) -> Result<kube::Api<TaskRun>, ApiError> {
    let client = state.client.clone().ok_or_else(|| {
        ApiError::Unavailable("this server has no cluster client; retry and cancel need one".into())
    })?;
    Ok(kube::Api::namespaced(client, &state.namespace))
}

fn failed(e: OperateError) -> ApiError {
    match e {
        OperateError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        OperateError::Refused(refused) => ApiError::Conflict(refused.to_string()),
        OperateError::Get { .. } | OperateError::Annotate { .. } => {
            tracing::warn!(error = %e, "operation on a TaskRun failed");
            ApiError::Unavailable(format!("{e}; nothing was changed, retry later"))
        }
    }
}

fn answer(state: &AppState, done: Annotated, what: &str) -> Answer {
    let message = format!(
        "{what} requested on {}: {}={}; contextVersion stays {}",
        done.name, done.annotation, done.value, done.context_version
    );
    let data = OperationData {
        name: done.name,
        namespace: state.namespace.clone(),
        annotation: done.annotation.to_string(),
        value: done.value,
        context_version: done.context_version,
    };
    Answer(
        StatusCode::ACCEPTED,
        ApiResponse::ok(message, serde_json::to_value(data).ok()),
    )
}

/// Run a finished task again on the same content: annotates its TaskRun with
/// `orchestrator.io/retry=<token>`; the controller starts a new attempt (Job `…-r<N>`).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/retry",
    tag = "tasks",
    params(("id" = i64, Path, description = "The task id"), RetryQuery),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Requested; data is OperationData", body = ApiResponse),
        (status = 401, description = "Missing or wrong bearer token", body = ApiResponse),
        (status = 404, description = "No TaskRun for the task", body = ApiResponse),
        (status = 409, description = "Not finished, or Succeeded without force", body = ApiResponse),
        (status = 503, description = "No cluster, or it could not be reached", body = ApiResponse),
    )
)]
pub async fn retry_task(
    State(state): State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
    Query(query): Query<RetryQuery>,
) -> Result<Answer, ApiError> {
    let id = parse_task_id(&id)?;
    let api = cluster(&state)?;
    let done = request_retry(
        &api,
        &state.namespace,
        &task_run_name(id),
        query.force,
        FIELD_MANAGER_API,
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await
    .map_err(failed)?;
    Ok(answer(&state, done, "Retry"))
}

/// Stop a task's running Job now: annotates its TaskRun with `orchestrator.io/cancel=<who>@<time>`;
/// the controller stops the Job and records phase Failed, reason Cancelled.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/cancel",
    tag = "tasks",
    params(("id" = i64, Path, description = "The task id"), CancelQuery),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Requested; data is OperationData", body = ApiResponse),
        (status = 401, description = "Missing or wrong bearer token", body = ApiResponse),
        (status = 404, description = "No TaskRun for the task", body = ApiResponse),
        (status = 409, description = "Already finished", body = ApiResponse),
        (status = 503, description = "No cluster, or it could not be reached", body = ApiResponse),
    )
)]
pub async fn cancel_task(
    State(state): State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
    Query(query): Query<CancelQuery>,
) -> Result<Answer, ApiError> {
    let id = parse_task_id(&id)?;
    let api = cluster(&state)?;
    let who = query
        .by
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".to_string());
    let done = request_cancel(
        &api,
        &state.namespace,
        &task_run_name(id),
        &who,
        FIELD_MANAGER_API,
        k8s_openapi::jiff::Timestamp::now(),
    )
    .await
    .map_err(failed)?;
    Ok(answer(&state, done, "Cancel"))
}
