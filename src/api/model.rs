//! The API's request and answer bodies: JSON in, typed values out (and back).

use crate::crd::TaskRun;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/tasks`: the sketch's PmTaskRequest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PmTaskRequest {
    /// The task id: the numeric prefix of the new folder and the `task-<id>` TaskRun name; at
    /// most 18 digits.
    #[schema(minimum = 0, maximum = 999_999_999_999_999_999_i64)]
    pub id: i64,
    /// A DNS-1123 label (lowercase letters, digits, '-').
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub service_name: String,
    /// One of the agent profiles the controller knows (400 for another); a DNS-1123 label.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub agent_name: String,
    /// At least one, each name once; each becomes `<folder>/<filename>`. Together at most the
    /// folder limit of the sync (900 KiB).
    #[schema(min_items = 1)]
    pub markdown_files: Vec<MarkdownFileRequest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkdownFileRequest {
    /// A plain file name ending in `.md`: letters, digits, '.', '_', '-'; no '/', not hidden.
    #[schema(
        min_length = 4,
        max_length = 253,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.md$"
    )]
    pub filename: String,
    pub content: String,
}

/// `POST /api/v1/tasks/{id}/context`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddContextRequest {
    /// The markdown to add as `context-v<N>.md`; not empty or only whitespace.
    #[schema(min_length = 1, pattern = r"\S")]
    pub additional_context: String,
    /// N in `context-v<N>.md`; larger than every existing context file of the task. Omitted: the
    /// next number.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub version: Option<u32>,
}

/// `data` of a 201 from a write: where the change landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WrittenData {
    /// The TaskRun the sync will create or update (`task-<id>`).
    pub name: String,
    pub namespace: String,
    /// The full id of the commit that holds the change.
    pub commit: String,
    /// The task folder's path in the repository.
    pub folder: String,
    /// The files the commit added, relative to the folder.
    pub files: Vec<String>,
    /// Whether the commit was pushed to the remote (false when the repository has none).
    pub pushed: bool,
    /// For added context: N of `context-v<N>.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_file_version: Option<u32>,
}

/// One TaskRun as `GET /api/v1/tasks` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    pub name: String,
    pub namespace: String,
    pub task_id: i64,
    pub service_name: String,
    pub agent_name: String,
    pub context_version: i64,
    pub content_digest: String,
    pub source_path: String,
    /// Pending, Running, Succeeded or Failed; absent until the controller has seen it.
    pub phase: Option<String>,
    /// Why it is in its phase: Queued, Suspended, ImagePullBackOff, Cancelled, …
    pub reason: Option<String>,
    pub job_name: Option<String>,
    /// The Pod of the latest attempt (`orchestrator logs` reads its log).
    pub pod_name: Option<String>,
    pub message: Option<String>,
    /// The agent's result: its termination message, at most 4 KiB.
    pub result: Option<String>,
    pub attempts: i32,
    /// Retries carried out for this content version.
    pub retries: i32,
    /// task.yaml's `suspend`.
    pub suspend: bool,
    /// task.yaml's `priority`.
    pub priority: i32,
    pub last_updated: Option<String>,
    /// The file names of the task's markdown, in reading order (prompt.md first).
    pub files: Vec<String>,
}

/// What `POST /api/v1/tasks/{id}/retry` and `/cancel` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationData {
    pub name: String,
    pub namespace: String,
    /// `orchestrator.io/retry` or `orchestrator.io/cancel`.
    pub annotation: String,
    pub value: String,
    /// The content version the operation applies to; an operation never changes it.
    pub context_version: i64,
}

impl TaskSummary {
    pub fn of(task_run: &TaskRun) -> Self {
        let status = task_run.status.clone().unwrap_or_default();
        let spec = &task_run.spec;
        TaskSummary {
            name: task_run.metadata.name.clone().unwrap_or_default(),
            namespace: task_run.metadata.namespace.clone().unwrap_or_default(),
            task_id: spec.task_id,
            service_name: spec.service_name.clone(),
            agent_name: spec.agent_name.clone(),
            context_version: spec.context_version,
            content_digest: spec.content_digest.clone(),
            source_path: spec.source_path.clone(),
            phase: status.phase.map(|p| p.as_str().to_string()),
            reason: status.reason,
            job_name: status.job_name,
            pod_name: status.pod_name,
            message: status.message,
            result: status.result,
            attempts: status.attempts,
            retries: status.retries,
            suspend: spec.suspend,
            priority: spec.priority,
            last_updated: status.last_updated,
            files: spec
                .markdown_files
                .iter()
                .map(|f| f.filename.clone())
                .collect(),
        }
    }
}

/// The documented shape of a 200 from `GET /api/v1/tasks` (an [`crate::api::ApiResponse`]).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TaskListAnswer {
    pub success: bool,
    pub message: String,
    /// Every TaskRun of the namespace, sorted by task id.
    pub data: Vec<TaskSummary>,
}

/// The documented shape of a 200 from `GET /api/v1/tasks/{id}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TaskAnswer {
    pub success: bool,
    pub message: String,
    pub data: TaskSummary,
}

/// The documented shape of a 201 from a write.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WrittenAnswer {
    pub success: bool,
    pub message: String,
    pub data: WrittenData,
}

/// The documented shape of a 400: `data.field` names the field at fault; a body that is not the
/// JSON the endpoint takes has no `data`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FieldErrorAnswer {
    pub success: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<FieldError>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The JSON path of the field, e.g. `markdownFiles[0].filename`, or `id` for the path.
    pub field: String,
}
