//! `POST /api/v1/tasks/{id}/context`: added context in, a `context-v<N>.md` commit out.

use super::commit_failed;
use super::tasks::short;
use crate::api::auth::Authorized;
use crate::api::change::Change;
use crate::api::commit::CommitError;
use crate::api::error::{Answer, ApiError, ApiJson, ApiResponse};
use crate::api::model::{AddContextRequest, FieldErrorAnswer, WrittenAnswer, WrittenData};
use crate::api::state::AppState;
use crate::api::validate::{parse_task_id, validate_context};
use crate::names::task_run_name;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Add context to a task: commits `context-v<N>.md` into its folder. The folder's digest changes,
/// so the sync raises the TaskRun's contextVersion and the controller starts a new Job.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/context",
    tag = "tasks",
    params(("id" = i64, Path, minimum = 0, description = "The task id")),
    request_body = AddContextRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed; data is WrittenData", body = WrittenAnswer),
        (status = 400, description = "A field (or the id) is wrong; data.field names it", body = FieldErrorAnswer),
        (status = 401, description = "Missing or wrong bearer token", body = ApiResponse),
        (status = 404, description = "No folder for the task", body = ApiResponse),
        (status = 409, description = "The context version is taken", body = ApiResponse),
        (status = 413, description = "Body too large", body = ApiResponse),
        (status = 503, description = "The git remote could not be reached", body = ApiResponse),
    )
)]
pub async fn add_context(
    State(state): State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AddContextRequest>,
) -> Result<Answer, ApiError> {
    let id = parse_task_id(&id)?;
    let context = validate_context(id, request)?;
    let written = state
        .writes
        .writer()?
        .write(Change::Context(context))
        .await
        .map_err(|e| {
            let outcome = if matches!(e, CommitError::Refused(_)) {
                "refused"
            } else {
                "failed"
            };
            state.api_metrics.write("context", outcome);
            commit_failed(e)
        })?;
    state.api_metrics.write("context", "committed");
    (state.trigger)();
    let name = task_run_name(id);
    let file = written.files.first().cloned().unwrap_or_default();
    let data = WrittenData {
        name: name.clone(),
        namespace: state.namespace.clone(),
        commit: written.commit.clone(),
        folder: written.folder.clone(),
        files: written.files,
        pushed: written.pushed,
        context_file_version: written.context_version,
    };
    Ok(Answer(
        StatusCode::CREATED,
        ApiResponse::ok(
            format!(
                "Context added: commit {} adds {}/{file}; the sync raises {name}'s contextVersion",
                short(&written.commit),
                written.folder
            ),
            serde_json::to_value(data).ok(),
        ),
    ))
}
