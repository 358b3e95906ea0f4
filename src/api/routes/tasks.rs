//! `POST /api/v1/tasks` (a new task folder as a commit) and `GET /api/v1/tasks[/{id}]` (TaskRuns
//! from the reflector cache).

use super::commit_failed;
use crate::api::auth::Authorized;
use crate::api::change::Change;
use crate::api::commit::CommitError;
use crate::api::error::{Answer, ApiError, ApiJson, ApiResponse};
use crate::api::model::{
    FieldErrorAnswer, PmTaskRequest, TaskAnswer, TaskListAnswer, TaskSummary, WrittenAnswer,
    WrittenData,
};
use crate::api::state::AppState;
use crate::api::validate::{parse_task_id, validate_task};
use crate::names::task_run_name;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Submit a task: commits `<root>/<id>-<service>/` with `task.yaml` and the markdown files,
/// pushes it when the repository has a remote, and triggers a sync.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = PmTaskRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed; data is WrittenData", body = WrittenAnswer),
        (status = 400, description = "A field is wrong; data.field names it", body = FieldErrorAnswer),
        (status = 401, description = "Missing or wrong bearer token", body = ApiResponse),
        (status = 409, description = "Task already exists", body = ApiResponse),
        (status = 413, description = "Body too large", body = ApiResponse),
        (status = 503, description = "The git remote could not be reached", body = ApiResponse),
    )
)]
pub async fn submit_task(
    State(state): State<AppState>,
    _: Authorized,
    ApiJson(request): ApiJson<PmTaskRequest>,
) -> Result<Answer, ApiError> {
    let task = validate_task(request, state.known_agents.as_deref().map(Vec::as_slice))?;
    let name = task_run_name(task.task_id);
    if state.cached_task_run(&name).is_some() {
        return Err(ApiError::Conflict(format!(
            "Task already exists: the TaskRun {}/{name} is in the cluster",
            state.namespace
        )));
    }
    let written = state
        .writes
        .writer()?
        .write(Change::Task(task))
        .await
        .map_err(|e| {
            let outcome = if matches!(e, CommitError::Refused(_)) {
                "refused"
            } else {
                "failed"
            };
            state.api_metrics.write("task", outcome);
            commit_failed(e)
        })?;
    state.api_metrics.write("task", "committed");
    (state.trigger)();
    let data = WrittenData {
        name: name.clone(),
        namespace: state.namespace.clone(),
        commit: written.commit.clone(),
        folder: written.folder.clone(),
        files: written.files,
        pushed: written.pushed,
        context_file_version: None,
    };
    Ok(Answer(
        StatusCode::CREATED,
        ApiResponse::ok(
            format!(
                "Task submitted: commit {} adds {}; the sync creates TaskRun {name}",
                short(&written.commit),
                written.folder
            ),
            serde_json::to_value(data).ok(),
        ),
    ))
}

/// Every TaskRun of the namespace, sorted by task id, from the cache.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    responses((status = 200, description = "data is a list of TaskSummary", body = TaskListAnswer))
)]
pub async fn list_tasks(State(state): State<AppState>) -> Answer {
    let mut tasks: Vec<TaskSummary> = state
        .task_runs
        .state()
        .iter()
        .filter(|tr| tr.metadata.namespace.as_deref() == Some(state.namespace.as_str()))
        .map(|tr| TaskSummary::of(tr))
        .collect();
    tasks.sort_by_key(|t| t.task_id);
    Answer(
        StatusCode::OK,
        ApiResponse::ok(
            format!("{} tasks in namespace {}", tasks.len(), state.namespace),
            serde_json::to_value(tasks).ok(),
        ),
    )
}

/// One TaskRun by task id, from the cache.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = i64, Path, minimum = 0, description = "The task id")),
    responses(
        (status = 200, description = "data is a TaskSummary", body = TaskAnswer),
        (status = 400, description = "The id is not a non-negative integer that fits in 64 bits", body = FieldErrorAnswer),
        (status = 404, description = "No TaskRun for the id", body = ApiResponse),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    let id = parse_task_id(&id)?;
    let name = task_run_name(id);
    let task_run = state.cached_task_run(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no TaskRun {}/{name}; a task submitted a moment ago appears after the next sync",
            state.namespace
        ))
    })?;
    Ok(Answer(
        StatusCode::OK,
        ApiResponse::ok(
            format!("TaskRun {}/{name}", state.namespace),
            serde_json::to_value(TaskSummary::of(&task_run)).ok(),
        ),
    ))
}

pub(crate) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
